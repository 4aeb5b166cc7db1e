"""An emulated G4F (gpt4free) API server: a real aiohttp HTTP server on loopback.

It speaks the wire formats of a g4f 8.x server, including its quirks and failure modes, so the
bridge can be tested (in-process, same event loop) and benchmarked (``python -m
tests.fakes.g4f_server``) without the internet. Behaviour is chosen by the requested model name:
see ``BEHAVIOUR_MODELS``, ``IMAGE_BEHAVIOUR_MODELS`` and ``UNLISTED_MODELS``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import random
import re
import secrets
import signal
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROVIDER_NAME = "FakeProvider"
EXECUTION_FAILED = "Request execution failed"
DEFAULT_CHAT_MODEL = "gpt-4o"
DEFAULT_IMAGE_MODEL = "flux"

CHAT_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "deepseek-r1",
    "llama-3.3-70b",
    "claude-3.5-sonnet",
)
IMAGE_MODELS = ("flux", "flux-dev", "flux-schnell", "dall-e-3", "sdxl-turbo", "gpt-image")
BEHAVIOUR_MODELS = (
    "reasoner",
    "fail-500",
    "fail-401",
    "fail-422",
    "fail-429",
    "flaky-500",
    "flaky-429",
    "midstream-error",
    "drop",
    "cutoff",
    "slow-first",
    "trickle",
    "tools",
    "blank-model",
)
IMAGE_BEHAVIOUR_MODELS = (
    "img-relative",
    "img-data",
    "img-foreign-host",
    "img-redirect-private",
    "img-bad-port",
    "img-backslash",
    "img-big",
    "img-html",
    "img-slow",
    "img-fail",
    "img-empty",
)
ALL_MODELS = CHAT_MODELS + IMAGE_MODELS + BEHAVIOUR_MODELS + IMAGE_BEHAVIOUR_MODELS

REASONING_STEPS = ("Let me think. ", "The user greets me.")
# Default answers of the surrogate models. split-surrogate streams every astral character as two
# events, its high surrogate ("\ud83d") in one and its low surrogate ("\ude00") in the next, as
# g4f does when a provider's chunk ends inside a UTF-16 pair. lone-surrogate's answer holds lone
# halves, which JSON can carry as escapes ("\ud83d") and json.loads turns into lone code points.
SURROGATE_ANSWERS = {
    "split-surrogate": "Smile 😀 and 👍🏽 then 🇩🇪 done.",
    "lone-surrogate": "Broken \ud83d here and \ude00 there.",
}
UNLISTED_MODELS = tuple(SURROGATE_ANSWERS)  # answered, but not in /v1/models (keeps its pages)
DEFAULT_TOOL_NAME = "get_weather"
# Models that see images (content parts of type image_url); any other fails such a request with
# 500 "Request execution failed", as g4f does when no provider of the model takes images.
VISION_MODELS = ("gpt-4o", "gpt-4.1", "gpt-4o-mini", "slow-first", "trickle")


@dataclass(frozen=True)
class ProviderInfo:
    """A provider as listed by /v1/providers."""

    url: str
    label: str
    models: tuple[str, ...]
    image_models: tuple[str, ...] = ()
    vision_models: tuple[str, ...] = ()


PROVIDERS: dict[str, ProviderInfo] = {
    PROVIDER_NAME: ProviderInfo(
        "http://fake-provider.invalid",
        "Fake Provider",
        CHAT_MODELS + BEHAVIOUR_MODELS + IMAGE_MODELS + IMAGE_BEHAVIOUR_MODELS,
        IMAGE_MODELS + IMAGE_BEHAVIOUR_MODELS,
        ("gpt-4o",),
    ),
    "PollinationsAI": ProviderInfo(
        "https://pollinations.ai",
        "Pollinations AI",
        ("gpt-4o-mini", "deepseek-r1", "llama-3.3-70b", "flux", "flux-dev", "sdxl-turbo"),
        ("flux", "flux-dev", "sdxl-turbo"),
        ("gpt-4o-mini",),
    ),
    "OpenaiChat": ProviderInfo(
        "https://chatgpt.com",
        "OpenAI ChatGPT",
        ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-image"),
        ("gpt-image",),
        ("gpt-4o", "gpt-4.1"),
    ),
    "Copilot": ProviderInfo(
        "https://copilot.microsoft.com",
        "Microsoft Copilot",
        ("gpt-4o", "dall-e-3"),
        ("dall-e-3",),
        ("gpt-4o",),
    ),
}

_WORD_RE = re.compile(r"\s*\S+")
_DONE_FRAME = b"data: [DONE]\n\n"


class _Signal(Enum):
    """Non-data steps of a planned stream."""

    ABORT = "abort"


@dataclass(frozen=True)
class _ContentFrame:
    """A frame that carries answer text (`text`, non-empty) to the client."""

    data: bytes
    text: str


Frame = bytes | _ContentFrame | _Signal


@dataclass
class StreamRecord:
    """One streamed chat answer as the server sent it (times on the server's `clock`)."""

    prompt: str
    model: str
    started_at: float  # the request arrived
    text: str = ""  # the answer content written so far
    first_content_at: float | None = None  # the first frame with answer text was written
    last_content_at: float | None = None
    finished_at: float | None = None  # the stream ended (completed, failed or cut)


class _ServerClosing(Exception):
    """Raised inside handlers when `FakeG4F.stop()` interrupts a pause."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes = b""


RECORD_KEY = web.RequestKey("g4f_record", RecordedRequest)


@dataclass
class _Chat:
    """Everything needed to answer one chat request."""

    model: str
    reply_model: str
    prompt: str
    answer: str
    prompt_tokens: int
    tool_name: str
    finish_reason: str = "stop"  # "length" when the answer was cut at a token limit
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))


def build_png(width: int = 1, height: int = 1) -> bytes:
    """Return a valid, tiny, all-red RGB PNG built with zlib and struct."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def split_answer(answer: str, words_per_chunk: int = 1) -> list[str]:
    """Split `answer` into content chunks of `words_per_chunk` words, keeping whitespace.

    Each word carries the whitespace before it; trailing whitespace goes to the last chunk.
    Like the real server, the first chunk has its leading whitespace stripped.
    """
    tokens = _WORD_RE.findall(answer)
    if not tokens:
        return []
    tokens[-1] += answer[len("".join(tokens)) :]
    size = max(1, words_per_chunk)
    chunks = ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    chunks[0] = chunks[0].lstrip()
    return chunks


def utf16_units(text: str) -> str:
    """`text` with each astral character written as its two surrogate code points."""
    return "".join(
        chr(0xD800 + ((ord(c) - 0x10000) >> 10)) + chr(0xDC00 + ((ord(c) - 0x10000) & 0x3FF))
        if ord(c) > 0xFFFF
        else c
        for c in text
    )


def split_surrogate_pairs(pieces: Sequence[str]) -> list[str]:
    """`pieces` cut between the two halves of every astral character (each half its own str)."""
    out: list[str] = []
    for piece in pieces:
        units = utf16_units(piece)
        start = 0
        for index, unit in enumerate(units):
            if "\ud800" <= unit <= "\udbff":
                out.append(units[start : index + 1])
                start = index + 1
        if start < len(units):
            out.append(units[start:])
    return out


def sse(payload: JsonDict) -> bytes:
    """Encode one server-sent event exactly like g4f: ``data: <json>\\n\\n``."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def error_body(message: str, model: str | None = None, provider: str | None = None) -> JsonDict:
    """The g4f error shape; model/provider are omitted when None."""
    body: JsonDict = {"error": {"message": message}}
    if model is not None:
        body["model"] = model
    if provider is not None:
        body["provider"] = provider
    return body


def _error(
    status: int,
    message: str,
    model: str | None = None,
    provider: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(error_body(message, model, provider), status=status, headers=headers)


def _missing(loc: list[Any], value: Any) -> JsonDict:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": value}


def _unprocessable(errors: list[JsonDict]) -> web.Response:
    return web.json_response({"detail": errors}, status=422)


def _body_errors(raw: bytes, data: Any) -> list[JsonDict]:
    """FastAPI errors for a body that is absent, not JSON or not an object."""
    if not raw.strip():
        return [_missing(["body"], None)]
    if data is None and raw.strip() != b"null":
        return [
            {
                "type": "json_invalid",
                "loc": ["body", 0],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting value"},
            }
        ]
    if not isinstance(data, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": data,
            }
        ]
    return []


def _message_errors(body: JsonDict) -> list[JsonDict]:
    """FastAPI errors for the "messages" field of a chat request."""
    if "messages" not in body:
        return [_missing(["body", "messages"], body)]
    messages = body["messages"]
    if not isinstance(messages, list):
        return [
            {
                "type": "list_type",
                "loc": ["body", "messages"],
                "msg": "Input should be a valid list",
                "input": messages,
            }
        ]
    errors: list[JsonDict] = []
    for index, message in enumerate(messages):
        loc = ["body", "messages", index]
        if not isinstance(message, dict):
            errors.append(
                {
                    "type": "dict_type",
                    "loc": loc,
                    "msg": "Input should be a valid dictionary",
                    "input": message,
                }
            )
            continue
        errors.extend(
            _missing([*loc, key], message) for key in ("role", "content") if key not in message
        )
    return errors


def _prompt_errors(body: JsonDict) -> list[JsonDict]:
    """FastAPI errors for the "prompt" field of an image request."""
    if "prompt" not in body:
        return [_missing(["body", "prompt"], body)]
    if not isinstance(body["prompt"], str):
        return [
            {
                "type": "string_type",
                "loc": ["body", "prompt"],
                "msg": "Input should be a valid string",
                "input": body["prompt"],
            }
        ]
    return []


def message_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(str(text) for text in texts)
    return ""


def last_user_prompt(messages: Sequence[JsonDict]) -> str:
    """Content of the last message with role "user" ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def image_parts(messages: Sequence[JsonDict]) -> list[bytes]:
    """The bytes of every data-URI image part in the messages, in order.

    Raises ValueError for an image part that is no base64 data URI (the real server fails)."""
    found: list[bytes] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            url = str((part.get("image_url") or {}).get("url", ""))
            header, _, payload = url.partition(",")
            if not (header.startswith("data:image/") and header.endswith(";base64")):
                raise ValueError(f"not a base64 image data URI: {url[:40]!r}")
            found.append(base64.b64decode(payload, validate=True))
    return found


def _count_words(messages: Sequence[JsonDict]) -> int:
    return sum(len(message_text(m.get("content")).split()) for m in messages)


def prompt_not_answered(server: FakeG4F, prompt: str) -> bool:
    """The prompt gets the default answer (no answer set for it by a test)."""
    return prompt not in server.answers


def _tool_name(body: JsonDict) -> str:
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        function = tools[0].get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return DEFAULT_TOOL_NAME


def _model_entry(model_id: str, *, is_provider: bool = False) -> JsonDict:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "",
        "image": False,
        "vision": False,
        "provider": is_provider,
    }


def _provider_entry(name: str, info: ProviderInfo, *, details: bool = False) -> JsonDict:
    entry: JsonDict = {
        "id": name,
        "object": "provider",
        "created": 0,
        "url": info.url,
        "label": info.label,
    }
    if details:
        entry["models"] = list(info.models)
        entry["image_models"] = list(info.image_models)
        entry["vision_models"] = list(info.vision_models)
    return entry


def _model_list() -> list[JsonDict]:
    entries = [_model_entry(model_id) for model_id in ALL_MODELS]
    entries.extend(_model_entry(name, is_provider=True) for name in PROVIDERS)
    return entries


def _provider_known(provider: Any) -> bool:
    return isinstance(provider, str) and (provider in PROVIDERS or provider.startswith("http"))


class FakeG4F:
    """A real HTTP server on loopback that emulates a g4f API server.

    Knobs (plain attributes) may be changed by a test at any time before a request.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` stamps the `streams` records (pauses always run in real time)."""
        self.api_key = api_key
        self._clock = clock
        self.streams: list[StreamRecord] = []  # every streamed chat answer, in arrival order
        # Streams in flight: from a streamed request's arrival until just before the frame that
        # ends it is written (so a client cannot have seen its end yet), or until it failed or
        # was cut. `max_streams_in_flight` is the most at once since the start (or the last
        # `reset_streams_in_flight`): across every client, e.g. several bridge processes.
        self.streams_in_flight = 0
        self.max_streams_in_flight = 0
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.answers: dict[str, str] = {}
        self.calls_by_model: dict[str, int] = {}
        self.first_token_delay = 0.5
        self.trickle_interval = 0.3
        self.fail_times = 2
        self.retry_after = 1
        self.image_bytes = build_png()
        self.big_image_size = 3 * 1024 * 1024
        self.stream_delay = 0.0
        self.chunk_size_words = 1
        self.disabled_paths: set[str] = set()
        self.answer_words = 0  # > 0: default answers are long (see long_answer)
        # Listed models whose every provider fails now: HTTP 500 like g4f (the server answers).
        self.down_models: set[str] = set()
        # > 0: every answer stops after this many words with finish_reason "length", as a model
        # does at its output token limit (max_tokens in a request does the same).
        self.length_limit_words = 0
        self.send_usage = True  # False: no usage in replies (like many OpenAI-compatible servers)
        self.images_received: list[list[bytes]] = []  # per chat request with images, their bytes
        # With "web_search": true, answers end with these sources as g4f writes them:
        # quoted lines "> [0] [title](url)" after a blank line.
        self.web_sources: list[tuple[str, str]] = [
            ("Example Domain", "https://example.com/page"),
            ("Another [odd] title", "https://example.org/b?q=1"),
        ]
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._inflight: dict[int, web.Request] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``root_url + "/v1"``."""
        return self.root_url + "/v1"

    async def start(self, port: int = 0) -> None:
        """Start listening on `host`:`port` (0 picks a free port, stored in `self.port`)."""
        if self._runner is not None:
            raise RuntimeError("FakeG4F already started")
        self._closing = asyncio.Event()
        runner = web.AppRunner(
            self._build_app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop the server promptly: wake sleeping handlers and cut open streams."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        for request in list(self._inflight.values()):
            if request.transport is not None:
                request.transport.abort()
        await runner.cleanup()

    async def __aenter__(self) -> FakeG4F:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ helpers

    @property
    def open_requests(self) -> int:
        """Requests being answered now (a cancelled stream leaves this count)."""
        return len(self._inflight)

    def reset_streams_in_flight(self) -> None:
        """Start counting the most streams at once afresh (from those in flight now)."""
        self.max_streams_in_flight = self.streams_in_flight

    def chat_requests(self) -> list[RecordedRequest]:
        """Only the POST /v1/chat/completions requests, in arrival order."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions"]

    def default_answer(self, prompt: str) -> str:
        """The deterministic answer used when `answers` has no entry for the prompt.

        With `answer_words` set (the benchmark), a long prose-and-code answer of that many words.
        """
        if self.answer_words:
            return long_answer(prompt, self.answer_words)
        return f"You said: {prompt}"

    def answer_for(self, prompt: str) -> str:
        """The exact answer text the fake gives for `prompt`."""
        return self.answers.get(prompt, self.default_answer(prompt))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but raise `_ServerClosing` as soon as `stop()` is called."""
        if self._closing.is_set():
            raise _ServerClosing
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        if self._closing.is_set():
            raise _ServerClosing

    def _count_call(self, model: str) -> int:
        self.calls_by_model[model] = self.calls_by_model.get(model, 0) + 1
        return self.calls_by_model[model]

    # ---------------------------------------------------------------- app / auth

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_get("/v1/models/", self._handle_models)
        app.router.add_get("/v1/models/{model_id}", self._handle_model)
        app.router.add_get("/v1/providers", self._handle_providers)
        app.router.add_get("/v1/providers/", self._handle_providers)
        app.router.add_get("/v1/providers/{name}", self._handle_provider)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/api/{provider}/chat/completions", self._handle_chat)
        for path in (
            "/v1/images/generate",
            "/v1/images/generations",
            "/v1/media/generate",
            "/api/{provider}/images/generations",
        ):
            app.router.add_post(path, self._handle_images)
        app.router.add_get("/media/{name}", self._handle_media)
        app.router.add_get("/redirect-private", self._handle_redirect_private)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record the request, enforce auth, map errors like FastAPI, handle shutdown."""
        record = await self._record(request)
        request[RECORD_KEY] = record
        if not self._authorized(record.headers):
            return web.json_response(
                error_body("Not authenticated"), status=401, headers={"www-authenticate": "Basic"}
            )
        if request.path in self.disabled_paths:
            return web.json_response({"detail": "Not Found"}, status=404)
        self._inflight[id(request)] = request
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.json_response({"detail": "Not Found"}, status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response({"detail": "Method Not Allowed"}, status=405)
        except (_ServerClosing, ConnectionError):
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        finally:
            self._inflight.pop(id(request), None)

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read() if request.can_read_body else b""
        parsed: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=parsed,
            body=raw,
        )
        self.requests.append(record)
        return record

    def _authorized(self, headers: dict[str, str]) -> bool:
        """True when no key is configured or one of the three accepted forms carries it."""
        if self.api_key is None:
            return True
        offered = [headers.get("g4f-api-key", "")]
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered.append(value.strip())
        elif scheme.lower() == "basic":
            offered.append(_basic_password(value.strip()))
        key = self.api_key.encode()
        return any(secrets.compare_digest(o.encode(), key) for o in offered if o)

    # ------------------------------------------------------------ models / providers

    async def _handle_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": _model_list()})

    async def _handle_model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        for entry in _model_list():
            if entry["id"] == model_id:
                return web.json_response(entry)
        return _error(404, "The model does not exist.")

    async def _handle_providers(self, request: web.Request) -> web.Response:
        return web.json_response([_provider_entry(n, i) for n, i in PROVIDERS.items()])

    async def _handle_provider(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        info = PROVIDERS.get(name)
        if info is None:
            return _error(404, f"Provider not found: {name}")
        return web.json_response(_provider_entry(name, info, details=True))

    # --------------------------------------------------------------------- chat

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions: validation, routing errors, then the model behaviour."""
        record = request[RECORD_KEY]
        errors = _body_errors(record.body, record.json) or _message_errors(record.json)
        if errors:
            return _unprocessable(errors)
        body: JsonDict = record.json
        provider = request.match_info.get("provider") or body.get("provider")
        if provider and not _provider_known(provider):
            return _error(404, f"Provider not found: {provider}")
        model = str(body.get("model") or DEFAULT_CHAT_MODEL)
        if model not in ALL_MODELS and model not in PROVIDERS and model not in UNLISTED_MODELS:
            return _error(500, EXECUTION_FAILED, model, provider or None)
        if model in self.down_models:
            self._count_call(model)
            return _error(500, EXECUTION_FAILED, model, provider or PROVIDER_NAME)
        failure = self._planned_failure(model)
        if failure is not None:
            return failure
        try:
            images = image_parts(body["messages"])
        except (ValueError, binascii.Error):
            return _error(500, EXECUTION_FAILED, model, PROVIDER_NAME)
        if images:
            self.images_received.append(images)
            if model not in VISION_MODELS:
                return _error(500, EXECUTION_FAILED, model, PROVIDER_NAME)
        chat = self._make_chat(model, body)
        if images and prompt_not_answered(self, chat.prompt):
            chat.answer = f"I see {len(images)} image(s). {chat.answer}"
        if body.get("web_search") is True and self.web_sources:
            lines = [f"> [{i}] [{t}]({u})" for i, (t, u) in enumerate(self.web_sources)]
            chat.answer += "\n\n" + "\n".join(lines)
        if body.get("stream"):
            return await self._stream_chat(request, chat)
        return await self._complete_chat(chat)

    def _make_chat(self, model: str, body: JsonDict) -> _Chat:
        messages: list[JsonDict] = body["messages"]
        prompt = last_user_prompt(messages)
        answer = self.answers.get(prompt, SURROGATE_ANSWERS.get(model, self.answer_for(prompt)))
        limit = body.get("max_tokens")
        if not (isinstance(limit, int) and limit > 0):
            limit = self.length_limit_words
        finish_reason = "stop"
        if limit > 0 and len(answer.split()) > limit:  # one word stands for one token
            answer = " ".join(answer.split()[:limit])
            finish_reason = "length"
        return _Chat(
            model=model,
            reply_model="" if model == "blank-model" else model,
            prompt=prompt,
            answer=answer,
            prompt_tokens=_count_words(messages),
            tool_name=_tool_name(body),
            finish_reason=finish_reason,
        )

    def _planned_failure(self, model: str) -> web.Response | None:
        """The error reply of fail-*/flaky-* models (counted per model), else None."""
        calls = self._count_call(model)
        kind = model
        if model.startswith("flaky-"):
            if calls > self.fail_times:
                return None
            kind = "fail-" + model.removeprefix("flaky-")
        if kind == "fail-500":
            return _error(500, EXECUTION_FAILED, model, PROVIDER_NAME)
        if kind == "fail-401":
            return _error(401, "MissingAuthError: Add a .har file or api_key")
        if kind == "fail-422":
            return _unprocessable([_missing(["body", "temperature"], None)])
        if kind == "fail-429":
            return _error(
                429, "Rate limit exceeded", headers={"Retry-After": str(self.retry_after)}
            )
        return None

    def _usage(self, chat: _Chat) -> JsonDict | None:
        if not self.send_usage:
            return None
        completion = len(chat.answer.split())
        return {
            "prompt_tokens": chat.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": chat.prompt_tokens + completion,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
            "estimated_cost": None,
        }

    def _tool_call(self, chat: _Chat) -> JsonDict:
        return {
            "index": 0,
            "id": f"call_{chat.completion_id[-12:]}",
            "type": "function",
            "function": {"name": chat.tool_name, "arguments": json.dumps({"query": chat.prompt})},
            "extra_content": None,
        }

    async def _complete_chat(self, chat: _Chat) -> web.Response:
        """The non-stream reply (whole answer in one OpenAI-shaped JSON object)."""
        if chat.model in ("midstream-error", "drop"):
            return _error(500, EXECUTION_FAILED, chat.model, PROVIDER_NAME)
        if chat.model == "slow-first":
            await self._sleep(self.first_token_delay)
        message: JsonDict = {
            "role": "assistant",
            "content": chat.answer,
            "reasoning": None,
            "tool_calls": None,
            "audio": None,
        }
        finish_reason = chat.finish_reason
        if chat.model == "reasoner":
            message["reasoning"] = "".join(REASONING_STEPS)
        elif chat.model == "tools":
            message["content"] = ""
            message["tool_calls"] = [self._tool_call(chat)]
            finish_reason = "tool_calls"
        return web.json_response(
            {
                "id": chat.completion_id,
                "object": "chat.completion",
                "created": chat.created,
                "model": chat.reply_model,
                "provider": PROVIDER_NAME,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                **({"usage": usage} if (usage := self._usage(chat)) is not None else {}),
            }
        )

    def _chunk(
        self,
        chat: _Chat,
        delta: JsonDict,
        finish_reason: str | None = None,
        usage: JsonDict | None = None,
    ) -> bytes:
        payload: JsonDict = {
            "id": chat.completion_id,
            "object": "chat.completion.chunk",
            "created": chat.created,
            "model": chat.reply_model,
            "provider": PROVIDER_NAME,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", **delta},
                    "finish_reason": finish_reason,
                }
            ],
        }
        if usage is not None:
            payload["usage"] = usage
        return sse(payload)

    def _plan_stream(self, chat: _Chat) -> list[Frame]:
        """Every frame of the stream body, in order (pauses are applied when sending)."""
        if chat.model == "tools":
            return self._plan_tool_stream(chat)
        frames: list[Frame] = []
        if chat.model == "reasoner":
            frames += [
                self._chunk(chat, {"content": "", "reasoning": step})
                for step in (*REASONING_STEPS, "\n")
            ]
        pieces = split_answer(chat.answer, self.chunk_size_words)
        if chat.model == "split-surrogate":
            pieces = split_surrogate_pairs(pieces)
        content: list[Frame] = [
            _ContentFrame(self._chunk(chat, {"content": piece}), piece) for piece in pieces
        ]
        if chat.model in ("midstream-error", "drop"):
            frames += content[: max(1, len(content) // 2)]
            if chat.model == "drop":
                return [*frames, _Signal.ABORT]
            return [*frames, sse(error_body(EXECUTION_FAILED, chat.model, PROVIDER_NAME))]
        frames += content
        if chat.model == "cutoff":
            return frames
        frames.append(self._chunk(chat, {"content": ""}, chat.finish_reason, self._usage(chat)))
        return [*frames, _DONE_FRAME]

    def _plan_tool_stream(self, chat: _Chat) -> list[Frame]:
        call = self._tool_call(chat)
        arguments: str = call["function"]["arguments"]
        call["function"]["arguments"] = ""
        third = max(1, len(arguments) // 3)
        parts = [arguments[i : i + third] for i in range(0, len(arguments), third)]
        frames: list[Frame] = [self._chunk(chat, {"content": "", "tool_calls": [call]})]
        frames += [
            self._chunk(
                chat,
                {
                    "content": "",
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": part}, "extra_content": None}
                    ],
                },
            )
            for part in parts
        ]
        frames.append(self._chunk(chat, {"content": ""}, "tool_calls", self._usage(chat)))
        return [*frames, _DONE_FRAME]

    def _pause_before(self, model: str, index: int) -> float:
        """Seconds to wait before sending frame `index` (0 = before the headers)."""
        if index == 0:
            return self.first_token_delay if model == "slow-first" else 0.0
        if model == "trickle":
            return self.trickle_interval
        return self.stream_delay

    async def _stream_chat(self, request: web.Request, chat: _Chat) -> web.StreamResponse:
        """Send the planned frames as SSE; headers go out only with the first frame."""
        frames = self._plan_stream(chat)
        record = StreamRecord(chat.prompt, chat.model, self._clock())
        self.streams.append(record)
        # The stream is in flight until the first frame after its last content is written.
        last_content = max(
            (i for i, f in enumerate(frames) if isinstance(f, _ContentFrame)), default=-1
        )
        in_flight = True
        self.streams_in_flight += 1
        self.max_streams_in_flight = max(self.max_streams_in_flight, self.streams_in_flight)
        try:
            await self._sleep(self._pause_before(chat.model, 0))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index, frame in enumerate(frames):
                if index:
                    await self._sleep(self._pause_before(chat.model, index))
                if in_flight and index > last_content:
                    in_flight = False
                    self.streams_in_flight -= 1
                if frame is _Signal.ABORT:
                    await self._abort(request)
                    return response
                if isinstance(frame, _ContentFrame):
                    await response.write(frame.data)
                    self._note_content(record, frame.text)
                else:
                    await response.write(frame)
            await response.write_eof()
            return response
        finally:
            if in_flight:
                self.streams_in_flight -= 1
            record.finished_at = self._clock()

    def _note_content(self, record: StreamRecord, text: str) -> None:
        now = self._clock()
        record.text += text
        if record.first_content_at is None:
            record.first_content_at = now
        record.last_content_at = now

    async def _abort(self, request: web.Request) -> None:
        """Let written bytes leave, then cut the TCP connection (no chunked terminator)."""
        transport = request.transport
        if transport is None:
            return
        for _ in range(100):
            if transport.get_write_buffer_size() == 0:
                break
            await self._sleep(0.01)
        transport.abort()

    # ------------------------------------------------------------------- images

    async def _handle_images(self, request: web.Request) -> web.Response:
        """All image-generation routes share this handler, like the real server."""
        record = request[RECORD_KEY]
        errors = _body_errors(record.body, record.json) or _prompt_errors(record.json)
        if errors:
            return _unprocessable(errors)
        body: JsonDict = record.json
        path_provider = request.match_info.get("provider")
        if path_provider is not None and path_provider not in PROVIDERS:
            return _error(404, f"Provider not found: {path_provider}")
        model = str(body.get("model") or DEFAULT_IMAGE_MODEL)
        if body.get("provider") is not None:
            return _error(500, EXECUTION_FAILED, model, str(body["provider"]))
        if model not in ALL_MODELS:
            return _error(500, EXECUTION_FAILED, model, path_provider)
        self._count_call(model)
        if model == "img-fail":
            return _error(500, EXECUTION_FAILED, model, PROVIDER_NAME)
        items = [] if model == "img-empty" else self._image_items(model, body)
        reply: JsonDict = {
            "data": items,
            "model": model,
            "provider": PROVIDER_NAME,
            "created": int(time.time()),
        }
        return web.json_response(reply)

    def _image_items(self, model: str, body: JsonDict) -> list[JsonDict]:
        count = body.get("n")
        count = min(max(count, 1), 10) if isinstance(count, int) else 1
        revised = f"{body['prompt']} (revised)"
        if body.get("response_format") == "b64_json":
            encoded = base64.b64encode(self.image_bytes).decode()
            return [{"b64_json": encoded, "revised_prompt": revised} for _ in range(count)]
        return [{"url": self._image_url(model), "revised_prompt": revised} for _ in range(count)]

    def _image_url(self, model: str) -> str:
        name = f"{secrets.token_hex(8)}.png"
        root = self.root_url
        urls = {
            "img-relative": f"/media/{name}",
            "img-foreign-host": f"http://localhost:{self.port}/media/{name}",
            "img-redirect-private": f"{root}/redirect-private",
            "img-bad-port": f"http://127.0.0.1:99999/media/{name}",  # no port is that high
            # Looks like the API host to a lax parser; another host (127.0.0.2) to a strict one.
            "img-backslash": f"http://127.0.0.2:{self.port}\\@127.0.0.1:{self.port}/media/{name}",
            "img-big": f"{root}/media/big.png",
            "img-html": f"{root}/media/page.html",
            "img-slow": f"{root}/media/slow-{name}",
        }
        if model == "img-data":
            return "data:image/png;base64," + base64.b64encode(self.image_bytes).decode()
        return urls.get(model, f"{root}/media/{name}")

    async def _handle_media(self, request: web.Request) -> web.Response:
        """GET /media/NAME: the PNG; big.png is huge, page.html is HTML, slow-* is late."""
        name = request.match_info["name"]
        if name == "page.html":
            return web.Response(
                text="<html><body>not an image</body></html>", content_type="text/html"
            )
        if name == "big.png":
            return web.Response(body=self._big_image(), content_type="image/png")
        if name.startswith("slow-"):
            await self._sleep(self.first_token_delay)
        return web.Response(body=self.image_bytes, content_type="image/png")

    def _big_image(self) -> bytes:
        head = self.image_bytes[: self.big_image_size]
        return head + b"\x00" * (self.big_image_size - len(head))

    async def _handle_redirect_private(self, request: web.Request) -> web.Response:
        """A redirect to a loopback address that is not the API host."""
        raise web.HTTPFound(location=f"http://127.0.0.2:{self.port}/media/x.png")


def _basic_password(token: str) -> str:
    """The password of an HTTP Basic credential ("" when malformed)."""
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


# ---------------------------------------------------------------------- standalone


def long_answer(prompt: str, words: int) -> str:
    """A deterministic, realistic answer: paragraphs, a list, a code block, some emoji."""
    rng = random.Random(prompt)
    vocabulary = (
        "the model streams tokens quickly while users wait for a helpful reply about code and "
        "data with some longer explanations of configuration options 🙂 naïve café"
    ).split()
    out: list[str] = []
    for index in range(words):
        out.append(rng.choice(vocabulary))
        if index % 40 == 39:
            out.append("\n\n")
        elif index % 97 == 96:
            out.append("\n\n```python\nprint('hello')\nfor i in range(3):\n    print(i)\n```\n\n")
        elif index % 15 == 14:
            out.append("\n- ")
        else:
            out.append(" ")
    return "".join(out).strip()


def long_code_answer(chars: int = 12_000) -> str:
    """A deterministic answer of about `chars` characters: prose around two fenced code blocks
    (Python and JavaScript), like a long model answer that must be split into several messages."""
    rng = random.Random(chars)
    vocabulary = (
        "configure the service so that every worker reads its settings once and then streams "
        "results back to the caller without blocking other requests in the queue"
    ).split()

    def paragraph(index: int) -> str:
        return f"Step {index}: " + " ".join(rng.choice(vocabulary) for _ in range(60)) + "."

    def python_block(lines: int) -> str:
        body = "\n".join(
            f"    value_{i} = compute({i}, scale={i % 7})  # step {i}" for i in range(lines)
        )
        return f"```python\ndef pipeline():\n{body}\n    return value_0\n```"

    def javascript_block(lines: int) -> str:
        body = "\n".join(
            f"const item{i} = build({i}, {{ retries: {i % 5} }});" for i in range(lines)
        )
        return f"```js\n{body}\n```"

    share = max(chars // 3, 600)  # about a third prose, a third of each code block
    prose_count = max(2, share // 370)
    head = "\n\n".join(paragraph(i) for i in range(prose_count // 2))
    middle = paragraph(prose_count // 2)
    tail = "\n\n".join(paragraph(i) for i in range(prose_count // 2 + 1, prose_count + 1))
    python = python_block(max(3, share // 52))
    javascript = javascript_block(max(3, share // 40))
    return f"{head}\n\n{python}\n\n{middle}\n\n{javascript}\n\n{tail}\n\nThat is all."


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the emulated G4F API server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--stream-delay", type=float, default=0.0)
    parser.add_argument("--answer-words", type=int, default=0)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeG4F(api_key=args.api_key, host=args.host)
    server.stream_delay = args.stream_delay
    server.answer_words = args.answer_words
    await server.start(args.port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print(f"READY {server.base_url}", flush=True)
    try:
        await stopped.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m tests.fakes.g4f_server``."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
