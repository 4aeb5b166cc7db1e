"""`TelegramSurface`: the MessageSurface of one answer in one Telegram chat.

Markdown becomes text + entities (bots.telegram.format); no parse mode is ever used. Every write is
checked against what the message shows already, so Telegram's "message is not modified" is never
provoked (and treated as success if it still comes). Telegram's failures become the SurfaceError
family; a message Telegram refuses for its formatting or length goes out again as plain text.

Drafts (sendMessageDraft) show the live preview in private chats. When the server refuses drafts,
the surface carries on with an ordinary message that it edits, and the final `send` edits that same
message, so the renderer never notices; the caller is told (`on_draft_refused`) so the next answer
in that chat starts in edit mode.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    ReplyParameters,
)
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from bots.telegram.format import cut_utf16, to_entities, utf16_len
from core.notices import ForbiddenNotices
from core.render.limits import Bucket, Limit, Window
from core.render.surface import (
    Activity,
    AnswerButtonIds,
    Button,
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

StreamMode = Literal["draft", "edit"]
T = TypeVar("T")

MAX_LENGTH = 4000  # of the markdown; Telegram allows 4096 after conversion, which only shrinks
MAX_TEXT = 4096
MAX_CAPTION = 1024
# Telegram's flood limits (not published; what it tolerates): about one message a second per chat
# with short bursts, 20 a minute per group, 30 a second for the whole bot. Edits count as messages.
CHAT_BURST, CHAT_INTERVAL = 3, 1.0
GROUP_WRITES, GROUP_SECONDS = 20, 60.0
BOT_WRITES, BOT_SECONDS = 30, 1.0
# Drafts are counted apart from messages; keep them to about two a second per chat.
PREVIEW_BURST, PREVIEW_INTERVAL = 3, 0.5
MAX_CALLBACK_DATA = 64
PLACEHOLDER = "…"
DRAFT_REFRESH = 20.0  # a draft vanishes after about 30 s without an update: show it again
CHAT_ACTIONS: dict[Activity, str] = {"typing": "typing", "drawing": "upload_photo"}

ANSWER_DATA = AnswerButtonIds({"stop": "stop", "regenerate": "regen", "continue": "cont"})
CHOICES_PER_ROW = 2  # "choose_model" buttons (a model list) stand in rows of two


class _NotModified(SurfaceError):
    """Telegram says the message already shows this (edits treat it as success)."""


class _Unformattable(SurfaceRejected):
    """Telegram refused the text for its entities or length; plain text may pass."""


def chat_limits(chat_id: int, *, private: bool, prefix: str = "telegram") -> WriteLimits:
    """What a write to a chat draws from: the chat's bucket, a group's minute, the bot's second;
    drafts only their own bucket."""
    group = () if private else (Window(f"{prefix}:group:{chat_id}", GROUP_WRITES, GROUP_SECONDS),)
    messages: tuple[Limit, ...] = (
        Bucket(f"{prefix}:chat:{chat_id}", CHAT_BURST, CHAT_INTERVAL),
        *group,
        Window(f"{prefix}:bot", BOT_WRITES, BOT_SECONDS),
    )
    drafts = (Bucket(f"{prefix}:draft:{chat_id}", PREVIEW_BURST, PREVIEW_INTERVAL),)
    return WriteLimits(send=messages, edit=messages, preview=drafts)


def callback_data(button: Button) -> str:
    """The callback data of a core button: fixed for stop/regenerate/continue, else its
    payload (which the adapter set to the callback data, see bots.telegram.app)."""
    return ANSWER_DATA.get(button.action) or button.payload or button.action


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    """Inline buttons: the choices of a list in rows of two, then one row of the others (None
    without buttons, which also removes a keyboard). Data Telegram would refuse is left out."""
    shown = [
        (b, data)
        for b in buttons
        if 0 < len((data := callback_data(b)).encode()) <= MAX_CALLBACK_DATA
    ]
    choices = [InlineKeyboardButton(b.label, callback_data=d) for b, d in shown if _is_choice(b)]
    others = [InlineKeyboardButton(b.label, callback_data=d) for b, d in shown if not _is_choice(b)]
    rows = [choices[i : i + CHOICES_PER_ROW] for i in range(0, len(choices), CHOICES_PER_ROW)]
    if others:
        rows.append(others)
    return InlineKeyboardMarkup(rows) if rows else None


def _is_choice(button: Button) -> bool:
    return button.action == "choose_model"


def _state(text: str, entities: list[MessageEntity], markup: InlineKeyboardMarkup | None) -> str:
    """What a message shows, as a comparable string (PTB's entity equality ignores url etc.)."""
    return json.dumps(
        [text, [e.to_dict() for e in entities], markup.to_dict() if markup else None],
        sort_keys=True,
        ensure_ascii=False,
    )


class SentMessages:
    """What each recently written bot message shows, shared by all surfaces of one bot."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, int], str] = OrderedDict()

    def get(self, chat_id: int, message_id: int) -> str | None:
        return self._items.get((chat_id, message_id))

    def put(self, chat_id: int, message_id: int, state: str) -> None:
        self._items[(chat_id, message_id)] = state
        self._items.move_to_end((chat_id, message_id))
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def retry_after_seconds(exc: RetryAfter) -> float | None:
    """RetryAfter.retry_after in seconds, whether PTB gives an int or a timedelta (None when
    it is unreadable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return parse_retry_after(value)


def new_draft_id() -> int:
    """A non-zero 31-bit draft id."""
    return secrets.randbelow(2**31 - 2) + 1


class TelegramSurface:
    """Where one answer (or one command's reply) is shown in one Telegram chat."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        private: bool,
        mode: StreamMode = "edit",
        reply_to: int | None = None,
        limit_prefix: str = "telegram",
        sent: SentMessages | None = None,
        notices: ForbiddenNotices | None = None,
        on_draft_refused: Callable[[], None] | None = None,
        on_first_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._bot = bot
        self.chat_id = chat_id
        self.private = private
        self._drafting = mode == "draft" and private
        self._reply_to = reply_to
        self._replied = private  # answers reply to the asker in groups only
        self._sent = sent or SentMessages()
        self._on_draft_refused = on_draft_refused
        self._on_first_write = on_first_write
        self._draft_id = new_draft_id()
        self._draft_message: int | None = None  # the stand-in for refused drafts
        self._drafts_refused = False
        self._notices = notices or ForbiddenNotices()
        writes = chat_limits(chat_id, private=private, prefix=limit_prefix)
        self._limits = SurfaceLimits(
            max_length=MAX_LENGTH,
            room=f"{limit_prefix}:{chat_id}",
            writes=writes,
            previews=self._drafting,
            preview_refresh=DRAFT_REFRESH,
            measure="utf16",
            placeholder=None if self._drafting else PLACEHOLDER,
            max_caption=MAX_CAPTION,
        )
        self._message_limits = writes.send

    # --- MessageSurface ---------------------------------------------------------------------
    @property
    def limits(self) -> SurfaceLimits:
        """Its limits; once drafts were refused, previews are messages and count as such."""
        if self._drafts_refused:
            writes = self._limits.writes
            return dataclasses.replace(
                self._limits, writes=dataclasses.replace(writes, preview=self._message_limits)
            )
        return self._limits

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        """Send a new message (or finish the stand-in of refused drafts)."""
        markup = keyboard(buttons)
        if self._draft_message is not None:
            message_id, self._draft_message = self._draft_message, None
            await self._revise(message_id, text, markup=markup)
            self._draft_id = new_draft_id()
            return MessageRef(str(message_id))
        message_id = await self._post(text, markup=markup)
        self._draft_id = new_draft_id()  # the next part of the answer is a new draft
        return MessageRef(str(message_id))

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        """Replace a message's text and buttons (a no-op when it would look the same)."""
        await self._revise(int(ref.id), text, markup=keyboard(buttons))

    async def preview(self, text: str) -> None:
        """Show the live preview; falls back to an edited message if drafts are refused."""
        await self._first_write()
        if not self._drafts_refused:
            formatted, entities = to_entities(text)
            try:
                await self._write(
                    lambda t, e: self._bot.send_message_draft(
                        self.chat_id, self._draft_id, t, entities=e or None
                    ),
                    formatted,
                    entities,
                    text,
                )
                return
            except (SurfaceRejected, _NotServed) as exc:
                log.info(
                    "chat %s refuses drafts (%s); editing a message instead", self.chat_id, exc
                )
                self._drafts_refused = True
                if self._on_draft_refused is not None:
                    self._on_draft_refused()
        if self._draft_message is None:
            self._draft_message = await self._post(text)
        else:
            await self._revise(self._draft_message, text)

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
        """Send a photo with a plain caption (cut to Telegram's 1024 UTF-16 units)."""
        caption = cut_utf16(caption, MAX_CAPTION)
        reply = self._reply_parameters()
        await self._first_write()
        message = await self._call(
            lambda: self._bot.send_photo(
                self.chat_id,
                InputFile(data, filename=filename),
                caption=caption or None,
                reply_parameters=reply,
            )
        )
        self._replied = True
        return MessageRef(str(message.message_id))

    async def activity(self, kind: Activity) -> None:
        """Show "typing…" or "sending photo…" for a few seconds."""
        action = CHAT_ACTIONS[kind]
        await self._call(lambda: self._bot.send_chat_action(self.chat_id, action))

    # --- plumbing ---------------------------------------------------------------------------
    async def _post(self, text: str, *, markup: InlineKeyboardMarkup | None = None) -> int:
        """Send markdown `text` as a new message (a reply to the asker in groups); its id."""
        await self._first_write()
        reply = self._reply_parameters()
        formatted, entities = to_entities(text)

        async def send(t: str, e: list[MessageEntity]) -> Message:
            return await self._bot.send_message(
                self.chat_id,
                t,
                entities=e or None,
                reply_markup=markup,
                reply_parameters=reply,
            )

        message, shown = await self._write(send, formatted, entities, text, markup=markup)
        self._replied = True
        self._sent.put(self.chat_id, message.message_id, shown)
        return message.message_id

    async def _revise(
        self, message_id: int, text: str, *, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Edit a bot message to show markdown `text` and `markup`, unless it already does."""
        formatted, entities = to_entities(text)
        if self._sent.get(self.chat_id, message_id) == _state(formatted, entities, markup):
            return

        async def edit(t: str, e: list[MessageEntity]) -> Message | bool:
            if self._sent.get(self.chat_id, message_id) == _state(t, e, markup):
                raise _NotModified  # the plain-text retry would show what is there already
            return await self._bot.edit_message_text(
                t, self.chat_id, message_id, entities=e or None, reply_markup=markup
            )

        try:
            _, shown = await self._write(edit, formatted, entities, text, markup=markup)
        except _NotModified:
            return
        self._sent.put(self.chat_id, message_id, shown)

    async def _write(
        self,
        call: Callable[[str, list[MessageEntity]], Awaitable[T]],
        formatted: str,
        entities: list[MessageEntity],
        markdown: str,
        *,
        markup: InlineKeyboardMarkup | None = None,
    ) -> tuple[T, str]:
        """Make a formatted call; if Telegram refuses the formatting, the same call as plain.

        Returns the call's result and the state the message now shows.
        """
        if formatted.strip() and utf16_len(formatted) <= MAX_TEXT:
            try:
                result = await self._call(lambda: call(formatted, entities))
                return result, _state(formatted, entities, markup)
            except _Unformattable as exc:
                log.info("Telegram refused formatted text (%s); sending it plain", exc)
        plain = cut_utf16(markdown.strip(), MAX_TEXT)
        try:
            result = await self._call(lambda: call(plain, []))
        except _Unformattable as exc:
            raise SurfaceRejected(str(exc)) from None
        return result, _state(plain, [], markup)

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Bot API request, its failures mapped onto the SurfaceError family."""
        try:
            return await make()
        except RetryAfter as exc:
            raise SurfaceRateLimited(retry_after_seconds(exc)) from exc
        except Forbidden as exc:
            self._notices.first(self._limits.room, exc.message)  # logged once per chat
            raise SurfaceForbidden(exc.message) from exc
        except BadRequest as exc:
            raise _bad_request(exc) from exc
        except InvalidToken as exc:  # a 404 too: e.g. a server without sendMessageDraft
            raise _NotServed(exc.message) from exc
        except NetworkError as exc:  # TimedOut included
            raise SurfaceUnavailable(f"network: {exc.message}") from exc
        except TelegramError as exc:
            raise SurfaceError(exc.message) from exc

    async def _first_write(self) -> None:
        if self._on_first_write is not None:
            hook, self._on_first_write = self._on_first_write, None
            await hook()

    def _reply_parameters(self) -> ReplyParameters | None:
        if self._replied or self._reply_to is None:
            return None
        return ReplyParameters(self._reply_to, allow_sending_without_reply=True)


class _NotServed(SurfaceError):
    """401/404 from the server: it does not serve this call (a method it lacks, e.g.
    sendMessageDraft, whose previews then become an edited message; or a token it does not
    know)."""


def _bad_request(exc: BadRequest) -> SurfaceError:
    text = exc.message.lower()
    if "not modified" in text:
        return _NotModified()
    if "message to edit not found" in text or "can't be edited" in text:
        return SurfaceMessageGone(exc.message)
    if any(word in text for word in ("entit", "can't parse", "too long", "too_long", "empty")):
        return _Unformattable(exc.message)
    return SurfaceRejected(exc.message)
