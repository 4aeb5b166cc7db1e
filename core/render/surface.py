"""The message surface: the small protocol every platform adapter implements.

The renderer and the use cases speak only to this protocol. An adapter maps its platform's calls
onto it and its platform's failures onto the `SurfaceError` family below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SurfaceLimits:
    """What a surface allows.

    max_length: characters of one message's text (after the surface's own formatting).
    min_edit_interval: seconds between two writes (send, edit or draft) that share `budget_key`.
    budget_key: answers with the same key (one chat or channel) share one write budget.
    burst: writes allowed back to back before the interval applies.
    supports_draft: live previews go through `draft`; messages are sent once complete.
    measure: how the platform counts length ("utf16": UTF-16 code units).
    placeholder: text sent at once before an answer starts (None: the platform shows its own).
    max_caption: characters of an upload's caption.
    """

    max_length: int
    min_edit_interval: float
    budget_key: str
    burst: int = 1
    supports_draft: bool = False
    measure: Literal["chars", "utf16"] = "chars"
    placeholder: str | None = None
    max_caption: int = 1024


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A platform message the surface sent: its id as a string, enough to edit it later."""

    id: str


@dataclass(frozen=True, slots=True)
class Button:
    """An action a user can take on a message (Stop while streaming, Regenerate after)."""

    action: str  # "stop" | "regenerate" | "select_model" | "page"
    label: str
    payload: str = ""


class SurfaceError(Exception):
    """A platform call failed for a reason the renderer must react to."""


class SurfaceRateLimited(SurfaceError):
    """The platform said: retry after `retry_after` seconds. Nothing was changed."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after:g}s")
        self.retry_after = retry_after


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

    async def draft(self, text: str) -> None:
        """Show `text` as a live, ephemeral preview (only when limits.supports_draft)."""
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
        states too) are there for platforms that show them apart, e.g. in an embed."""
        ...

    async def activity(self, kind: Literal["typing", "upload_photo"]) -> None:
        """Show that the bot is busy (a few seconds; repeat to keep it shown)."""
        ...
