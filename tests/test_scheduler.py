"""The write scheduler's rules, on a controllable clock: which write goes next in a room, and when.

Each platform's limit set comes from its adapter (bots.*.surface); the recording platform enforces
the same rules on its side (counted at receipt), so a write the scheduler lets through too early
shows up as a 429.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bots.discord.surface import channel_limits, token_limits
from bots.telegram.surface import chat_limits
from core.api_models import StreamDelta
from core.errors import ProviderFailed
from core.render.limits import Bucket, Limit, LimitState, Verdict, Window
from core.render.renderer import INDICATOR, Outcome, RenderOptions, RenderResult, StreamRenderer
from core.render.scheduler import WriteScheduler
from core.render.surface import Button, WriteLimits
from tests.fakes.clock import ManualClock
from tests.fakes.served import serve_app
from tests.fakes.surface import ChatServer, RecordingSurface, RollingLimit, ScriptedStream, words

T0 = 1000.0
REGEN = Button("regenerate", "🔁 Regenerate")
TELEGRAM_GROUP_RULES = (RollingLimit(20, 60.0),)  # plus its bucket: 3, then 1 a second
DISCORD_CHANNEL_RULES = (
    RollingLimit(5, 5.0, frozenset({"send"})),
    RollingLimit(5, 5.0, frozenset({"edit"})),
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


def answer(
    clock: ManualClock,
    scheduler: WriteScheduler,
    surface: RecordingSurface,
    script: list[tuple[float, StreamDelta | Exception]],
) -> StreamRenderer:
    return StreamRenderer(
        ScriptedStream(clock, script),
        surface,
        scheduler=scheduler,
        clock=clock,
        options=RenderOptions(final_buttons=(REGEN,)),
    )


async def run_all(
    clock: ManualClock, renderers: list[StreamRenderer], seconds: float
) -> list[RenderResult]:
    tasks = [asyncio.create_task(r.run()) for r in renderers]
    await clock.advance(seconds)
    assert all(t.done() for t in tasks), "an answer did not finish"
    return [t.result() for t in tasks]


def first_write_at(server: ChatServer, message_prefix: str) -> float:
    return min(round(w.at - T0, 3) for w in server.writes if w.text.startswith(message_prefix))


# --- the limits themselves ------------------------------------------------------------------
def test_a_bucket_counts_from_completion_and_routine_writes_leave_the_burst() -> None:
    state = LimitState(Bucket("chat", 3, 1.0), now=0.0)
    assert state.wait(0.0) == 0 and state.wait(0.0, routine=True) == 0
    state.take(0.0)
    assert state.wait(0.5) == 0  # urgent writes may use the rest of the burst
    assert state.wait(0.5, routine=True) == pytest.approx(1.0)  # the write is still in flight
    state.release(0.5)  # refill counts from the completion
    assert state.wait(0.5, routine=True) == pytest.approx(1.0)
    assert state.wait(1.5, routine=True) == 0
    for _ in range(3):
        state.take(1.5)
        state.release(1.5)
    assert state.wait(1.5) == pytest.approx(1.0)


def test_a_window_keeps_a_reserve_for_urgent_writes_and_paces_routine_ones() -> None:
    state = LimitState(Window("group", 20, 60.0), now=0.0)
    for t in range(10):
        state.take(float(t))
        state.release(float(t))
    assert state.wait(10.0) == 0
    assert state.wait(10.0, routine=True, reserve=10) == pytest.approx(50.0)  # 10 + 10 = 20
    assert state.wait(12.0, routine=True, reserve=2) == 0  # a fifth (4) is kept anyway: 10 < 16
    assert state.wait(10.0, routine=True, reserve=2) == pytest.approx(2.0)  # 60 / 20 s apart
    for t in range(10, 20):
        state.take(float(t))
        state.release(float(t))
    assert state.wait(20.0) == pytest.approx(40.0)  # the oldest (at 0) leaves at 60


def test_retry_after_and_reported_state_hold_a_limit_back() -> None:
    state = LimitState(Bucket("chat", 3, 1.0), now=0.0)
    state.penalize(0.0, 2.0)
    assert state.wait(1.9) == pytest.approx(0.1)
    assert state.wait(2.0) == 0
    state.take(2.0)
    state.release(2.0)
    assert state.wait(2.0) == pytest.approx(1.0)  # one write saved up, not the burst
    window = LimitState(Window("token", 5, 5.0), now=0.0)
    window.observe(0.0, remaining=0, reset_after=3.0)  # e.g. another process used them all
    assert window.wait(0.0) == pytest.approx(3.0)
    assert window.wait(3.0) == 0


# --- one room, several answers ----------------------------------------------------------------
async def test_first_texts_go_first_in_asking_order_then_finals_then_interim_edits(
    clock: ManualClock,
) -> None:
    """Five answers at once in a Telegram group: the three-write burst and then one write a
    second go to first texts in the order asked; no interim edit takes a write before every
    answer is visible; ended answers get their final writes before streaming ones edit."""
    server = ChatServer(clock=clock, interval=1.0, burst=3, rolling=TELEGRAM_GROUP_RULES)
    scheduler = WriteScheduler(clock)
    limits = chat_limits(-100, private=False).send
    writes = WriteLimits(send=limits, edit=limits)
    renderers = [
        answer(
            clock,
            scheduler,
            RecordingSurface(server, chat="group", writes=writes, max_length=4000),
            words(" ".join(f"a{n}w{i}" for i in range(20)), every=0.3 if n else 0.05),
        )
        for n in range(5)
    ]
    results = await run_all(clock, renderers, 60)
    firsts = [first_write_at(server, f"a{n}w0") for n in range(5)]
    assert firsts == [0.1, 0.1, 0.1, 1.1, 2.1]
    assert server.writes[0].kind == "send" and all(w.kind == "send" for w in server.writes[:5])
    # Answer 0 streamed fast and ended at 0.95: its final write is the first after the firsts.
    assert server.writes[5].at - T0 == pytest.approx(3.1)
    assert server.writes[5].text == " ".join(f"a0w{i}" for i in range(20))
    assert server.rate_limited == 0
    for n, result in enumerate(results):
        assert result.outcome is Outcome.DONE
        assert server.shown(result.messages) == [" ".join(f"a{n}w{i}" for i in range(20))]


async def test_interim_edits_take_turns_the_one_shown_longest_ago_first(
    clock: ManualClock,
) -> None:
    server = ChatServer(clock=clock, interval=1.0, burst=1)
    scheduler = WriteScheduler(clock)
    renderers = [
        answer(
            clock,
            scheduler,
            RecordingSurface(server, chat="room", max_length=4000),
            words(" ".join(f"{name}{i}" for i in range(40)), every=0.2),
        )
        for name in ("x", "y")
    ]
    await run_all(clock, renderers, 60)
    edits = [w.message_id for w in server.writes if w.kind == "edit" and w.text.endswith(INDICATOR)]
    assert len(edits) >= 4
    assert all(a != b for a, b in itertools.pairwise(edits))  # x, y, x, y …
    assert server.rate_limited == 0


async def test_a_stop_is_on_screen_within_one_free_write(clock: ManualClock) -> None:
    """A single answer in a Telegram group edits only every 3 s (its even share of 20 a minute),
    but Stop needs no share: it goes out at once."""
    server = ChatServer(clock=clock, interval=1.0, burst=3, rolling=TELEGRAM_GROUP_RULES)
    limits = chat_limits(-100, private=False).send
    surface = RecordingSurface(
        server, writes=WriteLimits(send=limits, edit=limits), max_length=4000
    )
    r = answer(clock, WriteScheduler(clock), surface, words("w " * 200, every=0.1))
    task = asyncio.create_task(r.run())
    await clock.advance(4.0)
    assert [round(w.at - T0, 3) for w in server.writes] == [0.1, 3.1]
    r.stop()
    await clock.advance(1.0)
    assert task.done()
    assert round(server.writes[-1].at - T0, 3) == 4.0
    assert server.writes[-1].text.endswith("⏹ Stopped.")
    assert server.writes[-1].buttons == ("regenerate",)


async def test_an_error_is_on_screen_within_one_free_write(clock: ManualClock) -> None:
    server = ChatServer(clock=clock, interval=1.0, burst=3, rolling=TELEGRAM_GROUP_RULES)
    limits = chat_limits(-100, private=False).send
    surface = RecordingSurface(
        server, writes=WriteLimits(send=limits, edit=limits), max_length=4000
    )
    script = [*words("w " * 30, every=0.1), (4.0, ProviderFailed(partial_text=""))]
    r = answer(clock, WriteScheduler(clock), surface, script)
    [result] = await run_all(clock, [r], 10)
    assert [round(w.at - T0, 3) for w in server.writes] == [0.1, 3.1, 4.0]
    assert server.writes[-1].text.endswith("⚠️ The AI provider failed while answering.")
    assert result.outcome is Outcome.FAILED


async def test_retry_after_holds_the_whole_room_and_then_serves_it_in_order(
    clock: ManualClock,
) -> None:
    server = ChatServer(clock=clock, interval=1.0, burst=1, forced_retry_after=[2.0])
    scheduler = WriteScheduler(clock)
    renderers = [
        answer(clock, scheduler, RecordingSurface(server, chat="room"), words(f"{n}a {n}b"))
        for n in range(2)
    ]
    results = await run_all(clock, renderers, 10)
    assert [(round(w.at - T0, 3), w.text) for w in server.writes] == [
        (2.05, "0a 0b"),  # ended at 0.05, refused with retry after 2 s: nothing before 2.05
        (3.05, "1a 1b"),  # one write saved up, not a burst
    ]
    assert [r.rate_limited for r in results] == [1, 0]
    assert server.rate_limited == 1


async def test_a_status_line_never_takes_a_write_ahead_of_answer_text(clock: ManualClock) -> None:
    server = ChatServer(clock=clock, interval=1.0, burst=1)
    scheduler = WriteScheduler(clock)
    streaming = answer(
        clock, scheduler, RecordingSurface(server, chat="room"), words("s " * 20, every=0.2)
    )
    waiting = answer(
        clock,
        scheduler,
        RecordingSurface(server, chat="room", placeholder="…"),
        [(6.0, StreamDelta(content="late"))],
    )
    waiting.set_status("⏳ number 1 in line")
    await run_all(clock, [streaming, waiting], 20)
    status = [w for w in server.writes if w.text.startswith("⏳")]
    assert status, "the status line was never shown"
    streaming_writes = [w.at for w in server.writes if w.text.startswith("s")]
    assert status[0].at > max(streaming_writes)  # it waited until answer text was written


# --- each platform's limit set ----------------------------------------------------------------
async def test_ten_mentions_in_a_discord_channel_five_creates_per_five_seconds(
    clock: ManualClock,
) -> None:
    server = ChatServer(clock=clock, interval=0.001, burst=100, rolling=DISCORD_CHANNEL_RULES)
    scheduler = WriteScheduler(clock)
    writes = channel_limits(42)
    renderers = [
        answer(
            clock,
            scheduler,
            RecordingSurface(server, chat="channel", writes=writes, max_length=2000),
            words(f"m{n} " * 10, every=0.2),
        )
        for n in range(10)
    ]
    results = await run_all(clock, renderers, 60)
    firsts = [first_write_at(server, f"m{n}") for n in range(10)]
    assert firsts == [0.1] * 5 + [5.1] * 5
    assert server.rate_limited == 0
    assert all(r.outcome is Outcome.DONE for r in results)


async def test_discord_interaction_tokens_are_apart_from_each_other(clock: ManualClock) -> None:
    server = ChatServer(clock=clock, interval=0.001, burst=100)
    scheduler = WriteScheduler(clock)
    renderers = [
        answer(
            clock,
            scheduler,
            RecordingSurface(
                server, chat="channel", writes=token_limits(f"token-{n}"), max_length=2000
            ),
            words(f"t{n} " * 10, every=0.2),
        )
        for n in range(10)
    ]
    await run_all(clock, renderers, 60)
    assert [first_write_at(server, f"t{n}") for n in range(10)] == [0.1] * 10


async def test_telegram_bot_wide_limit_is_shared_by_all_chats(clock: ManualClock) -> None:
    server = ChatServer(clock=clock, interval=1.0, burst=3)
    scheduler = WriteScheduler(clock)
    renderers = []
    for n in range(40):
        limits = chat_limits(n + 1, private=True).send
        surface = RecordingSurface(
            server, chat=f"chat-{n}", writes=WriteLimits(send=limits, edit=limits)
        )
        script: list[tuple[float, StreamDelta | Exception]] = [
            (0.0, StreamDelta(content=f"p{n} ")),
            (2.0, StreamDelta(content="end")),
        ]
        renderers.append(answer(clock, scheduler, surface, script))
    await run_all(clock, renderers, 10)
    firsts = sorted(first_write_at(server, f"p{n}") for n in range(40))
    assert firsts.count(0.1) == 30  # 30 writes a second for the whole bot
    assert all(t >= 1.1 for t in firsts[30:])


async def test_telegram_previews_draw_from_their_own_bucket_and_the_message_from_the_chat(
    clock: ManualClock,
) -> None:
    server = ChatServer(clock=clock, interval=0.001, burst=100)
    surface = RecordingSurface(
        server, chat="private", previews=True, writes=chat_limits(7, private=True)
    )
    r = answer(clock, WriteScheduler(clock), surface, words("d " * 30, every=0.1))
    await run_all(clock, [r], 10)
    previews = [round(w.at - T0, 3) for w in server.writes if w.kind == "preview"]
    assert previews[0] == 0.1
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(previews))
    assert server.writes[-1].kind == "send" and server.writes[-1].text == "d " * 30


async def test_adapter_writes_are_as_urgent_as_first_texts(clock: ManualClock) -> None:
    """A command's reply (e.g. a refusal) in a room where an answer streams does not wait for
    the answer's interim edits."""
    server = ChatServer(clock=clock, interval=1.0, burst=1)
    scheduler = WriteScheduler(clock)
    surface = RecordingSurface(server, chat="room")
    r = answer(clock, scheduler, surface, words("s " * 40, every=0.1))
    task = asyncio.create_task(r.run())
    await clock.advance(1.05)  # the first text went at 0.1; an interim edit is due at 1.1
    reply = asyncio.create_task(
        scheduler.write_once("room", surface.limits.writes.send, lambda: surface.send("notice"))
    )
    await clock.advance(0.1)
    assert reply.done() and reply.result() is not None
    assert server.writes[1].text == "notice" and round(server.writes[1].at - T0, 3) == 1.1
    await clock.advance(20)
    assert task.done()


async def test_discord_rate_limit_headers_reach_the_scheduler_by_limit_key() -> None:
    """discord.py's session carries the observer; each response's X-RateLimit headers are
    reported under the key of the limit the request drew from."""
    from aiohttp import ClientSession, web

    from bots.discord.surface import limit_key_of, rate_limit_observer

    async def reply(request: web.Request) -> web.Response:
        return web.Response(
            text="{}",
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)
    seen: list[tuple[str, int, float]] = []
    async with serve_app(app) as root:
        trace = rate_limit_observer(lambda *args: seen.append(args))
        async with ClientSession(trace_configs=[trace]) as session:
            base = root + "/api/v10"
            for method, path in (
                ("POST", "/channels/5/messages"),
                ("PATCH", "/channels/5/messages/9"),
                ("PATCH", "/webhooks/1/tok-a/messages/@original"),
                ("GET", "/channels/5/messages"),  # a read: no write limit
            ):
                async with session.request(method, base + path) as response:
                    await response.read()
    token_key = token_limits("tok-a").edit[0].key
    assert seen == [("discord:5:create", 0, 1.5), ("discord:5:edit", 0, 1.5), (token_key, 0, 1.5)]
    assert "tok-a" not in token_key  # the token is a secret: its key is a digest
    assert limit_key_of("POST", "/api/v10/channels/5/messages") == channel_limits(5).send[0].key


class _BrokenLedger:
    """Shared limits that fail in a way nobody foresaw (not Redis being down)."""

    def __init__(self) -> None:
        self.calls = 0

    async def take(self, limits: tuple[Limit, ...], *, routine: bool, reserve: int) -> Verdict:
        self.calls += 1
        raise RuntimeError("a bug in the shared ledger")

    async def release(
        self, ticket: str, limits: tuple[Limit, ...], *, retry_after: float = 0.0
    ) -> None:
        raise AssertionError("nothing was taken")


async def test_a_failing_shared_ledger_never_stalls_an_answer(clock: ManualClock) -> None:
    """The shared count is consulted before each write; when it breaks, the local count alone
    stands and the answer ends complete."""
    server = ChatServer(clock=clock, interval=1.0, burst=3)
    ledger = _BrokenLedger()
    scheduler = WriteScheduler(clock, shared=ledger)
    surface = RecordingSurface(server, chat="c", max_length=4000)
    text = " ".join(f"w{i}" for i in range(30))
    [result] = await run_all(clock, [answer(clock, scheduler, surface, words(text))], 30)
    assert result.outcome is Outcome.DONE and server.shown(result.messages) == [text]
    assert ledger.calls >= 2 and server.rate_limited == 0
