"""The message surface: the small protocol every platform adapter implements.

The renderer and the use cases speak only to this protocol. An adapter maps its platform's calls
onto it and its platform's failures onto the `SurfaceError` family below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

from core.render.limits import Limit

WriteKind = Literal["send", "edit", "preview"]
Activity = Literal["typing", "drawing"]  # what the bot is busy with: an answer, an image


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """The platform limits each kind of write draws from (core.render.limits): a new message,
    an edit, a live preview. Empty: the platform does not limit that kind of write."""

    send: tuple[Limit, ...] = ()
    edit: tuple[Limit, ...] = ()
    preview: tuple[Limit, ...] = ()

    def of(self, kind: WriteKind) -> tuple[Limit, ...]:
        return self.send if kind == "send" else self.edit if kind == "edit" else self.preview


@dataclass(frozen=True, slots=True)
class SurfaceLimits:
    """What a surface allows.

    max_length: characters of one message's text (after the surface's own formatting).
    room: answers with the same room (one chat or channel) share its writes (core.render.scheduler).
    writes: the limits each kind of write draws from; a surface may change them over time (read
        them before each write).
    previews: live previews go through `preview`; messages are sent once complete.
    preview_refresh: seconds after which an unchanged preview is shown again, for platforms that
        drop a preview left alone; None: a preview stays until replaced.
    measure: how the platform counts length ("utf16": UTF-16 code units).
    placeholder: shown (with the Stop button) when an answer has no text for a while; None:
        show nothing until the first text.
    max_caption: characters of an upload's caption.
    buttons: the surface shows buttons (False: a console, where commands stand in for them).
    """

    max_length: int
    room: str
    writes: WriteLimits = WriteLimits()
    previews: bool = False
    preview_refresh: float | None = None
    measure: Literal["chars", "utf16"] = "chars"
    placeholder: str | None = "…"
    max_caption: int = 1024
    buttons: bool = True


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A platform message the surface sent: its id as a string, enough to edit it later."""

    id: str


AnswerAction = Literal["stop", "regenerate", "continue"]  # the buttons under an answer
# choose_model: a model of a model list (payload: its id); page: turn a list's page (core.menus).
ButtonAction = AnswerAction | Literal["choose_model", "page"]


@dataclass(frozen=True, slots=True)
class Button:
    """An action a user can take on a message (Stop while streaming, Regenerate after)."""

    action: ButtonAction
    label: str
    payload: str = ""


class AnswerButtonIds:
    """How one platform spells the answer buttons (Stop, Regenerate, Continue) in its button
    ids, both ways: one fixed id per action, no payload."""

    def __init__(self, ids: Mapping[AnswerAction, str]) -> None:
        if len(set(ids.values())) != len(ids) or set(ids) != set(get_args(AnswerAction)):
            raise ValueError(f"one distinct id per answer action, not {dict(ids)}")
        self._ids: dict[str, str] = {str(action): spelled for action, spelled in ids.items()}
        self._actions = {spelled: action for action, spelled in ids.items()}

    def id_of(self, action: AnswerAction) -> str:
        """The button id of an answer action."""
        return self._ids[action]

    def get(self, action: ButtonAction) -> str | None:
        """The fixed id of `action`, None when it is no answer action (it has a payload)."""
        return self._ids.get(action)

    def action_of(self, button_id: str | None) -> AnswerAction | None:
        """The answer action a pressed button's id stands for, None when it is none of them."""
        return self._actions.get(button_id) if button_id is not None else None


class SurfaceError(Exception):
    """A platform call failed for a reason the renderer must react to."""


class SurfaceRateLimited(SurfaceError):
    """The platform said: retry after `retry_after` seconds (None: it said no readable wait,
    and `UNSAID_WAIT` is waited). Nothing was changed."""

    UNSAID_WAIT = 1.0

    def __init__(self, retry_after: float | None) -> None:
        wait = self.UNSAID_WAIT if retry_after is None else retry_after
        super().__init__(f"rate limited, retry after {wait:g}s")
        self.retry_after = wait


class SurfaceUnavailable(SurfaceError):
    """A transient failure (network, the platform's 5xx): the same write may pass a bit later.
    The write may or may not have been applied."""


class SurfaceMessageGone(SurfaceError):
    """The message to edit no longer exists (deleted by a user) or can no longer be edited."""


class SurfaceForbidden(SurfaceError):
    """The bot may not write here (blocked, kicked, missing permissions)."""


class SurfaceRejected(SurfaceError):
    """The platform refused the content itself (formatting, length); plain text may pass."""


@runtime_checkable
class MessageSurface(Protocol):
    """Where one answer is shown."""

    @property
    def limits(self) -> SurfaceLimits: ...

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        """Send a new message and return its reference."""
        ...

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        """Replace the text (and buttons) of a message this surface sent."""
        ...

    async def preview(self, text: str) -> None:
        """Show `text` as a live, ephemeral preview of the next message (when limits.previews)."""
        ...

    async def upload(
        self,
        data: bytes,
        *,
        filename: str,
        content_type: str,
        caption: str,
        prompt: str,
        model: str,
    ) -> MessageRef:
        """Send a file (an image) with a caption; `prompt` and `model` (which the caption
        states too) are there for platforms that show them apart, e.g. as a title and a note."""
        ...

    async def activity(self, kind: Activity) -> None:
        """Show that the bot is busy (a few seconds; repeat to keep it shown)."""
        ...
