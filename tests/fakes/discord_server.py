"""An emulated Discord (REST API v10 + gateway) on one loopback aiohttp server.

The real discord.py client joins it when pointed at it::

    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

Tests then drive the bot through the gateway (`slash`, `autocomplete`, `click`, `user_message`)
and inspect what Discord would show (`messages`) and what the bot asked for (`calls`).
The emulator enforces Discord's documented/observed limits: content and embed sizes, empty
messages, attachment size, acknowledgement rules, the 3-second deadline of an interaction's initial
response, interaction-token expiry and write rate limits (answered with 429s that discord.py
retries on its own).

Rate limits (only when `enforce_rate_limits`; windows run on the injected `clock`), each
`rate_limit` writes per `rate_limit_window` seconds (default 5 per 5 s), with its own
X-RateLimit-Bucket hash:

* message creates in a channel (POST /channels/{id}/messages);
* message edits and deletes in a channel (PATCH/DELETE /channels/{id}/messages/{mid});
* writes through one interaction token (webhook edits, deletes and followups).

Interaction callbacks are not rate limited, but the initial response must come within
`initial_response_deadline` seconds of the interaction's creation (clock time), else 10062
Unknown interaction (and, never acknowledged, the token's webhook routes answer 10015).

What users see and when (clock time): every message records when its content first became
non-empty (`FakeMessage.first_visible_at`), the history of its content
(`FakeMessage.content_history`, one entry per change) and its last applied write
(`FakeMessage.last_write_at`), so a benchmark can read "first visible" from the platform's side.

Shards: IDENTIFY's ``shard`` [id, count] is checked (id < count, else close 4010 Invalid shard)
and routes events as Discord does: the guild belongs to shard ``(guild_id >> 22) % count``, so
only that session gets it in READY, its GUILD_CREATE and its events; DMs go to shard 0. The bot
is in one guild (`guild_id`) unless a test adds more (`add_guild`, on the shard of its choice).
GET /gateway/bot recommends `recommended_shards` (1 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.served import Served

JsonObj = dict[str, Any]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
ALL_PERMISSIONS = str((1 << 51) - 1)
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
HEARTBEAT_INTERVAL_MS = 41_250

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
MAX_CHOICES = 25

FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2

# Rate-limit bucket kinds, each with its X-RateLimit-Bucket hash and the route parameter that
# keys it (one bucket per channel or per interaction token).
# Discord counts message creates and message edits (and deletes) in a channel apart.
CREATE_BUCKET = "create"
EDIT_BUCKET = "edit"
TOKEN_BUCKET = "token"
CHANNEL_BUCKETS = frozenset({CREATE_BUCKET, EDIT_BUCKET})
BUCKET_HASHES: dict[str, str] = {
    CREATE_BUCKET: "fake0channel0message0creates",
    EDIT_BUCKET: "fake0channel0message0edits",
    TOKEN_BUCKET: "fake0interaction0token0writes",
}
BUCKET_KEYS: dict[str, str] = {
    CREATE_BUCKET: "channel_id",
    EDIT_BUCKET: "channel_id",
    TOKEN_BUCKET: "token",
}

# Embed fields with their own length limits (path inside one embed -> max length).
EMBED_FIELD_LIMITS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("title",), 256),
    (("description",), 4096),
    (("footer", "text"), 2048),
    (("author", "name"), 256),
)

# Callback types allowed per interaction type (2 command, 3 component, 4 autocomplete, 5 modal).
CALLBACKS_FOR_INTERACTION: dict[int, frozenset[int]] = {
    2: frozenset({4, 5, 9}),
    3: frozenset({4, 5, 6, 7, 9}),
    4: frozenset({8}),
    5: frozenset({4, 5, 6, 7}),
}


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class RestCall:
    """One REST request the bot made, with the answer it got."""

    method: str
    route: str  # template, e.g. "/channels/{channel_id}/messages/{message_id}"
    path: str  # concrete path below the API base
    query: dict[str, str]
    json: Any  # JSON body (payload_json for multipart), None when empty
    files: list[tuple[str, int]]  # uploaded (filename, size)
    at: float  # injected clock
    status: int


@dataclass(frozen=True)
class FakeMessage:
    """A snapshot of a message as the channel shows it now."""

    id: int
    channel_id: int
    author_id: int
    content: str
    embeds: list[JsonObj]
    attachments: list[tuple[str, bytes]]
    components: list[JsonObj]
    ephemeral: bool
    interaction_id: int | None
    edits: int
    reference: int | None
    loading: bool
    flags: int
    first_visible_at: float | None = None  # clock time its content first became non-empty
    last_write_at: float | None = None  # clock time of the last applied create/edit
    content_history: tuple[tuple[float, str], ...] = ()  # (clock time, content) per change


@dataclass
class Interaction:
    """The emulator's record of one interaction it dispatched, updated as the bot answers."""

    id: int
    token: str
    type: int
    channel_id: int
    guild_id: int | None
    user_id: int
    created_at: float
    payload: JsonObj
    message_id: int | None = None  # component interactions: the clicked message
    response_type: int | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    autocomplete_choices: list[JsonObj] | None = None
    modal: JsonObj | None = None
    expired: bool = False
    missed_deadline: bool = False  # a callback came after initial_response_deadline

    @property
    def acknowledged(self) -> bool:
        """True once a callback was accepted."""
        return self.response_type is not None


# --------------------------------------------------------------------------- internal state


class ApiError(Exception):
    """An error answer: status plus Discord's JSON error body."""

    def __init__(self, status: int, code: int, message: str, errors: JsonObj | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: JsonObj = {"message": message, "code": code}
        self.headers: dict[str, str] = {}
        if errors is not None:
            self.body["errors"] = errors


def form_error(path: tuple[str, ...], code: str, message: str) -> ApiError:
    """A 50035 Invalid Form Body error nested along `path`."""
    errors: JsonObj = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass
class _Upload:
    index: int
    filename: str
    data: bytes
    content_type: str


@dataclass
class _Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str
    description: str | None = None


@dataclass
class _Msg:
    id: int
    channel_id: int
    author_id: int
    content: str = ""
    embeds: list[JsonObj] = field(default_factory=list)
    components: list[JsonObj] = field(default_factory=list)
    attachments: list[_Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    ephemeral: bool = False
    interaction_id: int | None = None
    webhook_id: int | None = None
    reference: int | None = None
    edits: int = 0
    deleted: bool = False
    timestamp: str = ""
    edited_timestamp: str | None = None
    first_visible_at: float | None = None
    last_write_at: float | None = None
    history: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class _Channel:
    id: int
    guild_id: int | None
    name: str
    recipient_id: int | None = None
    position: int = 0
    messages: dict[int, _Msg] = field(default_factory=dict)

    @property
    def type(self) -> int:
        """0 = guild text, 1 = DM."""
        return 0 if self.guild_id is not None else 1


@dataclass
class _Bucket:
    limit: int
    window: float
    count: int = 0
    reset_at: float = 0.0


@dataclass
class _Session:
    id: str
    intents: int
    shard: tuple[int, int] = (0, 1)
    seq: int = 0
    backlog: deque[JsonObj] = field(default_factory=lambda: deque(maxlen=1000))


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard a guild's events go to (Discord's formula)."""
    return (guild_id >> 22) % shard_count


def _shard_field(raw: object) -> tuple[int, int] | None:
    """IDENTIFY's shard [id, count], or None when it is not a valid pair."""
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    shard_id, count = raw
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        return None
    return (shard_id, count) if 0 <= shard_id < count else None


def _receives(session: _Session, guild_id: int | None) -> bool:
    shard_id, count = session.shard
    return shard_id == (0 if guild_id is None else shard_of(guild_id, count))


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None


@dataclass
class _Req:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    uploads: list[_Upload]


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: str
    bucket: str | None  # rate-limit bucket kind: CREATE_BUCKET, EDIT_BUCKET or TOKEN_BUCKET
    auth: bool  # needs "Authorization: Bot <token>"


def _route(method: str, template: str, handler: str, bucket: str | None = None) -> _Route:
    """Compile a route template ("{name}" segments) into a matcher."""
    parts = re.split(r"(\{\w+\})", template)
    pattern = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    auth = not template.startswith(("/webhooks/", "/interactions/"))
    return _Route(method, template, re.compile(f"^{pattern}$"), handler, bucket, auth)


ROUTES: tuple[_Route, ...] = (
    _route("GET", "/users/@me", "_get_me"),
    _route("POST", "/users/@me/channels", "_create_dm"),
    _route("GET", "/users/{user_id}", "_get_user"),
    _route("GET", "/oauth2/applications/@me", "_get_application"),
    _route("GET", "/applications/@me", "_get_application"),
    _route("GET", "/gateway", "_get_gateway"),
    _route("GET", "/gateway/bot", "_get_gateway_bot"),
    _route("GET", "/applications/{application_id}/commands", "_get_commands"),
    _route("PUT", "/applications/{application_id}/commands", "_put_commands"),
    _route("POST", "/applications/{application_id}/commands", "_post_command"),
    _route("GET", "/applications/{application_id}/guilds/{guild_id}/commands", "_get_commands"),
    _route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", "_put_commands"),
    _route("POST", "/applications/{application_id}/guilds/{guild_id}/commands", "_post_command"),
    _route("POST", "/interactions/{interaction_id}/{token}/callback", "_callback"),
    _route("GET", "/webhooks/{application_id}/{token}/messages/@original", "_get_original"),
    _route(
        "PATCH",
        "/webhooks/{application_id}/{token}/messages/@original",
        "_edit_original",
        TOKEN_BUCKET,
    ),
    _route(
        "DELETE",
        "/webhooks/{application_id}/{token}/messages/@original",
        "_delete_original",
        TOKEN_BUCKET,
    ),
    _route("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", "_get_followup"),
    _route(
        "PATCH",
        "/webhooks/{application_id}/{token}/messages/{message_id}",
        "_edit_followup",
        TOKEN_BUCKET,
    ),
    _route(
        "DELETE",
        "/webhooks/{application_id}/{token}/messages/{message_id}",
        "_delete_followup",
        TOKEN_BUCKET,
    ),
    _route("POST", "/webhooks/{application_id}/{token}", "_post_followup", TOKEN_BUCKET),
    _route("GET", "/channels/{channel_id}", "_get_channel"),
    _route("GET", "/channels/{channel_id}/messages", "_get_history"),
    _route("POST", "/channels/{channel_id}/messages", "_create_message", CREATE_BUCKET),
    _route("GET", "/channels/{channel_id}/messages/{message_id}", "_get_message"),
    _route("PATCH", "/channels/{channel_id}/messages/{message_id}", "_edit_message", EDIT_BUCKET),
    _route(
        "DELETE", "/channels/{channel_id}/messages/{message_id}", "_delete_message", EDIT_BUCKET
    ),
    _route("POST", "/channels/{channel_id}/typing", "_typing"),
)


def _now_iso() -> str:
    """Wall-clock ISO 8601 timestamp, as Discord sends them."""
    return datetime.now(UTC).isoformat()


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON reply with Content-Type exactly `application/json` (discord.py checks equality)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


def _infer_option_type(value: object) -> int:
    """Application command option type for a Python value."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def _find_component(components: Any, custom_id: str) -> JsonObj | None:
    """Depth-first search for the component with `custom_id` (rows, containers, accessories)."""
    if isinstance(components, list):
        for item in components:
            found = _find_component(item, custom_id)
            if found is not None:
                return found
    elif isinstance(components, dict):
        if components.get("custom_id") == custom_id:
            return components
        for key in ("components", "accessory"):
            found = _find_component(components.get(key), custom_id)
            if found is not None:
                return found
    return None


def _truthy(value: str | None) -> bool:
    """Query-string booleans as Discord reads them."""
    return value is not None and value.lower() in {"1", "true"}


# --------------------------------------------------------------------------- the server


class FakeDiscord(Served):
    """Emulated Discord REST API + gateway for the real discord.py client (loopback only)."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token-not-real",
        clock: Callable[[], float] = time.monotonic,
        enforce_rate_limits: bool = True,
        interaction_token_ttl: float = 900.0,
        rate_limit: int = 5,
        rate_limit_window: float = 5.0,
        header_time_scale: float = 1.0,
        initial_response_deadline: float = 3.0,
    ) -> None:
        """`rate_limit` / `rate_limit_window`: the size of every write bucket (see the module
        docstring). `header_time_scale`: rate-limit windows run on `clock`, but discord.py waits
        the times the headers report in real seconds; with a clock running N times faster than
        real time pass N, and reported times are divided by it (1.0: report clock seconds as they
        are). `initial_response_deadline`: clock seconds after an interaction's creation within
        which its first callback must arrive (Discord: 3 s).
        """
        if header_time_scale <= 0:
            raise ValueError("header_time_scale must be positive")
        self.token = token
        self._clock = clock
        self.enforce_rate_limits = enforce_rate_limits
        self.interaction_token_ttl = interaction_token_ttl
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self.header_time_scale = header_time_scale
        self.initial_response_deadline = initial_response_deadline

        self.calls: list[RestCall] = []
        self.rate_limited = 0  # 429s answered, all buckets
        self.rate_limited_by_bucket: dict[str, int] = {}  # 429s per bucket kind
        # 429s per bucket: (kind, its channel id or interaction token)
        self.rate_limited_by_key: dict[tuple[str, str], int] = {}
        self.identifies: list[JsonObj] = []
        self.recommended_shards = 1  # what GET /gateway/bot answers
        self.interactions: dict[int, Interaction] = {}
        self.denied_channels: set[int] = set()  # see deny_writes

        self._last_id = 0
        self.bot_user_id = self._snowflake()
        self.application_id = self.bot_user_id
        self.owner_id = 1001
        self.guild_id = self._snowflake()  # the default guild
        self.guild_ids: list[int] = [self.guild_id]  # every guild the bot is in (add_guild)
        self._channels: dict[int, _Channel] = {}
        self._loose_attachments: dict[int, tuple[int, _Attachment]] = {}  # slash-command files
        self._commands: list[JsonObj] = []
        self._users: dict[int, JsonObj] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.channel_id = self.add_channel()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, port: int = 0) -> None:
        """Serve REST under /api/v10 and the gateway at /gateway on 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close gateway sockets, finish background sends and shut the server down."""
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"emulator stopping")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The TCP port (after start)."""
        if not self._port:
            raise RuntimeError("FakeDiscord is not started")
        return self._port

    @property
    def root_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for discord.http.Route.BASE."""
        return self.root_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """Value (as yarl.URL) for discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def commands(self) -> list[JsonObj]:
        """Registered application commands; each carries "scope": "global" or "guild"."""
        return [dict(cmd) for cmd in self._commands]

    # ----------------------------------------------------------------- world setup

    def add_guild(self, *, shard: tuple[int, int] | None = None) -> int:
        """Another guild with the bot in it (no channels yet: `add_channel(guild_id=...)`);
        with `shard` = (id, count), its id is chosen so that shard owns it. Announced to the
        connected shard that owns it (GUILD_CREATE), as when the bot joins a guild."""
        guild_id = self._snowflake()
        while shard is not None and shard_of(guild_id, shard[1]) != shard[0]:
            guild_id = self._last_id = guild_id + (1 << 22)  # the next millisecond
        self.guild_ids.append(guild_id)
        if self._conns:
            self._spawn(self._dispatch("GUILD_CREATE", self._guild_payload(guild_id)))
        return guild_id

    def add_channel(
        self, *, guild: bool = True, user_id: int = 2001, guild_id: int | None = None
    ) -> int:
        """New guild text channel (in the default guild unless `guild_id`; announced over the
        gateway) or DM channel with `user_id`."""
        channel_id = self._snowflake()
        if guild:
            home = self.guild_id if guild_id is None else guild_id
            if home not in self.guild_ids:
                raise ValueError(f"the bot is in no guild {home}")
            position = sum(1 for c in self._channels.values() if c.guild_id == home)
            channel = _Channel(channel_id, home, f"channel-{position}", position=position)
            self._channels[channel_id] = channel
            if self._conns:
                self._spawn(self._dispatch("CHANNEL_CREATE", self._channel_payload(channel)))
        else:
            self._channels[channel_id] = _Channel(channel_id, None, "", recipient_id=user_id)
        return channel_id

    def messages(self, channel_id: int) -> list[FakeMessage]:
        """What the channel shows now (ephemeral ones included, marked), oldest first."""
        channel = self._channels[channel_id]
        return [self._snapshot(m) for m in channel.messages.values() if not m.deleted]

    def message(self, message_id: int) -> FakeMessage:
        """Snapshot of one live message by id (KeyError if unknown or deleted)."""
        return self._snapshot(self._live_message(message_id))

    def first_visible_at(self, message_id: int) -> float | None:
        """Clock time the message's content first became non-empty (deleted ones included)."""
        for channel in self._channels.values():
            msg = channel.messages.get(message_id)
            if msg is not None:
                return msg.first_visible_at
        raise KeyError(message_id)

    def delete_message(self, channel_id: int, message_id: int) -> None:
        """Delete a message as a user/moderator would (MESSAGE_DELETE goes to the bot)."""
        msg = self._channels[channel_id].messages[message_id]
        if msg.deleted:
            raise KeyError(message_id)
        msg.deleted = True
        if not msg.ephemeral:
            self._spawn(self._dispatch("MESSAGE_DELETE", self._delete_payload(msg)))

    def deny_writes(self, channel_id: int) -> None:
        """Take the bot's permission to write in a channel: its channel writes get 403 50013."""
        self.denied_channels.add(channel_id)

    def expire_interaction(self, token: str) -> None:
        """Make an interaction token expired now (callbacks 10062, webhooks 50027)."""
        for interaction in self.interactions.values():
            if interaction.token == token:
                interaction.expired = True
                return
        raise KeyError(token)

    def interaction(self, interaction_id: int) -> Interaction:
        """The record of a dispatched interaction."""
        return self.interactions[interaction_id]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Poll `predicate` until true; AssertionError with recent calls and messages otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s\n{self.describe()}")
            await asyncio.sleep(0.01)

    def describe(self) -> str:
        """Recent REST calls and channel contents, for failure messages."""
        lines = ["last REST calls:"]
        lines += [f"  {c.method} {c.path} -> {c.status}" for c in self.calls[-15:]]
        for channel in self._channels.values():
            for m in channel.messages.values():
                state = "deleted" if m.deleted else ("ephemeral" if m.ephemeral else "shown")
                lines.append(
                    f"  #{channel.id} msg {m.id} [{state}] edits={m.edits}: {m.content[:80]!r}"
                )
        return "\n".join(lines)

    # ----------------------------------------------------------------- driving the bot

    async def slash(
        self,
        name: str,
        options: dict[str, object] | None = None,
        *,
        user_id: int = 2001,
        channel_id: int | None = None,
        dm: bool = False,
        subcommand: str | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> Interaction:
        """Dispatch a slash command (INTERACTION_CREATE type 2). `files`: attachment options,
        by option name: (file name, bytes, content type), uploaded and resolved like Discord's."""
        channel = self._interaction_channel(channel_id, dm, user_id)
        command = self._find_command(name, channel.guild_id)
        options = dict(options or {})
        resolved: dict[str, JsonObj] = {}
        for option, (filename, content, content_type) in (files or {}).items():
            att = _Attachment(self._snowflake(), filename, content, content_type)
            self._loose_attachments[att.id] = (channel.id, att)
            url = f"{self.root_url}/attachments/{channel.id}/{att.id}/{att.filename}"
            resolved[str(att.id)] = {
                "id": str(att.id), "filename": filename, "size": len(content), "url": url,
                "proxy_url": url, "content_type": content_type,
            }  # fmt: skip
            options[option] = str(att.id)
        option_list = self._option_payloads(command, subcommand, options)
        if subcommand is not None:
            option_list = [{"name": subcommand, "type": 1, "options": option_list}]
        data = self._command_data(command, name, option_list)
        if resolved:
            data["resolved"] = {"attachments": resolved}
        return await self._interact(2, data, channel, user_id)

    async def autocomplete(
        self,
        name: str,
        option: str,
        value: str,
        *,
        user_id: int = 2001,
        channel_id: int | None = None,
    ) -> Interaction:
        """Dispatch an autocomplete request (type 4) with `option` focused."""
        channel = self._interaction_channel(channel_id, False, user_id)
        command = self._find_command(name, channel.guild_id)
        focused = self._option_payloads(command, None, {option: value})[0]
        focused["value"] = value
        focused["focused"] = True
        data = self._command_data(command, name, [focused])
        return await self._interact(4, data, channel, user_id)

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        user_id: int = 2001,
        values: list[str] | None = None,
        check_component: bool = True,
    ) -> Interaction:
        """Dispatch a component interaction (type 3) on a message's button/select.

        `check_component=False` clicks a button the message no longer (or never) had, as a
        client showing an older version of the message, or a forged request, would."""
        msg = self._live_message(message_id)
        component = _find_component(msg.components, custom_id)
        if component is None and not check_component:
            component = {"type": 2, "custom_id": custom_id}
        if component is None:
            raise ValueError(f"message {message_id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: JsonObj = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None or component.get("type", 2) != 2:
            data["values"] = values or []
        channel = self._channels[msg.channel_id]
        return await self._interact(3, data, channel, user_id, message=msg)

    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        user_id: int = 2001,
        mention_bot: bool = False,
        reply_to: int | None = None,
        files: list[tuple[str, bytes, str]] | None = None,
    ) -> int:
        """A user posts in a channel (MESSAGE_CREATE), with `files` attached as
        (file name, bytes, content type); returns the new message id."""
        channel = self._channels[channel_id]
        if mention_bot:
            content = f"<@{self.bot_user_id}> {content}"
        if reply_to is not None and reply_to not in channel.messages:
            raise ValueError(f"no message {reply_to} in channel {channel_id}")
        msg = _Msg(
            id=self._snowflake(),
            channel_id=channel_id,
            author_id=user_id,
            content=content,
            type=19 if reply_to is not None else 0,
            reference=reply_to,
            timestamp=_now_iso(),
            attachments=[
                _Attachment(self._snowflake(), name, content, kind)
                for name, content, kind in files or []
            ],
        )
        channel.messages[msg.id] = msg
        await self._dispatch("MESSAGE_CREATE", self._gateway_message(msg), required=True)
        return msg.id

    async def reconnect_gateway(self) -> None:
        """Ask connected clients to reconnect (op 7); discord.py then RESUMEs."""
        for conn in list(self._conns):
            await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})

    # ----------------------------------------------------------------- ids, users, payloads

    def _snowflake(self) -> int:
        """A fresh, increasing snowflake carrying the current wall time."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background coroutine owned (and cancelled on stop) by the emulator."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _user(self, user_id: int) -> JsonObj:
        """Public user object."""
        if user_id == self.bot_user_id:
            return {
                "id": str(user_id),
                "username": "g4f-bridge-fake",
                "discriminator": "0",
                "global_name": None,
                "avatar": None,
                "bot": True,
                "public_flags": 0,
            }
        return self._users.setdefault(
            user_id,
            {
                "id": str(user_id),
                "username": f"user{user_id}",
                "discriminator": "0",
                "global_name": f"User {user_id}",
                "avatar": None,
                "public_flags": 0,
            },
        )

    def _member(self, user_id: int, *, with_user: bool = True) -> JsonObj:
        """Guild member object (interaction flavour carries permissions)."""
        member: JsonObj = {
            "roles": [],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "premium_since": None,
            "permissions": ALL_PERMISSIONS,
        }
        if with_user:
            member["user"] = self._user(user_id)
        return member

    def _channel_payload(self, channel: _Channel) -> JsonObj:
        """Channel object (guild text or DM)."""
        if channel.guild_id is None:
            recipient = channel.recipient_id or 2001
            return {
                "id": str(channel.id),
                "type": 1,
                "last_message_id": None,
                "recipients": [self._user(recipient)],
                "flags": 0,
            }
        return {
            "id": str(channel.id),
            "type": 0,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def _guild_payload(self, guild_id: int | None = None) -> JsonObj:
        """GUILD_CREATE data for a guild (the default one unless `guild_id`)."""
        guild_id = self.guild_id if guild_id is None else guild_id
        return {
            "id": str(guild_id),
            "name": "Fake Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": ALL_PERMISSIONS,
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "icon": None,
                    "unicode_emoji": None,
                    "flags": 0,
                }
            ],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "large": False,
            "unavailable": False,
            "member_count": 1,
            "members": [self._member(self.bot_user_id)],
            "channels": [
                self._channel_payload(c) for c in self._channels.values() if c.guild_id == guild_id
            ],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _attachment_payload(self, msg: _Msg, att: _Attachment) -> JsonObj:
        """Attachment object; the URL is served by this emulator."""
        url = f"{self.root_url}/attachments/{msg.channel_id}/{att.id}/{att.filename}"
        payload: JsonObj = {
            "id": str(att.id),
            "filename": att.filename,
            "size": len(att.data),
            "url": url,
            "proxy_url": url,
            "content_type": att.content_type,
        }
        if att.description is not None:
            payload["description"] = att.description
        return payload

    def _message_payload(self, msg: _Msg, *, nested: bool = False) -> JsonObj:
        """REST message object."""
        mention_ids = {int(m) for m in re.findall(r"<@!?(\d+)>", msg.content)}
        payload: JsonObj = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self._user(msg.author_id),
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": msg.tts,
            "mention_everyone": False,
            "mentions": [self._user(uid) for uid in sorted(mention_ids)],
            "mention_roles": [],
            "attachments": [self._attachment_payload(msg, a) for a in msg.attachments],
            "embeds": msg.embeds,
            "pinned": False,
            "type": msg.type,
            "flags": msg.flags,
            "components": msg.components,
        }
        if msg.webhook_id is not None:
            payload["webhook_id"] = str(msg.webhook_id)
            payload["application_id"] = str(self.application_id)
        if msg.interaction_id is not None and msg.interaction_id in self.interactions:
            inter = self.interactions[msg.interaction_id]
            payload["interaction_metadata"] = {
                "id": str(inter.id),
                "type": inter.type,
                "user": self._user(inter.user_id),
                "authorizing_integration_owners": {},
            }
        if msg.reference is not None:
            channel = self._channels[msg.channel_id]
            payload["message_reference"] = {
                "type": 0,
                "message_id": str(msg.reference),
                "channel_id": str(msg.channel_id),
            }
            if channel.guild_id is not None:
                payload["message_reference"]["guild_id"] = str(channel.guild_id)
            if not nested:
                ref = channel.messages.get(msg.reference)
                alive = ref is not None and not ref.deleted
                payload["referenced_message"] = (
                    self._message_payload(ref, nested=True) if ref is not None and alive else None
                )
        return payload

    def _gateway_message(self, msg: _Msg) -> JsonObj:
        """MESSAGE_CREATE/UPDATE data: message object plus guild_id/member."""
        payload = self._message_payload(msg)
        guild_id = self._channels[msg.channel_id].guild_id
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["member"] = self._member(msg.author_id, with_user=False)
            for mention in payload["mentions"]:
                mention["member"] = self._member(int(mention["id"]), with_user=False)
        return payload

    def _delete_payload(self, msg: _Msg) -> JsonObj:
        """MESSAGE_DELETE data."""
        data: JsonObj = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        guild_id = self._channels[msg.channel_id].guild_id
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        return data

    def _snapshot(self, msg: _Msg) -> FakeMessage:
        """Frozen public view of a stored message."""
        return FakeMessage(
            id=msg.id,
            channel_id=msg.channel_id,
            author_id=msg.author_id,
            content=msg.content,
            embeds=json.loads(json.dumps(msg.embeds)),
            attachments=[(a.filename, a.data) for a in msg.attachments],
            components=json.loads(json.dumps(msg.components)),
            ephemeral=msg.ephemeral,
            interaction_id=msg.interaction_id,
            edits=msg.edits,
            reference=msg.reference,
            loading=bool(msg.flags & FLAG_LOADING),
            flags=msg.flags,
            first_visible_at=msg.first_visible_at,
            last_write_at=msg.last_write_at,
            content_history=tuple(msg.history),
        )

    def _live_message(self, message_id: int) -> _Msg:
        """Find a non-deleted message in any channel."""
        for channel in self._channels.values():
            msg = channel.messages.get(message_id)
            if msg is not None and not msg.deleted:
                return msg
        raise KeyError(message_id)

    # ----------------------------------------------------------------- interactions (dispatch side)

    def _interaction_channel(self, channel_id: int | None, dm: bool, user_id: int) -> _Channel:
        """Channel an interaction happens in; DMs get (or reuse) the user's DM channel."""
        if channel_id is not None:
            return self._channels[channel_id]
        if not dm:
            return self._channels[self.channel_id]
        return self._dm_channel(user_id)

    def _dm_channel(self, user_id: int) -> _Channel:
        """The DM channel between the bot and `user_id` (created on first use)."""
        for channel in self._channels.values():
            if channel.guild_id is None and channel.recipient_id == user_id:
                return channel
        return self._channels[self.add_channel(guild=False, user_id=user_id)]

    def _find_command(self, name: str, guild_id: int | None) -> JsonObj | None:
        """Registered command by name, guild scope first."""
        for cmd in self._commands:
            if (
                cmd["name"] == name
                and guild_id is not None
                and cmd.get("guild_id") == str(guild_id)
            ):
                return cmd
        for cmd in self._commands:
            if cmd["name"] == name and cmd["scope"] == "global":
                return cmd
        return None

    @staticmethod
    def _option_payloads(
        command: JsonObj | None, subcommand: str | None, options: dict[str, object]
    ) -> list[JsonObj]:
        """Option payloads; types come from the registered command, else from the values."""
        declared: list[JsonObj] = list((command or {}).get("options") or [])
        if subcommand is not None:
            sub = next((o for o in declared if o.get("name") == subcommand), {})
            declared = list(sub.get("options") or [])
        types = {o["name"]: o["type"] for o in declared if "name" in o and "type" in o}
        return [
            {"name": k, "type": types.get(k, _infer_option_type(v)), "value": v}
            for k, v in options.items()
        ]

    def _command_data(self, command: JsonObj | None, name: str, options: list[JsonObj]) -> JsonObj:
        """`data` of an application command interaction."""
        data: JsonObj = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": name,
            "type": 1,
            "options": options,
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return data

    async def _interact(
        self,
        type_: int,
        data: JsonObj,
        channel: _Channel,
        user_id: int,
        *,
        message: _Msg | None = None,
    ) -> Interaction:
        """Record an interaction and dispatch INTERACTION_CREATE."""
        interaction_id = self._snowflake()
        token = "fake-itoken-" + secrets.token_urlsafe(48)
        payload: JsonObj = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": type_,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": self._channel_payload(channel),
            "locale": "en-US",
            "app_permissions": ALL_PERMISSIONS,
            "entitlements": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if channel.guild_id is not None:
            payload.update(
                guild_id=str(channel.guild_id),
                guild={"id": str(channel.guild_id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=self._member(user_id),
                context=0,
                authorizing_integration_owners={"0": str(channel.guild_id)},
            )
        else:
            payload.update(user=self._user(user_id), context=1, authorizing_integration_owners={})
        if message is not None:
            payload["message"] = self._message_payload(message)
        record = Interaction(
            id=interaction_id,
            token=token,
            type=type_,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            user_id=user_id,
            created_at=self._clock(),
            payload=payload,
            message_id=message.id if message else None,
        )
        self.interactions[interaction_id] = record
        await self._dispatch("INTERACTION_CREATE", payload, required=True)
        return record

    def _token_expired(self, inter: Interaction) -> bool:
        """Expired by `expire_interaction` or by the TTL on the injected clock."""
        return inter.expired or self._clock() - inter.created_at >= self.interaction_token_ttl

    # ----------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then IDENTIFY/RESUME/heartbeats."""
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Conn(ws=ws, query=dict(request.query))
        self._conns.add(conn)
        try:
            await self._send(
                conn,
                {
                    "op": 10,
                    "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS},
                    "s": None,
                    "t": None,
                },
            )
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    await self._on_gateway_frame(conn, json.loads(frame.data))
                elif frame.type is WSMsgType.BINARY:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
        finally:
            self._conns.discard(conn)
        return ws

    async def _on_gateway_frame(self, conn: _Conn, frame: JsonObj) -> None:
        """Handle one client opcode."""
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif op == 8:
            await self._members_chunk(conn, data or {})
        elif op not in (3, 4):
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: _Conn, data: JsonObj) -> None:
        """IDENTIFY: check the token, send READY then GUILD_CREATE."""
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        shard = _shard_field(data.get("shard", [0, 1]))
        if shard is None:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        self.identifies.append(data)
        session = _Session(
            id=secrets.token_hex(16), intents=int(data.get("intents", 0)), shard=shard
        )
        owned = [g for g in self.guild_ids if shard_of(g, shard[1]) == shard[0]]
        self._sessions[session.id] = session
        conn.session = session
        me = {**self._user(self.bot_user_id), "verified": True, "mfa_enabled": False, "flags": 0}
        ready = {
            "v": 10,
            "user": me,
            "guilds": [{"id": str(g), "unavailable": True} for g in owned],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "shard": list(shard),
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
        }
        await self._send_dispatch(conn, "READY", ready)
        for guild_id in owned:
            await self._send_dispatch(conn, "GUILD_CREATE", self._guild_payload(guild_id))

    async def _resume(self, conn: _Conn, data: JsonObj) -> None:
        """RESUME: replay missed events and send RESUMED, or op 9 (not resumable)."""
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.token:
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        conn.session = session
        last_seen = int(data.get("seq") or 0)
        for frame in [f for f in session.backlog if f["s"] > last_seen]:
            await self._send(conn, frame)
        await self._send_dispatch(conn, "RESUMED", {})

    async def _members_chunk(self, conn: _Conn, data: JsonObj) -> None:
        """REQUEST_GUILD_MEMBERS: one chunk with the bot as the only member."""
        chunk = {
            "guild_id": str(data.get("guild_id", self.guild_id)),
            "members": [self._member(self.bot_user_id)],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(conn, "GUILD_MEMBERS_CHUNK", chunk)

    async def _send(self, conn: _Conn, frame: JsonObj) -> None:
        """Send one JSON text frame (ignored if the socket is closing)."""
        async with conn.lock:
            if not conn.ws.closed:
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await conn.ws.send_str(json.dumps(frame))

    async def _send_dispatch(self, conn: _Conn, event: str, data: JsonObj) -> None:
        """Send an op 0 dispatch with the session's next sequence number."""
        assert conn.session is not None
        conn.session.seq += 1
        frame = {"op": 0, "t": event, "s": conn.session.seq, "d": data}
        conn.session.backlog.append(frame)
        await self._send(conn, frame)

    async def _dispatch(self, event: str, data: JsonObj, *, required: bool = False) -> None:
        """Dispatch an event to every identified connection of the shard it belongs to (the
        guild's; shard 0 for DMs)."""
        guild = data.get("id") if event == "GUILD_CREATE" else data.get("guild_id")
        guild_id = int(guild) if guild is not None else None
        targets = [
            c
            for c in self._conns
            if c.session is not None and not c.ws.closed and _receives(c.session, guild_id)
        ]
        if required and not targets:
            raise RuntimeError(f"cannot dispatch {event}: no bot connected to the gateway")
        for conn in targets:
            await self._send_dispatch(conn, event, data)

    # ----------------------------------------------------------------- REST plumbing

    async def _cdn(self, request: web.Request) -> web.Response:
        """Serve attachment bytes."""
        attachment_id = int(request.match_info["attachment_id"])
        channel_id = int(request.match_info["channel_id"])
        loose = self._loose_attachments.get(attachment_id)
        if loose is not None and loose[0] == channel_id:
            att = loose[1]
            return web.Response(body=att.data, headers={"Content-Type": att.content_type})
        channel = self._channels.get(channel_id)
        for msg in channel.messages.values() if channel else ():
            for att in msg.attachments:
                if att.id == attachment_id:
                    return web.Response(body=att.data, headers={"Content-Type": att.content_type})
        return web.Response(status=404)

    async def _api(self, request: web.Request) -> web.Response:
        """Route, authenticate, rate-limit, run the handler and record the call."""
        path = request.path[len(API_PREFIX) :] or "/"
        query = dict(request.query)
        route, params = self._match(request.method, path)
        body: Any = None
        uploads: list[_Upload] = []
        headers: dict[str, str] = {}
        try:
            body, uploads = await self._read_body(request)
            if route is None:
                raise ApiError(
                    404 if params is None else 405,
                    0,
                    "404: Not Found" if params is None else "405: Method Not Allowed",
                )
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            if route.bucket in CHANNEL_BUCKETS and int((params or {})["channel_id"]) in (
                self.denied_channels
            ):
                raise ApiError(403, 50013, "Missing Permissions")
            if route.bucket is not None:
                headers = self._take_bucket(route.bucket, params or {})
            handler = getattr(self, route.handler)
            status, payload = await handler(
                _Req(request.method, path, params or {}, query, body, uploads)
            )
        except ApiError as err:
            status, payload = err.status, err.body
            headers = {**headers, **err.headers}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Malformed input (bad ids, wrong JSON shapes): a 400 rather than a retried 500.
            status, payload = 400, {"message": f"Invalid Form Body ({exc!r})", "code": 50035}
        self.calls.append(
            RestCall(
                method=request.method,
                route=route.template if route else path,
                path=path,
                query=query,
                json=body,
                files=[(u.filename, len(u.data)) for u in uploads],
                at=self._clock(),
                status=status,
            )
        )
        if payload is None:
            return web.Response(status=status, headers=headers)
        return _json_response(status, payload, headers)

    @staticmethod
    def _match(method: str, path: str) -> tuple[_Route | None, dict[str, str] | None]:
        """(route, params); (None, params) = path known but method not; (None, None) = unknown."""
        path_known: dict[str, str] | None = None
        for route in ROUTES:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            if path_known is None:
                path_known = found.groupdict()
        return None, path_known

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[_Upload]]:
        """JSON body, or multipart payload_json + files[n]."""
        if request.content_type.startswith("multipart/"):
            body: Any = None
            uploads: list[_Upload] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                raw = await part.read(decode=False)
                if name == "payload_json":
                    body = json.loads(bytes(raw).decode())
                    continue
                found = re.fullmatch(r"files\[(\d+)\]", name)
                index = int(found.group(1)) if found else len(uploads)
                uploads.append(
                    _Upload(
                        index,
                        part.filename or f"file{index}",
                        bytes(raw),
                        part.headers.get("Content-Type", "application/octet-stream"),
                    )
                )
            return body, uploads
        raw_body = await request.read()
        if not raw_body:
            return None, []
        try:
            return json.loads(raw_body), []
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _take_bucket(self, kind: str, params: dict[str, str]) -> dict[str, str]:
        """Count a write against its bucket; 429 (write not applied) when exhausted.

        With enforce_rate_limits off there is no bucket and no X-RateLimit headers at all,
        so discord.py does not pace itself either.
        """
        if not self.enforce_rate_limits:
            return {}
        key_value = params[BUCKET_KEYS[kind]]
        bucket_hash = BUCKET_HASHES[kind]
        now = self._clock()
        bucket = self._buckets.setdefault(
            (kind, key_value), _Bucket(self.rate_limit, self.rate_limit_window)
        )
        if now >= bucket.reset_at:
            bucket.count, bucket.reset_at = 0, now + bucket.window
        reset_after = max((bucket.reset_at - now) / self.header_time_scale, 0.001)
        base = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash,
        }
        if bucket.count >= bucket.limit:
            self.rate_limited += 1
            self.rate_limited_by_bucket[kind] = self.rate_limited_by_bucket.get(kind, 0) + 1
            by_key = (kind, key_value)
            self.rate_limited_by_key[by_key] = self.rate_limited_by_key.get(by_key, 0) + 1
            err = ApiError(429, 0, "You are being rate limited.")
            err.body = {
                "message": "You are being rate limited.",
                "retry_after": round(reset_after, 3),
                "global": False,
            }
            err.headers = {
                **base,
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(math.ceil(reset_after)),
                "Via": "1.1 google",
            }
            raise err
        bucket.count += 1
        return {**base, "X-RateLimit-Remaining": str(max(bucket.limit - bucket.count, 0))}

    # ----------------------------------------------------------------- message validation

    def _validate_fields(self, body: JsonObj, prefix: tuple[str, ...]) -> None:
        """Content/embed limits (50035 with Discord's error layout)."""
        content = body.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            raise form_error(
                (*prefix, "content"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CONTENT} or fewer in length.",
            )
        embeds = body.get("embeds")
        if embeds is None:
            return
        if len(embeds) > MAX_EMBEDS:
            raise form_error(
                (*prefix, "embeds"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_EMBEDS} or fewer in length.",
            )
        total = 0
        for index, embed in enumerate(embeds):
            total += self._validate_embed(embed, (*prefix, "embeds", str(index)))
        if total > MAX_EMBED_TOTAL:
            raise form_error(
                (*prefix, "embeds"),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
            )

    @staticmethod
    def _validate_embed(embed: JsonObj, path: tuple[str, ...]) -> int:
        """Check one embed's field limits; return its counted length."""
        total = 0
        for keys, limit in EMBED_FIELD_LIMITS:
            value: Any = embed
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            text = str(value) if value is not None else ""
            if len(text) > limit:
                raise form_error(
                    (*path, *keys), "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
            total += len(text)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(
                (*path, "fields"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for index, item in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                text = str(item.get(key) or "")
                if len(text) > limit:
                    raise form_error(
                        (*path, "fields", str(index), key),
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
                total += len(text)
        return total

    @staticmethod
    def _check_uploads(uploads: list[_Upload], prefix: tuple[str, ...]) -> None:
        """File count and per-file size (413 / 40005 above the attachment size limit)."""
        if len(uploads) > MAX_FILES:
            raise form_error(
                (*prefix, "attachments"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_FILES} or fewer in length.",
            )
        if any(len(u.data) > ATTACHMENT_SIZE_LIMIT for u in uploads):
            raise ApiError(413, 40005, "Request entity too large")

    def _resolve_attachments(
        self, body: JsonObj, uploads: list[_Upload], existing: list[_Attachment]
    ) -> list[_Attachment] | None:
        """New attachment list, or None when the request leaves attachments alone."""
        by_index = {u.index: u for u in uploads}
        if "attachments" not in body:
            if not uploads:
                return None
            return existing + [self._new_attachment(u, None) for u in uploads]
        kept = {a.id: a for a in existing}
        result: list[_Attachment] = []
        used: set[int] = set()
        for item in body.get("attachments") or []:
            ref = int(item.get("id", -1))
            if ref in kept:
                result.append(kept[ref])
            elif ref in by_index:
                used.add(ref)
                result.append(self._new_attachment(by_index[ref], item))
        result += [self._new_attachment(u, None) for u in uploads if u.index not in used]
        return result

    def _new_attachment(self, upload: _Upload, meta: JsonObj | None) -> _Attachment:
        """Store an uploaded file as an attachment."""
        meta = meta or {}
        return _Attachment(
            id=self._snowflake(),
            filename=str(meta.get("filename") or upload.filename),
            data=upload.data,
            content_type=upload.content_type,
            description=meta.get("description"),
        )

    @staticmethod
    def _is_empty(msg: _Msg) -> bool:
        """Discord refuses messages with nothing to show."""
        return not (msg.content or msg.embeds or msg.attachments or msg.components)

    def _build_message(
        self,
        body: JsonObj,
        uploads: list[_Upload],
        channel: _Channel,
        *,
        prefix: tuple[str, ...] = (),
        allow_ephemeral: bool = False,
        allow_empty: bool = False,
    ) -> _Msg:
        """Validate a create payload and build (not store) the bot's message."""
        self._validate_fields(body, prefix)
        self._check_uploads(uploads, prefix)
        flags = int(body.get("flags") or 0)
        msg = _Msg(
            id=self._snowflake(),
            channel_id=channel.id,
            author_id=self.bot_user_id,
            content=str(body.get("content") or ""),
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            flags=flags
            & (
                EDITABLE_FLAGS
                | FLAG_SUPPRESS_NOTIFICATIONS
                | (FLAG_EPHEMERAL if allow_ephemeral else 0)
            ),
            tts=bool(body.get("tts")),
            timestamp=_now_iso(),
        )
        msg.ephemeral = bool(msg.flags & FLAG_EPHEMERAL)
        msg.attachments = self._resolve_attachments(body, uploads, []) or []
        if not allow_empty and self._is_empty(msg):
            raise ApiError(400, 50006, "Cannot send an empty message")
        return msg

    def _apply_edit(
        self, msg: _Msg, body: JsonObj, uploads: list[_Upload], prefix: tuple[str, ...] = ()
    ) -> None:
        """Validate and apply an edit; nothing changes if it is refused."""
        self._validate_fields(body, prefix)
        self._check_uploads(uploads, prefix)
        attachments = self._resolve_attachments(body, uploads, msg.attachments)
        candidate = _Msg(
            id=msg.id,
            channel_id=msg.channel_id,
            author_id=msg.author_id,
            content=str(body.get("content") or "") if "content" in body else msg.content,
            embeds=list(body.get("embeds") or []) if "embeds" in body else msg.embeds,
            components=list(body.get("components") or [])
            if "components" in body
            else msg.components,
            attachments=attachments if attachments is not None else msg.attachments,
        )
        if self._is_empty(candidate):
            raise ApiError(400, 50006, "Cannot send an empty message")
        msg.content, msg.embeds = candidate.content, candidate.embeds
        msg.components, msg.attachments = candidate.components, candidate.attachments
        if "flags" in body and body["flags"] is not None:
            msg.flags = (msg.flags & ~EDITABLE_FLAGS) | (int(body["flags"]) & EDITABLE_FLAGS)
        msg.flags &= ~FLAG_LOADING
        msg.edits += 1
        msg.edited_timestamp = _now_iso()
        self._record_write(msg)

    def _record_write(self, msg: _Msg) -> None:
        """Note when a write was applied and when the content changed (first visible, history)."""
        now = self._clock()
        msg.last_write_at = now
        if msg.history and msg.history[-1][1] == msg.content:
            return
        if msg.history or msg.content:
            msg.history.append((now, msg.content))
        if msg.content and msg.first_visible_at is None:
            msg.first_visible_at = now

    async def _store_new(self, msg: _Msg) -> None:
        """Add a message to its channel and announce it (not for ephemeral ones)."""
        self._channels[msg.channel_id].messages[msg.id] = msg
        self._record_write(msg)
        if not msg.ephemeral:
            await self._dispatch("MESSAGE_CREATE", self._gateway_message(msg))

    async def _announce_edit(self, msg: _Msg) -> None:
        """MESSAGE_UPDATE for a non-ephemeral message."""
        if not msg.ephemeral:
            await self._dispatch("MESSAGE_UPDATE", self._gateway_message(msg))

    async def _remove(self, msg: _Msg) -> None:
        """Delete a message and announce it."""
        msg.deleted = True
        if not msg.ephemeral:
            await self._dispatch("MESSAGE_DELETE", self._delete_payload(msg))

    # ----------------------------------------------------------------- REST: identity and commands

    async def _get_me(self, req: _Req) -> tuple[int, Any]:
        """GET /users/@me"""
        return 200, {
            **self._user(self.bot_user_id),
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "locale": "en-US",
            "email": None,
        }

    async def _get_user(self, req: _Req) -> tuple[int, Any]:
        """GET /users/{id}"""
        return 200, self._user(int(req.params["user_id"]))

    async def _create_dm(self, req: _Req) -> tuple[int, Any]:
        """POST /users/@me/channels {recipient_id}"""
        recipient = int((req.body or {}).get("recipient_id", 0))
        if not recipient:
            raise form_error(("recipient_id",), "BASE_TYPE_REQUIRED", "This field is required")
        return 200, self._channel_payload(self._dm_channel(recipient))

    async def _get_application(self, req: _Req) -> tuple[int, Any]:
        """GET /oauth2/applications/@me"""
        return 200, {
            "id": str(self.application_id),
            "name": "g4f-bridge-fake",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self._user(self.owner_id),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
            "bot": self._user(self.bot_user_id),
        }

    async def _get_gateway(self, req: _Req) -> tuple[int, Any]:
        """GET /gateway"""
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, req: _Req) -> tuple[int, Any]:
        """GET /gateway/bot"""
        return 200, {
            "url": self.gateway_url,
            "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    def _check_app(self, req: _Req) -> str | None:
        """Validate the application id; return the guild scope (or None for global)."""
        if req.params["application_id"] != str(self.application_id):
            raise ApiError(403, 50001, "Missing Access")
        guild = req.params.get("guild_id")
        if guild is not None and guild not in {str(g) for g in self.guild_ids}:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    def _scoped(self, guild: str | None) -> list[JsonObj]:
        """Registered commands of one scope."""
        return [c for c in self._commands if c.get("guild_id") == guild]

    def _public_command(self, cmd: JsonObj) -> JsonObj:
        """A stored command as the API returns it (without the emulator's scope key)."""
        return {k: v for k, v in cmd.items() if k != "scope"}

    def _register(self, spec: JsonObj, guild: str | None) -> JsonObj:
        """Create or replace one command (same name and type keeps its id)."""
        if not spec.get("name"):
            raise form_error(("name",), "BASE_TYPE_REQUIRED", "This field is required")
        existing = next(
            (
                c
                for c in self._scoped(guild)
                if c["name"] == spec["name"] and c.get("type", 1) == spec.get("type", 1)
            ),
            None,
        )
        cmd: JsonObj = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **spec,
            "id": existing["id"] if existing else str(self._snowflake()),
            "application_id": str(self.application_id),
            "version": str(self._snowflake()),
            "scope": "guild" if guild else "global",
        }
        if guild:
            cmd["guild_id"] = guild
        if existing:
            self._commands.remove(existing)
        self._commands.append(cmd)
        return cmd

    async def _get_commands(self, req: _Req) -> tuple[int, Any]:
        """GET .../commands"""
        guild = self._check_app(req)
        return 200, [self._public_command(c) for c in self._scoped(guild)]

    async def _put_commands(self, req: _Req) -> tuple[int, Any]:
        """PUT .../commands: replace the whole scope."""
        guild = self._check_app(req)
        specs = req.body or []
        if not isinstance(specs, list) or len(specs) > 100:
            raise form_error((), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        keep = {(s.get("name"), s.get("type", 1)) for s in specs}
        self._commands = [
            c
            for c in self._commands
            if c.get("guild_id") != guild or (c["name"], c.get("type", 1)) in keep
        ]
        return 200, [self._public_command(self._register(s, guild)) for s in specs]

    async def _post_command(self, req: _Req) -> tuple[int, Any]:
        """POST .../commands: upsert one."""
        guild = self._check_app(req)
        return 201, self._public_command(self._register(req.body or {}, guild))

    # ----------------------------------------------------------------- REST: interaction callback

    async def _callback(self, req: _Req) -> tuple[int, Any]:
        """POST /interactions/{id}/{token}/callback"""
        inter = (
            self.interactions.get(int(req.params["interaction_id"]))
            if req.params["interaction_id"].isdigit()
            else None
        )
        if inter is None or inter.token != req.params["token"] or self._token_expired(inter):
            raise ApiError(404, 10062, "Unknown interaction")
        if inter.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self._clock() - inter.created_at > self.initial_response_deadline:
            inter.missed_deadline = True
            raise ApiError(404, 10062, "Unknown interaction")
        body: JsonObj = req.body or {}
        cb_type = int(body.get("type", 0))
        if cb_type not in CALLBACKS_FOR_INTERACTION.get(inter.type, frozenset()):
            raise form_error(
                ("type",),
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Interaction response type {cb_type} is invalid for this interaction.",
            )
        data: JsonObj = body.get("data") or {}
        resource = await self._apply_callback(inter, cb_type, data, req.uploads)
        inter.response_type = cb_type
        if not _truthy(req.query.get("with_response")):
            return 204, None
        original = self._original(inter) if inter.original_message_id else None
        interaction_info = {
            "id": str(inter.id),
            "type": inter.type,
            "activity_instance_id": None,
            "response_message_id": str(original.id) if original else None,
            "response_message_loading": bool(original and original.flags & FLAG_LOADING),
            "response_message_ephemeral": bool(original and original.ephemeral),
        }
        return 200, {"interaction": interaction_info, "resource": resource}

    async def _apply_callback(
        self, inter: Interaction, cb_type: int, data: JsonObj, uploads: list[_Upload]
    ) -> JsonObj:
        """Carry out a callback; return the `resource` part of the reply."""
        channel = self._channels[inter.channel_id]
        if cb_type in (4, 5):
            if cb_type == 4:
                msg = self._build_message(
                    data, uploads, channel, prefix=("data",), allow_ephemeral=True
                )
            else:
                msg = _Msg(
                    id=self._snowflake(),
                    channel_id=channel.id,
                    author_id=self.bot_user_id,
                    flags=FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL),
                    timestamp=_now_iso(),
                )
                msg.ephemeral = bool(msg.flags & FLAG_EPHEMERAL)
            msg.interaction_id, msg.webhook_id = inter.id, self.application_id
            inter.original_message_id = msg.id
            await self._store_new(msg)
            return {"type": cb_type, "message": self._message_payload(msg)}
        if cb_type in (6, 7):
            if inter.message_id is None:
                raise form_error(
                    ("type",),
                    "INTERACTION_RESPONSE_TYPE_INVALID",
                    "This interaction has no message to update.",
                )
            target = self._channels[inter.channel_id].messages[inter.message_id]
            if target.deleted:
                raise ApiError(404, 10008, "Unknown Message")
            if cb_type == 7:
                self._apply_edit(target, data, uploads, ("data",))
                await self._announce_edit(target)
            inter.original_message_id = target.id
            return (
                {"type": cb_type, "message": self._message_payload(target)}
                if cb_type == 7
                else {"type": cb_type}
            )
        if cb_type == 8:
            inter.autocomplete_choices = self._check_choices(data.get("choices") or [])
        else:
            inter.modal = data
        return {"type": cb_type}

    @staticmethod
    def _check_choices(choices: list[JsonObj]) -> list[JsonObj]:
        """Autocomplete result limits: 25 choices, names 1..100 chars."""
        if len(choices) > MAX_CHOICES:
            raise form_error(
                ("data", "choices"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_CHOICES} or fewer in length.",
            )
        for index, choice in enumerate(choices):
            if not 1 <= len(str(choice.get("name", ""))) <= 100:
                raise form_error(
                    ("data", "choices", str(index), "name"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        return choices

    # ----------------------------------------------------------------- REST: interaction webhook

    def _token_interaction(self, req: _Req) -> Interaction:
        """Interaction for a webhook route's token (401/50027 when unknown or expired)."""
        if req.params["application_id"] != str(self.application_id):
            raise ApiError(404, 10015, "Unknown Webhook")
        token = req.params["token"]
        inter = next((i for i in self.interactions.values() if i.token == token), None)
        if inter is None or self._token_expired(inter):
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not inter.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook")
        return inter

    def _original(self, inter: Interaction) -> _Msg:
        """The interaction's @original message (10008 when missing or deleted)."""
        if inter.original_message_id is None:
            raise ApiError(404, 10008, "Unknown Message")
        msg = self._channels[inter.channel_id].messages.get(inter.original_message_id)
        if msg is None or msg.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    def _followup(self, inter: Interaction, message_id: str) -> _Msg:
        """A message owned by this interaction token (original or followup)."""
        ids = {inter.original_message_id, *inter.followup_ids}
        if not message_id.isdigit() or int(message_id) not in ids:
            raise ApiError(404, 10008, "Unknown Message")
        msg = self._channels[inter.channel_id].messages.get(int(message_id))
        if msg is None or msg.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def _get_original(self, req: _Req) -> tuple[int, Any]:
        """GET @original"""
        return 200, self._message_payload(self._original(self._token_interaction(req)))

    async def _edit_original(self, req: _Req) -> tuple[int, Any]:
        """PATCH @original"""
        msg = self._original(self._token_interaction(req))
        self._apply_edit(msg, req.body or {}, req.uploads)
        await self._announce_edit(msg)
        return 200, self._message_payload(msg)

    async def _delete_original(self, req: _Req) -> tuple[int, Any]:
        """DELETE @original"""
        await self._remove(self._original(self._token_interaction(req)))
        return 204, None

    async def _get_followup(self, req: _Req) -> tuple[int, Any]:
        """GET /webhooks/{app}/{token}/messages/{id}"""
        inter = self._token_interaction(req)
        return 200, self._message_payload(self._followup(inter, req.params["message_id"]))

    async def _edit_followup(self, req: _Req) -> tuple[int, Any]:
        """PATCH /webhooks/{app}/{token}/messages/{id}"""
        msg = self._followup(self._token_interaction(req), req.params["message_id"])
        self._apply_edit(msg, req.body or {}, req.uploads)
        await self._announce_edit(msg)
        return 200, self._message_payload(msg)

    async def _delete_followup(self, req: _Req) -> tuple[int, Any]:
        """DELETE /webhooks/{app}/{token}/messages/{id}"""
        await self._remove(self._followup(self._token_interaction(req), req.params["message_id"]))
        return 204, None

    async def _post_followup(self, req: _Req) -> tuple[int, Any]:
        """POST /webhooks/{app}/{token}: a followup; the first one after a defer fills @original.

        Once the deferred @original was deleted, followups are new messages again.
        """
        inter = self._token_interaction(req)
        body: JsonObj = req.body or {}
        if inter.response_type == 5:
            original = self._channels[inter.channel_id].messages.get(inter.original_message_id or 0)
            if original is not None and not original.deleted and original.flags & FLAG_LOADING:
                self._apply_edit(original, body, req.uploads)
                await self._announce_edit(original)
                return self._webhook_reply(req, original)
        channel = self._channels[inter.channel_id]
        msg = self._build_message(body, req.uploads, channel, allow_ephemeral=True)
        msg.interaction_id, msg.webhook_id = inter.id, self.application_id
        inter.followup_ids.append(msg.id)
        await self._store_new(msg)
        return self._webhook_reply(req, msg)

    def _webhook_reply(self, req: _Req, msg: _Msg) -> tuple[int, Any]:
        """Message body with ?wait=true, else 204."""
        if _truthy(req.query.get("wait")):
            return 200, self._message_payload(msg)
        return 204, None

    # ----------------------------------------------------------------- REST: channels

    def _channel(self, req: _Req) -> _Channel:
        """Channel by route id (10003 when unknown)."""
        raw = req.params["channel_id"]
        channel = self._channels.get(int(raw)) if raw.isdigit() else None
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self, req: _Req) -> _Msg:
        """Visible message by route ids (10008 when unknown, deleted or ephemeral)."""
        channel = self._channel(req)
        raw = req.params["message_id"]
        msg = channel.messages.get(int(raw)) if raw.isdigit() else None
        if msg is None or msg.deleted or msg.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def _get_channel(self, req: _Req) -> tuple[int, Any]:
        """GET /channels/{id}"""
        return 200, self._channel_payload(self._channel(req))

    async def _get_history(self, req: _Req) -> tuple[int, Any]:
        """GET /channels/{id}/messages (newest first; limit/before/after)."""
        channel = self._channel(req)
        limit = min(max(int(req.query.get("limit", 50)), 1), 100)
        before = int(req.query.get("before", 0)) or None
        after = int(req.query.get("after", 0)) or None
        visible = [m for m in channel.messages.values() if not m.deleted and not m.ephemeral]
        if before is not None:
            visible = [m for m in visible if m.id < before]
        if after is not None:
            visible = [m for m in visible if m.id > after][:limit]
        return 200, [self._message_payload(m) for m in reversed(visible[-limit:])]

    async def _create_message(self, req: _Req) -> tuple[int, Any]:
        """POST /channels/{id}/messages"""
        channel = self._channel(req)
        body: JsonObj = req.body or {}
        msg = self._build_message(body, req.uploads, channel)
        ref = body.get("message_reference")
        if ref:
            ref_id = int(ref.get("message_id", 0))
            target = channel.messages.get(ref_id)
            if target is not None and not target.deleted:
                msg.reference, msg.type = ref_id, 19
            elif ref.get("fail_if_not_exists", True):
                raise form_error(
                    ("message_reference",), "REPLIES_UNKNOWN_MESSAGE", "Unknown message"
                )
        await self._store_new(msg)
        return 200, self._message_payload(msg)

    async def _get_message(self, req: _Req) -> tuple[int, Any]:
        """GET /channels/{id}/messages/{mid}"""
        return 200, self._message_payload(self._channel_message(req))

    async def _edit_message(self, req: _Req) -> tuple[int, Any]:
        """PATCH /channels/{id}/messages/{mid} (only the bot's own messages)."""
        msg = self._channel_message(req)
        if msg.author_id != self.bot_user_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(msg, req.body or {}, req.uploads)
        await self._announce_edit(msg)
        return 200, self._message_payload(msg)

    async def _delete_message(self, req: _Req) -> tuple[int, Any]:
        """DELETE /channels/{id}/messages/{mid}"""
        await self._remove(self._channel_message(req))
        return 204, None

    async def _typing(self, req: _Req) -> tuple[int, Any]:
        """POST /channels/{id}/typing"""
        self._channel(req)
        return 204, None
