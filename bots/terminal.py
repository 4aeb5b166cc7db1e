"""The terminal chat: the same use cases and renderer as the chat platforms, in a console.

Answers are rewritten in place as they stream. Commands: /models [filter], /model NAME, /reset,
/system TEXT, /imagine PROMPT (saves the image and prints its path), /status, /help, /quit.
Ctrl-C stops the current answer without quitting; Ctrl-D (end of input) quits.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TextIO

from core.bridge import Bridge
from core.conversations import Where
from core.render.limits import Bucket
from core.render.renderer import INDICATOR
from core.render.surface import Button, MessageRef, SurfaceLimits, WriteLimits
from core.results import (
    ConversationReset,
    ModelChosen,
    ModelPage,
    Refusal,
    Status,
    StopResult,
    SystemPromptSet,
)
from core.texts import (
    current_model_text,
    model_chosen_text,
    models_page_text,
    persona_text,
    reset_text,
    status_text,
)

REDRAW_INTERVAL = 0.05  # seconds between two redraws of a streaming answer

HELP = """Type a message to chat. Commands:
  /models [filter]   list chat models       /model NAME    choose a model
  /imagine PROMPT    draw and save an image /system TEXT   set the persona ('' resets)
  /reset             start a new conversation
  /status            model, limits, conversation
  /help              this text              /quit          leave (or Ctrl-D)
Ctrl-C stops an answer that is streaming."""


class TerminalSurface:
    """Writes an answer to a text stream, appending as its text grows."""

    def __init__(self, out: TextIO, *, image_dir: Path) -> None:
        self._out = out
        self._image_dir = image_dir
        self._ids = itertools.count(1)
        self._shown: dict[str, str] = {}
        redraw = (Bucket("terminal", 1, REDRAW_INTERVAL),)
        self._limits = SurfaceLimits(
            max_length=1_000_000,
            room="terminal",
            writes=WriteLimits(send=redraw, edit=redraw),
            placeholder=None,
        )
        self.last_ref: MessageRef | None = None

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        ref = MessageRef(str(next(self._ids)))
        self._shown[ref.id] = ""
        self.last_ref = ref
        self._update(ref, text)
        return ref

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        self._update(ref, text)

    def _update(self, ref: MessageRef, text: str) -> None:
        old = self._shown[ref.id]
        old_body, new_body = old.removesuffix(INDICATOR), text.removesuffix(INDICATOR)
        if old != old_body:
            self._write("\b \b" * len(INDICATOR))  # erase the streaming indicator
        if new_body.startswith(old_body):
            self._write(new_body[len(old_body) :])
        else:
            self._write("\n" + new_body)  # not an extension (rare): show it again in full
        if text != new_body:
            self._write(INDICATOR)
        self._shown[ref.id] = text

    async def preview(self, text: str) -> None:
        raise NotImplementedError("the terminal does not use previews")

    async def upload(
        self,
        data: bytes,
        *,
        filename: str,
        content_type: str,
        caption: str,
        prompt: str,
        model: str,
    ) -> MessageRef:
        self._image_dir.mkdir(parents=True, exist_ok=True)
        stem, _, ext = filename.rpartition(".")
        path = self._image_dir / f"{stem}-{next(self._ids)}.{ext}"
        path.write_bytes(data)
        self._write(f"{caption}\nSaved {path}\n")
        return MessageRef(str(path))

    async def activity(self, kind: Literal["typing", "upload_photo"]) -> None:
        return None


class TerminalChat:
    """One interactive session: reads lines, calls the use cases, prints results."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        read_line: Callable[[str], Awaitable[str | None]],
        out: TextIO = sys.stdout,
        image_dir: Path = Path("images"),
    ) -> None:
        self.bridge = bridge
        self.where = Where(
            platform="terminal",
            chat_id="local",
            user_id=_local_user(),
            is_private=True,
            is_operator=True,
        )
        self._read_line = read_line
        self._out = out
        self._image_dir = image_dir
        self._current: TerminalSurface | None = None

    def say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def stop_answer(self) -> bool:
        """Stop the answer that is streaming (Ctrl-C). True when one was stopped."""
        surface = self._current
        if surface is None or surface.last_ref is None:
            return False
        return self.bridge.stop(self.where, surface.last_ref.id) is StopResult.STOPPED

    async def run(self) -> int:
        self.say(f"g4f-bridge chat with {await self.bridge.model_for(self.where)} (/help)")
        while True:
            line = await self._read_line("> ")
            if line is None:
                self.say("")
                return 0
            if line.strip() in ("/quit", "/exit"):
                return 0
            if line.strip():
                await self.handle(line.strip())

    async def handle(self, line: str) -> None:
        """One line of input: a command or a message."""
        command, _, arg = line.partition(" ") if line.startswith("/") else ("", "", line)
        arg = arg.strip()
        bridge, where = self.bridge, self.where
        if command == "":
            surface = self._current = TerminalSurface(self._out, image_dir=self._image_dir)
            try:
                result = await bridge.ask(where, arg, surface)
            finally:
                self._current = None
            self.say("" if not isinstance(result, Refusal) else result.message)
        elif command == "/imagine":
            surface = TerminalSurface(self._out, image_dir=self._image_dir)
            self.say("Drawing…")
            self._show(await bridge.imagine(where, arg, surface))
        elif command == "/models":
            self._show(await bridge.models(where, query=arg, page_size=1000))
        elif command == "/model":
            if arg:
                self._show(await bridge.set_model(where, arg))
            else:
                self.say(current_model_text(await bridge.model_for(where)))
        elif command == "/system":
            self._show(await bridge.set_system_prompt(where, arg.strip("'\"")))
        elif command in ("/reset", "/new"):
            self._show(await bridge.reset(where))
        elif command == "/status":
            self._show(await bridge.status(where))
        elif command == "/help":
            self.say(HELP)
        else:
            self.say(f"Unknown command {command}. /help lists them.")

    def _show(self, result: object) -> None:
        if isinstance(result, Refusal):
            self.say(result.message)
        elif isinstance(result, ModelPage):
            self.say(models_page_text(result))
        elif isinstance(result, ModelChosen):
            self.say(model_chosen_text(result))
        elif isinstance(result, SystemPromptSet):
            self.say(persona_text(result))
        elif isinstance(result, ConversationReset):
            self.say(reset_text(result))
        elif isinstance(result, Status):
            self.say(status_text(result))


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


async def read_stdin_line(prompt: str) -> str | None:
    """Read one line without blocking the event loop; None at end of input (Ctrl-D)."""

    def read() -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    return await asyncio.to_thread(read)


async def chat(bridge: Bridge) -> int:
    """Run the terminal chat on stdin/stdout; Ctrl-C stops an answer, Ctrl-D quits."""
    session = TerminalChat(bridge, read_line=read_stdin_line)
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        if not session.stop_answer():
            session.say("\n(Ctrl-D quits)")

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await session.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
