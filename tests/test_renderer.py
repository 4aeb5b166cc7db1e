"""The stream renderer, driven by scripted streams and a controllable clock (no real sleeps)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from core.api_models import StreamDelta
from core.errors import ProviderFailed, UpstreamTimeout
from core.render.renderer import (
    INDICATOR,
    Outcome,
    RenderOptions,
    RenderResult,
    StreamRenderer,
)
from core.render.scheduler import WriteScheduler
from core.render.split import join_parts
from core.render.surface import Button
from tests.fakes.clock import ManualClock
from tests.fakes.surface import ChatServer, RecordingSurface, ScriptedStream, words

T0 = 1000.0
REGEN = Button("regenerate", "🔁 Regenerate")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture
def server(clock: ManualClock) -> ChatServer:
    return ChatServer(clock=clock, interval=1.0)


def renderer(
    clock: ManualClock,
    stream: ScriptedStream,
    surface: RecordingSurface,
    scheduler: WriteScheduler | None = None,
    **options: object,
) -> StreamRenderer:
    return StreamRenderer(
        stream,
        surface,
        scheduler=scheduler or WriteScheduler(clock),
        clock=clock,
        options=RenderOptions(**options),  # type: ignore[arg-type]
    )


async def run_for(clock: ManualClock, r: StreamRenderer, seconds: float) -> RenderResult:
    task = asyncio.create_task(r.run())
    await clock.advance(seconds)
    assert task.done(), "renderer did not finish"
    return task.result()


def timeline(server: ChatServer) -> list[tuple[str, float, str, tuple[str, ...]]]:
    return [(w.kind, round(w.at - T0, 3), w.text, w.buttons) for w in server.writes]


async def test_first_text_at_once_then_one_edit_per_interval_and_final_text(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(
        clock,
        [
            (0.0, StreamDelta(content="Hello")),
            (0.2, StreamDelta(content=" world")),
            (0.5, StreamDelta(content="!")),
            (1.5, StreamDelta(content=" Bye.")),
            (1.6, StreamDelta(finish_reason="stop")),
        ],
    )
    r = renderer(clock, stream, RecordingSurface(server), final_buttons=(REGEN,))
    result = await run_for(clock, r, 5)
    assert timeline(server) == [
        ("send", 0.1, "Hello" + INDICATOR, ("stop",)),
        ("edit", 1.1, "Hello world!" + INDICATOR, ("stop",)),
        ("edit", 2.1, "Hello world! Bye.", ("regenerate",)),
    ]
    assert result.outcome is Outcome.DONE
    assert result.text == "Hello world! Bye."
    assert result.first_visible_at is not None and result.first_token_at is not None
    assert result.first_visible_at - result.first_token_at == pytest.approx(0.1)
    assert server.rate_limited == 0


async def test_edits_coalesce_and_unchanged_text_is_not_sent(
    clock: ManualClock, server: ChatServer
) -> None:
    script = words("a b c d e f g h i j k l m n o p q r s t", every=0.1)
    stream = ScriptedStream(clock, [*script, (5.0, StreamDelta(finish_reason="stop"))])
    r = renderer(clock, stream, RecordingSurface(server), stop_button=False)
    await run_for(clock, r, 8)
    texts = [w.text for w in server.writes]
    assert len(texts) == len(set(texts))  # never the same text twice
    assert len(server.writes) <= 4  # 20 deltas in 2 s, then the final edit
    assert texts[-1] == "a b c d e f g h i j k l m n o p q r s t"
    gaps = [b.at - a.at for a, b in zip(server.writes, server.writes[1:], strict=False)]
    assert all(g >= 1.0 - 1e-9 for g in gaps)


async def test_reading_never_waits_on_slow_platform_calls(
    clock: ManualClock, server: ChatServer
) -> None:
    server.call_latency = 3.0
    script = words("one two three four five six seven eight nine ten", every=0.05)
    stream = ScriptedStream(clock, script)
    r = renderer(clock, stream, RecordingSurface(server))
    task = asyncio.create_task(r.run())
    await clock.advance(1.0)
    assert stream.finished  # all read while the first send was still in flight
    await clock.advance(20)
    result = task.result()
    assert result.text == "one two three four five six seven eight nine ten"
    assert server.max_in_flight_per_message == 1
    assert server.writes[-1].text == result.text


async def test_answers_in_one_chat_share_its_budget_and_other_chats_are_not_slowed(
    clock: ManualClock, server: ChatServer
) -> None:
    scheduler = WriteScheduler(clock)
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    runs = []
    for chat in ("group", "group", "group", "other"):
        stream = ScriptedStream(clock, words(text, every=0.2))
        runs.append(renderer(clock, stream, RecordingSurface(server, chat=chat), scheduler))
    tasks = [asyncio.create_task(r.run()) for r in runs]
    await clock.advance(30)
    results = [t.result() for t in tasks]
    assert server.rate_limited == 0
    assert all(r.text == text for r in results)
    group_writes = [w for w in server.writes if w.message_id.startswith("group/")]
    gaps = [b.at - a.at for a, b in itertools.pairwise(group_writes)]
    assert all(g >= 1.0 - 1e-9 for g in gaps)
    other_first = next(w for w in server.writes if w.message_id.startswith("other/"))
    assert other_first.at - T0 == pytest.approx(0.1)
    final_texts = {server.messages[r.messages[-1].id] for r in results}
    assert final_texts == {text}


async def test_rate_limit_waits_as_told_then_sends_the_latest_text(
    clock: ManualClock, server: ChatServer
) -> None:
    server.forced_retry_after = [2.5]
    stream = ScriptedStream(clock, words("one two three", every=0.3))
    r = renderer(clock, stream, RecordingSurface(server), stop_button=False)
    result = await run_for(clock, r, 10)
    assert timeline(server) == [("send", 2.6, "one two three", ())]
    assert result.rate_limited == 1
    assert result.text == "one two three"


async def test_long_answer_is_split_with_fences_and_nothing_lost(
    clock: ManualClock, server: ChatServer
) -> None:
    answer = (
        "Here is code:\n\n```python\n"
        + "\n".join(f"print('line number {i}')" for i in range(12))
        + "\n```\n\nAnd some closing words that go on for a while to pass the limit."
    )
    stream = ScriptedStream(clock, words(answer, every=0.05))
    r = renderer(clock, stream, RecordingSurface(server, max_length=120))
    result = await run_for(clock, r, 60)
    shown = server.shown(result.messages)
    assert len(shown) >= 3
    assert all(0 < len(part) <= 120 for part in shown)
    assert join_parts(shown) == answer
    assert shown[1].startswith("```python\n")
    assert all(part.count("```") % 2 == 0 for part in shown)
    assert server.rate_limited == 0
    assert all(not server.buttons[m.id] for m in result.messages)


async def test_stop_cancels_upstream_and_keeps_partial_text(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, words("one two three four five six seven", every=0.5))
    r = renderer(clock, stream, RecordingSurface(server), final_buttons=(REGEN,))
    task = asyncio.create_task(r.run())
    await clock.advance(1.2)
    r.stop()
    await clock.advance(5)
    result = task.result()
    assert stream.closed and not stream.finished
    assert result.outcome is Outcome.STOPPED
    assert result.text == "one two three "
    assert server.writes[-1].text == "one two three \n\n⏹ Stopped."
    assert server.writes[-1].buttons == ("regenerate",)


async def test_error_before_any_text_is_shown_at_once_in_the_answers_place(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, [(0.5, UpstreamTimeout("first_token", 120))])
    r = renderer(clock, stream, RecordingSurface(server, placeholder="…"))
    result = await run_for(clock, r, 5)
    assert timeline(server) == [
        (
            "send",
            0.5,
            "⚠️ Timed out after 120 s waiting for the first word of the answer "
            "(G4F_TIMEOUT_FIRST_TOKEN).",
            (),
        ),
    ]
    assert result.outcome is Outcome.FAILED


async def test_placeholder_only_after_a_while_without_text_then_replaced_by_the_text(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, [(3.0, StreamDelta(content="Late.")), (3.5, StreamDelta())])
    r = renderer(clock, stream, RecordingSurface(server, placeholder="…"), final_buttons=(REGEN,))
    await run_for(clock, r, 10)
    assert timeline(server) == [
        ("send", 1.5, "…" + INDICATOR, ("stop",)),  # no text for 1.5 s: a message to stop
        ("edit", 3.0, "Late." + INDICATOR, ("stop",)),  # once visible, text needs no waiting
        ("edit", 4.0, "Late.", ("regenerate",)),  # the stream ended at 3.5; one write a second
    ]


async def test_error_after_text_keeps_the_text_and_adds_a_line(
    clock: ManualClock, server: ChatServer
) -> None:
    script = [*words("Partial answer", every=0.1), (0.3, ProviderFailed(partial_text="x"))]
    r = renderer(clock, ScriptedStream(clock, script), RecordingSurface(server))
    result = await run_for(clock, r, 5)
    assert server.writes[-1].text == ("Partial answer\n\n⚠️ The AI provider failed while answering.")
    assert result.text == "Partial answer"


async def test_deleted_message_ends_quietly_and_cancels_upstream(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, words("a b c d e f g h i j", every=0.3))
    r = renderer(clock, stream, RecordingSurface(server))
    task = asyncio.create_task(r.run())
    await clock.advance(0.5)
    server.deleted.update(server.messages)
    await clock.advance(5)
    result = task.result()
    assert result.outcome is Outcome.DELETED
    assert stream.closed and not stream.finished
    assert [w.kind for w in server.writes] == ["send"]


async def test_reasoning_hidden_by_default(clock: ManualClock, server: ChatServer) -> None:
    script: list[tuple[float, StreamDelta | Exception]] = [
        (0.0, StreamDelta(reasoning="The user greets me. ")),
        (0.1, StreamDelta(reasoning="\n")),
        (1.5, StreamDelta(content="Hi there.")),
    ]
    r = renderer(clock, ScriptedStream(clock, script), RecordingSurface(server))
    result = await run_for(clock, r, 5)
    assert [w.text for w in server.writes] == ["💭 Thinking…" + INDICATOR, "Hi there."]
    assert result.reasoning == "The user greets me. \n"


async def test_reasoning_shown_as_a_separate_quoted_part(
    clock: ManualClock, server: ChatServer
) -> None:
    script: list[tuple[float, StreamDelta | Exception]] = [
        (0.0, StreamDelta(reasoning="Line one\nLine two")),
        (0.1, StreamDelta(content="The answer.")),
    ]
    r = renderer(
        clock, ScriptedStream(clock, script), RecordingSurface(server), show_reasoning=True
    )
    result = await run_for(clock, r, 5)
    assert server.shown(result.messages) == [
        "💭 Thinking\n> Line one\n> Line two",
        "The answer.",
    ]


async def test_live_preview_then_final_message(clock: ManualClock, server: ChatServer) -> None:
    stream = ScriptedStream(clock, words("one two three four", every=0.4))
    surface = RecordingSurface(server, previews=True)
    result = await run_for(clock, renderer(clock, stream, surface), 10)
    assert [w.kind for w in server.writes] == ["preview", "preview", "send"]
    assert surface.previews[0] == "one " + INDICATOR
    assert server.shown(result.messages) == ["one two three four"]


async def test_typing_shown_until_the_first_text(clock: ManualClock, server: ChatServer) -> None:
    stream = ScriptedStream(clock, [(9.0, StreamDelta(content="Late answer."))])
    surface = RecordingSurface(server)
    await run_for(clock, renderer(clock, stream, surface), 15)
    assert surface.activities == ["typing", "typing", "typing"]  # at 0, 4 and 8 s
    assert [w.text for w in server.writes] == ["Late answer."]


PAUSE_SCRIPT: list[tuple[float, StreamDelta | Exception]] = [
    (0.0, StreamDelta(content="Thinking hard")),
    (45.0, StreamDelta(content=" done.")),
]


async def test_a_paused_preview_is_kept_alive(clock: ManualClock, server: ChatServer) -> None:
    surface = RecordingSurface(server, previews=True, preview_refresh=20.0)
    await run_for(clock, renderer(clock, ScriptedStream(clock, PAUSE_SCRIPT), surface), 60)
    previews = [(round(w.at - T0), w.text) for w in server.writes if w.kind == "preview"]
    assert previews[0] == (0, "Thinking hard" + INDICATOR)
    assert [text for _, text in previews[1:3]] == ["Thinking hard" + INDICATOR] * 2
    assert all(b[0] - a[0] <= 24 for a, b in itertools.pairwise(previews))
    assert server.writes[-1].kind == "send" and server.writes[-1].text == "Thinking hard done."


async def test_a_lasting_preview_is_not_shown_again(clock: ManualClock, server: ChatServer) -> None:
    surface = RecordingSurface(server, previews=True)  # the surface's previews do not fade
    await run_for(clock, renderer(clock, ScriptedStream(clock, PAUSE_SCRIPT), surface), 60)
    previews = [w.text for w in server.writes if w.kind == "preview"]
    assert previews == ["Thinking hard" + INDICATOR]  # never again while the answer pauses
    assert server.writes[-1].kind == "send" and server.writes[-1].text == "Thinking hard done."


async def test_end_is_reported_before_the_final_write(
    clock: ManualClock, server: ChatServer
) -> None:
    reported: list[tuple[Outcome, str, int]] = []

    async def on_ended(outcome: Outcome, text: str) -> None:
        reported.append((outcome, text, len(server.writes)))

    stream = ScriptedStream(clock, words("one two three", every=0.3))
    r = renderer(clock, stream, RecordingSurface(server), on_ended=on_ended)
    await run_for(clock, r, 10)
    assert reported == [(Outcome.DONE, "one two three", len(server.writes) - 1)]
    assert server.writes[-1].text == "one two three"


async def test_stopped_before_it_started_never_reads_upstream(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, words("never shown", every=0.1))
    r = renderer(clock, stream, RecordingSurface(server))
    r.stop()
    result = await run_for(clock, r, 5)
    assert result.outcome is Outcome.STOPPED and result.text == ""
    assert not stream.finished and not stream.closed  # the stream was never opened
    assert [w.text for w in server.writes] == ["⏹ Stopped."]


async def test_transient_failures_are_retried_with_backoff(
    clock: ManualClock, server: ChatServer
) -> None:
    server.unavailable = 2
    stream = ScriptedStream(clock, words("one two", every=0.1))
    r = renderer(clock, stream, RecordingSurface(server), stop_button=False)
    result = await run_for(clock, r, 20)
    # the first send fails at 0.1 s, again after 2 s, then passes after 4 s more
    assert timeline(server) == [("send", 6.1, "one two", ())]
    assert result.outcome is Outcome.DONE


async def test_an_unreachable_platform_ends_the_answer_and_the_request(
    clock: ManualClock, server: ChatServer
) -> None:
    server.unavailable = 100
    stream = ScriptedStream(clock, words(" ".join(f"w{i}" for i in range(1000)), every=0.1))
    r = renderer(clock, stream, RecordingSurface(server))
    result = await run_for(clock, r, 60)
    assert result.outcome is Outcome.FORBIDDEN and server.writes == []
    assert stream.closed and not stream.finished


async def test_a_bug_below_ends_the_answer_in_place_and_the_room_goes_on(
    clock: ManualClock, server: ChatServer
) -> None:
    scheduler = WriteScheduler(clock)
    broken = ScriptedStream(clock, [*words("half an", every=0.1), (0.5, RuntimeError("bug"))])
    healthy = ScriptedStream(clock, words("all of it", every=0.3))
    r1 = renderer(clock, broken, RecordingSurface(server, max_length=4000), scheduler)
    r2 = renderer(clock, healthy, RecordingSurface(server, max_length=4000), scheduler)
    first, second = await asyncio.gather(r1.run(), run_for(clock, r2, 10))
    assert first.outcome is Outcome.FAILED
    [shown] = server.shown(first.messages)
    assert shown.startswith("half an\n\n⚠️ Something went wrong on my side")
    assert INDICATOR not in shown and server.buttons[first.messages[0].id] == ()
    assert second.outcome is Outcome.DONE and server.shown(second.messages) == ["all of it"]


async def test_an_answer_that_could_not_be_saved_says_so_and_is_not_left_streaming(
    clock: ManualClock, server: ChatServer
) -> None:
    async def broken_store(outcome: Outcome, text: str) -> None:
        raise OSError("disk I/O error")

    stream = ScriptedStream(clock, words("the answer", every=0.1))
    r = renderer(clock, stream, RecordingSurface(server, max_length=4000), on_ended=broken_store)
    result = await run_for(clock, r, 5)
    [shown] = server.shown(result.messages)
    assert shown.startswith("the answer\n\n⚠️ I could not save this answer")
    assert not shown.endswith(INDICATOR)


async def test_a_whitespace_only_answer_ends_with_a_clear_line(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, [(0.0, StreamDelta(content=" \n\t ")), (0.2, StreamDelta())])
    r = renderer(clock, stream, RecordingSurface(server, max_length=4000))
    result = await run_for(clock, r, 5)
    assert server.shown(result.messages) == [
        "⚠️ The model returned an empty answer. Try asking again, or another model."
    ]


async def test_a_message_the_platform_keeps_failing_to_edit_is_continued_in_a_fresh_one(
    clock: ManualClock, server: ChatServer
) -> None:
    stream = ScriptedStream(clock, words(" ".join(f"w{i}" for i in range(60)), every=0.5))
    r = renderer(clock, stream, RecordingSurface(server, max_length=4000), final_buttons=(REGEN,))
    task = asyncio.create_task(r.run())
    await clock.advance(1.0)
    [first] = list(server.messages)
    server.failing_edits.add(first)  # from now on, every edit of it answers 502
    await clock.advance(60)
    assert task.done()
    result = task.result()
    assert result.outcome is Outcome.DONE
    [fresh] = result.messages
    assert fresh.id != first
    assert server.messages[fresh.id] == " ".join(f"w{i}" for i in range(60))
    assert server.buttons[fresh.id] == ("regenerate",)
