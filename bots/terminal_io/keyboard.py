"""Reading the user's lines: prompt_toolkit on a terminal, plain lines from a pipe.

On a terminal (`PromptKeyboard`): Enter sends, Alt-Enter (or Esc then Enter) starts a new line,
Up/Down recall earlier lines (kept across sessions in a file), Tab completes commands and model
names. Ctrl-C at the prompt clears the line and the prompt stays; Ctrl-D on an empty line quits.
While a command runs the terminal is kept in raw mode, so Ctrl-C arrives as a key (nothing is
echoed into the answer being drawn) and stops it; other keys typed meanwhile are kept for the
next prompt.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys

from bots.terminal_io.logs import open_private

log = logging.getLogger(__name__)

PROMPT = "> "
QUIT_HINT = "Ctrl-D quits"
MENU_ROWS = 6  # lines kept free under the prompt for the completion menu
MODEL_COMMANDS = ("/model", "/models")


class Keyboard(Protocol):
    """Where the chat's input comes from."""

    async def read(self) -> str | None:
        """The next line (or lines) the user sends; None at the end of input (Ctrl-D)."""
        ...

    def watching(self, on_interrupt: Callable[[], object]) -> AbstractContextManager[None]:
        """While a command runs: call `on_interrupt` when the user presses Ctrl-C."""
        ...


class ChatCompleter(Completer):
    """Completes command names, and model names after /model and /models."""

    def __init__(
        self, commands: Mapping[str, str], models: Callable[[], Awaitable[Sequence[str]]]
    ) -> None:
        self._commands = commands
        self._load_models = models
        self._models: Sequence[str] = ()

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        command, space, word = text.partition(" ")
        if not space:
            for name, meaning in self._commands.items():
                if name.startswith(command):
                    yield Completion(name, -len(command), display_meta=meaning)
        elif command in MODEL_COMMANDS and " " not in word:
            needle = word.lower()
            starts = [m for m in self._models if m.lower().startswith(needle)]
            inside = [m for m in self._models if needle in m.lower() and m not in starts]
            for model in starts + inside:
                yield Completion(model, -len(word))

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        if document.text_before_cursor.startswith(MODEL_COMMANDS):
            try:
                self._models = await self._load_models()
            except Exception:  # completion must never break the prompt
                log.debug("no model names to complete", exc_info=True)
        for completion in self.get_completions(document, complete_event):
            yield completion


class PromptKeyboard:
    """Line editing, history, completion and Ctrl-C/Ctrl-D on a terminal."""

    def __init__(self, history: Path, completer: Completer) -> None:
        open_private(history)
        self._hint = False
        self._typeahead = ""
        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)),
            completer=completer,
            complete_while_typing=True,
            reserve_space_for_menu=MENU_ROWS,
            multiline=True,
            key_bindings=self._bindings(),
            prompt_continuation=lambda width, line, wrap: ".".rjust(width - 1) + " ",
            rprompt=lambda: FormattedText([("italic", QUIT_HINT)]) if self._hint else "",
        )
        self.session.default_buffer.on_text_changed += self._typed
        # A terminal that does not answer cursor-position requests is logged, not told on screen.
        self.session.app.renderer.cpr_not_supported_callback = _cpr_not_supported

    def _typed(self, _: object) -> None:
        self._hint = False

    def _bindings(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("enter")
        def _send(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            chosen = buffer.complete_state.current_completion if buffer.complete_state else None
            if chosen is not None:
                buffer.apply_completion(chosen)  # Enter takes the completion chosen in the menu
            else:
                buffer.validate_and_handle()

        @keys.add("escape", "enter")
        def _new_line(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("\n")

        @keys.add("c-c")
        def _clear(event: KeyPressEvent) -> None:
            buffer = event.current_buffer
            self._hint = not buffer.text
            buffer.reset()

        return keys

    async def read(self) -> str | None:
        default, self._typeahead = self._typeahead, ""
        self._hint = False
        try:
            return await self.session.prompt_async(
                FormattedText([("bold", PROMPT)]), default=default, handle_sigint=False
            )
        except EOFError:
            return None
        except KeyboardInterrupt:  # only through an outside SIGINT at a bad moment
            return ""

    @contextmanager
    def watching(self, on_interrupt: Callable[[], object]) -> Iterator[None]:
        terminal: Input = self.session.input

        def on_keys() -> None:
            for key in terminal.read_keys():
                if key.key == Keys.ControlC:
                    on_interrupt()
                elif len(key.data) == 1 and key.data.isprintable() and key.key == key.data:
                    self._typeahead += key.data

        with terminal.raw_mode(), terminal.attach(on_keys):
            yield
        terminal.flush_keys()


def _cpr_not_supported() -> None:
    log.info("the terminal does not report the cursor position; the prompt works without it")


class LineKeyboard:
    """One message per line of a stream (a pipe or a file); no prompt is shown."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdin
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._started = False
        self.interrupted = False

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            for line in self._stream:
                loop.call_soon_threadsafe(self._queue.put_nowait, line.rstrip("\r\n"))
        finally:
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def read(self) -> str | None:
        if not self._started:
            self._started = True
            # A daemon thread: a read blocked on a pipe never holds up the end of the process.
            loop = asyncio.get_running_loop()
            threading.Thread(target=self._pump, args=(loop,), daemon=True).start()
        return await self._queue.get()

    def watching(self, on_interrupt: Callable[[], object]) -> AbstractContextManager[None]:
        return nullcontext()  # Ctrl-C arrives as SIGINT; the chat handles it

    def quit(self) -> None:
        """Ctrl-C with nothing running: end the input."""
        self.interrupted = True
        self._queue.put_nowait(None)
