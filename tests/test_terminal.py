"""The terminal chat through the real use cases, and `g4f-bridge chat`/`run` as processes.

The chat on a real terminal (prompt_toolkit and rich in a pseudo-terminal) is in
test_terminal_pty.py; this file drives the session with lines and a plain view, and checks the
rich rendering on a console that records what it draws.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console
from rich.segment import Segment

from bots.terminal import REDRAW_INTERVAL, TerminalChat, TerminalSurface
from bots.terminal_io.markdown import GrowingMarkdown, render_markdown
from bots.terminal_io.output import PlainView, RichView
from core.bridge import Bridge
from core.render.limits import Bucket
from core.render.renderer import INDICATOR
from core.render.surface import MessageSurface
from tests.conftest import MakeSettings
from tests.fakes.g4f_server import FakeG4F, long_answer
from tests.test_cli import api, run_cli


class Keyboard:
    """Lines typed by a user; None is Ctrl-D. `press_ctrl_c` while a command runs."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._on_interrupt: Callable[[], object] | None = None

    async def read(self) -> str | None:
        return await self.queue.get()

    @contextmanager
    def watching(self, on_interrupt: Callable[[], object]) -> Iterator[None]:
        self._on_interrupt = on_interrupt
        try:
            yield
        finally:
            self._on_interrupt = None

    def press_ctrl_c(self) -> None:
        assert self._on_interrupt is not None, "nothing is running"
        self._on_interrupt()

    def type(self, *lines: str | None) -> None:
        for line in lines:
            self.queue.put_nowait(line)


@pytest.fixture
async def bridge(make_settings: MakeSettings) -> AsyncIterator[Bridge]:
    b = await Bridge.open(make_settings())
    yield b
    await b.close()


def session(bridge: Bridge, keyboard: Keyboard, tmp_path: Path) -> tuple[TerminalChat, io.StringIO]:
    out = io.StringIO()
    chat = TerminalChat(bridge, keyboard=keyboard, view=PlainView(out), image_dir=tmp_path / "img")
    return chat, out


async def test_chat_streams_answers_and_commands(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    g4f.answers["hello"] = "Hello there, friend."
    keyboard.type("hello", "/model gpt4o", "/model gpt-4o-mini", "/status", "again", None)
    assert await chat.run() == 0
    text = out.getvalue()
    assert "\nHello there, friend.\n\n" in text
    assert INDICATOR.strip() not in text
    assert "Did you mean gpt-4o" in text
    assert "✅ Your model is now `gpt-4o-mini`." in text
    assert "Conversation: 2 messages" in text
    last = g4f.chat_requests()[-1].json
    assert last is not None and last["model"] == "gpt-4o-mini"
    assert [m["content"] for m in last["messages"]] == ["hello", "Hello there, friend.", "again"]


def test_the_terminal_surface_is_a_message_surface(tmp_path: Path) -> None:
    surface = TerminalSurface(PlainView(io.StringIO()), image_dir=tmp_path)
    assert isinstance(surface, MessageSurface)
    limits = surface.limits
    assert not limits.previews and limits.placeholder is None
    assert limits.writes.edit == (Bucket("terminal", 1, REDRAW_INTERVAL),)


async def test_imagine_saves_the_file(bridge: Bridge, g4f: FakeG4F, tmp_path: Path) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/imagine a lighthouse", None)
    await chat.run()
    saved = list((tmp_path / "img").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == g4f.image_bytes
    assert f"Saved {saved[0]}" in out.getvalue()
    assert "🎨 a lighthouse\n— flux" in out.getvalue()


async def test_imagine_where_the_image_cannot_be_saved_says_so(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    (tmp_path / "img").write_text("a file where the image folder should be")
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/imagine a lighthouse", "/status", None)
    assert await chat.run() == 0
    assert "⚠️ The image could not be uploaded here.\n" in out.getvalue()
    assert "Model: `gpt-4o`" in out.getvalue()  # the chat goes on


async def test_models_are_paged(bridge: Bridge, g4f: FakeG4F, tmp_path: Path) -> None:
    keyboard = Keyboard()
    out = io.StringIO()
    chat = TerminalChat(bridge, keyboard=keyboard, view=PlainView(out), models_page_size=8)
    keyboard.type("/models", "/more", "/more", "/more", None)
    await chat.run()
    text = out.getvalue()
    headers = [line for line in text.splitlines() if line.startswith("Chat models")]
    assert headers == [f"Chat models (page {n} of 3, 20 in all)" for n in (1, 2, 3)]
    first = text.split(headers[0] + "\n")[1].split("\n\n")[0].splitlines()
    assert first[:2] == ["  gpt-4o  ← yours", "  gpt-4o-mini"]
    assert len(first) == 8 + 1  # a page, then the hint
    assert first[-1].startswith("/more: next page")
    assert "No more models to show." in text


async def test_models_reset_system_and_unknown(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/models llama", "/system Be short.", "hi", "/reset", "/bogus", None)
    await chat.run()
    text = out.getvalue()
    assert "(page 1 of 1, 1 in all, matching “llama”)\n  llama-3.3-70b\n" in text
    assert "persona is now:\n> Be short." in text
    assert "Started a new conversation." in text
    assert "Unknown command /bogus." in text
    assert g4f.chat_requests()[-1].json["messages"][0]["content"] == "Be short."


async def test_ctrl_c_stops_the_answer_not_the_chat(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    g4f.trickle_interval = 0.2
    g4f.answers["long"] = "\n".join(f"w{i}" for i in range(40))
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/model trickle", "long")
    running = asyncio.create_task(chat.run())
    while "w1\n" not in out.getvalue():
        await asyncio.sleep(0.02)
    keyboard.press_ctrl_c()
    keyboard.type("/status", None)
    assert await running == 0
    assert "\n\n⏹ Stopped." in out.getvalue()
    assert "w39" not in out.getvalue()
    assert "Conversation: 2 messages" in out.getvalue()


async def test_chat_command_as_a_process(g4f: FakeG4F, tmp_path: Path) -> None:
    g4f.answers["ping"] = "pong"
    store = {"BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3"}
    code, out, err = await run_cli("chat", env={**api(g4f), **store}, cwd=tmp_path, stdin=b"ping\n")
    assert code == 0, err
    assert "pong\n" in out


async def test_run_without_tokens_starts_the_terminal_chat(g4f: FakeG4F, tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "run",
        env={**api(g4f), "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3"},
        cwd=tmp_path,
    )
    assert code == 0
    assert "No platform token is set: starting the terminal chat" in err
    assert "TELEGRAM_TOKEN" in err
    assert "g4f-bridge chat with gpt-4o." in err  # stdout keeps only what was asked for
    assert out == ""


async def test_run_named_platform_without_token_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await run_cli("run", "--platform", "telegram", cwd=tmp_path)
    assert code == 2
    assert err == "g4f-bridge: TELEGRAM_TOKEN is not set, so telegram cannot start\n"


async def test_ctrl_c_in_the_chat_process_stops_only_the_answer(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    import os
    import signal

    from tests.processes import CLI, ROOT

    g4f.trickle_interval = 0.2
    g4f.answers["long"] = "\n".join(f"w{i}" for i in range(60))  # a pipe gets whole lines
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    env.update(api(g4f), PYTHONPATH=str(ROOT), BRIDGE_STORE_URL=f"sqlite:///{tmp_path}/s.sqlite3")
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "chat",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"/model trickle\nlong\n")
    await proc.stdin.drain()
    seen = b""
    while b"w2\n" not in seen:
        seen += await asyncio.wait_for(proc.stdout.read(100), 10)
    proc.send_signal(signal.SIGINT)
    proc.stdin.write(b"/status\n")
    proc.stdin.close()
    rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    out = (seen + rest).decode()
    assert proc.returncode == 0
    assert "\n\n⏹ Stopped." in out
    assert "w59" not in out
    assert "Conversation: 2 messages" in out


async def test_piped_chat_prints_plain_answers(g4f: FakeG4F, tmp_path: Path) -> None:
    g4f.answers["show code"] = "**Bold** answer:\n\n```python\nx = 1\n```"
    g4f.answers["more"] = "Second answer."
    env = {**api(g4f), "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3"}
    stdin = b"show code\nmore\n/model\n"
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path, stdin=stdin)
    assert code == 0, err
    assert "\x1b" not in out + err
    assert out == (
        "**Bold** answer:\n\n```python\nx = 1\n```\n\n"
        "Second answer.\n\n"
        "Your model: `gpt-4o`. Choose another with /model NAME or /models.\n\n"
    )


async def test_chat_logs_go_to_a_file_not_the_conversation(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "G4F_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "G4F_RETRIES": "1",
        "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
    }
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert code == 0
    assert out.startswith("⚠️ Cannot reach the AI server at http://127.0.0.1:")
    assert "INFO" not in out + err and "attempt" not in out + err
    log = (tmp_path / "data" / "chat.log").read_text()
    assert re.search(
        r"INFO core\.client( \[[0-9a-f]{8}\])?: attempt 1 with gpt-4o failed: Cannot", log
    )
    assert "hello" not in log  # the prompt is not logged


# --- the rich view, on a console that records -------------------------------------------------

SAMPLES = {
    "prose": "Hello **there**, a `span` and\na line break.\n\nSecond paragraph.",
    "lists": "Steps:\n\n1. first\n2. second\n\n   still second\n3. third\n\n- a\n- b\n\nEnd.",
    "code": "Look:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nDone.",
    "headings": "# Title\n\n## Part\n\n### Explanation:\n\nText under it.\n\n---\n\nAfter.",
    "quote and table": "> quoted\n> more\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nafter",
    "long": long_answer("sample", 400),
}


def _terminal_console(width: int, height: int) -> Console:
    from bots.terminal_io.markdown import THEME

    return Console(
        file=io.StringIO(),
        theme=THEME,
        force_terminal=True,
        color_system="truecolor",
        width=width,
        height=height,
        highlight=False,
        markup=False,
        emoji=False,
    )


def plain(lines: list[list[Segment]]) -> list[str]:
    return ["".join(seg.text for seg in line) for line in lines]


def squeeze_blank_lines(lines: list[str]) -> list[str]:
    return [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]


@pytest.mark.parametrize("name", list(SAMPLES))
def test_streamed_render_ends_as_a_fresh_render_of_the_whole_text(name: str) -> None:
    console = _terminal_console(60, 24)
    text = SAMPLES[name]
    growing = GrowingMarkdown()
    for end in range(1, len(text) + 1, 7):  # as the answer streams in
        growing.render(console, text[:end], console.options)
    final = growing.render(console, text, console.options)
    assert final == GrowingMarkdown().render(console, text, console.options)
    # Block by block, it reads as rich's render of the whole document (rich puts two blank
    # lines around a table where other blocks get one).
    whole = plain(render_markdown(console, text, console.options))
    assert plain(final) == squeeze_blank_lines(whole)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_no_rendered_line_ends_in_blanks(name: str) -> None:
    console = _terminal_console(60, 24)
    for line in plain(render_markdown(console, SAMPLES[name], console.options)):
        assert line == line.rstrip(), repr(line)


def test_markdown_is_rendered_and_code_highlighted() -> None:
    console = _terminal_console(60, 24)
    lines = render_markdown(
        console, SAMPLES["code"] + "\n\n" + SAMPLES["headings"], console.options
    )
    text = plain(lines)
    assert "```" not in "".join(text) and "#" not in "".join(text)
    assert text[:6] == ["Look:", "", "python", "def add(a, b):", "    return a + b", ""]
    def_style = next(seg.style for seg in lines[3] if seg.text.strip() == "def")
    assert def_style is not None and def_style.color is not None  # a keyword colour
    heading = next(line for line in lines if "Explanation:" in "".join(s.text for s in line))
    assert all(s.style is not None and s.style.bold for s in heading if s.text.strip())


def test_rich_view_streams_reasoning_dimmed_and_notes_styled() -> None:
    console = _terminal_console(60, 24)
    view = RichView(console)
    view.show_answer(["💭 Thinking\n> Let me think.", "Partial"], streaming=True)
    view.show_answer(
        ["💭 Thinking\n> Let me think.", "Partial answer\n\n⚠️ The AI server failed."],
        streaming=False,
    )
    view.end_answer()
    drawn = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[2m💭 Thinking" in drawn  # dim
    assert "▌" in drawn  # the marker while streaming …
    final = drawn[drawn.rindex("💭") :]
    assert "│ " in final and "▌" not in final  # … and none in the final draw
    error_at = final.index("⚠️")
    assert "\x1b[1;31m" in final[error_at - 12 : error_at]  # bold red


async def test_a_data_dir_that_cannot_be_written_is_one_line(g4f: FakeG4F, tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a folder")
    env = {
        **api(g4f),
        "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
    }
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(f"g4f-bridge: The chat cannot write its history and log in {tmp_path}")
    assert err.endswith(". Set BRIDGE_DATA_DIR to a folder you can write.\n")


async def test_continue_asks_for_the_rest_of_a_cut_answer(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    from core.continuation import CONTINUE_PROMPT, LENGTH_NOTE_TERMINAL, NOTHING_TO_CONTINUE

    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    g4f.length_limit_words = 3
    g4f.answers["count"] = "one two three four five"
    g4f.answers[CONTINUE_PROMPT] = "four five"
    keyboard.type("/continue", "count", "/continue", "/status", None)
    assert await chat.run() == 0
    text = out.getvalue()
    assert NOTHING_TO_CONTINUE in text
    assert f"one two three\n\n{LENGTH_NOTE_TERMINAL}" in text
    assert "\nfour five\n" in text
    sent = g4f.chat_requests()[-1].json["messages"]
    assert [m["content"] for m in sent[-3:]] == ["count", "one two three", CONTINUE_PROMPT]
    assert "Tokens: " in text and " today (UTC)" in text


async def test_image_sends_a_picture_or_a_file_with_the_question(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    from tests.fakes.g4f_server import build_png

    picture = tmp_path / "cat.png"
    picture.write_bytes(build_png(3, 3))
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n")
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type(
        f"/image {picture} what is it?",
        f"/image {notes} summarise",
        f"/image {tmp_path / 'missing.png'} hm",
        None,
    )
    assert await chat.run() == 0
    text = out.getvalue()
    assert "I see 1 image(s). You said: what is it?" in text
    # The conversation goes on: the picture is sent again with its turn in the history.
    assert g4f.images_received == [[build_png(3, 3)]] * 2
    sent = g4f.chat_requests()[-1].json["messages"][-1]["content"]
    assert sent == "summarise\n\nFile notes.txt:\n```\nremember the milk\n```"
    assert "Cannot read " in text and "missing.png" in text


async def test_web_asks_searching_and_alone_toggles(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/web latest news", "/web", "plain", "/web", "plain again", None)
    assert await chat.run() == 0
    text = out.getvalue()
    assert "🔎 Sources: [Example Domain](https://example.com/page)" in text
    assert "Web search is on in this chat" in text and "Web search is off in this chat." in text
    flags = [r.json.get("web_search") for r in g4f.chat_requests()]
    assert flags == [True, True, None]
