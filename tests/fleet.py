"""Two `g4f-bridge run` replicas sharing Redis and PostgreSQL, driven end to end (issue 14).

Telegram: two processes in webhook mode behind a round-robin forwarder (tests/fakes/balancer.py),
the emulated Telegram posting updates to it. Discord: two processes, shards 0 and 1 of 2, the
emulated Discord routing each guild to its shard. Both against the emulated G4F server, on the
real clock (the platforms' limits are enforced in real time, so the bridges' own pacing is what
is checked), each scenario in three acts:

1. load: many questions from many users in several chats at once; each must be answered exactly
   once, with no 429 from the platform, and the fleet-wide BRIDGE_MAX_CONCURRENCY held (the most
   streams in flight at the G4F server, across both processes, is the cap: reached, never more);
2. Stop: on Telegram pressed on a replica that does not stream the answer (the balancer may send
   the press anywhere); on Discord a guild's presses always reach the shard owning the guild, so
   the press is checked there;
3. SIGKILL of a replica mid-answer: the survivor ends the half-written message in place ("⏹
   Interrupted: ask again.", text kept, Regenerate) within about a lease (BRIDGE_REPLICA_LEASE)
   and a sweep; on Telegram a Stop pressed meanwhile on one of the dead replica's answers (it
   lands on the survivor) ends that one at once, before the sweep would.

`run_telegram` / `run_discord` observe and return `Figures`; they assert nothing (a wait that runs
out is noted), so tests/test_replicas.py asserts `Figures.problems() == []` and
bench/replicas_bench.py prints the same figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import ClientError, ClientSession, ClientTimeout
from prometheus_client.parser import text_string_to_metric_families

from bots.discord.surface import ANSWER_IDS
from bots.telegram.surface import ANSWER_DATA
from core.bridge.base import CRASH_NOTE
from core.render.renderer import INDICATOR, STOPPED_NOTE
from tests.fakes.balancer import RoundRobin
from tests.fakes.discord_server import FakeDiscord, shard_of
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.telegram_server import FakeMessage, FakeTelegram
from tests.processes import endpoint_in_log, kill, run_env, start_run, tail, terminate

REGENERATE_ID, STOP_ID = ANSWER_IDS.id_of("regenerate"), ANSWER_IDS.id_of("stop")
CALLBACK_REGENERATE, CALLBACK_STOP = ANSWER_DATA.id_of("regenerate"), ANSWER_DATA.id_of("stop")
MARKER = INDICATOR.strip()  # "▌": the message is still being written
WEBHOOK_PATH = "/telegram/webhook"
START_WITHIN = 40.0  # seconds for a process to serve and connect (two start at once, 2 cores)
STREAMING_WITHIN = 20.0  # seconds for a long answer to show its first words
STOPPED_WITHIN = 10.0  # seconds for a pressed Stop to end the answer
SHOWN_WORDS = 6  # a long answer is "mid-answer" once it shows this many words


@dataclass(frozen=True)
class Plan:
    """The scenario's sizes and knobs."""

    questions: int = 50
    users: int = 20
    chats: int = 5  # Telegram: supergroups; Discord: channels, half in each shard's guild
    cap: int = 3  # BRIDGE_MAX_CONCURRENCY, for the whole fleet
    lease: float = 3.0  # BRIDGE_REPLICA_LEASE
    words: int = 8  # words per answer of the load
    interval: float = 0.03  # seconds between streamed words (the load's answers: a quarter s)
    long_words: int = 2000  # the answers stopped and killed (a minute long)
    load_within: float = 90.0  # seconds for the load's answers to complete

    def __post_init__(self) -> None:
        # Each user asks once per round, each round in the next chat: one answer per user and
        # chat at a time (a second would be refused as busy), so rounds must not wrap around.
        if -(-self.questions // self.users) > self.chats:
            raise ValueError(f"{self.questions} questions need more than {self.chats} chats")

    @property
    def kill_within(self) -> float:
        """The bound on the survivor ending a dead replica's answers: a lease, a sweep interval
        (lease / 3) and as much again for a loaded machine, plus a few seconds of writes."""
        return 2 * (self.lease + self.lease / 3) + 5.0


@dataclass
class Ended:
    """One message that had to end after a Stop or a kill, as observed."""

    label: str
    shown_before: str = ""  # its text when Stop was pressed or its process killed (no marker)
    text: str | None = None  # its text once it ended; None: it did not within the wait
    buttons: list[str] = field(default_factory=list)
    seconds: float | None = None  # from the press or the kill to the end
    notes: tuple[str, ...] = (STOPPED_NOTE,)  # how it may end
    upstream_cut: bool | None = None  # Stop: the G4F stream ended before its last word

    def problems(self, regen: str) -> list[str]:
        if self.text is None:
            return [f"{self.label}: not ended within the wait; it shows {self.shown_before!r}"]
        found = []
        if MARKER in self.text:
            found.append(f"{self.label}: still shows the streaming marker: {self.text[-80:]!r}")
        if not any(self.text.endswith(note) for note in self.notes):
            found.append(f"{self.label}: ends {self.text[-60:]!r}, not with one of {self.notes}")
        body = self.text
        for note in self.notes:
            body = body.removesuffix(note)
        body, before = body.strip(), self.shown_before.strip()
        # Kept: what it shows now and what it showed then are one the start of the other (a
        # stopped answer may show a few words more, one ended by another replica those its last
        # record held), and it keeps the words it showed when it was seen mid-answer.
        if len(body.split()) < SHOWN_WORDS or not (
            body.startswith(before) or before.startswith(body)
        ):
            found.append(
                f"{self.label}: text not kept: it showed {before[:60]!r}..., now {body[:60]!r}"
            )
        if self.buttons != [regen]:
            found.append(f"{self.label}: buttons {self.buttons}, expected only {regen!r}")
        if self.upstream_cut is False:
            found.append(f"{self.label}: the G4F stream was not cut (all its words were sent)")
        return found


@dataclass
class Figures:
    """What one scenario measured."""

    platform: str
    plan: Plan
    answered: int = 0  # questions whose answer shows in full, in one message
    duplicates: int = 0  # answer messages beyond one per question
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    extra_messages: list[str] = field(default_factory=list)  # bot messages answering no question
    rate_limited: int = 0
    rate_limited_where: dict[str, int] = field(default_factory=dict)
    complete_seconds: float | None = None  # first question to the last answer's final text
    max_in_flight: int = 0
    upstream_requests: int = 0  # chat requests the G4F server got for the load's questions
    handled: list[int] = field(default_factory=list)  # load answers counted by each process
    handled_expected: list[int] | None = None  # Discord: each shard answers its own guilds
    delivered: list[int] = field(default_factory=list)  # Telegram: updates each replica got
    stop: Ended | None = None
    killed: list[Ended] = field(default_factory=list)
    stop_before_sweep: bool | None = None  # Telegram: the pressed dead answer ended at once
    streaming_left: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be observed, and logs

    @property
    def regen(self) -> str:
        return CALLBACK_REGENERATE if self.platform == "telegram" else REGENERATE_ID

    def problems(self) -> list[str]:
        """Every expectation of issue 14 that the figures do not meet."""
        plan, found = self.plan, []
        if self.answered != plan.questions:
            found.append(f"{self.answered} of {plan.questions} questions answered in full, once")
        if self.duplicates:
            found.append(f"{self.duplicates} duplicate answer messages")
        found += [f"missing: {m}" for m in self.missing[:10]]
        found += [f"wrong: {w}" for w in self.wrong[:10]]
        found += [f"extra bot message: {e}" for e in self.extra_messages[:10]]
        if self.rate_limited:
            found.append(f"{self.rate_limited} x 429 from the platform: {self.rate_limited_where}")
        if self.max_in_flight != plan.cap:
            found.append(
                f"most streams in flight at the G4F server: {self.max_in_flight}, expected the"
                f" fleet-wide cap {plan.cap} (reached, never more)"
            )
        if self.upstream_requests != plan.questions:
            found.append(f"{self.upstream_requests} upstream requests for {plan.questions}")
        if len(self.handled) != 2 or min(self.handled) == 0:
            found.append(f"answers per process {self.handled}: both must answer some")
        elif sum(self.handled) != plan.questions:
            found.append(f"answers per process {self.handled} do not add up to {plan.questions}")
        if self.handled_expected is not None and self.handled != self.handled_expected:
            found.append(f"answers per shard {self.handled}, expected {self.handled_expected}")
        if self.stop is None:
            found.append("Stop was not checked")
        else:
            found += self.stop.problems(self.regen)
        if not self.killed:
            found.append("the SIGKILL was not checked")
        for ended in self.killed:
            found += ended.problems(self.regen)
        if self.stop_before_sweep is False:
            found.append(
                "Stop pressed on a dead replica's answer did not end it at once: not before"
                f" 2/3 of a lease ({plan.lease * 2 / 3:g} s) from the kill, when no lease of the"
                " dead replica can have run out yet, with the other one still streaming"
            )
        found += [f"still streaming at the end: {s}" for s in self.streaming_left]
        return found

    def lines(self) -> list[str]:
        """The figures, for a test's output and the benchmark."""
        plan = self.plan

        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f} s"

        out = [
            f"{self.platform}: {plan.questions} questions from {plan.users} users in"
            f" {plan.chats} chats, 2 processes, cap {plan.cap}, lease {plan.lease:g} s",
            f"  answered once: {self.answered}/{plan.questions}, duplicates: {self.duplicates},"
            f" missing: {len(self.missing)}, wrong: {len(self.wrong)},"
            f" extra messages: {len(self.extra_messages)}",
            f"  429s: {self.rate_limited} {self.rate_limited_where or ''}".rstrip(),
            f"  all complete: {secs(self.complete_seconds)}",
            f"  max streams in flight at G4F: {self.max_in_flight} (cap {plan.cap}),"
            f" upstream requests: {self.upstream_requests}",
            f"  answers per process: {self.handled}"
            + (f" (updates delivered: {self.delivered})" if self.delivered else ""),
        ]
        if self.stop is not None:
            out.append(
                f"  Stop ({self.stop.label}): ended after {secs(self.stop.seconds)},"
                f" upstream cut: {self.stop.upstream_cut}"
            )
        for ended in self.killed:
            out.append(f"  after SIGKILL, {ended.label}: ended after {secs(ended.seconds)}")
        if self.stop_before_sweep is not None:
            out.append(f"  pressed dead answer ended at once: {self.stop_before_sweep}")
        out.append(f"  left streaming: {len(self.streaming_left)}")
        out += [f"  note: {note}" for note in self.notes]
        return out


# --- shared pieces ---------------------------------------------------------------------------


@dataclass
class Replica:
    """One `g4f-bridge run` process and its HTTP endpoint."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path
    url: str = ""

    @property
    def webhook(self) -> str:
        return self.url + WEBHOOK_PATH


async def _wait(predicate: Callable[[], bool], within: float) -> bool:
    """Poll `predicate` every 10 ms for up to `within` seconds; whether it came true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _answer(index: int, words: int) -> str:
    return f"answer {index}: " + " ".join(f"a{index}w{k}" for k in range(words))


def _long(label: str, words: int) -> str:
    return " ".join(f"{label}{k}" for k in range(words))


async def _ready(session: ClientSession, replica: Replica) -> bool:
    try:
        async with session.get(replica.url + "/readyz") as response:
            return response.status == 200
    except (ClientError, OSError, TimeoutError):
        return False


async def _answers_counted(session: ClientSession, replica: Replica, platform: str) -> int:
    """Answers the process ended on `platform` (its g4f_bridge_answers_total), or -1."""
    try:
        async with session.get(replica.url + "/metrics") as response:
            text = await response.text()
    except (ClientError, OSError, TimeoutError):
        return -1
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "g4f_bridge_answers_total" and sample.labels["platform"] == platform
        )
    )


async def _streaming_rows(store_url: str) -> int:
    """Answers the shared store records as streaming with a few words in them (-1: unknown)."""
    try:
        conn = await asyncpg.connect(store_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return -1
    try:
        rows = await conn.fetch("SELECT messages FROM streaming")
    except asyncpg.PostgresError:
        return -1
    finally:
        await conn.close()
    return sum(1 for (messages,) in rows if str(messages).count(" ") >= SHOWN_WORDS)


async def _recorded(store_url: str, count: int, within: float) -> bool:
    """Wait until the store records `count` streaming answers (the survivor finds them there)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await _streaming_rows(store_url) >= count:
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def _processes(
    envs: list[dict[str, str]], workdir: Path, figures: Figures
) -> AsyncIterator[list[Replica]]:
    """Start one process per environment (at once), each with its log; killed at the end."""
    replicas = []
    for index, env in enumerate(envs):
        log = workdir / f"replica-{index}.log"
        replicas.append(Replica(f"replica {index}", await start_run(env, workdir, log=log), log))
    try:
        for replica in replicas:
            replica.url = await endpoint_in_log(replica.proc, replica.log, START_WITHIN)
        yield replicas
    finally:
        for replica in replicas:
            if replica.proc.returncode is None:
                code = await terminate(replica.proc, grace=15)
                if code != 0:
                    figures.notes.append(f"{replica.name} exited {code} on SIGTERM")
            if "Traceback" in tail(replica.log, 400):
                figures.notes.append(f"{replica.name} logged a traceback:\n{tail(replica.log)}")


# --- Telegram --------------------------------------------------------------------------------


def _tg_buttons(message: FakeMessage) -> list[str]:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return [str(b.get("callback_data")) for row in rows for b in row]


def _tg_final(message: FakeMessage) -> bool:
    return CALLBACK_REGENERATE in _tg_buttons(message) and MARKER not in (message.text or "")


def _tg_streaming(message: FakeMessage | None) -> bool:
    text = (message.text or "") if message else ""
    return message is not None and text.endswith(MARKER) and text.count(" ") >= SHOWN_WORDS


@dataclass(frozen=True)
class _Asked:
    index: int
    chat: int
    user: int
    message_id: int
    expected: str


def _replica_env(
    g4f: FakeG4F, store_url: str, redis_url: str, plan: Plan, **platform: str
) -> dict[str, str]:
    """One replica's environment: the shared store and Redis, the plan's cap and lease, and
    the platform's own variables."""
    return run_env(
        g4f,
        G4F_DEFAULT_MODEL="trickle",
        BRIDGE_STORE_URL=store_url,
        BRIDGE_LIMITS_URL=redis_url,
        BRIDGE_MAX_CONCURRENCY=str(plan.cap),
        BRIDGE_REPLICA_LEASE=f"{plan.lease:g}",
        BRIDGE_SHUTDOWN_GRACE="2",
        **platform,
    )


async def run_telegram(
    g4f: FakeG4F, store_url: str, redis_url: str, workdir: Path, plan: Plan = Plan()
) -> Figures:
    """The Telegram scenario (see the module docstring)."""
    figures = Figures("telegram", plan)
    g4f.trickle_interval = plan.interval
    secret = f"fleet-{secrets.token_hex(8)}"
    async with (
        FakeTelegram(webhook_retry_seconds=0.05) as telegram,
        RoundRobin() as balancer,
        ClientSession(timeout=ClientTimeout(total=10)) as http,
    ):
        env = _replica_env(
            g4f,
            store_url,
            redis_url,
            plan,
            TELEGRAM_TOKEN=telegram.token,
            TELEGRAM_BASE_URL=telegram.base_url,
            TELEGRAM_BASE_FILE_URL=telegram.base_file_url,
            TELEGRAM_WEBHOOK_URL=balancer.url + WEBHOOK_PATH,
            TELEGRAM_WEBHOOK_SECRET=secret,
        )
        async with _processes([env, env], workdir, figures) as replicas:
            for replica in replicas:
                balancer.add(replica.url)
            started = await _wait(lambda: len(telegram.calls_named("setWebhook")) >= 2, 30)
            for replica in replicas:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + START_WITHIN
                while not await _ready(http, replica) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
            if not started:
                figures.notes.append("the replicas did not both set the webhook")
            await _telegram_load(telegram, g4f, balancer, http, replicas, figures)
            await _telegram_stop(telegram, g4f, replicas, figures)
            await _telegram_kill(telegram, g4f, store_url, replicas, figures)
            figures.streaming_left = [
                f"chat {chat} message {m.message_id}: {(m.text or '')[-60:]!r}"
                for chat in telegram.chat_ids
                for m in telegram.bot_messages(chat)
                if MARKER in (m.text or "") or CALLBACK_STOP in _tg_buttons(m)
            ]
        figures.rate_limited = telegram.rate_limited
        for call in telegram.calls:
            if call.error_code == 429:
                origin = f"{call.name} chat {call.chat_id}"
                figures.rate_limited_where[origin] = figures.rate_limited_where.get(origin, 0) + 1
    return figures


async def _telegram_load(
    telegram: FakeTelegram,
    g4f: FakeG4F,
    balancer: RoundRobin,
    http: ClientSession,
    replicas: list[Replica],
    figures: Figures,
) -> None:
    plan = figures.plan
    chats = [-1001000000100 - k for k in range(plan.chats)]
    asked: list[_Asked] = []
    g4f.reset_streams_in_flight()
    requests_before = len(g4f.chat_requests())
    began = time.monotonic()
    for i in range(plan.questions):
        # Each user asks in a different chat each time: one answer per user and chat at a time.
        user, chat = 7000 + i % plan.users, chats[(i % plan.users + i // plan.users) % plan.chats]
        g4f.answers[f"question {i}"] = expected = _answer(i, plan.words)
        message = telegram.push_text(
            chat, f"/ask question {i}", user_id=user, chat_type="supergroup", first_name=f"U{user}"
        )
        asked.append(_Asked(i, chat, user, int(message["message_id"]), expected))

    def replies(question: _Asked) -> list[FakeMessage]:
        return [
            m for m in telegram.bot_messages(question.chat) if m.reply_to == question.message_id
        ]

    def complete() -> bool:
        return all(any(_tg_final(m) for m in replies(q)) for q in asked)

    if await _wait(complete, plan.load_within):
        figures.complete_seconds = time.monotonic() - began
    await asyncio.sleep(0.5)  # a duplicate would show by now
    figures.max_in_flight = g4f.max_streams_in_flight
    figures.upstream_requests = len(g4f.chat_requests()) - requests_before
    question_ids = {(q.chat, q.message_id) for q in asked}
    for question in asked:
        shown = replies(question)
        if not shown:
            figures.missing.append(f"question {question.index} in chat {question.chat}")
            continue
        figures.duplicates += len(shown) - 1
        finals = [m for m in shown if _tg_final(m)]
        if len(finals) == 1 and (finals[0].text or "").strip() == question.expected:
            figures.answered += 1 if len(shown) == 1 else 0
        else:
            texts = [(m.text or "")[-60:] for m in shown]
            figures.wrong.append(f"question {question.index}: {texts}")
    for chat in chats:
        for m in telegram.bot_messages(chat):
            if (chat, m.reply_to) not in question_ids:
                figures.extra_messages.append(f"chat {chat}: {(m.text or '')[:80]!r}")
    figures.handled = [await _answers_counted(http, r, "telegram") for r in replicas]
    figures.delivered = [
        len([f for f in balancer.forwarded if f[0] == r.url and f[1] == WEBHOOK_PATH])
        for r in replicas
    ]


async def _telegram_stop(
    telegram: FakeTelegram, g4f: FakeG4F, replicas: list[Replica], figures: Figures
) -> None:
    """Stop pressed on the replica that does not stream the answer."""
    plan = figures.plan
    streams, other = replicas
    chat, user, prompt = -1001000000200, 7100, "a long story to stop"
    g4f.answers[prompt] = _long("s", plan.long_words)
    update = telegram.text_update(chat, f"/ask {prompt}", user_id=user, chat_type="supergroup")
    question = int(update["message"]["message_id"])
    await telegram.post_update(update, url=streams.webhook)  # the balancer chose `streams`
    ended = figures.stop = Ended("Telegram, pressed on the other replica")

    def message() -> FakeMessage | None:
        shown = [m for m in telegram.bot_messages(chat) if m.reply_to == question]
        return shown[0] if shown else None

    if not await _wait(lambda: _tg_streaming(message()), STREAMING_WITHIN):
        figures.notes.append("Stop: the long answer never showed streaming")
        return
    target = message()
    assert target is not None
    ended.shown_before = (target.text or "").removesuffix(INDICATOR)
    press = telegram.callback_update(chat, target.message_id, CALLBACK_STOP, user_id=user)
    pressed_at = time.monotonic()
    await telegram.post_update(press, url=other.webhook)  # ... and the press to `other`

    def stopped() -> bool:
        shown = message()
        return shown is not None and MARKER not in (shown.text or MARKER)

    if await _wait(stopped, STOPPED_WITHIN):
        ended.seconds = time.monotonic() - pressed_at
    final = message()
    if final is not None and MARKER not in (final.text or ""):
        ended.text, ended.buttons = final.text or "", _tg_buttons(final)
    record = next((s for s in reversed(g4f.streams) if s.prompt == prompt), None)
    if record is not None and await _wait(lambda: record.finished_at is not None, 5):
        ended.upstream_cut = len(record.text.split()) < plan.long_words


async def _telegram_kill(
    telegram: FakeTelegram,
    g4f: FakeG4F,
    store_url: str,
    replicas: list[Replica],
    figures: Figures,
) -> None:
    """SIGKILL a replica streaming two answers; Stop is pressed on one of them (it lands on
    the survivor), the other is left to the survivor's sweep."""
    plan = figures.plan
    survivor, victim = replicas
    pressed = Ended(
        "Telegram, Stop pressed on it via the survivor", notes=(CRASH_NOTE, STOPPED_NOTE)
    )
    swept = Ended("Telegram, left to the survivor", notes=(CRASH_NOTE,))
    targets: list[tuple[Ended, int, int, int]] = []  # (observation, chat, user, question id)
    for ended, chat, user in ((pressed, -1001000000301, 7201), (swept, -1001000000302, 7202)):
        prompt = f"a long story {chat}"
        g4f.answers[prompt] = _long(f"k{-chat % 1000}x", plan.long_words)
        update = telegram.text_update(chat, f"/ask {prompt}", user_id=user, chat_type="supergroup")
        await telegram.post_update(update, url=victim.webhook)
        targets.append((ended, chat, user, int(update["message"]["message_id"])))
    figures.killed = [pressed, swept]

    def message(chat: int, question: int) -> FakeMessage | None:
        shown = [m for m in telegram.bot_messages(chat) if m.reply_to == question]
        return shown[0] if shown else None

    if not await _wait(
        lambda: all(_tg_streaming(message(c, q)) for _, c, _, q in targets), STREAMING_WITHIN
    ):
        figures.notes.append("SIGKILL: the two long answers never both showed streaming")
        return
    if not await _recorded(store_url, 2, 10):
        figures.notes.append("SIGKILL: the store did not record both streaming answers")
    for ended, chat, _, question in targets:
        shown = message(chat, question)
        ended.shown_before = ((shown.text if shown else "") or "").removesuffix(INDICATOR)
    await kill(victim.proc)  # no final write, no cleanup
    killed_at = time.monotonic()
    _, chat, user, question = targets[0]
    stuck = message(chat, question)
    if stuck is not None:
        press = telegram.callback_update(
            chat, stuck.message_id, CALLBACK_STOP, user_id=user, check_button=False
        )
        await telegram.post_update(press, url=survivor.webhook)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.kill_within
    while loop.time() < deadline and not all(e.text is not None for e in figures.killed):
        for ended, chat, _, question in targets:
            shown = message(chat, question)
            if ended.text is None and shown is not None and MARKER not in (shown.text or ""):
                ended.text, ended.buttons = shown.text or "", _tg_buttons(shown)
                ended.seconds = time.monotonic() - killed_at
                if ended is pressed:
                    # At once: before any lease of the dead replica could run out (they are
                    # renewed every lease/3, so none runs out within 2/3 of a lease of the
                    # kill), while the other answer still shows it is being written.
                    other = message(targets[1][1], targets[1][3])
                    figures.stop_before_sweep = (
                        ended.seconds < plan.lease * 2 / 3
                        and other is not None
                        and MARKER in (other.text or "")
                    )
        await asyncio.sleep(0.01)
    if pressed.text is None:
        figures.stop_before_sweep = False


# --- Discord ---------------------------------------------------------------------------------


def _dc_buttons(components: list[dict[str, Any]]) -> list[str]:
    return [str(c.get("custom_id")) for row in components for c in row.get("components", [])]


async def run_discord(
    g4f: FakeG4F, store_url: str, redis_url: str, workdir: Path, plan: Plan = Plan()
) -> Figures:
    """The Discord scenario (see the module docstring): shards 0 and 1 of 2, one process each."""
    figures = Figures("discord", plan)
    g4f.trickle_interval = plan.interval
    async with FakeDiscord() as fake, ClientSession(timeout=ClientTimeout(total=10)) as http:
        guilds = [fake.add_guild(shard=(shard, 2)) for shard in (0, 1)]
        # Channels alternate between the two guilds: half of them on each shard.
        channels = [fake.add_channel(guild_id=guilds[k % 2]) for k in range(plan.chats)]
        envs = [
            _replica_env(
                g4f,
                store_url,
                redis_url,
                plan,
                DISCORD_TOKEN=fake.token,
                DISCORD_API_BASE_URL=fake.api_base,
                DISCORD_GATEWAY_URL=fake.gateway_url,
                DISCORD_SHARD_COUNT="2",
                DISCORD_SHARD_IDS=str(shard),
            )
            for shard in (0, 1)
        ]
        async with _processes(envs, workdir, figures) as replicas:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + START_WITHIN
            for replica in replicas:
                while not await _ready(http, replica) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
            if not await _wait(
                lambda: (
                    len(fake.identifies) >= 2 and any(c["name"] == "ask" for c in fake.commands)
                ),
                START_WITHIN,
            ):
                figures.notes.append("the shards did not both connect and sync /ask")
            await _discord_load(fake, g4f, http, replicas, channels, figures)
            await _discord_stop(fake, g4f, channels, figures)
            await _discord_kill(fake, g4f, store_url, replicas, channels, figures)
            figures.streaming_left = [
                f"channel {channel} message {m.id}: {m.content[-60:]!r}"
                for channel in channels
                for m in fake.messages(channel)
                if m.author_id == fake.bot_user_id
                and (MARKER in m.content or STOP_ID in _dc_buttons(m.components))
            ]
        figures.rate_limited = fake.rate_limited
        figures.rate_limited_where = {
            f"{k}:{v}": n for (k, v), n in fake.rate_limited_by_key.items()
        }
    return figures


async def _discord_load(
    fake: FakeDiscord,
    g4f: FakeG4F,
    http: ClientSession,
    replicas: list[Replica],
    channels: list[int],
    figures: Figures,
) -> None:
    plan = figures.plan
    g4f.reset_streams_in_flight()
    requests_before = len(g4f.chat_requests())
    asked: list[tuple[int, int, int, str]] = []  # (index, channel, interaction id, expected)
    per_shard = [0, 0]
    began = time.monotonic()
    for i in range(plan.questions):
        user, channel = (
            8000 + i % plan.users,
            channels[(i % plan.users + i // plan.users) % plan.chats],
        )
        g4f.answers[f"question {i}"] = expected = _answer(i, plan.words)
        try:
            inter = await fake.slash(
                "ask", {"prompt": f"question {i}"}, user_id=user, channel_id=channel
            )
        except RuntimeError as exc:  # no shard connected for the guild
            figures.missing.append(f"question {i}: not dispatched: {exc}")
            continue
        asked.append((i, channel, inter.id, expected))
        per_shard[shard_of(int(inter.guild_id or 0), 2)] += 1
    figures.handled_expected = per_shard

    def final(interaction_id: int) -> bool:
        message_id = fake.interaction(interaction_id).original_message_id
        if message_id is None:
            return False
        with contextlib.suppress(KeyError):
            shown = fake.message(message_id)
            return MARKER not in shown.content and REGENERATE_ID in _dc_buttons(shown.components)
        return False

    if await _wait(lambda: all(final(a[2]) for a in asked), plan.load_within):
        figures.complete_seconds = time.monotonic() - began
    await asyncio.sleep(0.5)
    figures.max_in_flight = g4f.max_streams_in_flight
    figures.upstream_requests = len(g4f.chat_requests()) - requests_before
    originals: set[int] = set()
    for index, _channel, interaction_id, expected in asked:
        inter = fake.interaction(interaction_id)
        if inter.original_message_id is None:
            figures.missing.append(f"question {index}: no response")
            continue
        originals.add(inter.original_message_id)
        shown = fake.message(inter.original_message_id)
        figures.duplicates += len(inter.followup_ids)  # an answer split or sent twice
        if final(interaction_id) and shown.content.strip() == expected and not inter.followup_ids:
            figures.answered += 1
        else:
            figures.wrong.append(f"question {index}: {shown.content[-60:]!r}")
    for channel in channels:
        for m in fake.messages(channel):
            if m.author_id == fake.bot_user_id and m.id not in originals:
                figures.extra_messages.append(f"channel {channel}: {m.content[:80]!r}")
    figures.handled = [await _answers_counted(http, r, "discord") for r in replicas]


async def _discord_stream(
    fake: FakeDiscord, g4f: FakeG4F, channel: int, user: int, label: str, words: int
) -> tuple[int | None, Callable[[], str | None]]:
    """Ask a long question with /ask; its message id once it streams (None: it never did) and a
    reader of its content."""
    prompt = f"a long story {label}"
    g4f.answers[prompt] = _long(label, words)
    inter = await fake.slash("ask", {"prompt": prompt}, user_id=user, channel_id=channel)

    def content() -> str | None:
        message_id = fake.interaction(inter.id).original_message_id
        if message_id is None:
            return None
        with contextlib.suppress(KeyError):
            return fake.message(message_id).content
        return None

    def streaming() -> bool:
        text = content() or ""
        return text.endswith(MARKER) and text.count(" ") >= SHOWN_WORDS

    if not await _wait(streaming, STREAMING_WITHIN):
        return None, content
    return fake.interaction(inter.id).original_message_id, content


async def _discord_stop(
    fake: FakeDiscord, g4f: FakeG4F, channels: list[int], figures: Figures
) -> None:
    """Stop on Discord. A button press is an interaction in the message's guild, and Discord
    sends a guild's interactions to the shard that owns the guild, which is the process that
    streams the answer: a press never lands on another replica, so "Stop via the other
    replica" does not arise; what applies, a press reaching the streaming shard while the other
    shard runs too, is checked."""
    plan = figures.plan
    ended = figures.stop = Ended("Discord, pressed in the guild (its own shard)")
    message_id, content = await _discord_stream(fake, g4f, channels[0], 8100, "d", plan.long_words)
    if message_id is None:
        figures.notes.append("Stop: the long answer never showed streaming")
        return
    ended.shown_before = (content() or "").removesuffix(INDICATOR)
    pressed_at = time.monotonic()
    await fake.click(message_id, STOP_ID, user_id=8100)
    if await _wait(lambda: MARKER not in (content() or MARKER), STOPPED_WITHIN):
        ended.seconds = time.monotonic() - pressed_at
        ended.text = content()
        ended.buttons = _dc_buttons(fake.message(message_id).components)
    record = next((s for s in reversed(g4f.streams) if s.prompt == "a long story d"), None)
    if record is not None and await _wait(lambda: record.finished_at is not None, 5):
        ended.upstream_cut = len(record.text.split()) < plan.long_words


async def _discord_kill(
    fake: FakeDiscord,
    g4f: FakeG4F,
    store_url: str,
    replicas: list[Replica],
    channels: list[int],
    figures: Figures,
) -> None:
    """SIGKILL the process of shard 1 mid-answer; shard 0's process ends the message over REST
    (a guild of shard 1's: no press could reach anyone for it while shard 1 is down)."""
    plan = figures.plan
    ended = Ended("Discord, left to the other shard", notes=(CRASH_NOTE,))
    figures.killed = [ended]
    message_id, content = await _discord_stream(fake, g4f, channels[1], 8200, "x", plan.long_words)
    if message_id is None:
        figures.notes.append("SIGKILL: the long answer never showed streaming")
        return
    if not await _recorded(store_url, 1, 10):
        figures.notes.append("SIGKILL: the store did not record the streaming answer")
    ended.shown_before = (content() or "").removesuffix(INDICATOR)
    await kill(replicas[1].proc)
    killed_at = time.monotonic()
    if await _wait(lambda: MARKER not in (content() or MARKER), plan.kill_within):
        ended.seconds = time.monotonic() - killed_at
        ended.text = content()
        ended.buttons = _dc_buttons(fake.message(message_id).components)
