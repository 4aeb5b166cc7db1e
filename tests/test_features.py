"""Issue 12 features in the core: length limits and Continue, tokens per answer, reasoning
notes; against the emulated G4F server and a real SQLite store."""

from __future__ import annotations

import base64

import pytest

from core.attachments import ACCEPTED_LINE, MAX_TEXT_FILE_BYTES, NO_VISION, Attachment
from core.bridge import Bridge
from core.continuation import (
    CONTINUE_PROMPT,
    LENGTH_NOTE,
    LENGTH_NOTE_TERMINAL,
    NOTHING_TO_CONTINUE,
)
from core.conversations import Origin
from core.render.renderer import THINKING_NOTE, Outcome
from core.render.surface import SurfaceLimits
from core.results import Answered, Refusal, RefusalReason, Status, WebSearchSet
from core.sources import MAX_SOURCES, Source, SourceCollector
from core.texts import status_text
from core.usage import CHARS_PER_TOKEN, estimate_tokens
from tests.conftest import OpenBridge
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F, build_png
from tests.fakes.surface import ChatServer, RecordingSurface

DM = Origin("test", "dm-1", "u1", is_private=True)
OTHER = Origin("test", "dm-2", "u2", is_private=True)
GROUP = Origin("test", "group-1", "u1", space_id="g1")


@pytest.fixture
def chat(clock: ScaledClock) -> ChatServer:
    return ChatServer(clock=clock, interval=1.0)


class ConsoleSurface(RecordingSurface):
    """A surface without buttons, like the terminal's."""

    @property
    def limits(self) -> SurfaceLimits:
        base = super().limits
        return SurfaceLimits(max_length=base.max_length, room=base.room, buttons=False)


def surface(chat: ChatServer, origin: Origin = DM) -> RecordingSurface:
    return RecordingSurface(chat, chat=origin.chat_id, max_length=2000)


async def ask(bridge: Bridge, chat: ChatServer, prompt: str, origin: Origin = DM) -> Answered:
    result = await bridge.ask(origin, prompt, surface(chat, origin))
    assert isinstance(result, Answered), result
    return result


# --- length limits ------------------------------------------------------------------------


async def test_a_cut_answer_says_so_in_its_last_line_and_offers_continue(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    g4f.length_limit_words = 3
    g4f.answers["count"] = "one two three four five"
    answer = await ask(bridge, chat, "count")
    assert answer.outcome is Outcome.DONE and answer.finish_reason == "length"
    [ref] = answer.messages
    assert chat.messages[ref.id] == f"one two three\n\n{LENGTH_NOTE}"
    assert chat.messages[ref.id].splitlines()[-1] == LENGTH_NOTE
    assert chat.buttons[ref.id] == ("continue", "regenerate")
    assert answer.text == "one two three"  # the note is shown, never stored as the answer


async def test_a_whole_answer_has_no_note_and_no_continue(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    g4f.length_limit_words = 10
    g4f.answers["count"] = "one two three four five"
    answer = await ask(bridge, chat, "count")
    assert answer.finish_reason == "stop"
    assert chat.messages[answer.messages[0].id] == "one two three four five"
    assert chat.buttons[answer.messages[0].id] == ("regenerate",)


async def test_continue_replies_to_the_cut_answer_in_the_same_branch(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="")
    g4f.length_limit_words = 3
    g4f.answers["count"] = "one two three four five"
    cut = await ask(bridge, chat, "count", origin=GROUP)  # a group: no head to fall back on
    g4f.length_limit_words = 0
    g4f.answers[CONTINUE_PROMPT] = "four five"
    rest = await bridge.continue_answer(GROUP, surface(chat, GROUP), message_id=cut.messages[0].id)
    assert isinstance(rest, Answered) and rest.text == "four five"
    assert g4f.chat_requests()[-1].json["messages"] == [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "one two three"},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
    assert chat.buttons[rest.messages[0].id] == ("regenerate",)
    # The continuation is in the branch: a reply to it sees the whole exchange.
    assert rest.turn_id is not None
    chain = await bridge.store.chain(rest.turn_id, limit=10)
    assert [t.content for t in chain] == ["count", "one two three", CONTINUE_PROMPT, "four five"]


async def test_continue_in_a_console_uses_the_latest_answer_and_names_the_command(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="")
    console = ConsoleSurface(chat, chat=DM.chat_id, max_length=2000)
    g4f.length_limit_words = 2
    g4f.answers["count"] = "one two three"
    cut = await bridge.ask(DM, "count", console)
    assert isinstance(cut, Answered)
    assert chat.messages[cut.messages[0].id] == f"one two\n\n{LENGTH_NOTE_TERMINAL}"
    assert chat.buttons[cut.messages[0].id] == ("regenerate",)  # no Continue button to press
    rest = await bridge.continue_answer(DM, ConsoleSurface(chat, chat=DM.chat_id))
    assert isinstance(rest, Answered)
    sent = g4f.chat_requests()[-1].json["messages"]
    assert sent[-2:] == [
        {"role": "assistant", "content": "one two"},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


async def test_continue_refuses_without_an_answer(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    nothing = await bridge.continue_answer(DM, surface(chat))
    assert nothing == Refusal(RefusalReason.NOT_FOUND, NOTHING_TO_CONTINUE)
    unknown = await bridge.continue_answer(GROUP, surface(chat, GROUP), message_id="nope")
    assert isinstance(unknown, Refusal) and unknown.reason is RefusalReason.NOT_FOUND
    assert g4f.chat_requests() == []


async def test_the_max_tokens_cut_of_a_real_request_is_length(g4f: FakeG4F) -> None:
    """The emulator gives "length" whenever it cut the answer, as real servers do."""
    import httpx

    async with httpx.AsyncClient(base_url=g4f.base_url) as http:
        body = {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "a b c d"}],
            "max_tokens": 2,
        }
        reply = (await http.post("/chat/completions", json=body)).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["choices"][0]["message"]["content"] == "You said:"


# --- usage ---------------------------------------------------------------------------------


async def test_reported_usage_is_stored_and_shown_in_status(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="")
    g4f.answers["hello there"] = "general kenobi you are bold"
    first = await ask(bridge, chat, "hello there")
    # The emulator counts a word as a token: 2 prompt words, 5 answer words.
    assert first.tokens is not None
    assert (first.tokens.prompt, first.tokens.completion, first.tokens.estimated) == (2, 5, False)
    second = await ask(bridge, chat, "again")  # prompt: 2 + 5 + 1 words, answer "You said: again"
    assert second.tokens is not None and second.tokens.total == 8 + 3
    await ask(bridge, chat, "not mine", origin=OTHER)
    status = await bridge.status(DM)
    assert isinstance(status, Status)
    assert (status.tokens_today, status.conversation_tokens) == (7 + 11, 7 + 11)
    assert "Tokens: 18 today (UTC), 18 in this conversation" in status_text(status)
    await bridge.reset(DM)
    status = await bridge.status(DM)
    assert isinstance(status, Status)
    assert (status.tokens_today, status.conversation_tokens) == (18, 0)
    metrics = bridge.metrics.render().decode()
    assert 'g4f_bridge_tokens_total{kind="completion"}' in metrics


async def test_without_usage_tokens_are_estimated_from_characters(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="Be brief.")
    g4f.send_usage = False
    g4f.answers["x" * 41] = "y" * 9
    answer = await ask(bridge, chat, "x" * 41)
    assert answer.tokens is not None and answer.tokens.estimated
    prompt = estimate_tokens("Be brief." + "x" * 41)
    assert (answer.tokens.prompt, answer.tokens.completion) == (prompt, 3)
    assert prompt == -(-(9 + 41) // CHARS_PER_TOKEN)
    status = await bridge.status(DM)
    assert isinstance(status, Status) and status.tokens_today == prompt + 3
    metrics = bridge.metrics.render().decode()
    assert f'g4f_bridge_tokens_total{{kind="completion_estimated"}} {3.0}' in metrics


# --- reasoning -----------------------------------------------------------------------------


async def test_a_thinking_model_shows_the_thinking_line_until_its_answer(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(g4f_default_model="reasoner")
    g4f.stream_delay = 0.3  # 6 s of clock time between steps: the note goes out meanwhile
    answer = await ask(bridge, chat, "hi")
    shown = [w.text for w in chat.writes]
    assert shown[0].startswith(THINKING_NOTE)
    assert chat.messages[answer.messages[0].id] == "You said: hi"


# --- images and files ----------------------------------------------------------------------

PNG = build_png(2, 2)


async def test_an_image_goes_as_a_content_part_and_stays_for_a_follow_up(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="")
    photo = Attachment("photo.png", PNG, "image/png")
    first = await bridge.ask(DM, "what is this?", surface(chat), attachments=[photo])
    assert isinstance(first, Answered) and first.text == "I see 1 image(s). You said: what is this?"
    [part_text, part_image] = g4f.chat_requests()[-1].json["messages"][-1]["content"]
    assert part_text == {"type": "text", "text": "what is this?"}
    url = part_image["image_url"]["url"]
    assert part_image["type"] == "image_url" and url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.partition(",")[2]) == PNG
    follow = await ask(bridge, chat, "and its colour?")
    assert follow.text == "I see 1 image(s). You said: and its colour?"
    assert g4f.images_received == [[PNG], [PNG]]  # the same picture, sent again with its turn
    sent = g4f.chat_requests()[-1].json["messages"]
    assert sent[-1] == {"role": "user", "content": "and its colour?"}


async def test_an_image_is_not_sent_past_the_history_limit(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="", bridge_history_max_messages=3)
    photo = Attachment("photo.png", PNG, "image/png")
    await bridge.ask(DM, "look", surface(chat), attachments=[photo])
    await ask(bridge, chat, "second")  # history: look+image, answer, second
    await ask(bridge, chat, "third")  # the question with the image no longer fits
    assert len(g4f.images_received) == 2
    sent = g4f.chat_requests()[-1].json["messages"]
    assert all(isinstance(m["content"], str) for m in sent)


async def test_a_model_that_cannot_see_images_says_so(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(g4f_default_model="llama-3.3-70b", g4f_retries=0)
    photo = Attachment("photo.jpg", PNG, "image/jpeg")
    result = await bridge.ask(DM, "what is this?", surface(chat), attachments=[photo])
    assert isinstance(result, Answered) and result.outcome is Outcome.FAILED
    expected = NO_VISION.format(model="llama-3.3-70b")
    assert result.error == expected
    assert chat.messages[result.messages[0].id] == f"⚠️ {expected}"
    assert "Request execution failed" not in chat.messages[result.messages[0].id]


async def test_text_files_go_into_the_prompt_with_their_names(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge(bridge_system_prompt="")
    files = [
        Attachment("notes.md", b"# Title\n```py\nx = 1\n```\n", None),
        Attachment("data.csv", b"a,b\n1,2\n", "text/csv"),
        Attachment("song.mp3", b"ID3\x00\x00", "audio/mpeg"),
    ]
    result = await bridge.ask(DM, "summarise", surface(chat), attachments=files)
    assert isinstance(result, Answered)
    sent = g4f.chat_requests()[-1].json["messages"][-1]["content"]
    assert sent == (
        "summarise\n\nFile notes.md:\n````\n# Title\n```py\nx = 1\n```\n````"
        "\n\nFile data.csv:\n```\na,b\n1,2\n```"
    )
    shown = chat.messages[result.messages[-1].id]
    assert shown.splitlines()[-1] == ACCEPTED_LINE.format(names="song.mp3", verb="is")


async def test_only_unreadable_attachments_are_refused_with_what_is_accepted(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    files = [
        Attachment("a.zip", b"PK\x03\x04", "application/zip"),
        Attachment("b.txt", b"\xff\xfe\x00bad", "text/plain"),
    ]
    result = await bridge.ask(DM, "read these", surface(chat), attachments=files)
    assert result == Refusal(
        RefusalReason.UNSUPPORTED, ACCEPTED_LINE.format(names="a.zip, b.txt", verb="are")
    )
    big = Attachment("big.log", b"x" * (MAX_TEXT_FILE_BYTES + 1), "text/plain")
    too_big = await bridge.ask(DM, "read", surface(chat), attachments=[big])
    assert isinstance(too_big, Refusal) and too_big.message.startswith("big.log is too large")
    huge = Attachment("huge.png", PNG, "image/png", too_big=True)
    refused = await bridge.ask(DM, "see", surface(chat), attachments=[huge])
    assert isinstance(refused, Refusal) and "huge.png is too large" in refused.message
    assert g4f.chat_requests() == []


async def test_regenerate_sends_the_questions_image_again(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    photo = Attachment("photo.webp", PNG, None)
    first = await bridge.ask(GROUP, "what?", surface(chat, GROUP), attachments=[photo])
    assert isinstance(first, Answered)
    again = await bridge.regenerate(GROUP, first.messages[0].id, surface(chat, GROUP))
    assert isinstance(again, Answered)
    assert g4f.images_received == [[PNG], [PNG]]


# --- web search ----------------------------------------------------------------------------


async def test_web_search_is_asked_for_and_sources_follow_the_answer(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    result = await bridge.ask(DM, "news?", surface(chat), web_search=True)
    assert isinstance(result, Answered)
    assert g4f.chat_requests()[-1].json["web_search"] is True
    assert result.text == "You said: news?"  # the source lines are not part of the answer
    assert chat.messages[result.messages[0].id] == (
        "You said: news?\n\n🔎 Sources: [Example Domain](https://example.com/page) · "
        "[Another (odd) title](https://example.org/b?q=1)"
    )
    plain = await ask(bridge, chat, "no web")
    assert "web_search" not in g4f.chat_requests()[-1].json
    assert "Sources" not in chat.messages[plain.messages[0].id]


async def test_many_sources_are_capped_and_the_toggle_is_per_chat(
    open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
) -> None:
    bridge = await open_bridge()
    g4f.web_sources = [(f"t{i}" * 40, f"https://example.com/{i}") for i in range(8)]
    assert await bridge.set_web_search(GROUP) == WebSearchSet(True)
    result = await ask(bridge, chat, "search", origin=GROUP)
    last = chat.messages[result.messages[-1].id].splitlines()[-1]
    assert last.startswith("🔎 Sources: ") and last.endswith(" (+3 more)")
    assert last.count("](https://") == MAX_SOURCES and "…](https://example.com/0)" in last
    status = await bridge.status(GROUP)
    assert isinstance(status, Status) and status.web_search
    assert "🔎 Web search is on in this chat." in status_text(status)
    again = await bridge.regenerate(GROUP, result.messages[0].id, surface(chat, GROUP))
    assert isinstance(again, Answered) and g4f.chat_requests()[-1].json["web_search"] is True
    other = await ask(bridge, chat, "elsewhere", origin=DM)  # another chat: still off
    assert "Sources" not in chat.messages[other.messages[0].id]
    assert await bridge.set_web_search(GROUP) == WebSearchSet(False)


def test_without_source_lines_the_text_is_kept_exactly() -> None:
    text = "a\n\n> quote [x]\n\n  \nend  \n\n"
    for size in (1, 2, 5, len(text)):
        collector = SourceCollector()
        shown = "".join(collector.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert shown + collector.flush() == text and collector.sources == []


def test_source_lines_split_anywhere_are_taken_out() -> None:
    text = (
        "Answer line\n> not a source\n\n> [0] [A](https://a.example/x)\n> [1] [B](http://b.example)"
    )
    for size in (1, 2, 3, 7, len(text)):
        collector = SourceCollector()
        shown = "".join(collector.feed(text[i : i + size]) for i in range(0, len(text), size))
        shown += collector.flush()
        assert shown == "Answer line\n> not a source"
        assert collector.sources == [
            Source("A", "https://a.example/x"),
            Source("B", "http://b.example"),
        ]
