"""Discord message surfaces: where one answer (or one image) is shown.

`InteractionSurface` serves slash commands and button clicks after they were deferred: the first
write fills the deferred "thinking…" response (@original), further messages are followups, edits go
through the interaction token. The token lives 15 minutes; when it runs out mid-answer (error 50027,
or the surface's clock says it is about to), the answer continues through the channel routes: the
existing messages are edited as ordinary channel messages and further parts are sent as new channel
messages. Ephemeral (private) answers cannot do that (only the token can reach them): they end with
what was shown, like a message the user deleted.

`ChannelSurface` serves mentions and DMs: the first message replies to the user's message, later
parts are plain messages, edits use the channel route.

An interaction is answered with its first text when that comes in time: the interaction response
(callback type 4) carries it, and the callback counts against no message limit. Only when no text
came within `RESPOND_WITHIN` seconds (Discord allows 3) is the interaction deferred (type 5,
"thinking…"), and the first text then fills the deferred response.

Limits (the room is the channel): channel messages draw from the channel's create or edit window
(5 per 5 s each) and the bot-wide 50 per second; interaction webhooks from their token's window
(5 per 5 s), apart from the channel's. Platform failures become the core's `SurfaceError` family;
missing permissions are explained once per channel (a log line and, where possible, one message).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import discord

from core.clock import Clock
from core.notices import ForbiddenNotices
from core.render.limits import Window
from core.render.surface import (
    Activity,
    AnswerButtonIds,
    Button,
    ButtonAction,
    MessageRef,
    SurfaceError,
    SurfaceForbidden,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceRejected,
    SurfaceUnavailable,
    WriteLimits,
)
from core.wire import parse_retry_after

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_LENGTH = 2000
# Discord's limits (observed, see the module docstring): writes per window of seconds.
CHANNEL_WRITES, CHANNEL_SECONDS = 5, 5.0  # creates, and edits apart, per channel
TOKEN_WRITES, TOKEN_SECONDS = 5, 5.0  # per interaction token
BOT_WRITES, BOT_SECONDS = 50, 1.0  # per bot, interaction endpoints exempt
RESPOND_WITHIN = 2.0  # answer an interaction with its first text within this, else defer
MAX_CAPTION = 4096  # the caption becomes an embed description
TOKEN_LIFETIME = 14.5 * 60  # interaction tokens live 15 minutes; stop using them a bit earlier
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
CHANNEL_PLACEHOLDER = "…"

CUSTOM_ID_PREFIX = "g4f:"
ANSWER_IDS = AnswerButtonIds(
    {"stop": "g4f:stop", "regenerate": "g4f:regen", "continue": "g4f:continue"}
)
_STYLES: dict[ButtonAction, discord.ButtonStyle] = {
    "stop": discord.ButtonStyle.danger,
    "regenerate": discord.ButtonStyle.secondary,
    "continue": discord.ButtonStyle.primary,
}

# Discord error codes this module reacts to.
UNKNOWN_MESSAGE = 10008
TOO_MANY_EDITS_TO_OLD_MESSAGES = 30046
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
EMPTY_MESSAGE = 50006
PAYLOAD_TOO_LARGE = 40005
CANNOT_MESSAGE_USER = 50007

FORBIDDEN_NOTICE = (
    "⚠️ I can't write here: I'm missing permissions in this channel. Please ask a server admin to "
    "let me View Channel, Send Messages, Read Message History, Embed Links and Attach Files."
)

Tell = Callable[[str], Awaitable[object]]


def channel_limits(channel_id: int) -> WriteLimits:
    """Channel messages: the channel's creates and its edits apart, and the bot's second."""
    bot = Window("discord:bot", BOT_WRITES, BOT_SECONDS)
    return WriteLimits(
        send=(Window(f"discord:{channel_id}:create", CHANNEL_WRITES, CHANNEL_SECONDS), bot),
        edit=(Window(f"discord:{channel_id}:edit", CHANNEL_WRITES, CHANNEL_SECONDS), bot),
    )


def token_limits(token: str) -> WriteLimits:
    """Followups and edits through an interaction's token: the token's own window."""
    window = Window(_token_key(token), TOKEN_WRITES, TOKEN_SECONDS)
    return WriteLimits(send=(window,), edit=(window,))


def _token_key(token: str) -> str:
    """The limit key of an interaction token (a digest: the token itself is a secret)."""
    return "discord:token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


_LIMITED_PATHS = (
    (re.compile(r"/channels/(\d+)/messages$"), ("POST",), "discord:{}:create"),
    (re.compile(r"/channels/(\d+)/messages/\d+$"), ("PATCH", "DELETE"), "discord:{}:edit"),
)
_WEBHOOK_PATH = re.compile(r"/webhooks/\d+/([^/?]+)")


def limit_key_of(method: str, path: str) -> str | None:
    """The limit a REST request draws from (see `channel_limits`, `token_limits`), or None."""
    if (webhook := _WEBHOOK_PATH.search(path)) is not None:
        return _token_key(webhook.group(1))
    for pattern, methods, key in _LIMITED_PATHS:
        if method in methods and (match := pattern.search(path)) is not None:
            return key.format(match.group(1))
    return None


def rate_limit_observer(observe: Callable[[str, int, float], None]) -> aiohttp.TraceConfig:
    """An aiohttp trace for discord.py's session that reports each response's rate-limit
    headers (X-RateLimit-Remaining, -Reset-After) to `observe(key, remaining, reset_after)`,
    so the write scheduler follows Discord's own count."""

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        headers = params.response.headers
        key = limit_key_of(params.method, params.url.path)
        remaining, reset_after = (
            headers.get("X-RateLimit-Remaining"),
            headers.get("X-RateLimit-Reset-After"),
        )
        if key is None or remaining is None or reset_after is None:
            return
        try:
            observe(key, int(remaining), float(reset_after))
        except ValueError:
            log.debug("unreadable rate-limit headers: %r %r", remaining, reset_after)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def custom_id_for(button: Button) -> str:
    """The component custom id of a core button: g4f:stop, g4f:regen, g4f:<action>:<payload>."""
    known = ANSWER_IDS.get(button.action)
    if known is not None:
        return known
    return f"{CUSTOM_ID_PREFIX}{button.action}:{button.payload}"[:100]


class ButtonsView(discord.ui.View):
    """Buttons shown on a message.

    The view only renders: it is not dispatchable, so discord.py keeps no per-message state for
    it, and clicks reach the client's one component handler by custom id. That also works for
    messages sent before a restart.
    """

    def __init__(self, buttons: Sequence[Button]) -> None:
        super().__init__(timeout=None)
        for button in buttons:
            self.add_item(
                discord.ui.Button(
                    label=button.label[:80],
                    custom_id=custom_id_for(button),
                    style=_STYLES.get(button.action, discord.ButtonStyle.secondary),
                )
            )

    def is_dispatchable(self) -> bool:
        """Never stored in discord.py's view store (see the class docstring)."""
        return False


def buttons_view(buttons: Sequence[Button]) -> ButtonsView | None:
    """A view for `buttons`, or None (no components) when there are none."""
    return ButtonsView(buttons) if buttons else None


def translate(exc: BaseException) -> SurfaceError:
    """The core's view of a Discord failure (rate limit, message gone, forbidden, rejected)."""
    if isinstance(exc, discord.RateLimited):
        return SurfaceRateLimited(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return SurfaceRateLimited(_retry_after(exc))
        if isinstance(exc, discord.Forbidden):
            return SurfaceForbidden(f"{exc.code}: {exc.text}")
        if exc.code in (UNKNOWN_MESSAGE, TOO_MANY_EDITS_TO_OLD_MESSAGES):
            return SurfaceMessageGone(f"{exc.code}: {exc.text}")
        if isinstance(exc, discord.NotFound):
            return SurfaceForbidden(f"{exc.code}: {exc.text}")  # channel or webhook gone
        if exc.code in (INVALID_FORM_BODY, EMPTY_MESSAGE, PAYLOAD_TOO_LARGE) or exc.status in (
            400,
            413,
        ):
            return SurfaceRejected(f"{exc.code}: {exc.text}")
    return SurfaceError(repr(exc))


def is_transient(exc: BaseException) -> bool:
    """A network failure or a Discord server error (discord.py already retried 5xx itself)."""
    if isinstance(exc, discord.HTTPException):
        return isinstance(exc, discord.DiscordServerError)
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def _retry_after(exc: discord.HTTPException) -> float | None:
    """The Retry-After of a 429 that discord.py passed on (None: it says none)."""
    raw = exc.response.headers.get("Retry-After") if exc.response is not None else None
    return parse_retry_after(raw)


_PLATFORM_ERRORS = (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError)


def _is_token_expired(exc: discord.HTTPException) -> bool:
    return exc.code == INVALID_WEBHOOK_TOKEN


def _image_embed(prompt: str, model: str, filename: str) -> discord.Embed:
    """The prompt as the description, the model as the footer, the attachment as the image."""
    embed = discord.Embed(description=prompt[:MAX_CAPTION])
    embed.set_footer(text=model[:2048])
    embed.set_image(url=f"attachment://{filename}")
    return embed


class _Base:
    """What both surfaces share: limits, error translation, the permission notice (explained
    once per channel: one warning in the log and, where possible, one message)."""

    def __init__(
        self,
        channel: discord.PartialMessageable,
        *,
        notices: ForbiddenNotices,
        attachment_limit: int,
        placeholder: str | None,
    ) -> None:
        self._channel = channel
        self._notices = notices
        self._attachment_limit = attachment_limit
        self._channel_writes = channel_limits(channel.id)
        self._limits = SurfaceLimits(
            max_length=MAX_LENGTH,
            room=f"discord:{channel.id}",
            writes=self._channel_writes,
            placeholder=placeholder,
            max_caption=MAX_CAPTION,
        )

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    async def preview(self, text: str) -> None:
        """Discord has no live previews (limits.previews is False)."""
        raise SurfaceRejected("Discord has no live previews")

    def _tell(self) -> Tell | None:
        """How to tell the user about missing permissions (None: no way)."""
        return None

    @contextlib.asynccontextmanager
    async def _platform_errors(self) -> AsyncIterator[None]:
        """Turn Discord failures into SurfaceErrors.

        A Forbidden is explained once per channel. Transient failures (network, Discord 5xx)
        become SurfaceUnavailable, which the renderer retries a few times.
        """
        try:
            yield
        except discord.Forbidden as exc:
            await self._explain(exc)
            raise translate(exc) from exc
        except SurfaceError:
            raise
        except _PLATFORM_ERRORS as exc:
            if is_transient(exc):
                raise SurfaceUnavailable(repr(exc)) from exc
            raise translate(exc) from exc

    async def _explain(self, exc: discord.Forbidden) -> None:
        """The first refusal in this channel: tell the user if we can (the log says it too)."""
        if not self._notices.first(self._limits.room, f"code {exc.code}: {exc.text}"):
            return
        tell = self._tell()
        if tell is None or exc.code == CANNOT_MESSAGE_USER:
            return
        try:
            await tell(FORBIDDEN_NOTICE)
        except (discord.DiscordException, aiohttp.ClientError, OSError) as err:
            log.info("could not explain the missing permissions in %s: %r", self._channel.id, err)

    def _file(self, data: bytes, filename: str) -> discord.File:
        if len(data) > self._attachment_limit:
            raise SurfaceRejected(
                f"the image has {len(data)} bytes; Discord accepts {self._attachment_limit} here"
            )
        return discord.File(io.BytesIO(data), filename=filename)

    async def _channel_send(self, **kwargs: Any) -> MessageRef:
        async with self._platform_errors():
            message = await self._channel.send(**kwargs)
        return MessageRef(str(message.id))

    async def _channel_edit(self, message_id: int, **kwargs: Any) -> None:
        async with self._platform_errors():
            await self._channel.get_partial_message(message_id).edit(**kwargs)


class ChannelSurface(_Base):
    """An answer to a mention or a DM: replies to the user's message, edits via the channel."""

    def __init__(
        self,
        channel: discord.PartialMessageable,
        *,
        notices: ForbiddenNotices,
        reply_to: discord.Message | None = None,
        attachment_limit: int = DEFAULT_ATTACHMENT_LIMIT,
    ) -> None:
        super().__init__(
            channel,
            notices=notices,
            attachment_limit=attachment_limit,
            placeholder=CHANNEL_PLACEHOLDER,
        )
        self._reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to else None

    async def _send_first_as_reply(self, **kwargs: Any) -> MessageRef:
        """Send; the answer's first message replies to the user's message."""
        if self._reference is not None:
            kwargs["reference"] = self._reference
        ref = await self._channel_send(**kwargs)
        self._reference = None
        return ref

    def _tell(self) -> Tell | None:
        return lambda text: self._channel.send(text)

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        """Send a message (the first one replies to the user's message)."""
        view = buttons_view(buttons)
        extra = {"view": view} if view is not None else {}
        return await self._send_first_as_reply(content=text, **extra)

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        """Edit one of this answer's messages (no buttons: components removed)."""
        await self._channel_edit(int(ref.id), content=text, view=buttons_view(buttons))

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
        """Send the image as an attachment with an embed (prompt, model)."""
        file = self._file(data, filename)
        embed = _image_embed(prompt, model, filename)
        return await self._send_first_as_reply(file=file, embed=embed)

    async def activity(self, kind: Activity) -> None:
        """Show "typing…" (Discord has one indicator; it lasts about 10 s)."""
        async with self._platform_errors():
            await self._channel.typing()


class InteractionSurface(_Base):
    """An answer to an interaction (slash command or button), see the module docstring.

    The adapter calls `respond_in_time` right after creating it (or `defer` for work that
    brings no text, like an image), so the interaction is acknowledged within Discord's 3 s.
    """

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        clock: Clock,
        notices: ForbiddenNotices,
        ephemeral: bool = False,
        token_lifetime: float = TOKEN_LIFETIME,
    ) -> None:
        channel = interaction.client.get_partial_messageable(
            interaction.channel_id or 0, guild_id=interaction.guild_id
        )
        super().__init__(
            channel,
            notices=notices,
            attachment_limit=interaction.filesize_limit,
            placeholder=None,  # Discord shows "thinking…" once deferred
        )
        self._interaction = interaction
        self._clock = clock
        self._deadline = clock.now() + token_lifetime
        self._ephemeral = ephemeral
        self._original_id: int | None = None
        self._original_filled = False
        self._expired = False
        self._responding = asyncio.Lock()
        self._token_writes = token_limits(interaction.token)
        # The interaction response itself draws from no limit.
        self._callback_writes = WriteLimits(edit=self._token_writes.edit)

    @property
    def limits(self) -> SurfaceLimits:
        """The token's limits (none for the response itself); the channel's once expired."""
        if not self._token_usable():
            writes = self._channel_writes
        elif not self._interaction.response.is_done():
            writes = self._callback_writes
        else:
            writes = self._token_writes
        return dataclasses.replace(self._limits, writes=writes)

    # --- acknowledging the interaction ------------------------------------------------------
    async def respond_in_time(self, within: float = RESPOND_WITHIN) -> None:
        """Defer unless the first text has answered the interaction within `within` seconds."""
        await self._clock.sleep(within)
        await self.defer()

    async def defer(self) -> None:
        """Acknowledge now (Discord shows "thinking…"), unless already answered."""
        async with self._responding:
            if self._interaction.response.is_done():
                return
            async with self._platform_errors():
                callback = await self._interaction.response.defer(
                    ephemeral=self._ephemeral, thinking=True
                )
            self._original_id = callback.message_id if callback is not None else None

    async def refuse(self, text: str) -> None:
        """Show a refusal privately in the answer's place."""
        async with self._responding:
            if not self._interaction.response.is_done():
                await self._interaction.response.send_message(text, ephemeral=True)
                return
        if self._ephemeral:
            await self._interaction.edit_original_response(content=text)
            return
        await self._interaction.delete_original_response()
        await self._interaction.followup.send(text, ephemeral=True)

    async def _respond(self, **kwargs: Any) -> MessageRef | None:
        """Answer the interaction with a message, if nothing answered it yet."""
        async with self._responding:
            if self._interaction.response.is_done():
                return None
            async with self._platform_errors():
                callback = await self._interaction.response.send_message(
                    ephemeral=self._ephemeral, **kwargs
                )
            self._original_id = callback.message_id
            self._original_filled = True
            return MessageRef(str(callback.message_id))

    # --- the token and its expiry ------------------------------------------------------------
    def _token_usable(self) -> bool:
        if not self._expired and self._clock.now() >= self._deadline:
            self._switch_to_channel("the interaction is about to expire")
        return not self._expired

    def _switch_to_channel(self, why: str) -> None:
        self._expired = True
        if self._ephemeral:
            log.info("%s; this private answer ends with what was shown", why)
        else:
            log.info("%s; continuing in channel %s", why, self._channel.id)

    def _tell(self) -> Tell | None:
        if not self._token_usable():
            return None
        return lambda text: self._interaction.followup.send(text, ephemeral=True)

    def _check_channel_possible(self) -> None:
        if self._ephemeral:
            raise SurfaceMessageGone("interaction token expired; a private answer cannot go on")

    async def _via_token(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """Make a call through the interaction token; None when the token turned out expired
        (the caller then carries on through the channel)."""
        async with self._platform_errors():
            try:
                return await call()
            except discord.HTTPException as exc:
                if not _is_token_expired(exc):
                    raise
        self._switch_to_channel("interaction token expired")
        return None

    # --- MessageSurface ---------------------------------------------------------------------
    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        """The first text answers the interaction (or fills the deferred response); then
        followups, or channel messages once the token expired."""
        view = buttons_view(buttons)
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        if self._token_usable():
            if (ref := await self._respond(content=text, **extra)) is not None:
                return ref
            if not self._original_filled:
                message = await self._via_token(
                    lambda: self._interaction.edit_original_response(content=text, view=view)
                )
                if message is not None:
                    self._original_id, self._original_filled = message.id, True
                    return MessageRef(str(message.id))
            else:
                followup = self._interaction.followup
                sent = await self._via_token(
                    lambda: followup.send(text, ephemeral=self._ephemeral, wait=True, **extra)
                )
                if sent is not None:
                    return MessageRef(str(sent.id))
        return await self._send_via_channel(text, extra)

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        """Edit @original or a followup through the token, else through the channel."""
        view = buttons_view(buttons)
        message_id = int(ref.id)
        if self._token_usable():
            done: object | None
            if message_id == self._original_id:
                done = await self._via_token(
                    lambda: self._interaction.edit_original_response(content=text, view=view)
                )
            else:
                done = await self._via_token(
                    lambda: self._interaction.followup.edit_message(
                        message_id, content=text, view=view
                    )
                )
            if done is not None:
                return
        self._check_channel_possible()
        await self._channel_edit(message_id, content=text, view=view)

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
        """The image (attachment + embed with prompt and model) in the deferred response."""
        embed = _image_embed(prompt, model, filename)
        if self._token_usable():
            file = self._file(data, filename)
            if (ref := await self._respond(file=file, embed=embed)) is not None:
                return ref
            if not self._original_filled:
                message = await self._via_token(
                    lambda: self._interaction.edit_original_response(
                        content=None, embed=embed, attachments=[file]
                    )
                )
                if message is not None:
                    self._original_id, self._original_filled = message.id, True
                    return MessageRef(str(message.id))
            else:
                sent = await self._via_token(
                    lambda: self._interaction.followup.send(
                        file=file, embed=embed, ephemeral=self._ephemeral, wait=True
                    )
                )
                if sent is not None:
                    return MessageRef(str(sent.id))
        self._check_channel_possible()
        ref = await self._channel_send(file=self._file(data, filename), embed=embed)
        self._original_filled = True
        return ref

    async def activity(self, kind: Activity) -> None:
        """Nothing to do: Discord shows "thinking…" while the response is deferred."""

    async def _send_via_channel(self, text: str, extra: dict[str, Any]) -> MessageRef:
        """After expiry: fill the deferred message through the channel if possible, else send."""
        self._check_channel_possible()
        if not self._original_filled and self._original_id is not None:
            try:
                await self._channel_edit(self._original_id, content=text, **extra)
            except (SurfaceForbidden, SurfaceMessageGone, SurfaceRejected) as exc:
                log.info("could not fill the deferred response through the channel: %r", exc)
            else:
                self._original_filled = True
                return MessageRef(str(self._original_id))
        ref = await self._channel_send(content=text, **extra)
        self._original_filled = True
        return ref
