"""The use cases adapters call: ask, regenerate, stop, imagine, models, system, reset, status.

`Bridge` is the application context: settings, the API client, the store, limits and the write
scheduler.
Each use case checks access and limits, does its work, and returns a typed result (core.results);
failures are results too, never exceptions escaping to a handler.

The in-flight rule: one answer at a time per user per chat. A second request while one is still
streaming is refused with a message saying so (not queued): the user sees at once why nothing
happens and can press Stop. The global concurrency cap, in contrast, queues fairly (first come,
first served) and shows the queue position in the answer's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

from core.api_models import ChatMessage, ModelInfo, StreamDelta
from core.attachments import (
    Attachment,
    ImagesNotSupported,
    StoredImage,
    sort_attachments,
)
from core.client import G4FClient
from core.clock import Clock, SystemClock, wait_for_event
from core.continuation import CONTINUE_PROMPT, NOTHING_TO_CONTINUE, mark_cut
from core.conversations import History, Where, build_history, find_parent
from core.deliveries import FirstSeen, MemoryFirstSeen
from core.echo import MAX_PROMPT_ECHO, echo
from core.errors import (
    BridgeError,
    InternalFault,
    ModelNotOffered,
    ModelUnavailable,
    RequestRejected,
    StoreUnavailable,
    UpstreamError,
)
from core.limits import (
    AccessPolicy,
    ConcurrencyGate,
    Gate,
    Lease,
    LimitsHealth,
    LockManager,
    MemoryLockManager,
    MemoryRateLimiter,
    RateLimiter,
)
from core.limits_redis import RedisDown
from core.logs import follows_answer
from core.render.renderer import (
    INDICATOR,
    KEEPALIVE_INTERVAL,
    Outcome,
    RenderOptions,
    StreamRenderer,
    utf16_length,
)
from core.render.scheduler import WriteScheduler
from core.render.split import join_parts
from core.render.surface import (
    Activity,
    Button,
    MessageRef,
    MessageSurface,
    SurfaceError,
    WriteKind,
)
from core.results import (
    Answered,
    ConversationReset,
    Imagined,
    ModelChosen,
    ModelPage,
    Refusal,
    RefusalReason,
    Status,
    StopResult,
    SystemPromptSet,
    WebSearchSet,
)
from core.settings import Settings
from core.sources import SourceCollector, sources_line
from core.store.base import ConversationStore, StreamingAnswer, Turn, open_store
from core.text import clean_text
from core.usage import AnswerTally, start_of_day

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from core.shared.answers import AnswerRegistry
    from core.shared.fleet import Fleet

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


def _apologizes(
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


class Bridge:
    """Everything the adapters need, behind typed use cases."""

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
            settings.allowed_guild_ids,
            settings.allowed_chat_ids,
            settings.admin_user_ids,
        )
        # Answers streaming now, by each message they show and by their asker's in-flight key.
        self._running: dict[str, _Answer] = {}
        self._refused: set[tuple[str, str]] = set()
        self._closing = False
        self._sweeps: dict[str, asyncio.Task[None]] = {}  # per platform, when replicas share
        self._surface_for: dict[str, Callable[[str], MessageSurface | None]] = {}
        self._all_ended = asyncio.Event()  # set while no answer is streaming
        self._all_ended.set()
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None) -> Bridge:
        """Open the store, the limits backend and the API client named by the settings."""
        clock = clock or SystemClock()
        store = open_store(settings.bridge_store_url)
        await store.open()
        if settings.bridge_limits_url.startswith("memory://"):
            return cls(settings, client=G4FClient(settings, clock=clock), store=store, clock=clock)
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

    # --- access -----------------------------------------------------------------------------
    def is_admin(self, where: Where) -> bool:
        return where.is_operator or self.policy.is_admin(
            platform=where.platform, user_id=where.user_id
        )

    def check_access(self, where: Where) -> Refusal | None:
        """None when the user may use the bot here; else a refusal (quiet after the first)."""
        allowed = where.is_operator or self.policy.is_allowed(
            platform=where.platform,
            user_id=where.user_id,
            chat_id=where.chat_id,
            guild_id=where.guild_id,
            is_private=where.is_private,
        )
        if allowed:
            return None
        key = (where.platform, where.user_id)
        quiet = key in self._refused
        self._refused.add(key)
        return Refusal(
            RefusalReason.NOT_ALLOWED,
            "Sorry, this bot is private and not available to you here.",
            quiet=quiet,
        )

    async def _admit(self, where: Where) -> Refusal | None:
        """Open for work, access, then the per-user rate limit (counts one request)."""
        if self._closing:
            return Refusal(
                RefusalReason.UNAVAILABLE, "The bot is restarting. Please try again in a minute."
            )
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        decision = await self.limiter.hit(_user_key(where), self.settings.user_rate)
        if not decision.allowed:
            wait = math.ceil(decision.retry_after)
            return Refusal(
                RefusalReason.RATE_LIMITED,
                f"You are sending requests too fast (limit {self.settings.user_rate}). "
                f"Try again in {wait} s.",
                retry_after=decision.retry_after,
            )
        return None

    # --- other writes -----------------------------------------------------------------------
    async def paced(
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

    # --- answers ----------------------------------------------------------------------------
    @follows_answer
    @_apologizes
    async def ask(
        self,
        where: Where,
        prompt: str,
        surface: MessageSurface,
        *,
        reply_to: str | None = None,
        model: str | None = None,
        attachments: Sequence[Attachment] = (),
        web_search: bool | None = None,
    ) -> Answered | Refusal:
        """Answer `prompt` on `surface`, continuing the conversation the rules pick;
        `attachments` (images, text files) go with it (core.attachments); `web_search`: let
        the model search the web (None: this chat's setting, see `set_web_search`)."""
        prompt = clean_text(prompt).strip()
        refusal = _check_prompt(prompt, "Please write a question after the command.")
        # --- issue 12: attachments ---
        files = sort_attachments(attachments, max_image_bytes=self.settings.g4f_image_max_bytes)
        if attachments and not (files.images or files.texts):
            refusal = refusal or Refusal(RefusalReason.UNSUPPORTED, " ".join(files.refused))
        if refusal is None and files.texts:
            prompt = files.prompt_with_files(prompt)
        # --- end issue 12 ---
        if refusal is None:
            refusal = await self._admit(where)
        if refusal is not None:
            return refusal
        parent = await find_parent(
            self.store,
            where,
            reply_to=reply_to,
            now=self.clock.wall(),
            idle_seconds=self.settings.bridge_conversation_idle_minutes * 60,
        )
        return await self._answer(
            where, surface, parent, prompt, model, user_turn=None,
            images=files.images, notes=files.refused, web_search=web_search,
        )  # fmt: skip

    @follows_answer
    @_apologizes
    async def regenerate(
        self, where: Where, message_id: str, surface: MessageSurface
    ) -> Answered | Refusal:
        """Answer the question behind an earlier answer again, as a new branch."""
        refusal = await self._admit(where)
        if refusal is not None:
            return refusal
        turn_id = await self.store.turn_for_message(where.message(message_id))
        answer = await self.store.get_turn(turn_id) if turn_id is not None else None
        question = (
            await self.store.get_turn(answer.parent_id)
            if answer is not None and answer.parent_id is not None
            else None
        )
        if answer is None or question is None or question.role != "user":
            return Refusal(RefusalReason.NOT_FOUND, "I no longer know what that answer replied to.")
        return await self._answer(
            where, surface, question.parent_id, question.content, None, user_turn=question
        )

    # --- features (issue 12): continue a cut answer ---------------------------------------
    @follows_answer
    @_apologizes
    async def continue_answer(
        self, where: Where, surface: MessageSurface, *, message_id: str | None = None
    ) -> Answered | Refusal:
        """Ask for the rest of an answer cut at the length limit: a new answer replying to it
        (the answer showing in `message_id`, else this chat's latest answer)."""
        refusal = await self._admit(where)
        if refusal is not None:
            return refusal
        if message_id is not None:
            turn_id = await self.store.turn_for_message(where.message(message_id))
        else:
            head = await self.store.get_head(where.chat)
            turn_id = head.turn_id if head is not None else None
        answer = await self.store.get_turn(turn_id) if turn_id is not None else None
        if answer is None or answer.role != "assistant":
            return Refusal(RefusalReason.NOT_FOUND, NOTHING_TO_CONTINUE)
        return await self._answer(
            where, surface, answer.id, CONTINUE_PROMPT, answer.model, user_turn=None
        )

    # --- features (issue 12): web search ----------------------------------------------------
    async def web_search_for(self, where: Where) -> bool:
        """Whether answers in this chat search the web (off unless turned on here)."""
        return await self.store.get_preference(_chat_scope(where), "web_search") == "on"

    @_apologizes
    async def set_web_search(self, where: Where, on: bool | None = None) -> WebSearchSet | Refusal:
        """Turn web search on or off for this chat (None: the other way round)."""
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        if on is None:
            on = not await self.web_search_for(where)
        await self.store.set_preference(_chat_scope(where), "web_search", "on" if on else None)
        return WebSearchSet(on)

    async def stop(self, where: Where, message_id: str) -> StopResult:
        """Stop the answer showing in `message_id` (its asker or an admin may), wherever it
        streams: here, or on another replica sharing Redis."""
        key = _message_key(where, message_id)
        answer = self._running.get(key)
        if answer is None:
            return await self._stop_elsewhere(where, key, message_id)
        if answer.renderer.ended:  # a late press: its final write is under way
            return StopResult.FINISHED
        if answer.where.user_id != where.user_id and not self.is_admin(where):
            return StopResult.NOT_YOURS
        answer.renderer.stop()
        return StopResult.STOPPED

    async def stop_current(self, where: Where) -> bool:
        """Stop the user's own answer streaming in this chat (e.g. a /stop command), on this
        replica or another."""
        if self.stop_current_here(where):
            return True
        found = await self._stop_elsewhere(where, _inflight_key(where), None)
        return found is StopResult.STOPPED

    def stop_current_here(self, where: Where) -> bool:
        """Stop the user's own answer in this chat if it streams in this process."""
        answer = self._running.get(_inflight_key(where))
        if answer is None:
            return False
        answer.renderer.stop()
        return True

    async def _stop_elsewhere(self, where: Where, key: str, message_id: str | None) -> StopResult:
        """Send Stop to the replica streaming the answer found by `key`; or, when no live
        replica streams the answer showing in `message_id`, end it in place now."""
        if self.answers is None:
            return StopResult.FINISHED
        try:
            owner = await self.answers.owner(key)
        except RedisDown:
            return StopResult.FINISHED
        if owner is None:
            if message_id is not None and await self._end_abandoned(where, message_id):
                return StopResult.STOPPED
            return StopResult.FINISHED
        if owner.user_id != where.user_id and not self.is_admin(where):
            return StopResult.NOT_YOURS
        if owner.replica == self.answers.replica:  # ours, and it ended meanwhile
            return StopResult.FINISHED
        sent = await self.answers.stop(owner, key)
        return StopResult.STOPPED if sent else StopResult.FINISHED

    def _stop_here(self, key: str) -> None:
        """Another replica passed on a Stop for an answer streaming here."""
        answer = self._running.get(key)
        if answer is not None and not answer.renderer.ended:
            answer.renderer.stop()

    def _track(self, key: str, answer: _Answer) -> None:
        self._running[key] = answer
        if self.answers is not None:
            self.answers.add(key, answer.where.user_id)

    def _untrack(self, key: str) -> None:
        self._running.pop(key, None)
        if self.answers is not None:
            self.answers.remove(key)

    async def _answer(
        self,
        where: Where,
        surface: MessageSurface,
        parent: int | None,
        prompt: str,
        model: str | None,
        *,
        user_turn: Turn | None,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        web_search: bool | None = None,
    ) -> Answered | Refusal:
        lease = await self.locks.try_acquire(
            _inflight_key(where), ttl=self.settings.g4f_timeout_total + 60
        )
        if lease is None:
            return Refusal(
                RefusalReason.BUSY,
                "You already have an answer coming in this chat. "
                "Wait for it to finish or press Stop.",
            )
        try:
            chosen = model or await self.model_for(where)
            if user_turn is not None:  # a question asked again brings its images again
                kept = await self.store.images_of([user_turn.id])
                images = [StoredImage(*image) for image in kept.get(user_turn.id, [])]
            history = await self._history(where, parent, prompt, images)
            if user_turn is None:
                user_turn = await self.store.add_turn(
                    parent_id=parent,
                    role="user",
                    content=prompt,
                    model=None,
                    created_at=self.clock.wall(),
                )
                if images:  # stored once, with the question
                    await self.store.add_images(
                        user_turn.id, [(i.content_type, i.data) for i in images]
                    )
            answer = _Answer(self, where, user_turn, lease, chosen)
            answer.notes = list(notes)
            answer.web_search = (
                await self.web_search_for(where) if web_search is None else web_search
            )
            return await answer.stream(history, surface)
        finally:
            await self.locks.release(lease)

    async def _history(
        self, where: Where, parent: int | None, prompt: str, images: Sequence[StoredImage] = ()
    ) -> History:
        s = self.settings
        # One turn more than fits tells whether anything was left out.
        limit = s.bridge_history_max_messages + 1
        earlier = await self.store.chain(parent, limit=limit) if parent else []
        kept = await self.store.images_of([t.id for t in earlier if t.role == "user"])
        return build_history(
            await self.system_prompt_for(where),
            earlier,
            prompt,
            max_messages=s.bridge_history_max_messages,
            max_chars=s.bridge_history_max_chars,
            images={turn: [StoredImage(*i) for i in found] for turn, found in kept.items()},
            new_images=images,
        )

    async def _remember(
        self, where: Where, user_turn: Turn, text: str, model: str, refs: list[MessageRef]
    ) -> int | None:
        """Store the answer (partial text included) and link its messages for replies."""
        if not text:
            await self.store.set_head(where.chat, user_turn.id, self.clock.wall())
            return None
        turn = await self.store.add_turn(
            parent_id=user_turn.id,
            role="assistant",
            content=text,
            model=model,
            created_at=self.clock.wall(),
        )
        for ref in refs:
            await self.store.link_message(where.message(ref.id), turn.id)
        await self.store.set_head(where.chat, turn.id, self.clock.wall())
        return turn.id

    # --- after a crash ----------------------------------------------------------------------
    async def end_interrupted(
        self, platform: str, surface_for: Callable[[str], MessageSurface | None]
    ) -> int:
        """End in place the answers a process that died left streaming on `platform`: each
        keeps its text, its marker and Stop give way to "Interrupted: ask again." and
        Regenerate, and the question and the partial answer stay in the conversation, so a
        reply to it continues. `surface_for(chat_id)` is where a chat's messages are edited
        (None: they cannot be). Adapters call it once connected; returns how many it ended."""
        self._surface_for[platform] = surface_for
        if self.limits_health is not None and platform not in self._sweeps:
            # Replicas share the store: an answer another one streams is not ours to end. Only
            # answers no live replica holds are, and they are looked for now and then.
            self._sweeps[platform] = asyncio.create_task(self._sweep(platform, surface_for))
            return 0
        return await self._end_left_streaming(platform, surface_for, shared=False)

    async def _sweep(
        self, platform: str, surface_for: Callable[[str], MessageSurface | None]
    ) -> None:
        every = self.settings.bridge_replica_lease / 3 if self.answers else STALE_AFTER / 2
        while True:
            await self._end_left_streaming(platform, surface_for, shared=True)
            await self.clock.sleep(every)

    async def _abandoned(self, record: StreamingAnswer, now: float) -> bool:
        """Whether no process streams the recorded answer any more (`shared`: replicas may).
        With the running answers in Redis: none holds its keys and its record is older than
        a lease. Without them (or while Redis is down): its record is `STALE_AFTER` old."""
        keys = _record_keys(record)
        if any(key in self._running for key in keys):
            return False
        age = now - record.updated_at
        if self.answers is not None:
            try:
                alive = await self.answers.alive(keys)
            except RedisDown:
                return age >= STALE_AFTER
            return not alive and age >= self.settings.bridge_replica_lease
        return age >= STALE_AFTER

    async def _end_abandoned(self, where: Where, message_id: str) -> bool:
        """End the answer showing in `message_id` now if no live replica streams it."""
        surface_for = self._surface_for.get(where.platform)
        if surface_for is None:
            return False
        try:
            recorded = await self.store.streaming_answers(where.platform)
        except Exception:
            log.warning("could not read the answers left streaming", exc_info=True)
            return False
        for record in recorded:
            shows = any(shown_id == message_id for shown_id, _ in record.messages)
            if record.chat.chat_id == where.chat_id and shows and await self._unheld(record):
                await self._end_recorded([record], surface_for)
                return True
        return False

    async def _unheld(self, record: StreamingAnswer) -> bool:
        """Whether no live replica holds the recorded answer (False when it cannot be told)."""
        keys = _record_keys(record)
        if self.answers is None or any(key in self._running for key in keys):
            return False
        if self.clock.wall() - record.updated_at < JUST_STARTED:
            return False  # its replica may not have registered it yet
        try:
            return not await self.answers.alive(keys)
        except RedisDown:
            return False

    async def _end_left_streaming(
        self,
        platform: str,
        surface_for: Callable[[str], MessageSurface | None],
        *,
        shared: bool,
    ) -> int:
        try:
            recorded = await self.store.streaming_answers(platform)
        except Exception:
            log.warning("could not read the answers left streaming", exc_info=True)
            return 0
        now = self.clock.wall()
        answers = [a for a in recorded if not shared or await self._abandoned(a, now)]
        await self._end_recorded(answers, surface_for)
        if answers:
            log.info("ended %d answers a previous run left streaming", len(answers))
        return len(answers)

    async def _end_recorded(
        self,
        answers: list[StreamingAnswer],
        surface_for: Callable[[str], MessageSurface | None],
    ) -> None:
        for answer in answers:
            # Replicas sweeping at once: one of them ends each answer.
            lease = await self.locks.try_acquire(f"ending:{answer.key}", ttl=60.0)
            if lease is None:
                continue
            try:
                await self._end_interrupted(answer, surface_for(answer.chat.chat_id))
            except Exception:
                log.warning("could not end an interrupted answer", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await self.store.drop_streaming(answer.key)

    async def _end_interrupted(
        self, answer: StreamingAnswer, surface: MessageSurface | None
    ) -> None:
        chat = answer.chat
        where = Where(chat.platform, chat.chat_id, answer.user_id)
        shown = [(MessageRef(message_id), text) for message_id, text in answer.messages]
        texts = [text.removesuffix(INDICATOR) for _, text in shown]
        if (
            answer.answered
            and await self.store.turn_for_message(where.message(shown[-1][0].id)) is None
        ):
            question = await self.store.get_turn(answer.question_id)
            if question is not None:
                refs = [ref for ref, _ in shown]
                await self._remember(where, question, join_parts(texts), answer.model, refs)
        if surface is None:
            return
        last_ref, _ = shown[-1]
        body = texts[-1] if answer.answered else ""
        final = f"{body}\n\n{CRASH_NOTE}" if body.strip() else CRASH_NOTE
        limits = surface.limits
        length = utf16_length if limits.measure == "utf16" else len
        buttons = (REGENERATE_BUTTON,)
        if length(final) > limits.max_length:  # no room for the note: it goes below
            await self.writes.write_once(
                limits.room, limits.writes.edit, lambda: surface.edit(last_ref, body)
            )
            await self.writes.write_once(
                limits.room, limits.writes.send, lambda: surface.send(CRASH_NOTE, buttons=buttons)
            )
            return
        await self.writes.write_once(
            limits.room, limits.writes.edit, lambda: surface.edit(last_ref, final, buttons=buttons)
        )

    # --- images -----------------------------------------------------------------------------
    @follows_answer
    @_apologizes
    async def imagine(
        self,
        where: Where,
        prompt: str,
        surface: MessageSurface,
        *,
        model: str | None = None,
        size: str | None = None,
    ) -> Imagined | Refusal:
        """Draw `prompt` and upload it; on failure the error is shown in the image's place."""
        prompt = clean_text(prompt).strip()
        refusal = _check_prompt(prompt, "Please describe the picture after the command.")
        if refusal is None:
            refusal = await self._admit(where)
        if refusal is not None:
            return refusal
        chosen = model or self.settings.g4f_image_model
        activity = asyncio.create_task(self._keep_activity(surface, "drawing"))
        try:
            async with self.gate.slot():
                image = await self.client.generate_image(prompt, model=chosen, size=size)
        except UpstreamError as exc:
            activity.cancel()
            ref = await _send_quietly(surface, f"⚠️ {exc.user_message}")
            log.info("image failed: %s", exc)
            return Imagined(chosen, ref, error=exc.user_message)
        finally:
            activity.cancel()
        shown = echo(prompt, MAX_PROMPT_ECHO)
        caption = _caption(shown, echo(image.model), surface.limits.max_caption)
        try:
            ref = await surface.upload(
                image.data,
                filename=f"image.{image.extension}",
                content_type=image.content_type,
                caption=caption,
                prompt=shown,
                model=echo(image.model),
            )
        except SurfaceError as exc:
            log.warning("image upload failed: %r", exc)
            ref = await _send_quietly(surface, "⚠️ The image could not be uploaded here.")
            return Imagined(image.model, ref, error="upload failed")
        return Imagined(image.model, ref, revised_prompt=image.revised_prompt)

    async def _keep_activity(self, surface: MessageSurface, kind: Activity) -> None:
        while True:
            try:
                await surface.activity(kind)
            except SurfaceError:
                return
            await self.clock.sleep(KEEPALIVE_INTERVAL)

    # --- models -----------------------------------------------------------------------------
    async def _models(self) -> list[ModelInfo] | Refusal:
        try:
            return await self.client.list_models()
        except UpstreamError as exc:
            return Refusal(RefusalReason.UPSTREAM, exc.user_message)

    @_apologizes
    async def models(
        self,
        where: Where,
        *,
        query: str = "",
        page: int = 0,
        page_size: int = 10,
        kind: ModelKind = "chat",
    ) -> ModelPage | Refusal:
        """One page of the models (chat models by default), filtered by a substring."""
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        models = await self._models()
        if isinstance(models, Refusal):
            return models
        needle = query.strip().lower()
        chosen = [
            m
            for m in models
            if (kind == "all" or m.draws_images == (kind == "image"))
            and (kind == "all" or not m.is_provider)
            and needle in m.id.lower()
        ]
        pages = max(1, math.ceil(len(chosen) / page_size))
        page = min(max(page, 0), pages - 1)
        current = self.settings.g4f_image_model if kind == "image" else await self.model_for(where)
        return ModelPage(
            items=tuple(chosen[page * page_size : (page + 1) * page_size]),
            page=page,
            pages=pages,
            total=len(chosen),
            current=current,
            query=query,
        )

    @_apologizes
    async def set_model(
        self, where: Where, name: str, *, scope: Literal["user", "chat"] = "user"
    ) -> ModelChosen | Refusal:
        """Choose the user's model (everywhere, or only in this chat), checked against the API."""
        name = clean_text(name)
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        models = await self._models()
        if isinstance(models, Refusal):
            return models
        usable = {m.id: m for m in models if not m.draws_images and not m.is_provider}
        wanted = name.strip().lower()
        exact = usable.get(name) or next(
            (m for m in usable.values() if m.id.lower() == wanted), None
        )
        if exact is None:
            provider = next(
                (m.id for m in models if m.is_provider and m.id.lower() == wanted), None
            )
            if provider is not None:
                return Refusal(RefusalReason.IS_PROVIDER, self._provider_hint(provider))
            close = tuple(difflib.get_close_matches(name.strip(), list(usable), n=3, cutoff=0.5))
            hint = f" Did you mean {', '.join(close)}?" if close else " See /models for the list."
            return Refusal(
                RefusalReason.UNKNOWN_MODEL,
                f"The server has no chat model called {echo(name)!r}.{hint}",
                suggestions=close,
            )
        scope_key = _user_scope(where, per_chat=scope == "chat")
        await self.store.set_preference(scope_key, "model", exact.id)
        return ModelChosen(exact.id, scope)

    def _provider_hint(self, provider: str) -> str:
        """Why a provider's name is no model, and the one way to pin a provider here."""
        head = f"{provider!r} is a provider, not a model: choose a chat model from /models."
        if (self.settings.g4f_provider or "").lower() == provider.lower():
            return f"{head} Every answer already comes from {provider}."
        return (
            f"{head} A provider can only be pinned for the whole bot, by its operator "
            f"(the G4F_PROVIDER setting)."
        )

    async def model_for(self, where: Where) -> str:
        """The model a user gets here: per-chat choice, else their choice, else the default."""
        for scope in (_user_scope(where, per_chat=True), _user_scope(where, per_chat=False)):
            chosen = await self.store.get_preference(scope, "model")
            if chosen:
                return chosen
        return self.settings.g4f_default_model

    # --- persona, reset, status -------------------------------------------------------------
    async def system_prompt_for(self, where: Where) -> str:
        stored = await self.store.get_preference(_chat_scope(where), "system_prompt")
        return self.settings.bridge_system_prompt if stored is None else stored

    @_apologizes
    async def set_system_prompt(self, where: Where, text: str) -> SystemPromptSet | Refusal:
        """Set this chat's system prompt (admins only); empty text restores the default."""
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        if not self.is_admin(where):
            return Refusal(RefusalReason.NOT_ADMIN, "Only the bot's admins can change its persona.")
        text = clean_text(text).strip()
        await self.store.set_preference(_chat_scope(where), "system_prompt", text or None)
        return SystemPromptSet(text or self.settings.bridge_system_prompt)

    @_apologizes
    async def reset(self, where: Where) -> ConversationReset | Refusal:
        """Start a new conversation in this chat."""
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        had = await self.store.get_head(where.chat) is not None
        await self.store.clear_head(where.chat)
        return ConversationReset(had)

    @_apologizes
    async def status(self, where: Where) -> Status | Refusal:
        """The user's model, limits left, and this chat's conversation."""
        refusal = self.check_access(where)
        if refusal is not None:
            return refusal
        rate = self.settings.user_rate
        decision = await self.limiter.peek(_user_key(where), rate)
        head = await self.store.get_head(where.chat)
        idle = self.settings.bridge_conversation_idle_minutes * 60
        turns = 0
        conversation_tokens = 0
        if head is not None and (idle <= 0 or self.clock.wall() - head.updated_at <= idle):
            chain = await self.store.chain(head.turn_id, limit=10_000)
            turns = len(chain)
            conversation_tokens = await self.store.tokens_of_turns([t.id for t in chain])
        tokens_today = await self.store.tokens_since(
            _user_scope(where, per_chat=False), start_of_day(self.clock.wall())
        )
        busy = await self.locks.held(_inflight_key(where))
        return Status(
            model=await self.model_for(where),
            image_model=self.settings.g4f_image_model,
            requests_left=decision.remaining,
            rate=str(rate),
            conversation_turns=turns,
            system_prompt=await self.system_prompt_for(where),
            busy=busy,
            queue_waiting=self.gate.waiting,
            limits_degraded=self.limits_degraded,
            web_search=await self.web_search_for(where),
            tokens_today=tokens_today,
            conversation_tokens=conversation_tokens,
        )


class _Answer:
    """One answer on its way: what it continues, where it shows, and what it became.

    `stream` renders it; the renderer calls back `shown` for each message it sends (so Stop
    finds the answer by the message) and `ended` once the stream is over, before the final
    write: the answer is stored and the asker's in-flight lease released before the user sees
    the whole answer, so a reply to it, Regenerate, or their next question work at once.
    """

    def __init__(
        self, bridge: Bridge, where: Where, user_turn: Turn, lease: Lease, model: str
    ) -> None:
        self.bridge = bridge
        self.where = where
        self.user_turn = user_turn
        self.lease = lease
        self.model = model  # updated when a fallback model answers
        self.messages: list[MessageRef] = []
        self.turn_id: int | None = None
        self.linked = 0  # how many of the messages are linked to the stored turn
        self.keys = [_inflight_key(where)]
        self.renderer: StreamRenderer
        self._showing: list[tuple[MessageRef, str]] | None = None  # to record, latest first
        self._recorder: asyncio.Task[None] | None = None
        self._recorded = False
        self._answered = False
        self._news = asyncio.Event()
        self.options: RenderOptions
        self.buttons = True  # the surface shows buttons (else /continue stands in)
        self.notes: list[str] = []  # issue 12: lines after the answer (attachments not read)
        self.web_search = False  # issue 12: g4f searches the web; its sources follow the answer
        self.sources = SourceCollector()
        self.tally = AnswerTally(())  # issue 12: finish reason and tokens, set in `stream`

    async def stream(self, history: History, surface: MessageSurface) -> Answered:
        bridge = self.bridge
        self.tally = AnswerTally(history.messages)
        self.buttons = surface.limits.buttons
        self.options = RenderOptions(
            show_reasoning=bridge.settings.bridge_show_reasoning,
            final_buttons=(REGENERATE_BUTTON,),
            extra_lines=[*self.notes, *([TRIMMED_NOTICE] if history.trimmed else [])],
            on_message=self.shown,
            on_shown=self.showing,
            on_ended=self.ended,
        )
        self.renderer = StreamRenderer(
            self._deltas(history.messages),
            surface,
            scheduler=bridge.writes,
            clock=bridge.clock,
            options=self.options,
        )
        bridge._track(self.keys[0], self)
        bridge._all_ended.clear()
        if bridge._closing:  # shut down while this answer was being prepared
            self.renderer.stop(INTERRUPTED_NOTE)
        try:
            result = await self.renderer.run()
        finally:
            for key in self.keys:
                bridge._untrack(key)
            if not bridge._running:
                bridge._all_ended.set()
            await self._forget_streaming()
        bridge.metrics.answer_finished(self.where.platform, result)
        await self._link_late_messages()
        return Answered(
            outcome=result.outcome,
            text=result.text,
            model=self.model,
            messages=tuple(result.messages),
            turn_id=self.turn_id,
            history_trimmed=history.trimmed,
            error=result.error.user_message if result.error else None,
            finish_reason=self.tally.finish_reason,
            tokens=self.tally.tokens() if self.turn_id is not None else None,
        )

    def shown(self, ref: MessageRef) -> None:
        self.messages.append(ref)
        self.keys.append(_message_key(self.where, ref.id))
        self.bridge._track(self.keys[-1], self)

    # --- what the messages show, in case this process dies mid-answer -----------------------
    def showing(self, shown: list[tuple[MessageRef, str]], answered: bool) -> None:
        """The messages show `shown` now: record it (in the background, latest wins)."""
        self._showing = shown
        self._answered = answered
        self._news.set()
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record())

    async def _record(self) -> None:
        """Save the latest of what the messages show; refresh the record now and then while
        nothing changes, so that other processes sharing the store see the answer is alive."""
        store, clock = self.bridge.store, self.bridge.clock
        latest: list[tuple[MessageRef, str]] = []
        while True:
            latest, self._showing = self._showing or latest, None
            self._news.clear()
            try:
                await store.save_streaming(self._streaming(latest))
                self._recorded = True
            except Exception:  # a lost record only costs the recovery of this answer
                log.warning("could not record a streaming answer", exc_info=True)
            await wait_for_event(clock, self._news, RECORD_REFRESH)

    def _streaming(self, shown: list[tuple[MessageRef, str]]) -> StreamingAnswer:
        return StreamingAnswer(
            self.where.chat,
            self.where.user_id,
            self.user_turn.id,
            self.model,
            tuple((ref.id, text) for ref, text in shown),
            self.bridge.clock.wall(),
            self._answered,
        )

    async def _forget_streaming(self) -> None:
        """The final write is done (or the messages are gone): nothing left to recover."""
        self._showing = None
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
        if self._recorded:
            key = self._streaming([]).key
            try:
                await self.bridge.store.drop_streaming(key)
            except Exception:
                log.warning("could not drop a streaming record", exc_info=True)

    async def ended(self, outcome: Outcome, text: str) -> None:
        bridge = self.bridge
        self.turn_id = await bridge._remember(
            self.where, self.user_turn, text, self.model, self.messages
        )
        self.linked = len(self.messages)
        await bridge.locks.release(self.lease)
        # issue 12: a cut answer says so and offers Continue; tokens stored with the turn.
        if outcome is Outcome.DONE and self.tally.cut_by_length:
            mark_cut(self.options, buttons=self.buttons)
        if (links := sources_line(self.sources.sources)) is not None:
            self.options.extra_lines.insert(0, links)
        tokens = self.tally.tokens()
        if tokens.estimated:
            bridge.metrics.tokens_estimated(tokens.prompt, tokens.completion)
        if self.turn_id is not None:
            await bridge.store.record_tokens(
                self.turn_id,
                user_scope=_user_scope(self.where, per_chat=False),
                prompt_tokens=tokens.prompt,
                completion_tokens=tokens.completion,
                estimated=tokens.estimated,
                created_at=bridge.clock.wall(),
            )

    async def _deltas(self, messages: list[ChatMessage]) -> AsyncIterator[StreamDelta]:
        """Wait for a slot under the concurrency cap (showing the position), then stream."""
        bridge = self.bridge

        async def on_position(position: int) -> None:
            self.renderer.set_status(QUEUE_LINE.format(position=position))

        async with bridge.gate.slot(on_position=on_position):
            self.renderer.set_status(None)
            stream = bridge.client.chat_stream(
                messages, model=self.model, web_search=True if self.web_search else None
            )
            try:
                async for delta in stream:
                    self.model = stream.model
                    self.tally.observe(delta)
                    if self.web_search and delta.content:  # its source lines go after it
                        delta = replace(delta, content=self.sources.feed(delta.content))
                    yield delta
                if self.web_search and (rest := self.sources.flush()):
                    yield StreamDelta(content=rest)
            except (ModelUnavailable, RequestRejected) as exc:
                # issue 12: a model that cannot see images fails like a broken provider
                if isinstance(exc, ModelNotOffered) or not any(m.has_images for m in messages):
                    raise
                raise ImagesNotSupported(self.model, detail=str(exc)) from exc
            finally:
                await stream.aclose()

    async def _link_late_messages(self) -> None:
        """Link the parts that the final write added after the turn was stored."""
        if self.turn_id is not None:
            for ref in self.messages[self.linked :]:
                await self.bridge.store.link_message(self.where.message(ref.id), self.turn_id)


def _check_prompt(prompt: str, when_empty: str) -> Refusal | None:
    if not prompt:
        return Refusal(RefusalReason.EMPTY, when_empty)
    if len(prompt) > MAX_PROMPT_CHARS:
        return Refusal(
            RefusalReason.EMPTY,
            f"That message is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS}).",
        )
    return None


def _user_key(where: Where) -> str:
    return f"rate:{where.platform}:{where.user_id}"


def _inflight_key(where: Where) -> str:
    return f"inflight:{where.platform}:{where.chat_id}:{where.user_id}"


def _message_key(where: Where, message_id: str) -> str:
    return f"message:{where.platform}:{where.chat_id}:{message_id}"


def _record_keys(record: StreamingAnswer) -> list[str]:
    """The keys a recorded answer's process found it by (core.shared.answers registers them)."""
    where = Where(record.chat.platform, record.chat.chat_id, record.user_id)
    return [_inflight_key(where)] + [_message_key(where, shown) for shown, _ in record.messages]


def _user_scope(where: Where, *, per_chat: bool) -> str:
    scope = f"user:{where.platform}:{where.user_id}"
    return f"{scope}@{where.platform}:{where.chat_id}" if per_chat else scope


def _chat_scope(where: Where) -> str:
    return f"chat:{where.platform}:{where.chat_id}"


def _caption(prompt: str, model: str, limit: int) -> str:
    tail = f"\n— {model}"
    head = f"🎨 {prompt}"
    room = limit - len(tail)
    if len(head) > room:
        head = head[: max(0, room - 1)] + "…"
    return head + tail


async def _send_quietly(surface: MessageSurface, text: str) -> MessageRef | None:
    try:
        return await surface.send(text)
    except SurfaceError as exc:
        log.warning("could not tell the user: %r", exc)
        return None
