"""An emulated Telegram Bot API server for tests.

`FakeTelegram` is a real HTTP server on 127.0.0.1 (aiohttp.web, random free port) that the real
python-telegram-bot `Bot`/`Application` talk to through
`base_url(fake.base_url)` / `base_file_url(fake.base_file_url)`. It keeps the state a user would see
(messages per chat, drafts, commands), records every API call, queues updates for `getUpdates`,
and enforces the limits that matter for a streaming bot: text/caption length after entity parsing,
entity bounds in UTF-16 code units, "message is not modified", and flood control (429 with
`parameters.retry_after`, the write not applied).

Flood control (only when `enforce_rate_limits`; time comes from the injected `clock`):

* every write (sendMessage, sendPhoto, editMessageText, editMessageCaption,
  editMessageReplyMarkup) to a chat takes a token from that chat's bucket: capacity 3,
  refilled at 1 token/s (about 1 message/s with short bursts);
* in groups and supergroups a write must also fit in a rolling window of 20 writes per 60 s;
* all writes share a global rolling window of 30 writes per second;
* sendMessageDraft is not counted by the rules above but by its own per-chat bucket
  (capacity 5, refilled at 5/s);
* only successful writes consume capacity: a request rejected with 400/403/429 costs nothing.

The long poll of `getUpdates` waits in real (event loop) time, not on the injected clock.

Webhooks: after `setWebhook` (url, secret_token, allowed_updates, drop_pending_updates) the
server POSTs each queued update as JSON to the URL, one at a time in order, with the header
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, as Telegram does; an update answered
2xx is done, any other answer (or no connection) is noted (`getWebhookInfo`'s last_error_*,
`webhook_deliveries`) and retried after `webhook_retry_seconds` (real time) or on the next update.
`getUpdates` answers 409 while a webhook is set; `deleteWebhook` goes back to polling.
`post_update` posts one update (any headers; `text_update` and `callback_update` make one without
queueing it) and `redeliver` posts a delivered update again, as
Telegram does when a reply did not come in time. Real Telegram accepts only https:// on ports 443,
80, 88 and 8443; this emulator (loopback, no TLS) takes http:// too unless `webhook_https_only`.

What users see and when (clock time), so a benchmark can read "first visible" from the platform's
side: every message records when its text (or caption) first became non-empty
(`FakeMessage.first_visible_at`), the history of that text (`FakeMessage.text_history`, one entry
per change) and its last applied write (`FakeMessage.last_write_at`). Drafts are kept with their
times (`draft_history`, `draft_first_visible_at`). In a private chat a draft is what the user sees
of a message being written: a bot message sent there replaces the drafts shown since the bot's
previous message, and counts as visible from the first non-empty one (their texts open its
`text_history`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, ClassVar, TypeGuard
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from tests.fakes.served import Served

__all__ = ["ApiCall", "DraftShown", "FakeMessage", "FakeTelegram", "WebhookDelivery"]

_LOGGER = logging.getLogger(__name__)

JSONDict = dict[str, Any]
Params = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_LONG_POLL_SECONDS = 50.0

PRIVATE_BURST = 3
PRIVATE_REFILL_PER_SECOND = 1.0
GROUP_WINDOW_SECONDS = 60.0
GROUP_MAX_WRITES = 20
GLOBAL_WINDOW_SECONDS = 1.0
GLOBAL_MAX_WRITES = 30
DRAFT_BURST = 5
DRAFT_REFILL_PER_SECOND = 5.0

BOT_FIRST_NAME = "Bridge Test Bot"

ENTITY_TYPES = frozenset(
    {
        "mention", "hashtag", "cashtag", "bot_command", "url", "email", "phone_number",
        "bold", "italic", "underline", "strikethrough", "spoiler", "blockquote",
        "expandable_blockquote", "code", "pre", "text_link", "text_mention", "custom_emoji",
        "date_time",
    }
)  # fmt: skip
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice",
        "upload_voice", "upload_document", "choose_sticker", "find_location",
        "record_video_note", "upload_video_note",
    }
)  # fmt: skip
BUTTON_ACTIONS = frozenset(
    {
        "callback_data", "url", "web_app", "login_url", "switch_inline_query",
        "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
        "callback_game", "pay",
    }
)  # fmt: skip
UPDATE_TYPES_EXCLUDED_BY_DEFAULT = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)
# Form fields that are plain strings on the wire; every other form value is JSON-decoded.
STRING_PARAMS = frozenset(
    {
        "text", "caption", "parse_mode", "callback_query_id", "url", "inline_message_id",
        "business_connection_id", "message_effect_id", "action", "language_code", "photo",
        "file_id", "title", "description", "emoji", "custom_emoji_id", "secret_token",
    }
)  # fmt: skip
WRITE_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "editMessageText", "editMessageCaption", "editMessageReplyMarkup"}
)

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are"
    " exactly the same as a current content and reply markup of the message"
)


# --------------------------------------------------------------------------- records and state


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_SECRET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
WEBHOOK_PORTS = frozenset({443, 80, 88, 8443})


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of an update to a webhook: its status (0: no connection), in order."""

    update_id: int
    url: str
    status: int
    at: float


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class ApiCall:
    """One answered Bot API request, in order of completion."""

    name: str
    params: Params
    chat_id: int | None
    at: float
    ok: bool = False
    error_code: int | None = None
    description: str | None = None


@dataclass
class FakeMessage:
    """A message as the chat shows it now."""

    message_id: int
    chat_id: int
    from_bot: bool
    text: str | None = None
    entities: list[JSONDict] = field(default_factory=list)
    reply_markup: JSONDict | None = None
    reply_to: int | None = None
    photo: bytes | None = None
    photo_file_id: str | None = None
    caption: str | None = None
    caption_entities: list[JSONDict] = field(default_factory=list)
    document_file_id: str | None = None  # a user's document: its file id, name and type
    document_name: str | None = None
    document_type: str | None = None
    media_group_id: str | None = None  # the photos of one album share it
    edits: int = 0
    date: int = 0
    sender: JSONDict = field(default_factory=dict)
    first_visible_at: float | None = None  # clock time its text/caption first became non-empty
    last_write_at: float | None = None  # clock time of the last applied write
    text_history: list[tuple[float, str]] = field(default_factory=list)  # (clock time, text)

    @property
    def visible_text(self) -> str:
        """The text a user reads: the message text, or the caption of a photo."""
        return self.text if self.text is not None else (self.caption or "")


@dataclass(frozen=True)
class DraftShown:
    """One sendMessageDraft the chat showed."""

    at: float  # clock time
    draft_id: int
    text: str


@dataclass
class _Chat:
    id: int
    type: str
    name: str
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    drafts: list[tuple[int, str]] = field(default_factory=list)
    draft_log: list[DraftShown] = field(default_factory=list)
    open_drafts: set[int] = field(default_factory=set)  # shown since the bot's last message
    blocked: bool = False
    next_message_id: int = 1

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def as_json(self) -> JSONDict:
        if self.type == "private":
            return {"id": self.id, "type": "private", "first_name": self.name}
        return {"id": self.id, "type": self.type, "title": self.name}


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def as_json(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def _entities_error(detail: str) -> ApiError:
    return _bad_request(f"can't parse entities: {detail}")


# --------------------------------------------------------------------------- rate limiting


class _TokenBucket:
    """Capacity `capacity`, refilled continuously at `rate` tokens per second."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.updated = now

    def wait_time(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class _Window:
    """At most `limit` events in any rolling `period` seconds."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.times: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.period:
            self.times.popleft()
        return 0.0 if len(self.times) < self.limit else self.times[0] + self.period - now

    def take(self, now: float) -> None:
        self.times.append(now)


class _RateLimiter:
    """Flood control as documented in the module docstring."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._chat_buckets: dict[int, _TokenBucket] = {}
        self._draft_buckets: dict[int, _TokenBucket] = {}
        self._group_windows: dict[int, _Window] = {}
        self._global = _Window(GLOBAL_MAX_WRITES, GLOBAL_WINDOW_SECONDS)

    def admit_write(self, chat: _Chat) -> None:
        """Consume capacity for one write to `chat` or raise a 429 without consuming any."""
        now = self._clock()
        bucket = self._chat_buckets.setdefault(
            chat.id, _TokenBucket(PRIVATE_BURST, PRIVATE_REFILL_PER_SECOND, now)
        )
        window = (
            self._group_windows.setdefault(chat.id, _Window(GROUP_MAX_WRITES, GROUP_WINDOW_SECONDS))
            if chat.is_group
            else None
        )
        wait = max(
            bucket.wait_time(now),
            window.wait_time(now) if window else 0.0,
            self._global.wait_time(now),
        )
        _raise_if_waiting(wait)
        bucket.take()
        if window:
            window.take(now)
        self._global.take(now)

    def admit_draft(self, chat: _Chat) -> None:
        """Consume capacity for one draft update to `chat` or raise a 429."""
        now = self._clock()
        bucket = self._draft_buckets.setdefault(
            chat.id, _TokenBucket(DRAFT_BURST, DRAFT_REFILL_PER_SECOND, now)
        )
        _raise_if_waiting(bucket.wait_time(now))
        bucket.take()


def _raise_if_waiting(wait: float) -> None:
    if wait > 1e-9:
        retry_after = max(1, math.ceil(wait - 1e-9))
        raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


# --------------------------------------------------------------------------- text and entities


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


class _ParseError(Exception):
    """Markup that Telegram would refuse; the message becomes "can't parse entities: ..."."""


class _TextBuilder:
    """Accumulates plain text and entities (UTF-16 offsets) while markup is parsed."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JSONDict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            self.entities.append(
                {"type": kind, "offset": start, "length": self.pos - start, **extra}
            )

    def result(self) -> tuple[str, list[JSONDict]]:
        return "".join(self.parts), sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = (
    ("||", "spoiler"), ("__", "underline"), ("*", "bold"), ("_", "italic"), ("~", "strikethrough"),
)  # fmt: skip
_MD_LEGACY_MARKERS = (("*", "bold"), ("_", "italic"))


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _read_until(src: str, start: int, end: str, what: str) -> tuple[str, int]:
    """Read from `start` to the unescaped `end`, unescaping `\\x`; returns (text, index after)."""
    out: list[str] = []
    i = start
    while i < len(src):
        if src[i] == "\\" and i + 1 < len(src):
            out.append(src[i + 1])
            i += 2
        elif src.startswith(end, i):
            return "".join(out), i + len(end)
        else:
            out.append(src[i])
            i += 1
    raise _ParseError(f"Can't find end of {what} entity at byte offset {_byte_offset(src, start)}")


def _parse_markdown(src: str, *, legacy: bool) -> tuple[str, list[JSONDict]]:
    """A small MarkdownV2 (or legacy Markdown) parser: enough to reject broken markup."""
    out = _TextBuilder()
    markers = _MD_LEGACY_MARKERS if legacy else _MDV2_MARKERS
    stack: list[tuple[str, str, int, int]] = []  # (marker, entity type, start utf16, src index)
    i = 0
    while i < len(src):
        char = src[i]
        if char == "\\" and (not legacy or src[i + 1 : i + 2] in ("_", "*", "`", "[")):
            if i + 1 >= len(src):
                raise _ParseError("text must not end with an escape character '\\'")
            out.add(src[i + 1])
            i += 2
            continue
        if src.startswith("```", i):
            i = _parse_pre(src, i, out)
            continue
        if char == "`":
            start = out.pos
            code, i = _read_until(src, i + 1, "`", "Code")
            out.add(code)
            out.entity("code", start)
            continue
        marker = next((m for m in markers if src.startswith(m[0], i)), None)
        if marker is not None:
            _toggle(stack, marker, out, i, src)
            i += len(marker[0])
            continue
        if char == "[":
            stack.append(("[", "text_link", out.pos, i))
            i += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[":
            if not src.startswith("(", i + 1):
                raise _ParseError(f"Can't find end of URL at byte offset {_byte_offset(src, i)}")
            url, i = _read_until(src, i + 2, ")", "URL")
            _, _, start, _ = stack.pop()
            out.entity("text_link", start, url=url)
            continue
        if not legacy and char in _MDV2_RESERVED:
            raise _ParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        out.add(char)
        i += 1
    if stack:
        _, kind, _, index = stack[-1]
        raise _ParseError(
            f"Can't find end of {kind} entity at byte offset {_byte_offset(src, index)}"
        )
    return out.result()


def _toggle(
    stack: list[tuple[str, str, int, int]],
    marker: tuple[str, str],
    out: _TextBuilder,
    index: int,
    src: str,
) -> None:
    """Open or close the entity of a Markdown marker; improper nesting is an error."""
    symbol, kind = marker
    if not any(entry[0] == symbol for entry in stack):
        stack.append((symbol, kind, out.pos, index))
        return
    if stack[-1][0] != symbol:
        raise _ParseError(
            f"Can't find end of {stack[-1][1]} entity at byte offset"
            f" {_byte_offset(src, stack[-1][3])}"
        )
    _, _, start, _ = stack.pop()
    out.entity(kind, start)


def _parse_pre(src: str, index: int, out: _TextBuilder) -> int:
    """Parse a ``` block starting at `index`; returns the index after the closing fence."""
    body, after = _read_until(src, index + 3, "```", "Pre")
    language = None
    first_line, newline, rest = body.partition("\n")
    if newline and first_line and not any(c.isspace() for c in first_line):
        language, body = first_line, rest
    start = out.pos
    out.add(body)
    if language:
        out.entity("pre", start, language=language)
    else:
        out.entity("pre", start)
    return after


class _HtmlEntityParser(HTMLParser):
    """Telegram's HTML parse mode: the supported tags only, properly nested."""

    TAGS: ClassVar[dict[str, str]] = {
        "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
        "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
        "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "code": "code",
        "pre": "pre", "a": "text_link", "blockquote": "blockquote", "tg-emoji": "custom_emoji",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = _TextBuilder()
        self.stack: list[tuple[str, int, JSONDict]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag not in self.TAGS or (tag == "span" and attributes.get("class") != "tg-spoiler"):
            raise _ParseError(f'Unsupported start tag "{tag}"')
        extra: JSONDict = {}
        if tag == "a":
            if not attributes.get("href"):
                raise _ParseError('Can\'t parse "a" tag: href is missing')
            extra["url"] = attributes["href"]
        elif tag == "tg-emoji":
            extra["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif tag == "blockquote" and "expandable" in attributes:
            extra["expandable"] = True
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre":
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self.stack[-1][2]["language"] = language
                extra["inside_pre"] = True
        self.stack.append((tag, self.out.pos, extra))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise _ParseError(f'Unexpected end tag "{tag}"')
        open_tag, start, extra = self.stack[-1]
        if open_tag != tag:
            raise _ParseError(f'Can\'t find end tag corresponding to start tag "{open_tag}"')
        self.stack.pop()
        if extra.pop("inside_pre", False):
            return
        kind = self.TAGS[tag]
        if extra.pop("expandable", False):
            kind = "expandable_blockquote"
        self.out.entity(kind, start, **extra)

    def handle_data(self, data: str) -> None:
        self.out.add(data)

    def parse(self, text: str) -> tuple[str, list[JSONDict]]:
        """Feed all of `text` and return (plain text, entities)."""
        self.feed(text)
        self.close()
        if self.stack:
            raise _ParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        return self.out.result()


def parse_markup(text: str, parse_mode: str) -> tuple[str, list[JSONDict]]:
    """Turn `text` in `parse_mode` into (plain text, entities) or raise a 400."""
    mode = parse_mode.lower()
    try:
        if mode == "markdownv2":
            return _parse_markdown(text, legacy=False)
        if mode == "markdown":
            return _parse_markdown(text, legacy=True)
        if mode == "html":
            return _HtmlEntityParser().parse(text)
    except _ParseError as exc:
        raise _entities_error(str(exc)) from None
    raise _bad_request(f"unsupported parse_mode {parse_mode!r}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _chat_id(value: object) -> int | None:
    """An integer chat id, also from a numeric string (JSON bodies may send "42")."""
    if _is_int(value):
        return value
    if isinstance(value, str) and value.removeprefix("-").isdigit():
        return int(value)
    return None


def validate_entities(raw: object, text: str) -> list[JSONDict]:
    """Check entities sent with `text` (UTF-16 offsets) and return them sorted."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _entities_error("entities must be an array")
    total = utf16_len(text)
    checked: list[JSONDict] = []
    for number, entity in enumerate(raw):
        if not isinstance(entity, dict):
            raise _entities_error(f"entity {number} is not an object")
        kind, offset, length = entity.get("type"), entity.get("offset"), entity.get("length")
        if kind not in ENTITY_TYPES:
            raise _entities_error(f"unsupported entity type {kind!r} in entity {number}")
        if not _is_int(offset) or not _is_int(length) or offset < 0 or length < 0:
            raise _entities_error(f"entity {number} needs integer offset and length >= 0")
        if offset + length > total:
            raise _entities_error(
                f"entity {number} ({kind}) at UTF-16 offset {offset} with length {length}"
                f" ends beyond the text of {total} UTF-16 code units"
            )
        _check_entity_fields(number, kind, entity)
        checked.append(dict(entity))
    return sorted(checked, key=lambda e: (e["offset"], -e["length"], e["type"]))


def _check_entity_fields(number: int, kind: str, entity: JSONDict) -> None:
    if kind == "text_link" and not (isinstance(entity.get("url"), str) and entity["url"]):
        raise _entities_error(f"text_link entity {number} needs a url")
    if kind == "text_mention" and not isinstance(entity.get("user"), dict):
        raise _entities_error(f"text_mention entity {number} needs a user")
    if kind == "custom_emoji" and not isinstance(entity.get("custom_emoji_id"), str):
        raise _entities_error(f"custom_emoji entity {number} needs custom_emoji_id")
    if kind == "pre" and not isinstance(entity.get("language", ""), str):
        raise _entities_error(f"pre entity {number} has a non-string language")
    if kind == "date_time" and not _is_int(entity.get("unix_time")):
        raise _entities_error(f"date_time entity {number} needs unix_time")


def _formatted_text(params: Params, text_key: str, entities_key: str) -> tuple[str, list[JSONDict]]:
    """The plain text and entities of a message: `entities` win over `parse_mode`."""
    raw = params.get(text_key)
    text = "" if raw is None else str(raw)
    if params.get(entities_key) is not None:
        return text, validate_entities(params[entities_key], text)
    parse_mode = params.get("parse_mode")
    if parse_mode:
        return parse_markup(text, str(parse_mode))
    return text, []


def _check_text(text: str) -> None:
    if not text.strip():
        raise _bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise _bad_request("message is too long")


def _check_caption(caption: str) -> None:
    if utf16_len(caption) > MAX_CAPTION_LENGTH:
        raise _bad_request("message caption is too long")


def _entity_mentions(text: str, bot_username: str) -> list[JSONDict]:
    """bot_command at offset 0 for "/cmd" or "/cmd@name", mention for each "@bot_username"."""
    entities: list[JSONDict] = []
    command_end = 0
    if text.startswith("/") and len(text) > 1 and not text[1].isspace():
        token = text.split(maxsplit=1)[0]
        command_end = len(token)
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(token)})
    mention = f"@{bot_username}"
    start = text.find(mention, command_end)
    while start != -1:
        after = start + len(mention)
        if after == len(text) or not (text[after].isalnum() or text[after] == "_"):
            entities.append(
                {"type": "mention", "offset": utf16_len(text[:start]), "length": len(mention)}
            )
        start = text.find(mention, after)
    return entities


# --------------------------------------------------------------------------- keyboards


def validate_reply_markup(raw: object, *, inline_only: bool = False) -> JSONDict | None:
    """Check a reply_markup; returns the inline keyboard to echo or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in raw:
        if inline_only:
            raise _bad_request("inline keyboard expected")
        if not any(k in raw for k in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        return None
    rows = raw["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('can\'t parse inline keyboard: field "inline_keyboard" must be an Array')
    for row in rows:
        for button in row:
            _check_button(button)
    return {"inline_keyboard": [[dict(button) for button in row] for row in rows]}


def _check_button(button: object) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise _bad_request("can't parse inline keyboard button: Text must be a string")
    if not button["text"]:
        raise _bad_request("BUTTON_TEXT_INVALID")
    actions = [key for key in BUTTON_ACTIONS if key in button]
    if len(actions) != 1:
        raise _bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    data = button.get("callback_data")
    if "callback_data" in button and not (
        isinstance(data, str) and 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
    ):
        raise _bad_request("BUTTON_DATA_INVALID")
    url = button.get("url")
    if "url" in button and not (
        isinstance(url, str) and url.startswith(("http://", "https://", "tg://"))
    ):
        raise _bad_request("BUTTON_URL_INVALID")


def _has_callback_button(markup: JSONDict | None, data: str) -> bool:
    rows = (markup or {}).get("inline_keyboard", [])
    return any(button.get("callback_data") == data for row in rows for button in row)


# --------------------------------------------------------------------------- wire helpers


def _decode_form_value(name: str, value: str) -> Any:
    """Form values are JSON-encoded unless they are strings (PTB's RequestParameter.json_value)."""
    if name in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG; a nominal 320x320 for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 320, 320


def _json_response(body: JSONDict, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


Handler = Callable[[Params, dict[str, bytes]], Awaitable[Any]]


# --------------------------------------------------------------------------- the server


class FakeTelegram(Served):
    """An emulated Telegram Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = "123456:TEST-token-not-real",
        bot_username: str = "bridge_test_bot",
        clock: Callable[[], float] = time.monotonic,
        enforce_rate_limits: bool = True,
        group_privacy: bool = False,
        webhook_https_only: bool = False,
        webhook_retry_seconds: float = 0.5,
    ) -> None:
        """`group_privacy`: deliver only commands, mentions and replies to the bot in groups."""
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0])
        self.enforce_rate_limits = enforce_rate_limits
        self.group_privacy = group_privacy
        self.calls: list[ApiCall] = []
        self.rate_limited = 0
        self.commands: list[JSONDict] = []
        self._clock = clock
        self._limiter = _RateLimiter(clock)
        self._chats: dict[int, _Chat] = {}
        self._commands_by_scope: dict[str, list[JSONDict]] = {}
        self._files: dict[str, bytes] = {}
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._open_callbacks: set[str] = set()
        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        self._allowed_updates: list[str] | None = None
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._root_url: str | None = None
        self.webhook_https_only = webhook_https_only
        self.webhook_retry_seconds = webhook_retry_seconds
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook: _Webhook | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._posted: dict[int, JSONDict] = {}  # updates posted to a webhook, by update_id
        self._handlers: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler) for name, handler in self._handler_table().items()
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free port)."""
        if self._runner is not None:
            raise RuntimeError("FakeTelegram is already running")
        app = web.Application(client_max_size=MAX_PHOTO_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self._stopping = False
        self._root_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Wake every pending long poll (it answers an empty list) and close the server."""
        if self._runner is None:
            return
        self._stopping = True
        self._notify()
        await self._stop_webhook_task()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    @property
    def root_url(self) -> str:
        if self._root_url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._root_url

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.root_url}/file/bot"

    # ------------------------------------------------------------------ inspection

    def calls_named(self, name: str) -> list[ApiCall]:
        """Calls of one method (case-insensitive name)."""
        return [call for call in self.calls if call.name.lower() == name.lower()]

    def messages(self, chat_id: int) -> list[FakeMessage]:
        """What the chat shows now, oldest first (bot and user messages)."""
        chat = self._chats.get(chat_id)
        return list(chat.messages.values()) if chat else []

    @property
    def chat_ids(self) -> list[int]:
        """Every chat the emulator knows (a user wrote there or the bot did)."""
        return list(self._chats)

    def bot_messages(self, chat_id: int) -> list[FakeMessage]:
        return [message for message in self.messages(chat_id) if message.from_bot]

    def drafts(self, chat_id: int) -> list[tuple[int, str]]:
        """Every draft shown in the chat, in order, as (draft_id, text)."""
        chat = self._chats.get(chat_id)
        return list(chat.drafts) if chat else []

    def draft_history(self, chat_id: int) -> list[DraftShown]:
        """Every draft shown in the chat, in order, with its clock time."""
        chat = self._chats.get(chat_id)
        return list(chat.draft_log) if chat else []

    def draft_first_visible_at(self, chat_id: int, draft_id: int) -> float | None:
        """Clock time the draft `draft_id` first showed non-empty text (None: never)."""
        return next(
            (d.at for d in self.draft_history(chat_id) if d.draft_id == draft_id and d.text),
            None,
        )

    @property
    def webhook_url(self) -> str | None:
        """The URL given to setWebhook (None: polling)."""
        return self._webhook.url if self._webhook else None

    @property
    def pending_update_count(self) -> int:
        return len(self._updates)

    def remove_method(self, name: str) -> None:
        """Answer `name` with 404 from now on, like a server that lacks it (e.g. drafts)."""
        self._handlers.pop(name.lower(), None)

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the public API
    ) -> None:
        """Poll `predicate` every 10 ms until it holds; AssertionError after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                recent = "\n  ".join(
                    f"{c.name} chat={c.chat_id} ok={c.ok} {c.description or ''}"
                    for c in self.calls[-15:]
                )
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"condition {name} still false after {timeout} s;"
                    f" last calls:\n  {recent or '(none)'}"
                )
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ driving

    def push_text(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int = 1001,
        chat_type: str = "private",
        reply_to: int | None = None,
        first_name: str = "Ann",
    ) -> JSONDict:
        """A user writes `text`; queues a `message` update and returns the Message dict."""
        update = self.text_update(
            chat_id,
            text,
            user_id=user_id,
            chat_type=chat_type,
            reply_to=reply_to,
            first_name=first_name,
        )
        payload: JSONDict = update["message"]
        chat = self._chats[chat_id]
        if self._delivered_to_bot(chat, chat.messages[payload["message_id"]]):
            self._updates.append(update)
            self._notify()
        return payload

    def text_update(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int = 1001,
        chat_type: str = "private",
        reply_to: int | None = None,
        first_name: str = "Ann",
    ) -> JSONDict:
        """A user writes `text`; the Update (with a fresh update_id), not queued: the test
        delivers it itself (`post_update`)."""
        chat = self._chat(chat_id, chat_type=chat_type, first_name=first_name)
        if reply_to is not None and reply_to not in chat.messages:
            raise ValueError(f"chat {chat_id} has no message {reply_to} to reply to")
        message = FakeMessage(
            message_id=self._next_message_id(chat),
            chat_id=chat_id,
            from_bot=False,
            text=text,
            entities=_entity_mentions(text, self.bot_username),
            reply_to=reply_to,
            date=int(time.time()),
            sender={"id": user_id, "is_bot": False, "first_name": first_name},
        )
        chat.messages[message.message_id] = message
        self._record_write(message)
        update = {"update_id": self._next_update_id, "message": self._message_json(chat, message)}
        self._next_update_id += 1
        return update

    def push_file(
        self,
        chat_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        document: tuple[str, str] | None = None,
        media_group_id: str | None = None,
        user_id: int = 1001,
        chat_type: str = "private",
        reply_to: int | None = None,
    ) -> JSONDict:
        """A user sends a photo (or, with `document` = (file name, MIME type), a file), with
        an optional caption, as part of an album when `media_group_id` is given."""
        chat = self._chat(chat_id, chat_type=chat_type, first_name="Ann")
        file_id = f"user{next(self._file_ids)}"
        self._files[file_id] = data
        message = FakeMessage(
            message_id=self._next_message_id(chat),
            chat_id=chat_id,
            from_bot=False,
            photo=None if document else data,
            photo_file_id=None if document else file_id,
            document_file_id=file_id if document else None,
            document_name=document[0] if document else None,
            document_type=document[1] if document else None,
            caption=caption,
            caption_entities=_entity_mentions(caption or "", self.bot_username),
            media_group_id=media_group_id,
            reply_to=reply_to,
            date=int(time.time()),
            sender={"id": user_id, "is_bot": False, "first_name": "Ann"},
        )
        chat.messages[message.message_id] = message
        self._record_write(message)
        payload = self._message_json(chat, message)
        if self._delivered_to_bot(chat, message):
            self._queue_update("message", payload)
        return payload

    def push_callback(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int = 1001,
        check_button: bool = True,
    ) -> JSONDict:
        """A user presses the button with `data` under `message_id`; returns the CallbackQuery."""
        update = self.callback_update(
            chat_id, message_id, data, user_id=user_id, check_button=check_button
        )
        self._updates.append(update)
        self._notify()
        query: JSONDict = update["callback_query"]
        return query

    def callback_update(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int = 1001,
        check_button: bool = True,
    ) -> JSONDict:
        """A user presses the button with `data` under `message_id`; the Update (with a fresh
        update_id), not queued: the test delivers it itself (`post_update`), e.g. to one
        replica of its choice."""
        chat = self._chats.get(chat_id)
        message = chat.messages.get(message_id) if chat else None
        if chat is None or message is None:
            raise ValueError(f"chat {chat_id} shows no message {message_id}")
        if check_button and not _has_callback_button(message.reply_markup, data):
            raise ValueError(
                f"message {message_id} has no button with callback_data {data!r}:"
                f" {message.reply_markup}"
            )
        query_id = str(next(self._callback_ids))
        self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": "Ann"},
            "chat_instance": f"ci{chat_id}",
            "message": self._message_json(chat, message),
            "data": data,
        }
        update = {"update_id": self._next_update_id, "callback_query": query}
        self._next_update_id += 1
        return update

    async def post_update(
        self,
        update: JSONDict,
        *,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        """POST `update` to `url` (the webhook's by default) with `headers` (by default the
        webhook's secret header, as Telegram sends it); the HTTP status (0: no connection)."""
        if url is None:
            if self._webhook is None:
                raise RuntimeError("no webhook is set")
            url = self._webhook.url
        if headers is None:
            secret = self._webhook.secret_token if self._webhook else None
            headers = {SECRET_HEADER: secret} if secret else {}
        timeout = ClientTimeout(total=10)
        try:
            async with (
                ClientSession(timeout=timeout) as session,
                session.post(url, json=update, headers=headers) as response,
            ):
                await response.read()
                status = response.status
        except (ClientError, OSError, TimeoutError):
            status = 0
        self._posted[int(update["update_id"])] = update
        self.webhook_deliveries.append(
            WebhookDelivery(int(update["update_id"]), url, status, self._clock())
        )
        return status

    async def redeliver(self, update_id: int, *, url: str | None = None) -> int:
        """POST an update already posted to the webhook once more; the HTTP status."""
        return await self.post_update(self._posted[update_id], url=url)

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """The user deletes a message (edits of it then fail with "message to edit not found")."""
        chat = self._chats.get(chat_id)
        if chat is None or chat.messages.pop(message_id, None) is None:
            raise ValueError(f"chat {chat_id} shows no message {message_id}")

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: every request for that chat answers 403."""
        self._chat(chat_id).blocked = True

    # ------------------------------------------------------------------ chats and messages

    def _chat(self, chat_id: int, *, chat_type: str = "private", first_name: str = "Ann") -> _Chat:
        """The chat with `chat_id`, created on first use (negative ids are groups)."""
        chat = self._chats.get(chat_id)
        if chat is not None:
            return chat
        if chat_type == "private" and chat_id < 0:
            chat_type = "supergroup" if str(chat_id).startswith("-100") else "group"
        name = first_name if chat_type == "private" else f"Group {chat_id}"
        chat = self._chats[chat_id] = _Chat(id=chat_id, type=chat_type, name=name)
        return chat

    @staticmethod
    def _next_message_id(chat: _Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def _bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": self.bot_username,
        }

    def _message_json(self, chat: _Chat, message: FakeMessage, *, nested: bool = False) -> JSONDict:
        """The Message object as the Bot API returns it."""
        body: JSONDict = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": chat.as_json(),
            "from": self._bot_user() if message.from_bot else dict(message.sender),
        }
        if message.edits:
            body["edit_date"] = int(time.time())
        if message.text is not None:
            body["text"] = message.text
            if message.entities:
                body["entities"] = message.entities
        if message.document_file_id is not None:
            body["document"] = {
                "file_id": message.document_file_id,
                "file_unique_id": f"u{message.document_file_id}",
                "file_name": message.document_name,
                "mime_type": message.document_type,
                "file_size": len(self._files.get(message.document_file_id, b"")),
            }
        if message.media_group_id is not None:
            body["media_group_id"] = message.media_group_id
        if message.photo_file_id is not None or message.document_file_id is not None:
            if message.photo_file_id is not None:
                body["photo"] = self._photo_sizes(message.photo_file_id)
            if message.caption:
                body["caption"] = message.caption
                if message.caption_entities:
                    body["caption_entities"] = message.caption_entities
        if message.reply_markup is not None:
            body["reply_markup"] = message.reply_markup
        if not nested and message.reply_to is not None and message.reply_to in chat.messages:
            body["reply_to_message"] = self._message_json(
                chat, chat.messages[message.reply_to], nested=True
            )
        return body

    def _photo_sizes(self, file_id: str) -> list[JSONDict]:
        data = self._files.get(file_id, b"")
        width, height = _image_size(data)
        return [
            {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "width": width,
                "height": height,
                "file_size": len(data),
            }
        ]

    def _delivered_to_bot(self, chat: _Chat, message: FakeMessage) -> bool:
        """Group privacy mode: only commands, mentions and replies to the bot reach it."""
        if not (self.group_privacy and chat.is_group):
            return True
        replied = chat.messages.get(message.reply_to) if message.reply_to else None
        return bool(message.entities) or bool(replied and replied.from_bot)

    # ------------------------------------------------------------------ updates

    def _queue_update(self, kind: str, payload: JSONDict) -> None:
        self._updates.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self._notify()

    def _notify(self) -> None:
        """Wake every waiting long poll."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # ------------------------------------------------------------------ webhook delivery

    def _start_webhook_task(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._deliver_webhooks(), name="fake-webhook")

    async def _stop_webhook_task(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_webhooks(self) -> None:
        """Post queued updates to the webhook in order until it is deleted or the server stops."""
        while self._webhook is not None and not self._stopping:
            wakeup = self._wakeup
            ready = self._deliverable(1)
            if not ready:
                await wakeup.wait()
                continue
            update = ready[0]
            status = await self.post_update(update)
            if 200 <= status < 300:
                with contextlib.suppress(ValueError):
                    self._updates.remove(update)
                continue
            if self._webhook is not None:
                self._webhook.last_error_date = int(time.time())
                self._webhook.last_error_message = (
                    f"Wrong response from the webhook: {status}" if status else "Connection refused"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), self.webhook_retry_seconds)

    def _confirm(self, offset: object) -> None:
        if not _is_int(offset):
            return
        if offset < 0:
            self._updates = self._updates[offset:]
        else:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]

    def _deliverable(self, limit: int) -> list[JSONDict]:
        allowed = self._allowed_updates
        ready: list[JSONDict] = []
        for update in list(self._updates):
            kind = next(key for key in update if key != "update_id")
            wanted = kind in allowed if allowed else kind not in UPDATE_TYPES_EXCLUDED_BY_DEFAULT
            if not wanted:
                self._updates.remove(update)  # not wanted by the bot: dropped, as Telegram does
                continue
            ready.append(update)
            if len(ready) >= limit:
                break
        return ready

    # ------------------------------------------------------------------ HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        canonical, handler = self._handlers.get(method.lower(), (method, None))
        call = ApiCall(name=canonical, params={}, chat_id=None, at=self._clock())
        status, body = 200, {}
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            params, files = await self._read_params(request)
            call.params = {**params, **files}
            call.chat_id = _chat_id(params.get("chat_id"))
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            body = {"ok": True, "result": await handler(params, files)}
            call.ok = True
        except ApiError as exc:
            status, body = exc.code, exc.as_json()
            call.error_code, call.description = exc.code, exc.description
            if exc.code == 429:
                self.rate_limited += 1
        except web.HTTPException as exc:  # e.g. 413 for a body over client_max_size
            status, call.error_code, call.description = exc.status, exc.status, exc.reason
            body = {"ok": False, "error_code": exc.status, "description": exc.reason}
        except Exception as exc:  # a bug in the emulator: make it visible to the client
            _LOGGER.exception("FakeTelegram failed to handle %s", canonical)
            status, body = 500, {"ok": False, "error_code": 500, "description": repr(exc)}
            call.error_code, call.description = 500, repr(exc)
        self.calls.append(call)
        return _json_response(body, status)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json_response(ApiError(401, "Unauthorized").as_json(), 401)
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        data = self._files.get(file_id)
        if data is None:
            return _json_response(ApiError(404, "Not Found").as_json(), 404)
        return web.Response(body=data, content_type="application/octet-stream")

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[Params, dict[str, bytes]]:
        """Query string, then a JSON, form-urlencoded or multipart body."""
        params: Params = {k: _decode_form_value(k, v) for k, v in request.query.items()}
        files: dict[str, bytes] = {}
        if request.content_type == "application/json":
            raw = await request.read()
            if raw:
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise _bad_request("can't parse JSON encoded request body") from None
                if not isinstance(data, dict):
                    raise _bad_request("JSON request body must be an object")
                params.update(data)
        elif request.body_exists:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                elif isinstance(value, bytes | bytearray):
                    files[key] = bytes(value)
                else:
                    params[key] = _decode_form_value(key, value)
        return params, files

    # ------------------------------------------------------------------ method table

    def _handler_table(self) -> dict[str, Handler]:
        return {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageCaption": self._edit_message_caption,
            "deleteMessage": self._delete_message,
            "sendMessageDraft": self._send_message_draft,
            "sendChatAction": self._send_chat_action,
            "sendPhoto": self._send_photo,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
        }

    # ------------------------------------------------------------------ parameter helpers

    def _target_chat(self, params: Params) -> _Chat:
        """The chat named by chat_id; 403 if the user blocked the bot."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad_request("chat_id is empty")
        chat_id = _chat_id(raw)
        if chat_id is None:  # "@channelusername": channels are not emulated
            raise _bad_request("chat not found")
        chat = self._chat(chat_id)
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    @staticmethod
    def _int_param(params: Params, name: str) -> int:
        value = params.get(name)
        if value is None:
            raise _bad_request(f"{name} is empty")
        if not _is_int(value):
            raise _bad_request(f'field "{name}" must be of type Integer')
        return value

    def _bot_message(self, chat: _Chat, params: Params, not_found: str) -> FakeMessage:
        message = chat.messages.get(self._int_param(params, "message_id"))
        if message is None:
            raise _bad_request(not_found)
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    @staticmethod
    def _reply_to(chat: _Chat, params: Params) -> int | None:
        """reply_parameters (PTB 22) or the legacy reply_to_message_id."""
        reply = params.get("reply_parameters")
        if reply is None and params.get("reply_to_message_id") is not None:
            reply = {
                "message_id": params["reply_to_message_id"],
                "allow_sending_without_reply": params.get("allow_sending_without_reply"),
            }
        if reply is None:
            return None
        if not isinstance(reply, dict) or not _is_int(reply.get("message_id")):
            raise _bad_request("can't parse reply parameters JSON object")
        if reply["message_id"] in chat.messages:
            return int(reply["message_id"])
        if reply.get("allow_sending_without_reply"):
            return None
        raise _bad_request("message to be replied not found")

    def _admit_write(self, chat: _Chat) -> None:
        if self.enforce_rate_limits:
            self._limiter.admit_write(chat)

    def _new_bot_message(self, chat: _Chat, **fields: Any) -> JSONDict:
        message = FakeMessage(
            message_id=self._next_message_id(chat),
            chat_id=chat.id,
            from_bot=True,
            date=int(time.time()),
            sender=self._bot_user(),
            **fields,
        )
        chat.messages[message.message_id] = message
        if chat.type == "private":
            self._replace_drafts(chat, message)
        self._record_write(message)
        return self._message_json(chat, message)

    @staticmethod
    def _replace_drafts(chat: _Chat, message: FakeMessage) -> None:
        """A bot message in a private chat takes the place of the drafts shown since the last."""
        shown = [d for d in chat.draft_log if d.draft_id in chat.open_drafts and d.text]
        chat.open_drafts.clear()
        message.text_history = [(d.at, d.text) for d in shown]
        if shown:
            message.first_visible_at = shown[0].at

    def _record_write(self, message: FakeMessage) -> None:
        """Note when a write was applied and when the visible text changed."""
        now = self._clock()
        message.last_write_at = now
        text = message.visible_text
        if message.text_history and message.text_history[-1][1] == text:
            return
        if message.text_history or text:
            message.text_history.append((now, text))
        if text and message.first_visible_at is None:
            message.first_visible_at = now

    # ------------------------------------------------------------------ methods

    async def _true(self, params: Params, files: dict[str, bytes]) -> bool:
        return True

    async def _get_me(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.group_privacy,
            "supports_inline_queries": False,
        }

    async def _delete_webhook(self, params: Params, files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        self._webhook = None
        self._notify()
        await self._stop_webhook_task()
        return True

    async def _set_webhook(self, params: Params, files: dict[str, bytes]) -> bool:
        url = str(params.get("url") or "")
        if not url:  # an empty URL removes the webhook
            return await self._delete_webhook(params, files)
        parts = urlsplit(url)
        schemes = ("https",) if self.webhook_https_only else ("http", "https")
        if parts.scheme not in schemes or not parts.hostname:
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if self.webhook_https_only and (parts.port or 443) not in WEBHOOK_PORTS:
            raise _bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
        secret = params.get("secret_token")
        if secret is not None:
            secret = str(secret)
            if not 1 <= len(secret) <= 256 or not set(secret) <= WEBHOOK_SECRET_CHARS:
                raise _bad_request("secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        max_connections = params.get("max_connections")
        self._webhook = _Webhook(
            url=url,
            secret_token=secret,
            max_connections=max_connections if _is_int(max_connections) else 40,
        )
        self._poll_generation += 1  # a pending getUpdates ends with 409
        self._notify()
        self._start_webhook_task()
        return True

    async def _get_webhook_info(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        hook = self._webhook
        info: JSONDict = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if self._allowed_updates is not None:
                info["allowed_updates"] = list(self._allowed_updates)
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _get_updates(self, params: Params, files: dict[str, bytes]) -> list[JSONDict]:
        """Long poll: answers as soon as updates exist, at `timeout`, or when the server stops.

        A newer getUpdates terminates a pending one with 409, as Telegram does.
        """
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        self._confirm(params.get("offset"))
        limit = params.get("limit")
        limit = min(max(limit, 1), 100) if _is_int(limit) else 100
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        timeout = params.get("timeout")
        wait = (
            min(float(timeout), MAX_LONG_POLL_SECONDS)
            if isinstance(timeout, int | float) and not isinstance(timeout, bool)
            else 0.0
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        while True:
            wakeup = self._wakeup
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request;"
                    " make sure that only one bot instance is running",
                )
            ready = [] if self._stopping else self._deliverable(limit)
            remaining = deadline - loop.time()
            if ready or self._stopping or remaining <= 0:
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), remaining)

    @staticmethod
    def _scope_key(params: Params) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    async def _set_my_commands(self, params: Params, files: dict[str, bytes]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            description = command.get("description") if isinstance(command, dict) else None
            if not (
                isinstance(name, str)
                and 1 <= len(name) <= 32
                and all(c.islower() or c.isdigit() or c == "_" for c in name)
            ):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not (isinstance(description, str) and 1 <= len(description) <= 256):
                raise _bad_request("command description must be 1-256 characters")
        self._commands_by_scope[self._scope_key(params)] = [dict(c) for c in commands]
        self.commands = [dict(c) for c in commands]
        return True

    async def _get_my_commands(self, params: Params, files: dict[str, bytes]) -> list[JSONDict]:
        return self._commands_by_scope.get(self._scope_key(params), [])

    async def _delete_my_commands(self, params: Params, files: dict[str, bytes]) -> bool:
        removed = self._commands_by_scope.pop(self._scope_key(params), None)
        if removed is not None and removed == self.commands:
            self.commands = []
        return True

    async def _send_message(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        chat = self._target_chat(params)
        text, entities = _formatted_text(params, "text", "entities")
        _check_text(text)
        markup = validate_reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(chat, params)
        self._admit_write(chat)
        return self._new_bot_message(
            chat, text=text, entities=entities, reply_markup=markup, reply_to=reply_to
        )

    async def _edit_message_text(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        """Omitting reply_markup removes the inline keyboard, as on Telegram."""
        chat = self._target_chat(params)
        message = self._bot_message(chat, params, "message to edit not found")
        if message.text is None:
            raise _bad_request("there is no text in the message to edit")
        text, entities = _formatted_text(params, "text", "entities")
        _check_text(text)
        markup = validate_reply_markup(params.get("reply_markup"), inline_only=True)
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        self._admit_write(chat)
        message.text, message.entities, message.reply_markup = text, entities, markup
        message.edits += 1
        self._record_write(message)
        return self._message_json(chat, message)

    async def _edit_message_reply_markup(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        chat = self._target_chat(params)
        message = self._bot_message(chat, params, "message to edit not found")
        markup = validate_reply_markup(params.get("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        self._admit_write(chat)
        message.reply_markup = markup
        message.edits += 1
        self._record_write(message)
        return self._message_json(chat, message)

    async def _edit_message_caption(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        chat = self._target_chat(params)
        message = self._bot_message(chat, params, "message to edit not found")
        if message.photo_file_id is None:
            raise _bad_request("there is no caption in the message to edit")
        caption, entities = _formatted_text(params, "caption", "caption_entities")
        _check_caption(caption)
        markup = validate_reply_markup(params.get("reply_markup"), inline_only=True)
        current = (message.caption or "", message.caption_entities, message.reply_markup)
        if (caption, entities, markup) == current:
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        self._admit_write(chat)
        message.caption, message.caption_entities, message.reply_markup = caption, entities, markup
        message.edits += 1
        self._record_write(message)
        return self._message_json(chat, message)

    async def _delete_message(self, params: Params, files: dict[str, bytes]) -> bool:
        chat = self._target_chat(params)
        if chat.messages.pop(self._int_param(params, "message_id"), None) is None:
            raise _bad_request("message to delete not found")
        return True

    async def _send_message_draft(self, params: Params, files: dict[str, bytes]) -> bool:
        """Private chats only; an empty text shows the "Thinking..." placeholder (Bot API 10)."""
        chat = self._target_chat(params)
        draft_id = self._int_param(params, "draft_id")
        if draft_id == 0:
            raise _bad_request("draft_id must be non-zero")
        if chat.type != "private":
            raise _bad_request("TEXTDRAFT_PEER_INVALID")
        text, _ = _formatted_text(params, "text", "entities")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        if self.enforce_rate_limits:
            self._limiter.admit_draft(chat)
        chat.drafts.append((draft_id, text))
        chat.draft_log.append(DraftShown(self._clock(), draft_id, text))
        chat.open_drafts.add(draft_id)
        return True

    async def _send_chat_action(self, params: Params, files: dict[str, bytes]) -> bool:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _photo_bytes(self, value: object, files: dict[str, bytes]) -> tuple[str, bytes | None]:
        """Store an uploaded photo or resolve a file_id/URL; returns (file_id, bytes)."""
        if isinstance(value, str) and value.startswith("attach://"):
            value = files.get(value.removeprefix("attach://"))
            if value is None:
                raise _bad_request("there is no photo in the request")
        if isinstance(value, bytes):
            if not value:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            if len(value) > MAX_PHOTO_BYTES:
                raise _bad_request("file is too big")
            file_id = f"photo{next(self._file_ids)}"
            self._files[file_id] = value
            return file_id, value
        if isinstance(value, str) and value in self._files:
            return value, self._files[value]
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            file_id = f"photo{next(self._file_ids)}"
            self._files[file_id] = b""
            return file_id, None
        raise _bad_request("wrong file identifier/HTTP URL specified")

    async def _send_photo(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        chat = self._target_chat(params)
        value = files.get("photo", params.get("photo"))
        if value is None:
            raise _bad_request("there is no photo in the request")
        caption, entities = _formatted_text(params, "caption", "caption_entities")
        _check_caption(caption)
        markup = validate_reply_markup(params.get("reply_markup"))
        reply_to = self._reply_to(chat, params)
        self._admit_write(chat)
        file_id, data = self._photo_bytes(value, files)
        return self._new_bot_message(
            chat,
            photo=data,
            photo_file_id=file_id,
            caption=caption or None,
            caption_entities=entities,
            reply_markup=markup,
            reply_to=reply_to,
        )

    async def _answer_callback_query(self, params: Params, files: dict[str, bytes]) -> bool:
        query_id = params.get("callback_query_id")
        if not isinstance(query_id, str) or query_id not in self._open_callbacks:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._open_callbacks.discard(query_id)
        return True

    async def _get_file(self, params: Params, files: dict[str, bytes]) -> JSONDict:
        file_id = params.get("file_id")
        if not isinstance(file_id, str) or file_id not in self._files:
            raise _bad_request("invalid file_id")
        data = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(data),
            "file_path": f"photos/{file_id}",
        }
