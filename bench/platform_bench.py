"""Platform benchmark: the real Discord and Telegram adapters against the emulated platforms.

Every scenario starts a fresh world on loopback: the emulated platform (tests/fakes, with its rate
limits enforced), a Bridge with the default settings, and the real adapter (discord.py's
`BridgeClient` through `bots.discord.app.serve`, python-telegram-bot's Application through
`bots.telegram.app.serve`). The emulated G4F server runs in this process, on the same event loop
(one clock for every timestamp, and per-scenario answer knobs), and streams realistic answers:
about 200 words of prose, lists and code at 30 deltas per second, or, for the long scenarios, a
12k-character answer with two code blocks at 40 deltas of 12 words per second. Everything runs on
the real clock (`SystemClock`, `time.monotonic`), so the figures are what users would feel.

For each scenario it prints one row of a markdown table:

- first text half / max: the time by which half of the answers (the lower median), and the
  last, from the G4F server's first content chunk of an answer to the moment the
  platform first showed that answer's text (placeholders and status lines do not count: the
  first message content that begins with the answer's first words; Telegram drafts count);
- first write p50: the same, for the first non-empty content of any kind (e.g. a "…" placeholder;
  negative when it comes before the first token);
- 429s: rate-limit answers the emulator gave (by bucket in the notes below the table);
- words lost: words the G4F server streamed that are missing from the answer's final messages;
- all complete: from the first ask to the last answer's final write (no "▌" left, the Regenerate
  button shown), or "not after N s" when the scenario's time bound ran out;
- visible order: the asked numbers of the answers in the order their text first showed.

    python bench/platform_bench.py                   # every scenario
    python bench/platform_bench.py --only tg-group-10 --details

Exits non-zero only when something crashes; the figures are measured, never judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bots.discord import app as discord_app  # noqa: E402
from bots.discord.settings import DiscordSettings  # noqa: E402
from bots.discord.surface import ANSWER_IDS  # noqa: E402
from bots.telegram import app as telegram_app  # noqa: E402
from bots.telegram.settings import TelegramSettings  # noqa: E402
from bots.telegram.surface import ANSWER_DATA  # noqa: E402
from core.bridge import Bridge  # noqa: E402
from core.client import G4FClient  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store.base import open_store  # noqa: E402
from tests.fakes.discord_server import FakeDiscord  # noqa: E402
from tests.fakes.discord_server import FakeMessage as DiscordMessage  # noqa: E402
from tests.fakes.g4f_server import FakeG4F, StreamRecord, long_code_answer  # noqa: E402
from tests.fakes.telegram_server import FakeMessage as TelegramMessage  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram  # noqa: E402

ANSWER_WORDS = 200
DELTAS_PER_SECOND = 30.0
LONG_ANSWER_CHARS = 12_000
LONG_DELTAS_PER_SECOND = 40.0
LONG_WORDS_PER_DELTA = 12
STREAM_MARKER = "▌"
POLL_SECONDS = 0.01
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
FIRST_WORDS = 3  # a message shows the answer once its first words are the answer's

WORD = re.compile(r"\w+")
FENCE_INFO = re.compile(r"^(```|~~~)\S*", re.MULTILINE)  # a code block's language tag

Kind = Literal["slash", "mention", "dm", "private", "group"]


# --------------------------------------------------------------------------- what an answer shows


@dataclass(frozen=True)
class Shown:
    """One message of an answer, as the platform shows it now (times on the shared clock)."""

    history: tuple[tuple[float, str], ...]  # (time, content) per change, drafts included
    first_visible_at: float | None  # first non-empty content of any kind
    last_write_at: float | None
    text: str
    has_final_buttons: bool  # the Regenerate button of a finished answer


@dataclass
class Asked:
    """One question put to the bot, and how to find its answer's messages."""

    number: int  # 1-based, in asking order
    prompt: str
    at: float
    messages: Callable[[], list[Shown]]


class World(Protocol):
    """An emulated platform with the real adapter serving it."""

    async def start(self, g4f: FakeG4F, store_dir: Path) -> None: ...

    async def stop(self) -> None: ...

    async def ask(self, kind: Kind, number: int, prompt: str) -> Asked:
        """Put question `number` (its own user) to the bot; returns at once."""
        ...

    def rate_limited(self) -> dict[str, int]: ...


SETTINGS_OVERRIDES: dict[str, Any] = {}  # --concurrency


def settings_for(g4f: FakeG4F, store_dir: Path) -> Settings:
    """Default settings (but SETTINGS_OVERRIDES), pointed at the loopback servers (no .env)."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        g4f_base_url=g4f.base_url,
        g4f_retries=0,
        bridge_store_url=f"sqlite:///{store_dir / 'bench.sqlite3'}",
        **SETTINGS_OVERRIDES,
    )


async def open_bridge(settings: Settings, clock: SystemClock) -> Bridge:
    store = open_store(settings.bridge_store_url)
    await store.open()
    return Bridge(settings, client=G4FClient(settings, clock=clock), store=store, clock=clock)


async def serve_until_ready(
    serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> asyncio.Task[None]:
    """Start an adapter's serve() and wait (bounded) until it says it is ready."""
    ready = asyncio.Event()
    task = asyncio.create_task(serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # serve() failed: show why
    if not ready.is_set():
        task.cancel()
        raise RuntimeError(f"the adapter was not ready within {START_TIMEOUT} s")
    return task


async def stop_serving(task: asyncio.Task[None] | None, bridge: Bridge | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, STOP_TIMEOUT)
    if bridge is not None:
        await bridge.close()


class DiscordWorld:
    """FakeDiscord (limits enforced) and the real discord.py client of the adapter."""

    def __init__(self) -> None:
        self.fake = FakeDiscord()  # time.monotonic: the clock SystemClock reads
        self._bridge: Bridge | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, g4f: FakeG4F, store_dir: Path) -> None:
        await self.fake.start()
        settings = settings_for(g4f, store_dir)
        section = DiscordSettings(  # type: ignore[call-arg]
            _env_file=None,
            discord_token=self.fake.token,
            discord_api_base_url=self.fake.api_base,
            discord_gateway_url=self.fake.gateway_url,
        )
        bridge = self._bridge = await open_bridge(settings, SystemClock())
        self._task = await serve_until_ready(
            lambda ready: discord_app.serve(bridge, section, ready=ready, guild_ready_timeout=0.05)
        )

    async def stop(self) -> None:
        try:
            await stop_serving(self._task, self._bridge)
        finally:
            await self.fake.stop()

    def rate_limited(self) -> dict[str, int]:
        return dict(self.fake.rate_limited_by_bucket)

    async def ask(self, kind: Kind, number: int, prompt: str) -> Asked:
        user = 3000 + number
        channel = self.fake.channel_id  # every guild question goes to the one channel
        if kind == "slash":
            at = time.monotonic()
            inter = await self.fake.slash(
                "ask", {"prompt": prompt}, user_id=user, channel_id=channel
            )
            return Asked(number, prompt, at, lambda: self._by_interaction(channel, inter.id))
        if kind == "dm":
            channel = self.fake.add_channel(guild=False, user_id=user)
            at = time.monotonic()
            asked = await self.fake.user_message(channel, prompt, user_id=user)
        elif kind == "mention":
            at = time.monotonic()
            asked = await self.fake.user_message(channel, prompt, user_id=user, mention_bot=True)
        else:
            raise ValueError(f"Discord has no {kind} scenario")
        return Asked(number, prompt, at, lambda: self._by_reply(channel, asked))

    def _shown(self, message: DiscordMessage) -> Shown:
        buttons = [c.get("custom_id") for row in message.components for c in row["components"]]
        return Shown(
            history=message.content_history,
            first_visible_at=message.first_visible_at,
            last_write_at=message.last_write_at,
            text=message.content,
            has_final_buttons=ANSWER_IDS.id_of("regenerate") in buttons,
        )

    def _by_interaction(self, channel: int, interaction_id: int) -> list[Shown]:
        """@original and the followups of an /ask."""
        return [
            self._shown(m)
            for m in self.fake.messages(channel)
            if m.interaction_id == interaction_id
        ]

    def _by_reply(self, channel: int, asked: int) -> list[Shown]:
        """The reply to the user's message, and the parts that follow it before another reply.

        Later parts of a long answer are plain messages; they belong to the last reply before them
        (true when answers in a channel are one message each, or there is only one answer).
        """
        found: list[Shown] = []
        collecting = False
        for message in self.fake.messages(channel):
            if message.author_id != self.fake.bot_user_id:
                continue
            if message.reference is not None:
                collecting = message.reference == asked
            if collecting:
                found.append(self._shown(message))
        return found


class TelegramWorld:
    """FakeTelegram (limits enforced) and the real python-telegram-bot Application."""

    PRIVATE_BASE = 7000  # question n is asked in private chat PRIVATE_BASE + n
    GROUP = -1007000  # every group question goes to this supergroup

    def __init__(self) -> None:
        self.fake = FakeTelegram()  # time.monotonic: the clock SystemClock reads
        self._bridge: Bridge | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, g4f: FakeG4F, store_dir: Path) -> None:
        await self.fake.start()
        settings = settings_for(g4f, store_dir)
        section = TelegramSettings(  # type: ignore[call-arg]
            _env_file=None,
            telegram_token=self.fake.token,
            telegram_base_url=self.fake.base_url,
            telegram_base_file_url=self.fake.base_file_url,
        )
        bridge = self._bridge = await open_bridge(settings, SystemClock())
        self._task = await serve_until_ready(
            lambda ready: telegram_app.serve(bridge, section, ready=ready)
        )

    async def stop(self) -> None:
        try:
            await stop_serving(self._task, self._bridge)
        finally:
            await self.fake.stop()

    def rate_limited(self) -> dict[str, int]:
        return {"all": self.fake.rate_limited} if self.fake.rate_limited else {}

    async def ask(self, kind: Kind, number: int, prompt: str) -> Asked:
        user = 5000 + number
        if kind == "private":
            chat = self.PRIVATE_BASE + number
            at = time.monotonic()
            self.fake.push_text(chat, prompt, user_id=user, first_name=f"User{number}")
            return Asked(number, prompt, at, lambda: self._all_of(chat))
        if kind == "group":
            chat = self.GROUP
            at = time.monotonic()
            asked = self.fake.push_text(
                chat, f"/ask {prompt}", user_id=user, chat_type="supergroup"
            )["message_id"]
            return Asked(number, prompt, at, lambda: self._by_reply(chat, int(asked)))
        raise ValueError(f"Telegram has no {kind} scenario")

    def _shown(self, message: TelegramMessage) -> Shown:
        rows = (message.reply_markup or {}).get("inline_keyboard", [])
        data = [button.get("callback_data") for row in rows for button in row]
        return Shown(
            history=tuple(message.text_history),
            first_visible_at=message.first_visible_at,
            last_write_at=message.last_write_at,
            text=message.visible_text,
            has_final_buttons=ANSWER_DATA.id_of("regenerate") in data,
        )

    def _all_of(self, chat: int) -> list[Shown]:
        return [self._shown(m) for m in self.fake.bot_messages(chat)]

    def _by_reply(self, chat: int, asked: int) -> list[Shown]:
        """The reply to the asker's message and the plain parts after it (see DiscordWorld)."""
        found: list[Shown] = []
        collecting = False
        for message in self.fake.bot_messages(chat):
            if message.reply_to is not None:
                collecting = message.reply_to == asked
            if collecting:
                found.append(self._shown(message))
        return found


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    platform: Literal["discord", "telegram"]
    kind: Kind
    answers: int = 1
    long: bool = False
    bound: float = 45.0  # seconds to wait for every answer to complete

    def world(self) -> World:
        return DiscordWorld() if self.platform == "discord" else TelegramWorld()


SCENARIOS = (
    Scenario("dc-slash", "Discord /ask, one answer", "discord", "slash"),
    Scenario("dc-mention", "Discord mention, one answer", "discord", "mention"),
    Scenario("dc-dm", "Discord DM, one answer", "discord", "dm"),
    Scenario("tg-private", "Telegram private chat, one answer", "telegram", "private"),
    Scenario("tg-group", "Telegram group, one answer", "telegram", "group"),
    Scenario("dc-slash-10", "Discord: ten /ask at once, one channel", "discord", "slash", 10),
    Scenario(
        "dc-mention-10", "Discord: ten mentions at once, one channel", "discord", "mention", 10
    ),
    Scenario("tg-group-10", "Telegram: ten at once, one group", "telegram", "group", 10, bound=75),
    Scenario("dc-long", "Discord /ask, long answer (12k)", "discord", "slash", long=True),
    Scenario("tg-long", "Telegram private, long answer (12k)", "telegram", "private", long=True),
)


@dataclass
class Answer:
    """What one answer looked like, measured (times on the shared monotonic clock)."""

    asked: Asked
    upstream_first_at: float | None = None  # the G4F server wrote the first content chunk
    first_text_at: float | None = None  # the platform first showed the answer's text
    first_write_at: float | None = None  # the platform first showed any content for it
    completed_at: float | None = None  # the final write was applied
    words_streamed: int = 0
    words_lost: int = 0
    messages: int = 0

    def _after_upstream(self, at: float | None) -> float | None:
        if at is None or self.upstream_first_at is None:
            return None
        return at - self.upstream_first_at

    @property
    def first_text(self) -> float | None:
        """Seconds from the upstream's first content chunk to the first answer text shown."""
        return self._after_upstream(self.first_text_at)

    @property
    def first_write(self) -> float | None:
        """Seconds from the upstream's first content chunk to the first content of any kind."""
        return self._after_upstream(self.first_write_at)

    @property
    def first_text_after_ask(self) -> float | None:
        """Seconds from the question to the first answer text shown (queueing included)."""
        return None if self.first_text_at is None else self.first_text_at - self.asked.at


@dataclass
class Outcome:
    scenario: Scenario
    answers: list[Answer]
    rate_limited: dict[str, int]
    all_complete: float | None
    started: float
    notes: list[str] = field(default_factory=list)


def words_of(text: str) -> list[str]:
    """The words a reader reads: markdown marks and code-block language tags do not count
    (Telegram shows the language as the code block's label, not as text)."""
    return WORD.findall(FENCE_INFO.sub(r"\1", text))


def words_lost(streamed: str, shown: str) -> int:
    """Streamed words the final messages do not show, in order (markdown marks do not count)."""
    expected, seen = words_of(streamed), words_of(shown)
    matcher = difflib.SequenceMatcher(None, expected, seen, autojunk=False)
    return len(expected) - sum(block.size for block in matcher.get_matching_blocks())


def shows_answer(content: str, answer_words: list[str]) -> bool:
    """Whether `content` is the beginning of the answer (not a placeholder or status line)."""
    seen = words_of(content)[:FIRST_WORDS]
    return bool(seen) and seen == answer_words[: len(seen)]


def is_complete(shown: list[Shown]) -> bool:
    return (
        bool(shown)
        and any(s.has_final_buttons for s in shown)
        and not any(STREAM_MARKER in s.text for s in shown)
    )


def stream_for(g4f: FakeG4F, prompt: str) -> StreamRecord | None:
    """The (last) answer the G4F server streamed for `prompt`."""
    return next((s for s in reversed(g4f.streams) if s.prompt == prompt), None)


def measure(asked: Asked, g4f: FakeG4F) -> Answer:
    answer = Answer(asked)
    shown = asked.messages()
    stream = stream_for(g4f, asked.prompt)
    answer.messages = len(shown)
    if stream is None:
        return answer
    answer.upstream_first_at = stream.first_content_at
    answer_words = words_of(stream.text)
    text_times = [
        at for s in shown for at, content in s.history if shows_answer(content, answer_words)
    ]
    write_times = [s.first_visible_at for s in shown if s.first_visible_at is not None]
    answer.first_text_at = min(text_times, default=None)
    answer.first_write_at = min(write_times, default=None)
    answer.words_streamed = len(answer_words)
    answer.words_lost = words_lost(stream.text, "\n".join(s.text for s in shown))
    if is_complete(shown) and stream.finished_at is not None:
        answer.completed_at = max(s.last_write_at or 0.0 for s in shown)
    return answer


def configure_answers(g4f: FakeG4F, scenario: Scenario, prompts: list[str]) -> None:
    g4f.answers.clear()
    if scenario.long:
        g4f.stream_delay = 1 / LONG_DELTAS_PER_SECOND
        g4f.chunk_size_words = LONG_WORDS_PER_DELTA
        for prompt in prompts:
            g4f.answers[prompt] = long_code_answer(LONG_ANSWER_CHARS)
    else:
        g4f.stream_delay = 1 / DELTAS_PER_SECOND
        g4f.chunk_size_words = 1
        g4f.answer_words = ANSWER_WORDS  # the default answer: prose, lists, code, emoji


async def wait_until_complete(asked: list[Asked], deadline: float) -> None:
    """Poll what the platform shows (the emulators have no change events) until every answer
    is complete or `deadline` passes."""
    while time.monotonic() < deadline:
        if all(is_complete(a.messages()) for a in asked):
            return
        await asyncio.sleep(POLL_SECONDS)


async def run_scenario(scenario: Scenario, g4f: FakeG4F) -> Outcome:
    prompts = [f"{scenario.key} question {n} please" for n in range(1, scenario.answers + 1)]
    configure_answers(g4f, scenario, prompts)
    world = scenario.world()
    with tempfile.TemporaryDirectory(prefix="g4f-bridge-bench-") as store_dir:
        await world.start(g4f, Path(store_dir))
        try:
            started = time.monotonic()
            asked = [
                await world.ask(scenario.kind, number, prompt)
                for number, prompt in enumerate(prompts, start=1)
            ]
            await wait_until_complete(asked, started + scenario.bound)
            answers = [measure(a, g4f) for a in asked]
            rate_limited = world.rate_limited()
        finally:
            await world.stop()
    done = [a.completed_at for a in answers if a.completed_at is not None]
    complete = len(done) == len(answers)
    outcome = Outcome(
        scenario, answers, rate_limited, max(done) - started if complete else None, started
    )
    if not complete:
        outcome.notes.append(
            f"{len(answers) - len(done)} of {len(answers)} answers not complete after "
            f"{scenario.bound:.0f} s"
        )
    return outcome


# --------------------------------------------------------------------------- the report


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def visible_order(answers: list[Answer]) -> str:
    """The asked numbers in the order the answers' text first showed."""
    if len(answers) == 1:
        return "-"
    shown = sorted(
        (a.first_text_at, a.asked.number) for a in answers if a.first_text_at is not None
    )
    order = [number for _, number in shown]
    missing = [a.asked.number for a in answers if a.first_text_at is None]
    text = " ".join(str(n) for n in order)
    if missing:
        text += " (never: " + " ".join(str(n) for n in missing) + ")"
    in_order = order == sorted(order) and not missing
    return f"{text} ({'in order' if in_order else 'out of order'})"


def half_within(values: list[float]) -> float:
    """The time by which half of the answers showed (the lower median)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def half_max(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    text = f"{half_within(known):.2f} / {max(known):.2f}" if known else "never"
    if len(known) < len(values):
        text += f" ({len(values) - len(known)} never)"
    return text


def row(outcome: Outcome) -> str:
    answers = outcome.answers
    first_text = half_max([a.first_text for a in answers])
    after_ask = half_max([a.first_text_after_ask for a in answers])
    writes = [a.first_write for a in answers if a.first_write is not None]
    first_write = f"{statistics.median(writes):.2f}" if writes else "-"
    lost = sum(a.words_lost for a in answers)
    streamed = sum(a.words_streamed for a in answers)
    complete = (
        seconds(outcome.all_complete)
        if outcome.all_complete is not None
        else f"not after {outcome.scenario.bound:.0f} s"
    )
    return (
        f"| {outcome.scenario.title} | {len(answers)} | {first_text} | {after_ask} | "
        f"{first_write} | "
        f"{sum(outcome.rate_limited.values())} | {lost} of {streamed} | {complete} | "
        f"{visible_order(answers)} |"
    )


HEADER = (
    "| scenario | answers | first text half / max (s) | from the ask half / max (s) "
    "| first write p50 (s) | 429s | words lost | all complete | visible order |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def details(outcome: Outcome) -> list[str]:
    lines = [f"- {outcome.scenario.key}:"]
    for a in outcome.answers:
        complete = None if a.completed_at is None else a.completed_at - outcome.started
        lines.append(
            f"  - #{a.asked.number}: first text {seconds(a.first_text)} "
            f"({seconds(a.first_text_after_ask)} after its ask), first write "
            f"{seconds(a.first_write)}, complete {seconds(complete)} after the first ask, "
            f"{a.messages} message(s), {a.words_lost} of {a.words_streamed} words lost"
        )
    return lines


def notes(outcomes: list[Outcome]) -> list[str]:
    lines: list[str] = []
    for outcome in outcomes:
        extra = list(outcome.notes)
        if outcome.rate_limited:
            extra.append(
                "429s by bucket: "
                + ", ".join(f"{k} {v}" for k, v in sorted(outcome.rate_limited.items()))
            )
        if extra:
            lines.append(f"- {outcome.scenario.key}: " + "; ".join(extra))
    return lines


async def main_async(args: argparse.Namespace) -> list[Outcome]:
    chosen = [s for s in SCENARIOS if not args.only or s.key in args.only]
    unknown = set(args.only or ()) - {s.key for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    outcomes: list[Outcome] = []
    async with FakeG4F() as g4f:  # in-process, on this loop; time.monotonic stamps
        for scenario in chosen:
            print(f"running {scenario.key} …", file=sys.stderr, flush=True)
            outcomes.append(await run_scenario(scenario, g4f))
    return outcomes


def quiet_logs(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # discord.py warns about every 429 it retries; the table counts them.
        logging.getLogger("discord").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="*", help="scenario keys: " + ", ".join(s.key for s in SCENARIOS)
    )
    parser.add_argument("--details", action="store_true", help="one line per answer")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="BRIDGE_MAX_CONCURRENCY (default: the setting's default, 8, which queues two of ten)",
    )
    parser.add_argument("--verbose", action="store_true", help="log at INFO")
    args = parser.parse_args(argv)
    quiet_logs(args.verbose)
    if args.concurrency is not None:
        SETTINGS_OVERRIDES["bridge_max_concurrency"] = args.concurrency
    began = time.monotonic()
    outcomes = asyncio.run(main_async(args))
    print(HEADER)
    for outcome in outcomes:
        print(row(outcome))
    lines = notes(outcomes)
    if args.details:
        for outcome in outcomes:
            lines += details(outcome)
    if lines:
        print("\n" + "\n".join(lines))
    print(
        f"\n{ANSWER_WORDS}-word answers at {DELTAS_PER_SECOND:.0f} deltas/s; long answers "
        f"{LONG_ANSWER_CHARS} characters at {LONG_DELTAS_PER_SECOND:.0f} deltas/s of "
        f"{LONG_WORDS_PER_DELTA} words; default settings"
        + (f" but BRIDGE_MAX_CONCURRENCY={args.concurrency}" if args.concurrency else "")
        + "; real time; "
        f"{time.monotonic() - began:.0f} s in all."
    )


if __name__ == "__main__":
    main()
