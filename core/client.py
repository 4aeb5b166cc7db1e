"""The G4F API client: chat, streaming chat, models, images.

One `httpx.AsyncClient` per client instance (create one `G4FClient` per process) with a keep-alive
pool. Its transport is aiohttp's (httpx-aiohttp): a stream is many small chunks, and aiohttp's C
HTTP parser reads them at under half the CPU of the pure-Python default, which is what lets one
process stream a thousand answers at once (see bench/stream_bench.py).

Every failure becomes an `UpstreamError` subclass (see core.errors). Before the first token,
retryable failures are retried with jittered, bounded backoff that respects Retry-After, then the
configured fallback models are tried in order; once text has reached the caller nothing is retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_sse import EventSource, ServerSentEvent
from pydantic import BaseModel, ValidationError

from core.api_models import (
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    ChatResult,
    GeneratedImage,
    ImagesResponse,
    ModelInfo,
    ModelList,
    StreamDelta,
    Usage,
)
from core.clock import Clock, SystemClock
from core.errors import (
    AnswerCutOff,
    AuthFailed,
    BadResponse,
    CannotConnect,
    ImageFailed,
    ModelNotOffered,
    ModelProviderFailed,
    ModelUnavailable,
    ProviderFailed,
    ProviderNotFound,
    RateLimited,
    RequestRejected,
    UpstreamError,
    UpstreamTimeout,
)
from core.images import ImageFetcher
from core.metrics import Metrics
from core.settings import Settings
from core.text import SurrogateJoiner, clean_text
from core.wire import parse_retry_after, read_capped

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_CONNECTIONS = 10_000  # concurrency is capped by BRIDGE_MAX_CONCURRENCY, not the pool
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
MAX_RETRY_AFTER = 30.0
ERROR_BODY_LIMIT = 64 * 1024
PROBE_PROMPT = "Reply with the single word OK."

IMAGE_MODEL_PATTERN = re.compile(
    r"(flux|dall-?e|sdxl|stable-?diffusion|\bsd-?\d|midjourney|imagen|gpt-image|playground-v|"
    r"kandinsky|dreamshaper|ideogram|recraft|seedream|image-gen|img-)",
    re.IGNORECASE,
)


def draws_images(model_id: str, configured: Sequence[str] = ()) -> bool:
    """Whether a model draws images: the configured image models plus name rules.

    The server's own image/vision flags are wrong (false for every model), so they are ignored.
    """
    return model_id in configured or bool(IMAGE_MODEL_PATTERN.search(model_id))


@dataclass(slots=True)
class _OpenStream:
    """A stream whose first event has arrived: from here on nothing is retried."""

    response: httpx.Response
    events: AsyncIterator[ServerSentEvent]
    first: ServerSentEvent | None
    whole: ChatCompletion | None = None  # a server that ignored stream=true
    done: bool = False  # [DONE] was received


class ChatStream:
    """An answer as it streams: iterate for `StreamDelta`s; `model` is the model answering.

    Closing it (or cancelling the task that iterates it) closes the upstream request.
    """

    def __init__(self, client: G4FClient, request: ChatRequest, models: list[str]) -> None:
        self.model = models[0]
        self.provider: str | None = request.provider
        self._client = client
        self._request = request
        self._models = models
        self._gen: AsyncGenerator[StreamDelta, None] | None = None

    def __aiter__(self) -> AsyncGenerator[StreamDelta, None]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def _run(self) -> AsyncGenerator[StreamDelta, None]:
        client = self._client
        metrics, clock = client.metrics, client._clock
        asked_at = clock.now()
        opened = await client._with_retries(self._models, self._open)
        text: list[str] = []
        finished = False
        first = True
        metrics.streams_active.inc()
        try:
            if opened.whole is not None:
                delta = client._whole_as_delta(opened.whole)
                metrics.first_token_after(clock.now() - asked_at)
                if delta.usage is not None:
                    metrics.tokens_used(delta.usage)
                yield delta
                return
            async for delta in client._read_events(opened, text):
                if first and (delta.content or delta.reasoning):
                    first = False
                    metrics.first_token_after(clock.now() - asked_at)
                if delta.usage is not None:
                    metrics.tokens_used(delta.usage)
                if delta.finish_reason:
                    finished = True
                yield delta
            if not finished and not opened.done:
                raise AnswerCutOff(
                    detail="stream ended without [DONE] or finish_reason",
                    partial_text="".join(text),
                )
        except UpstreamError as exc:
            metrics.upstream_failed(exc)
            raise
        finally:
            metrics.streams_active.dec()
            await opened.response.aclose()

    async def _open(self, model: str) -> _OpenStream:
        self.model = model
        return await self._client._open_stream(self._request.model_copy(update={"model": model}))


class G4FClient:
    """Talks to a G4F (or any OpenAI-compatible) server."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        s = settings
        pool = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=200)
        self._http = httpx.AsyncClient(
            base_url=s.g4f_base_url + "/",
            headers=s.auth_headers(),
            timeout=httpx.Timeout(
                connect=s.g4f_timeout_connect,
                read=None,  # read time is governed by first-token/idle/total below
                write=s.g4f_timeout_connect,
                pool=None,
            ),
            limits=pool,
            follow_redirects=False,
            transport=transport or AiohttpTransport(limits=pool),
        )
        self._images = ImageFetcher(settings, self._http)
        self._models_cache: tuple[float, list[ModelInfo]] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> G4FClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- Chat -------------------------------------------------------------------------------
    def _chat_request(
        self,
        messages: Sequence[ChatMessage],
        model: str | None,
        provider: str | None,
        stream: bool,
        web_search: bool | None = None,
    ) -> tuple[ChatRequest, list[str]]:
        chosen = model or self.settings.g4f_default_model
        request = ChatRequest(
            model=chosen,
            messages=list(messages),
            stream=stream,
            provider=provider or self.settings.g4f_provider,
            web_search=web_search,
        )
        models = [chosen, *(m for m in self.settings.g4f_fallback_models if m != chosen)]
        return request, models

    def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        provider: str | None = None,
        web_search: bool | None = None,
    ) -> ChatStream:
        """Stream an answer as `StreamDelta`s (see `ChatStream`); `web_search` asks g4f to
        search the web (None: the field is not sent)."""
        request, models = self._chat_request(
            messages, model, provider, stream=True, web_search=web_search
        )
        return ChatStream(self, request, models)

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        provider: str | None = None,
    ) -> ChatResult:
        """Ask for a whole answer at once."""
        request, models = self._chat_request(messages, model, provider, stream=False)
        result = await self._with_retries(
            models, lambda model_id: self._complete(request, model_id)
        )
        if result.usage is not None:
            self.metrics.tokens_used(result.usage)
        return result

    async def probe(self, *, model: str | None = None) -> ChatResult:
        """One real one-token completion, tried once (no retries, no fallback models): whether
        the API can answer right now. Raises the UpstreamError, explained (see `_explained`)."""
        prompt = [ChatMessage(role="user", content=PROBE_PROMPT)]
        request, _ = self._chat_request(prompt, model, None, stream=False)
        request = request.model_copy(update={"max_tokens": 1})
        try:
            return await self._complete(request, request.model)
        except UpstreamError as exc:
            raise await self._explained(exc) from None

    async def _complete(self, request: ChatRequest, model_id: str) -> ChatResult:
        """One non-streamed completion with `model_id`."""
        body = request.model_copy(update={"model": model_id}).body()
        async with asyncio.timeout(self.settings.g4f_timeout_total):
            try:
                response = await self._send("POST", "chat/completions", json=body)
            except TimeoutError:
                raise UpstreamTimeout("total", self.settings.g4f_timeout_total) from None
        completion = self._parse(ChatCompletion, response.content)
        delta = self._whole_as_delta(completion)
        return ChatResult(
            text=delta.content,
            reasoning=delta.reasoning,
            model=completion.model or model_id,
            provider=completion.provider,
            finish_reason=delta.finish_reason,
            usage=completion.usage,
        )

    async def _open_stream(self, request: ChatRequest) -> _OpenStream:
        s = self.settings
        url = "chat/completions"
        http_request = self._http.build_request(
            "POST",
            url,
            json=request.body(),
            headers={"Accept": "text/event-stream", "Cache-Control": "no-store"},
        )
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(min(s.g4f_timeout_first_token, s.g4f_timeout_total)):
                response = await self._send_request(http_request, stream=True)
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" not in content_type:
                    await response.aread()
                    whole = self._parse(ChatCompletion, response.content)
                    return _OpenStream(response, _no_events(), None, whole)
                events = EventSource(response).aiter_sse()
                first = await anext(events, None)
                opened = _OpenStream(response, events, first)
                if first is not None and '"error"' in first.data:
                    _event_deltas(first.data, [])  # raises for the error event
                return opened
        except TimeoutError:
            if response is not None:
                await response.aclose()
            raise UpstreamTimeout("first_token", s.g4f_timeout_first_token) from None
        except (httpx.TransportError, UpstreamError) as exc:
            if response is not None:
                await response.aclose()
            if isinstance(exc, UpstreamError):
                raise
            raise ProviderFailed(detail=f"stream broke before the first token: {exc!r}") from None

    async def _read_events(
        self, opened: _OpenStream, text: list[str]
    ) -> AsyncIterator[StreamDelta]:
        """Yield deltas from an open stream, applying the idle and total timeouts."""
        s = self.settings
        watchdog = _Watchdog(s.g4f_timeout_idle, s.g4f_timeout_total)
        joiner = _DeltaJoiner()
        event: ServerSentEvent | None = opened.first
        try:
            while event is not None:
                if event.data.strip() == "[DONE]":
                    opened.done = True
                    break
                for raw in _event_deltas(event.data, text):
                    delta = joiner.clean(raw)
                    if delta is not None:
                        text.append(delta.content)
                        yield delta
                try:
                    event = await watchdog.wait(anext(opened.events, None))
                except httpx.TransportError as exc:
                    raise AnswerCutOff(
                        detail=f"connection dropped mid-answer: {exc!r}",
                        partial_text="".join(text),
                    ) from None
                except _Expired as expired:
                    seconds = s.g4f_timeout_idle if expired.phase == "idle" else s.g4f_timeout_total
                    raise UpstreamTimeout(
                        expired.phase, seconds, partial_text="".join(text)
                    ) from None
            rest = joiner.flush()
            if rest is not None:
                text.append(rest.content)
                yield rest
        finally:
            watchdog.close()

    @staticmethod
    def _whole_as_delta(completion: ChatCompletion) -> StreamDelta:
        if not completion.choices:
            raise BadResponse(detail="reply has no choices")
        choice = completion.choices[0]
        message = choice.message or choice.delta
        content = clean_text((message.content if message else None) or "")
        reasoning = clean_text(
            ((message.reasoning or message.reasoning_content) if message else None) or ""
        )
        return StreamDelta(content, reasoning, choice.finish_reason or "stop", completion.usage)

    # --- Models -----------------------------------------------------------------------------
    async def list_models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """Models the server offers, cached for G4F_MODELS_CACHE_SECONDS."""
        now = self._clock.now()
        cache = self._models_cache
        if cache and not refresh and now - cache[0] < self.settings.g4f_models_cache_seconds:
            return cache[1]

        async def attempt(_: str) -> ModelList:
            response = await self._send("GET", "models")
            return self._parse(ModelList, response.content)

        entries = (await self._with_retries(["models"], attempt, fallback=False)).data
        configured = (self.settings.g4f_image_model, *self.settings.g4f_image_models)
        models = [
            ModelInfo(
                id=e.id,
                is_provider=bool(e.provider),
                draws_images=not e.provider and draws_images(e.id, configured),
            )
            for e in entries
        ]
        self._models_cache = (now, models)
        return models

    # --- Images -----------------------------------------------------------------------------
    async def generate_image(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        provider: str | None = None,
    ) -> GeneratedImage:
        """Draw an image and return its bytes (downloaded, size-capped, type-checked)."""
        chosen = model or self.settings.g4f_image_model
        body: dict[str, Any] = {"prompt": prompt, "model": chosen}
        if size:
            body["size"] = size
        provider = provider or self.settings.g4f_provider
        if provider and "://" not in provider:
            paths = [f"{self.settings.api_root_url}/api/{provider}/images/generations"]
        else:
            paths = ["images/generate", "images/generations"]

        async def attempt(model_id: str) -> ImagesResponse:
            for index, path in enumerate(paths):
                try:
                    response = await self._send("POST", path, json=body, model=model_id)
                except _EndpointMissing:
                    if index + 1 < len(paths):
                        continue
                    raise ImageFailed("The AI server has no image endpoint.", detail=path) from None
                return self._parse(ImagesResponse, response.content)
            raise AssertionError("unreachable")

        reply = await self._with_retries([chosen], attempt, fallback=False)
        if not reply.data:
            raise ImageFailed("The image model returned no image. Try another prompt or model.")
        item = reply.data[0]
        data, content_type = await self._images.fetch(item)
        return GeneratedImage(data, content_type, item.revised_prompt, reply.model or chosen)

    # --- Plumbing ---------------------------------------------------------------------------
    async def _with_retries(
        self,
        models: Sequence[str],
        attempt: Callable[[str], Awaitable[T]],
        *,
        fallback: bool = True,
    ) -> T:
        """Run `attempt` for each model in turn, retrying retryable failures with backoff."""
        last: UpstreamError | None = None
        for model in models:
            for n in range(self.settings.g4f_retries + 1):
                try:
                    return await attempt(model)
                except UpstreamError as exc:
                    last = exc = await self._explained(exc)
                    self.metrics.upstream_failed(exc)
                    log.info("attempt %d with %s failed: %s", n + 1, model, exc)
                    delay = self._retry_delay(exc, n)
                    if delay is None:
                        break
                    await self._clock.sleep(delay)
            assert last is not None
            if not fallback or not _worth_another_model(last):
                break
        assert last is not None
        raise last

    async def _explained(self, exc: UpstreamError) -> UpstreamError:
        """A bare `ModelUnavailable` made precise with the model list: the model is not offered
        (`ModelNotOffered`), or it is and its provider failed (`ModelProviderFailed`). Unchanged
        when the list cannot be had (some servers have none)."""
        if type(exc) is not ModelUnavailable or exc.model in ("", "?"):
            return exc
        try:
            offered = {m.id for m in await self.list_models()}
        except UpstreamError as listing:
            log.info("model list unavailable to explain a failure: %s", listing)
            return exc
        explained = ModelProviderFailed if exc.model in offered else ModelNotOffered
        return explained(exc.model, detail=exc.detail)

    def _retry_delay(self, exc: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when retrying is pointless."""
        if not exc.retryable or attempt >= self.settings.g4f_retries:
            return None
        backoff: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt) * self._rng.uniform(0.5, 1.0)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            if exc.retry_after > MAX_RETRY_AFTER:
                return None
            return max(exc.retry_after, backoff)
        return backoff

    async def _send(
        self, method: str, url: str, *, json: Any = None, model: str | None = None
    ) -> httpx.Response:
        request = self._http.build_request(method, url, json=json)
        response = await self._send_request(request, stream=False, model=model)
        return response

    async def _send_request(
        self, request: httpx.Request, *, stream: bool, model: str | None = None
    ) -> httpx.Response:
        try:
            response = await self._http.send(request, stream=stream)
        except (httpx.ConnectTimeout, httpx.ConnectError) as exc:
            if _timed_out(exc):
                raise UpstreamTimeout("connect", self.settings.g4f_timeout_connect) from None
            raise CannotConnect(self.settings.g4f_base_url, detail=repr(exc)) from None
        except httpx.TransportError as exc:
            raise ProviderFailed(detail=f"transport error: {exc!r}") from None
        if response.is_success:
            return response
        try:
            body, _ = await read_capped(response.aiter_bytes(), ERROR_BODY_LIMIT)
        finally:
            await response.aclose()
        if model is None and request.method == "POST":
            model = _model_of(request)
        raise _status_error(response.status_code, body, response.headers, model, str(request.url))

    @staticmethod
    def _parse(model_type: type[M], content: bytes) -> M:
        try:
            return model_type.model_validate_json(content)
        except ValidationError as exc:
            if exc.errors()[0]["type"] != "json_invalid":
                raise BadResponse(detail=f"{model_type.__name__}: {exc.errors()[:1]}") from None
            first = exc
        # pydantic's JSON parser refuses a lone surrogate escape ("\ud83d"), Python's takes it
        # (as a lone surrogate code point, cleaned here); anything else invalid stays invalid.
        try:
            data = _cleaned(json.loads(content))
            return model_type.model_validate(data)
        except (ValueError, ValidationError):
            raise BadResponse(detail=f"{model_type.__name__}: {first.errors()[:1]}") from None


def _event_deltas(data: str, text: list[str]) -> list[StreamDelta]:
    """The deltas of one stream event (parsed with json, not pydantic: this is the hot path).

    Raises ProviderFailed for the in-stream error event, with the text so far.
    """
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        log.warning("skipping unreadable stream event: %.200s", data)
        return []
    if not isinstance(chunk, dict):
        return []
    if chunk.get("error"):
        message = _error_message(chunk)
        raise ProviderFailed(detail=f"in-stream error: {message}", partial_text="".join(text))
    raw_usage = chunk.get("usage")
    usage = Usage.model_validate(raw_usage) if isinstance(raw_usage, dict) else None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return [StreamDelta(usage=usage)] if usage else []
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message") or {}
    content = delta.get("content") or ""
    reasoning = delta.get("reasoning") or delta.get("reasoning_content") or ""
    finish = choice.get("finish_reason")
    if not (content or reasoning or finish or usage):
        return []
    if not isinstance(content, str) or not isinstance(reasoning, str):
        return []
    return [StreamDelta(content, reasoning, finish if isinstance(finish, str) else None, usage)]


def _cleaned(data: Any) -> Any:
    """Parsed JSON with every string cleaned (see core.text.clean_text)."""
    if isinstance(data, str):
        return clean_text(data)
    if isinstance(data, list):
        return [_cleaned(item) for item in data]
    if isinstance(data, dict):
        return {clean_text(str(key)): _cleaned(value) for key, value in data.items()}
    return data


class _DeltaJoiner:
    """Cleans the text of a stream's deltas (see core.text): a surrogate pair split across two
    events is joined, a lone surrogate becomes U+FFFD."""

    __slots__ = ("_content", "_reasoning")

    def __init__(self) -> None:
        self._content = SurrogateJoiner()
        self._reasoning = SurrogateJoiner()

    def clean(self, delta: StreamDelta) -> StreamDelta | None:
        """`delta` with clean text (None when all it held is kept back for the next event)."""
        content = self._content.feed(delta.content)
        reasoning = self._reasoning.feed(delta.reasoning)
        if delta.finish_reason:  # the text ends here: nothing more can pair with a held half
            content += self._content.flush()
            reasoning += self._reasoning.flush()
        if content == delta.content and reasoning == delta.reasoning:
            return delta
        if not (content or reasoning or delta.finish_reason or delta.usage):
            return None
        return replace(delta, content=content, reasoning=reasoning)

    def flush(self) -> StreamDelta | None:
        """A last delta for a half still held when the stream ends, or None."""
        content, reasoning = self._content.flush(), self._reasoning.flush()
        return StreamDelta(content, reasoning) if content or reasoning else None


class _Expired(Exception):
    def __init__(self, phase: str) -> None:
        self.phase = phase


class _Watchdog:
    """Idle and total deadlines for a stream, without a timer per event.

    Each `wait` records activity; one timer fires at the current deadline and, when there was
    activity since it was armed, re-arms for the new deadline. It only interrupts a `wait` (time
    the consumer spends between events is not the upstream's idleness).
    """

    def __init__(self, idle: float, total: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = idle
        now = self._loop.time()
        self._end = now + total
        self._last = now
        self._waiter: asyncio.Task[Any] | None = None
        self._expired: str | None = None
        self._handle = self._loop.call_at(self._deadline(), self._check)

    def _deadline(self) -> float:
        return min(self._last + self._idle, self._end)

    def _check(self) -> None:
        now = self._loop.time()
        if now < self._deadline() or self._waiter is None:
            self._handle = self._loop.call_at(max(self._deadline(), now + 0.05), self._check)
            return
        self._expired = "idle" if self._last + self._idle <= self._end else "total"
        self._waiter.cancel()

    async def wait(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._waiter = task
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if self._expired is not None and task.uncancel() == 0:
                raise _Expired(self._expired) from None
            raise
        finally:
            self._waiter = None
        self._last = self._loop.time()
        return result

    def close(self) -> None:
        self._handle.cancel()


class _EndpointMissing(UpstreamError):
    """404/405 on an endpoint path (not a model or provider error)."""


async def _no_events() -> AsyncIterator[ServerSentEvent]:
    return
    yield  # pragma: no cover


def _timed_out(exc: httpx.TransportError) -> bool:
    """Whether a connect failure was a timeout (httpx-aiohttp reports a refused connection as
    ConnectTimeout too; the aiohttp exception it wraps tells them apart)."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, aiohttp.ServerTimeoutError)
    return isinstance(exc, httpx.ConnectTimeout)


def _worth_another_model(exc: UpstreamError) -> bool:
    return isinstance(exc, ModelUnavailable | ProviderFailed | RateLimited | UpstreamTimeout)


def _model_of(request: httpx.Request) -> str | None:
    try:
        body = json.loads(request.content or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _error_message(data: Any) -> str:
    """The server's error text from g4f `{"error": {"message"}}`, FastAPI `{"detail"}` or text."""
    return clean_text(_raw_error_message(data))


def _raw_error_message(data: Any) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in data:
            return json.dumps(data["detail"])[:300]
        if data.get("message"):
            return str(data["message"])
    return str(data)[:300]


def _status_error(
    status: int, body: bytes, headers: httpx.Headers, model: str | None, url: str
) -> UpstreamError:
    """Map an HTTP error reply to the error hierarchy."""
    try:
        message = _error_message(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = body.decode("utf-8", "replace")[:300]
    detail = f"HTTP {status} from {url}: {message}"
    if status in (401, 403):
        return AuthFailed(detail=detail, provider_auth="MissingAuthError" in message)
    if status == 404 and message.startswith("Provider not found"):
        return ProviderNotFound(message.removeprefix("Provider not found:").strip(), detail=detail)
    if status == 404 and "model" in message.lower():
        return ModelUnavailable(model or "?", detail=detail)
    if status in (404, 405):
        return _EndpointMissing(
            "The AI server does not offer this endpoint. "
            "Check G4F_BASE_URL (it usually ends in /v1).",
            detail=detail,
        )
    if status in (400, 413, 422):
        return RequestRejected(detail=detail)
    if status == 429:
        return RateLimited(parse_retry_after(headers.get("retry-after")), detail=detail)
    if status >= 500 and model and "Request execution failed" in message:
        return ModelUnavailable(model, detail=detail)
    if status >= 500:
        return ProviderFailed(
            f"The AI server (or a proxy in front of it) failed with HTTP {status}. "
            "Try again in a minute.",
            detail=detail,
        )
    return BadResponse(detail=detail)
