"""The context every use case shares: settings, the API client, the store, limits, the write
scheduler and the answers running now; access checks and what a chat uses."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal, ParamSpec, Self, TypeVar

from core.client import G4FClient
from core.clock import Clock, SystemClock, wait_for_event
from core.conversations import Origin
from core.deliveries import FirstSeen, MemoryFirstSeen
from core.errors import (
    BridgeError,
    InternalFault,
    StoreUnavailable,
)
from core.limits import (
    AccessPolicy,
    ConcurrencyGate,
    Gate,
    LimitsHealth,
    LockManager,
    MemoryLockManager,
    MemoryRateLimiter,
    RateLimiter,
)
from core.render.scheduler import WriteScheduler
from core.render.surface import (
    Button,
    MessageRef,
    MessageSurface,
    SurfaceError,
    WriteKind,
)
from core.results import (
    Refusal,
    RefusalReason,
)
from core.settings import Settings
from core.store.base import ConversationStore, StreamingAnswer, Turn, open_store

if TYPE_CHECKING:
    from core.bridge.answer import AnswerInProgress
    from core.shared.answers import AnswerRegistry
    from core.shared.fleet import Fleet

log = logging.getLogger(__name__)

T = TypeVar("T")

P = ParamSpec("P")

R = TypeVar("R")

REGENERATE_BUTTON = Button("regenerate", "🔁 Regenerate")

MAX_PROMPT_CHARS = 16_000

TRIMMED_NOTICE = "ℹ️ Older messages were left out to fit the history limit."

QUEUE_LINE = "⏳ Waiting for a free slot: you are number {position} in line."

INTERRUPTED_NOTE = "⏹ Interrupted by a restart: ask again."

RECORD_REFRESH = 30.0  # seconds: a streaming answer's record is refreshed at least this often

STALE_AFTER = 4 * RECORD_REFRESH  # seconds unrefreshed before another process may end it

JUST_STARTED = 2.0  # seconds: a record this young may belong to an answer not registered yet

CRASH_NOTE = "⏹ Interrupted: ask again."  # what a process that died left streaming

FINAL_WRITE_GRACE = 5.0  # seconds for ended answers to make their final writes at shutdown

ModelKind = Literal["chat", "image", "all"]


def apologizes(
    use_case: Callable[P, Awaitable[R | Refusal]],
) -> Callable[P, Awaitable[R | Refusal]]:
    """A use case that never raises at its adapter: whatever fails below it (the store, the
    limits backend, a bug) becomes a refusal with a short apology, shown where the result would
    have gone, and the bridge goes on serving everyone else."""

    @functools.wraps(use_case)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R | Refusal:
        try:
            return await use_case(*args, **kwargs)
        except StoreUnavailable as exc:
            log.warning("%s: the conversation store is unavailable: %s", use_case.__name__, exc)
            return Refusal(RefusalReason.UNAVAILABLE, f"⚠️ {exc.user_message}")
        except BridgeError as exc:
            log.warning("%s failed: %s", use_case.__name__, exc)
            return Refusal(RefusalReason.FAILED, f"⚠️ {exc.user_message}")
        except Exception:
            log.exception("%s failed", use_case.__name__)
            return Refusal(RefusalReason.FAILED, f"⚠️ {InternalFault.user_message}")

    return run


class BridgeBase:
    """The state and checks every use case shares (see `core.bridge.Bridge`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: G4FClient,
        store: ConversationStore,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        locks: LockManager | None = None,
        deliveries: FirstSeen | None = None,
        fleet: Fleet | None = None,
        allowed_spaces: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.clock = clock or SystemClock()
        self.limiter = limiter or MemoryRateLimiter(self.clock)
        self.locks = locks or MemoryLockManager(self.clock)
        # Which platform deliveries were handled already (by this process, or all sharing Redis).
        self.deliveries: FirstSeen = deliveries or MemoryFirstSeen()
        self.limits_health: LimitsHealth | None = None  # None: the limits are per process
        # Replicas sharing Redis share the cap, the write limits and the running answers.
        self.gate: Gate = fleet.gate if fleet else ConcurrencyGate(settings.bridge_max_concurrency)
        self.metrics = client.metrics  # one set of figures per process (core.metrics)
        self.metrics.watch_gate(self.gate)
        self.writes = WriteScheduler(self.clock, shared=fleet.writes if fleet else None)
        self.answers: AnswerRegistry | None = fleet.answers if fleet else None
        if self.answers is not None:
            self.answers.on_stop(self._stop_here)
        self.policy = AccessPolicy.from_lists(
            settings.allowed_user_ids,
            allowed_spaces,
            settings.allowed_chat_ids,
            settings.admin_user_ids,
        )
        # Answers streaming now, by each message they show and by their asker's in-flight key.
        self._running: dict[str, AnswerInProgress] = {}
        self._refused: set[tuple[str, str]] = set()
        self._closing = False
        self._sweeps: dict[str, asyncio.Task[None]] = {}  # per platform, when replicas share
        self._surface_for: dict[str, Callable[[str], MessageSurface | None]] = {}
        self._all_ended = asyncio.Event()  # set while no answer is streaming
        self._all_ended.set()
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def open(
        cls, settings: Settings, *, clock: Clock | None = None, allowed_spaces: Iterable[str] = ()
    ) -> Self:
        """Open the store, the limits backend and the API client named by the settings.
        `allowed_spaces`: the spaces answered in, from the adapters' settings (access policy)."""
        clock = clock or SystemClock()
        store = open_store(settings.bridge_store_url)
        await store.open()
        if settings.bridge_limits_url.startswith("memory://"):
            return cls(
                settings,
                client=G4FClient(settings, clock=clock),
                store=store,
                clock=clock,
                allowed_spaces=allowed_spaces,
            )
        from core.limits_redis import open_redis_limits
        from core.shared.fleet import open_fleet

        prefix = settings.bridge_limits_prefix
        shared = await open_redis_limits(settings.bridge_limits_url, clock, prefix=prefix)
        fleet = await open_fleet(
            shared.redis,
            shared.link,
            clock,
            max_concurrency=settings.bridge_max_concurrency,
            lease=settings.bridge_replica_lease,
            prefix=prefix,
        )
        bridge = cls(
            settings,
            client=G4FClient(settings, clock=clock),
            store=store,
            clock=clock,
            limiter=shared.limiter,
            locks=shared.locks,
            deliveries=shared.deliveries,
            fleet=fleet,
            allowed_spaces=allowed_spaces,
        )
        bridge.limits_health = shared.link
        bridge._on_close += [fleet.aclose, shared.aclose]
        return bridge

    @property
    def limits_degraded(self) -> bool:
        """True while the shared limits backend (Redis) is down and per-process limits and
        locks stand in; readiness should report not ready then."""
        return self.limits_health is not None and self.limits_health.degraded

    def shutdown(self, note: str = INTERRUPTED_NOTE) -> None:
        """The process is going down: refuse new requests and stop every answer (each ends in
        place with `note` and its text so far). Adapters call it before they stop."""
        self._closing = True
        for answer in set(self._running.values()):
            answer.renderer.stop(note)

    @property
    def closing(self) -> bool:
        """Shutting down: new requests are refused."""
        return self._closing

    async def drain(self, grace: float) -> None:
        """A graceful restart: refuse new requests, let the answers streaming now finish for up
        to `grace` seconds, then end the rest in place (`shutdown`) and wait for their final
        writes (a few seconds at most)."""
        self._closing = True
        if not await wait_for_event(self.clock, self._all_ended, grace):
            log.info("ending %d answers still streaming", len(set(self._running.values())))
            self.shutdown()
            await wait_for_event(self.clock, self._all_ended, FINAL_WRITE_GRACE)

    async def close(self) -> None:
        self.shutdown()
        for sweep in self._sweeps.values():
            sweep.cancel()
        await asyncio.gather(*self._sweeps.values(), return_exceptions=True)
        await self.client.aclose()
        await self.store.close()
        for close in self._on_close:
            await close()

    def is_admin(self, origin: Origin) -> bool:
        return origin.is_operator or self.policy.is_admin(
            platform=origin.platform, user_id=origin.user_id
        )

    def check_access(self, origin: Origin) -> Refusal | None:
        """None when the user may use the bot here; else a refusal (quiet after the first)."""
        allowed = origin.is_operator or self.policy.is_allowed(
            platform=origin.platform,
            user_id=origin.user_id,
            chat_id=origin.chat_id,
            space_id=origin.space_id,
            is_private=origin.is_private,
        )
        if allowed:
            return None
        key = (origin.platform, origin.user_id)
        quiet = key in self._refused
        self._refused.add(key)
        return Refusal(
            RefusalReason.NOT_ALLOWED,
            "Sorry, this bot is private and not available to you here.",
            quiet=quiet,
        )

    async def _admit(self, origin: Origin) -> Refusal | None:
        """Open for work, access, then the per-user rate limit (counts one request)."""
        if self._closing:
            return Refusal(
                RefusalReason.UNAVAILABLE, "The bot is restarting. Please try again in a minute."
            )
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        decision = await self.limiter.hit(user_key(origin), self.settings.user_rate)
        if not decision.allowed:
            wait = math.ceil(decision.retry_after)
            return Refusal(
                RefusalReason.RATE_LIMITED,
                f"You are sending requests too fast (limit {self.settings.user_rate}). "
                f"Try again in {wait} s.",
                retry_after=decision.retry_after,
            )
        return None

    async def write_within_budget(
        self,
        surface: MessageSurface,
        write: Callable[[], Awaitable[T]],
        *,
        kind: WriteKind = "send",
        attempts: int = 3,
    ) -> T | None:
        """Run one write of an adapter's own (a notice, a menu) in the room of `surface`, within
        the platform limits it shares with the answers there; None when it could not be made."""
        limits = surface.limits
        return await self.writes.write_once(
            limits.room, limits.writes.of(kind), write, attempts=attempts
        )

    def _track(self, key: str, answer: AnswerInProgress) -> None:
        self._running[key] = answer
        if self.answers is not None:
            self.answers.add(key, answer.origin.user_id)

    def _untrack(self, key: str) -> None:
        self._running.pop(key, None)
        if self.answers is not None:
            self.answers.remove(key)

    def _stop_here(self, key: str) -> None:
        """Another replica passed on a Stop for an answer streaming here."""
        answer = self._running.get(key)
        if answer is not None and not answer.renderer.ended:
            answer.renderer.stop()

    async def model_for(self, origin: Origin) -> str:
        """The model a user gets here: per-chat choice, else their choice, else the default."""
        for scope in (user_scope(origin, per_chat=True), user_scope(origin, per_chat=False)):
            chosen = await self.store.get_preference(scope, "model")
            if chosen:
                return chosen
        return self.settings.g4f_default_model

    async def system_prompt_for(self, origin: Origin) -> str:
        stored = await self.store.get_preference(chat_scope(origin), "system_prompt")
        return self.settings.bridge_system_prompt if stored is None else stored

    async def web_search_for(self, origin: Origin) -> bool:
        """Whether answers in this chat search the web (off unless turned on here)."""
        return await self.store.get_preference(chat_scope(origin), "web_search") == "on"

    async def _remember(
        self, origin: Origin, user_turn: Turn, text: str, model: str, refs: list[MessageRef]
    ) -> int | None:
        """Store the answer (partial text included) and link its messages for replies."""
        if not text:
            await self.store.set_head(origin.chat, user_turn.id, self.clock.wall())
            return None
        turn = await self.store.add_turn(
            parent_id=user_turn.id,
            role="assistant",
            content=text,
            model=model,
            created_at=self.clock.wall(),
        )
        for ref in refs:
            await self.store.link_message(origin.message(ref.id), turn.id)
        await self.store.set_head(origin.chat, turn.id, self.clock.wall())
        return turn.id


def check_prompt(prompt: str, when_empty: str) -> Refusal | None:
    if not prompt:
        return Refusal(RefusalReason.EMPTY, when_empty)
    if len(prompt) > MAX_PROMPT_CHARS:
        return Refusal(
            RefusalReason.EMPTY,
            f"That message is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS}).",
        )
    return None


def user_key(origin: Origin) -> str:
    return f"rate:{origin.platform}:{origin.user_id}"


def inflight_key(origin: Origin) -> str:
    return f"inflight:{origin.platform}:{origin.chat_id}:{origin.user_id}"


def message_key(origin: Origin, message_id: str) -> str:
    return f"message:{origin.platform}:{origin.chat_id}:{message_id}"


def record_keys(record: StreamingAnswer) -> list[str]:
    """The keys a recorded answer's process found it by (core.shared.answers registers them)."""
    origin = Origin(record.chat.platform, record.chat.chat_id, record.user_id)
    return [inflight_key(origin)] + [message_key(origin, shown) for shown, _ in record.messages]


def user_scope(origin: Origin, *, per_chat: bool) -> str:
    scope = f"user:{origin.platform}:{origin.user_id}"
    return f"{scope}@{origin.platform}:{origin.chat_id}" if per_chat else scope


def chat_scope(origin: Origin) -> str:
    return f"chat:{origin.platform}:{origin.chat_id}"


async def send_quietly(surface: MessageSurface, text: str) -> MessageRef | None:
    try:
        return await surface.send(text)
    except SurfaceError as exc:
        log.warning("could not tell the user: %r", exc)
        return None
