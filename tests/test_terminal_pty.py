"""`g4f-bridge chat` on a real pseudo-terminal, against the emulated G4F server.

The chat process runs under pexpect in a pty; everything it writes is fed to pyte, a VT100
emulator, and the tests read the emulated screen (its characters and their colours and
attributes) as a user would see it. The emulator answers cursor-position requests like a real
terminal does. Keys are sent as a terminal sends them: Enter is a carriage return.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.fakes.g4f_server import FakeG4F
from tests.processes import ROOT

ROWS, COLUMNS = 24, 80
WAIT = 30.0  # seconds before a screen that never shows what is awaited fails the test
ENTER, CTRL_C, CTRL_D, UP, TAB = "\r", "\x03", "\x04", "\x1b[A", "\t"
PROMPT = "> "
VARIATION_SELECTOR = "\ufe0f"


class _AnsweringScreen(pyte.Screen):
    """A screen that answers the program's queries (cursor position) like a terminal."""

    def __init__(self, columns: int, rows: int, reply: Callable[[str], None]) -> None:
        super().__init__(columns, rows)
        self._reply = reply

    def write_process_input(self, data: str) -> None:
        self._reply(data)


class Terminal:
    """A chat process in a pty and the screen it draws."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "bots.cli", "chat"],
            env=env,
            cwd=str(cwd),
            dimensions=(ROWS, COLUMNS),
        )
        self.screen = _AnsweringScreen(COLUMNS, ROWS, self._reply)
        self.stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.raw = bytearray()
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.child.child_fd, self._on_output)

    def _reply(self, data: str) -> None:
        os.write(self.child.child_fd, data.encode())

    def _on_output(self) -> None:
        try:
            data = os.read(self.child.child_fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.child.child_fd)
            self.closed.set()
        else:
            self.raw += data
            # pyte drops the rest of a line after an emoji's variation selector (U+FE0F), so
            # the emulator gets the text without it: "⚠️ …" shows as "⚠ …".
            self.stream.feed(self._decoder.decode(data).replace(VARIATION_SELECTOR, ""))
        self._changed.set()

    # --- reading the screen -----------------------------------------------------------------
    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def cells(self, word: str) -> list[pyte.screens.Char]:
        """The screen cells of the first place `word` is shown."""
        for row, line in enumerate(self.screen.display):
            column = line.find(word)
            if column >= 0:
                return [self.screen.buffer[row][column + i] for i in range(len(word))]
        raise AssertionError(f"{word!r} is not on the screen:\n{self.text}")

    @property
    def prompt_line(self) -> str:
        """The line the cursor is on (the prompt, when the chat waits for input)."""
        return self.lines[self.screen.cursor.y]

    async def wait_for(self, what: str | Callable[[], bool]) -> None:
        """Until `what` is on the screen (or is true); fail after WAIT seconds."""
        done: Callable[[], bool] = (lambda: what in self.text) if isinstance(what, str) else what
        deadline = time.monotonic() + WAIT
        while not done():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0 or (self.closed.is_set() and not done()):
                raise AssertionError(f"never shown: {what!r}; the screen:\n{self.text}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def wait_for_prompt(self) -> None:
        """Until the chat waits for input again, with an empty line."""
        await self.wait_for(lambda: self.prompt_line.rstrip() == PROMPT.rstrip())

    # --- typing ---------------------------------------------------------------------------
    def type(self, keys: str) -> None:
        self.child.send(keys)

    async def exit_code(self) -> int:
        await asyncio.wait_for(self.closed.wait(), WAIT)
        await asyncio.to_thread(self.child.wait)
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def kill(self) -> None:
        if not self.closed.is_set():
            asyncio.get_running_loop().remove_reader(self.child.child_fd)
        self.child.close(force=True)


Launch = Callable[..., Awaitable[Terminal]]


@pytest.fixture
async def launch(g4f: FakeG4F, tmp_path: Path) -> AsyncIterator[Launch]:
    """Start `g4f-bridge chat` in a pty (the data dir and store in tmp_path); kill at the end."""
    started: list[Terminal] = []

    async def start(**env_overrides: str) -> Terminal:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("G4F_", "BRIDGE_")) and k not in ("NO_COLOR", "COLUMNS", "LINES")
        }
        env.update(
            PYTHONPATH=str(ROOT),
            TERM="xterm-256color",
            G4F_BASE_URL=g4f.base_url,
            G4F_RETRIES="0",
            BRIDGE_STORE_URL=f"sqlite:///{tmp_path}/store.sqlite3",
            BRIDGE_DATA_DIR=str(tmp_path / "data"),
            BRIDGE_EMBEDDED_G4F="never",
        )
        env.update(env_overrides)
        terminal = Terminal(env, tmp_path)
        started.append(terminal)
        await terminal.wait_for_prompt()
        return terminal

    yield start
    for terminal in started:
        terminal.kill()


MARKDOWN_ANSWER = (
    "### Explanation:\n\n"
    "Use **bold** and `code`.\n\n"
    "```python\n"
    "def add(a, b):\n"
    "    return a + b\n"
    "```\n\n"
    "- one\n"
    "- two\n\n"
    "Done."
)
SGR = re.compile(rb"\x1b\[([0-9;:]*)m")


def colours_used(raw: bytes) -> set[str]:
    """The SGR parameters that set a colour (foreground or background), in `raw`."""
    found = set()
    for match in SGR.finditer(raw):
        params = match.group(1).decode().replace(":", ";").split(";")
        for index, param in enumerate(params):
            if param in ("38", "48"):
                found.add(";".join(params[index : index + 3]))
                break
            if param.isdigit() and (30 <= int(param) <= 37 or 40 <= int(param) <= 47):
                found.add(param)
            if param.isdigit() and (90 <= int(param) <= 97 or 100 <= int(param) <= 107):
                found.add(param)
    return found


async def test_markdown_is_rendered_and_code_highlighted(g4f: FakeG4F, launch: Launch) -> None:
    g4f.answers["explain"] = MARKDOWN_ANSWER
    term = await launch()
    term.type("explain" + ENTER)
    await term.wait_for("Done.")
    await term.wait_for_prompt()
    screen = term.text
    for raw_markup in ("###", "**", "```", "- one"):
        assert raw_markup not in screen
    assert "Explanation:" in screen and "def add(a, b):" in screen and "• one" in screen
    assert all(cell.bold for cell in term.cells("Explanation:"))
    assert all(cell.bold for cell in term.cells("bold"))
    assert not term.cells("Use")[0].bold
    keyword, name = term.cells("def"), term.cells("add")
    assert keyword[0].fg != "default" and keyword[0].fg != name[0].fg  # highlighted
    assert "▌" not in screen
    drawn = bytes(term.raw)
    answer = drawn[drawn.index(b"Explanation:") : drawn.rindex(b"Done.")]
    assert not re.search(rb" +(\x1b\[[0-9;]*m)*\r?\n", answer)  # no line ends in blanks
    lines = term.lines
    code_at = lines.index("def add(a, b):")
    assert lines[code_at - 1 : code_at + 2] == ["python", "def add(a, b):", "    return a + b"]


async def test_ctrl_c_stops_the_answer_and_leaves_no_marker(g4f: FakeG4F, launch: Launch) -> None:
    g4f.trickle_interval = 0.2
    g4f.answers["story"] = " ".join(f"w{i}" for i in range(80))
    term = await launch()
    term.type("/model trickle" + ENTER)
    await term.wait_for("Your model is now trickle")
    term.type("story" + ENTER)
    await term.wait_for("w3 ")
    assert "▌" in term.text  # streaming
    term.type(CTRL_C)
    await term.wait_for("⏹ Stopped.")
    await term.wait_for_prompt()
    screen = term.text
    assert "▌" not in screen and "^C" not in screen and "w79" not in screen
    answer = screen[screen.index("w0") : screen.index("⏹ Stopped.")]
    assert re.fullmatch(r"w0( w\d+)*\n\n", answer), answer  # whole words, nothing in between
    term.type("/status" + ENTER)
    await term.wait_for("Conversation: 2 messages")  # the chat goes on; the partial is kept


async def test_ctrl_c_at_the_prompt_clears_the_line_and_keeps_the_prompt(
    g4f: FakeG4F, launch: Launch
) -> None:
    term = await launch()
    term.type("half a thought")
    await term.wait_for(lambda: term.prompt_line == "> half a thought")
    term.type(CTRL_C)
    await term.wait_for_prompt()
    assert "half a thought" not in term.text
    term.type(CTRL_C)  # on an empty line: how to quit is shown, the prompt stays
    await term.wait_for(lambda: term.prompt_line.endswith("Ctrl-D quits"))
    assert term.prompt_line.startswith(PROMPT)
    term.type("hello" + ENTER)
    await term.wait_for("You said: hello")
    await term.wait_for_prompt()
    assert "Ctrl-D quits" not in term.prompt_line


async def test_history_is_recalled_with_up_after_a_restart(launch: Launch) -> None:
    first = await launch()
    first.type("remember this line" + ENTER)
    await first.wait_for("You said: remember this line")
    await first.wait_for_prompt()
    first.type(CTRL_D)
    assert await first.exit_code() == 0
    second = await launch()
    second.type(UP)
    await second.wait_for(lambda: second.prompt_line == "> remember this line")
    second.type(ENTER)
    await second.wait_for(lambda: second.text.count("You said: remember this line") == 1)


async def test_a_multi_line_message_with_alt_enter(g4f: FakeG4F, launch: Launch) -> None:
    term = await launch()
    term.type("first line\x1b\rsecond line" + ENTER)  # Esc+Enter = Alt-Enter: a new line
    await term.wait_for("You said: first line")
    await term.wait_for_prompt()
    sent = g4f.chat_requests()[-1].json
    assert sent is not None and sent["messages"][-1]["content"] == "first line\nsecond line"


async def test_models_are_paged_and_names_complete(launch: Launch) -> None:
    term = await launch()
    term.type("/models" + ENTER)
    await term.wait_for("/more: next page")
    await term.wait_for_prompt()
    page_size = ROWS - 11  # what fits above the prompt and its completion menu
    assert "Chat models (page 1 of 2, 20 in all)" in term.text
    header = term.lines.index("Chat models (page 1 of 2, 20 in all)")
    names = term.lines[header + 1 : header + 1 + page_size]
    assert names[0] == "  gpt-4o  ← yours" and all(n.startswith("  ") for n in names)
    assert term.lines[header + 1 + page_size].startswith("/more: next page")
    term.type("/more" + ENTER)
    await term.wait_for("Chat models (page 2 of 2, 20 in all)")
    await term.wait_for_prompt()
    term.type("/model gpt-4o-m")
    await term.wait_for(lambda: term.prompt_line == "> /model gpt-4o-m")
    term.type(TAB)
    await term.wait_for(lambda: term.prompt_line == "> /model gpt-4o-mini")
    term.type(ENTER)  # takes the completion …
    await term.wait_for(lambda: "gpt-4o-mini" in term.prompt_line)
    term.type(ENTER)  # … and sends
    await term.wait_for("Your model is now gpt-4o-mini.")
    await term.wait_for_prompt()
    term.type("/sta")
    await term.wait_for(lambda: term.prompt_line == "> /sta")
    term.type(TAB)  # commands complete too
    await term.wait_for(lambda: term.prompt_line == "> /status")


async def test_no_colour_with_no_color_set(g4f: FakeG4F, launch: Launch) -> None:
    g4f.answers["explain"] = MARKDOWN_ANSWER
    term = await launch(NO_COLOR="1")
    term.type("explain" + ENTER)
    await term.wait_for("Done.")
    await term.wait_for_prompt()
    assert colours_used(bytes(term.raw)) == set()
    assert all(cell.bold for cell in term.cells("Explanation:"))  # still bold
    assert term.cells("def")[0].fg == "default"


async def test_colours_without_no_color(g4f: FakeG4F, launch: Launch) -> None:
    g4f.answers["explain"] = MARKDOWN_ANSWER
    term = await launch()
    term.type("explain" + ENTER)
    await term.wait_for("Done.")
    assert colours_used(bytes(term.raw))  # the NO_COLOR test above can fail


async def test_a_warning_is_one_dim_line_and_logs_stay_in_their_file(
    tmp_path: Path, launch: Launch
) -> None:
    (tmp_path / "images").write_text("a file where the image folder should be")
    term = await launch()
    term.type("/imagine a lighthouse" + ENTER)
    await term.wait_for("⚠ The image could not be uploaded here.")
    await term.wait_for("1 warning logged in ")
    await term.wait_for_prompt()
    summary = [line for line in term.lines if line.startswith("1 warning logged in ")]
    assert len(summary) == 1 and len(summary[0]) <= COLUMNS  # one line
    assert summary[0].startswith("1 warning logged in data/chat.log: image upload failed")
    assert b"\x1b[2m1 warning logged in " in term.raw  # dim
    log = (tmp_path / "data" / "chat.log").read_text()
    assert re.search(r"WARNING core\.bridge\.images( \[[0-9a-f]{8}\])?: image upload failed", log)
    assert "INFO" not in term.text and "WARNING" not in term.text


async def test_ctrl_c_before_the_first_word_stops_the_wait(g4f: FakeG4F, launch: Launch) -> None:
    g4f.first_token_delay = 60.0  # the server would take a minute to start answering
    term = await launch()
    term.type("/model slow-first" + ENTER)
    await term.wait_for("Your model is now slow-first")
    term.type("anything" + ENTER)
    await term.wait_for(lambda: term.lines[term.screen.cursor.y].startswith("▌"))  # waiting
    term.type(CTRL_C)
    await term.wait_for("⏹ Stopped.")
    await term.wait_for_prompt()
    assert "▌" not in term.text


async def test_keys_typed_while_an_answer_streams_wait_at_the_next_prompt(
    g4f: FakeG4F, launch: Launch
) -> None:
    g4f.trickle_interval = 0.1
    g4f.answers["count"] = " ".join(str(n) for n in range(12))
    term = await launch()
    term.type("/model trickle" + ENTER)
    await term.wait_for("Your model is now trickle")
    term.type("count" + ENTER)
    await term.wait_for("0 1 ")
    term.type("next question")
    await term.wait_for(lambda: term.prompt_line == "> next question")
    assert "0 1 2 3 4 5 6 7 8 9 10 11" in term.text  # the answer was drawn in full first
