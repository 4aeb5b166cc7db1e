"""The terminal chat: the same use cases and renderer as the chat platforms, in a console.

On a terminal, input is prompt_toolkit (history, multi-line, completion) and answers are drawn by
rich as markdown while they stream (bots/terminal_io). In a pipe (`g4f-bridge chat < questions`),
each line is a message and answers are printed as plain text. Logs go to a file in the data
folder, never onto the conversation. Commands: see HELP.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from bots.terminal_io.keyboard import (
    MENU_ROWS,
    ChatCompleter,
    Keyboard,
    LineKeyboard,
    PromptKeyboard,
)
from bots.terminal_io.logs import WarningTally, logs_to_file, open_private
from bots.terminal_io.output import PlainView, RichView, View, make_console
from core.attachments import MAX_ATTACHMENT_BYTES, Attachment
from core.bridge import Bridge
from core.conversations import Origin
from core.errors import BridgeError
from core.render.limits import Bucket
from core.render.renderer import INDICATOR
from core.render.surface import (
    Activity,
    Button,
    MessageRef,
    SurfaceLimits,
    SurfaceRejected,
    WriteLimits,
)
from core.results import Answered, Imagined, Refusal
from core.texts import Reply, current_model_text, reply_text

# The terminal's limits, in this one place: no platform rate limit, only its own redraw rate
# (at most one redraw of a streaming answer per REDRAW_INTERVAL seconds).
REDRAW_INTERVAL = 0.05
_REDRAW = (Bucket("terminal", 1, REDRAW_INTERVAL),)
LIMITS = SurfaceLimits(
    max_length=1_000_000,
    room="terminal",
    writes=WriteLimits(send=_REDRAW, edit=_REDRAW),
    placeholder=None,  # Ctrl-C stops an answer: no message to hang a Stop button on
    buttons=False,  # commands (/continue) stand in for buttons
)

HISTORY_FILE = "chat-history"
LOG_FILE = "chat.log"
PIPE_MODELS_PAGE = 20

COMMANDS = {
    "/models": "list chat models: /models [filter]",
    "/more": "the next page of /models",
    "/model": "choose a model: /model NAME",
    "/continue": "the rest of an answer cut at the length limit",
    "/image": "ask about a picture or a text file: /image PATH QUESTION",
    "/web": "ask searching the web: /web QUESTION (alone: web search on/off)",
    "/imagine": "draw and save an image: /imagine PROMPT",
    "/system": "set the persona ('' resets): /system TEXT",
    "/reset": "start a new conversation",
    "/status": "model, limits, conversation",
    "/help": "commands and keys",
    "/quit": "leave (or Ctrl-D)",
}

HELP = "\n".join(
    [
        "Type a message to chat. Commands:",
        *(f"  {name:<9} {meaning}" for name, meaning in COMMANDS.items()),
        "Keys: Enter sends; Alt-Enter (or Esc, Enter) starts a new line; Up/Down recall earlier",
        "lines; Tab completes commands and model names. Ctrl-C stops an answer that is",
        "streaming, or clears the line; Ctrl-D on an empty line quits.",
    ]
)


class TerminalSurface:
    """One answer's messages, shown by the chat's view as the renderer writes them."""

    def __init__(
        self, view: View, *, image_dir: Path, before_write: Callable[[], None] | None = None
    ) -> None:
        self._view = view
        self._image_dir = image_dir
        self._before_write = before_write
        self._ids = itertools.count(1)
        self._texts: dict[str, str] = {}
        self.wrote = False  # anything shown of an answer: the chat ends it on the view

    @property
    def limits(self) -> SurfaceLimits:
        return LIMITS

    def _show(self) -> None:
        if self._before_write is not None:
            self._before_write()
        texts = list(self._texts.values())
        streaming = bool(texts) and texts[-1].endswith(INDICATOR)
        self._view.show_answer([t.removesuffix(INDICATOR) for t in texts], streaming=streaming)
        self.wrote = True

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        ref = MessageRef(str(next(self._ids)))
        self._texts[ref.id] = text
        self._show()
        return ref

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        self._texts[ref.id] = text
        self._show()

    async def preview(self, text: str) -> None:
        raise NotImplementedError("the terminal does not use previews (limits.previews)")

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
        stem, _, ext = filename.rpartition(".")
        try:
            self._image_dir.mkdir(parents=True, exist_ok=True)
            path = self._image_dir / f"{stem}-{next(self._ids)}.{ext}"
            while path.exists():
                path = self._image_dir / f"{stem}-{next(self._ids)}.{ext}"
            path.write_bytes(data)
        except OSError as exc:
            raise SurfaceRejected(f"cannot save the image in {self._image_dir}: {exc}") from exc
        self._view.say(f"{caption}\nSaved {path}")
        return MessageRef(str(path))

    async def activity(self, kind: Activity) -> None:
        if kind == "typing" and not self._texts:
            if self._before_write is not None:
                self._before_write()
            self._view.show_answer([], streaming=True)  # the marker alone: an answer is coming
            self.wrote = True


class TerminalChat:
    """One session: reads lines, calls the use cases, shows the results."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        keyboard: Keyboard,
        view: View,
        image_dir: Path = Path("images"),
        models_page_size: int = PIPE_MODELS_PAGE,
        banner_out: TextIO | None = None,
    ) -> None:
        self.bridge = bridge
        self.origin = Origin(
            platform="terminal",
            chat_id="local",
            user_id=_local_user(),
            is_private=True,
            is_operator=True,
        )
        self.keyboard = keyboard
        self.view = view
        self._image_dir = image_dir
        self._models_page_size = models_page_size
        self._models_query = ""
        self._models_next: int | None = None
        self._banner_out = banner_out
        self._task: asyncio.Task[None] | None = None
        self._answering = False
        self._stop_pending = False
        self.log_tally: WarningTally | None = None
        self.log_path: Path | None = None

    async def model_names(self) -> Sequence[str]:
        """The chat models' names (for completion)."""
        page = await self.bridge.models(self.origin, page_size=100_000)
        return [] if isinstance(page, Refusal) else [m.id for m in page.items]

    # --- Ctrl-C -----------------------------------------------------------------------------
    def interrupt(self) -> bool:
        """Ctrl-C: stop the answer that streams, or cancel the command that runs.
        False when nothing was running."""
        task = self._task
        if task is None or task.done():
            return False
        if self._answering:
            if not self.bridge.stop_current_here(self.origin):
                self._stop_pending = True  # the answer has not started: stop it when it does
        else:
            task.cancel()
        return True

    def _on_write(self) -> None:
        if self._stop_pending and self.bridge.stop_current_here(self.origin):
            self._stop_pending = False

    # --- the session ------------------------------------------------------------------------
    async def run(self) -> int:
        model = await self.bridge.model_for(self.origin)
        banner = f"g4f-bridge chat with {model}. /help lists commands and keys; Ctrl-D quits."
        if self._banner_out is not None:
            print(banner, file=self._banner_out, flush=True)
        else:
            self.view.say(banner, "notice")
        while True:
            line = await self.keyboard.read()
            if line is None:
                return 0
            text = line.strip()
            if text in ("/quit", "/exit"):
                return 0
            if text:
                await self.run_command(text)

    async def run_command(self, text: str) -> None:
        """Handle one input, stoppable with Ctrl-C; then summarise what was logged meanwhile."""
        self._task = asyncio.create_task(self.handle(text))
        try:
            with self.keyboard.watching(self.interrupt):
                await asyncio.wait([self._task])
            if self._task.cancelled():
                self.view.say("⏹ Stopped.", "notice")
            elif (error := self._task.exception()) is not None:
                raise error
        finally:
            self._task, self._answering, self._stop_pending = None, False, False
        if self.log_tally is not None and self.log_path is not None:
            summary = self.log_tally.take_summary(self.log_path)
            if summary:
                self.view.say(summary, "log")

    async def handle(self, line: str) -> None:
        """One input: a command or a message."""
        command, _, arg = line.partition(" ") if line.startswith("/") else ("", "", line)
        arg = arg.strip()
        bridge, origin = self.bridge, self.origin
        if command == "":
            await self._ask(arg)
        elif command == "/continue":
            await self._continue()
        elif command == "/image":
            await self._ask_with_file(arg)
        elif command == "/web":
            if arg:
                await self._ask(arg, web_search=True)
            else:
                self._show(await bridge.set_web_search(origin))
        elif command == "/imagine":
            self.view.say("Drawing…", "notice")
            surface = self._surface()
            try:
                self._show(await bridge.imagine(origin, arg, surface))
            finally:
                if surface.wrote:  # the error shown in the image's place
                    self.view.end_answer()
        elif command == "/models":
            self._models_query, self._models_next = arg, 0
            await self._show_models()
        elif command == "/more":
            await self._show_models()
        elif command == "/model":
            if arg:
                self._show(await bridge.set_model(origin, arg))
            else:
                self.view.say(current_model_text(await bridge.model_for(origin)))
        elif command == "/system":
            self._show(await bridge.set_system_prompt(origin, arg.strip("'\"")))
        elif command in ("/reset", "/new"):
            self._show(await bridge.reset(origin))
        elif command == "/status":
            self._show(await bridge.status(origin))
        elif command == "/help":
            self.view.say(HELP, "notice")
        else:
            self.view.say(f"Unknown command {command}. /help lists them.", "refusal")

    def _surface(self) -> TerminalSurface:
        return TerminalSurface(self.view, image_dir=self._image_dir, before_write=self._on_write)

    async def _ask_with_file(self, arg: str) -> None:
        """/image PATH QUESTION: the file (a picture or a text file) goes with the question."""
        path_text, _, question = arg.partition(" ")
        if not path_text:
            self.view.say("Usage: /image PATH QUESTION", "refusal")
            return
        path = Path(path_text)
        try:
            data, too_big = await asyncio.to_thread(_read_capped, path)
        except OSError as exc:
            self.view.say(f"Cannot read {path_text}: {exc.strerror or exc}", "refusal")
            return
        await self._ask(question, [Attachment(path.name, data, too_big=too_big)])

    async def _ask(
        self,
        prompt: str,
        attachments: Sequence[Attachment] = (),
        *,
        web_search: bool | None = None,
    ) -> None:
        await self._stream(
            lambda surface: self.bridge.ask(
                self.origin, prompt, surface, attachments=attachments, web_search=web_search
            )
        )

    async def _continue(self) -> None:
        await self._stream(lambda surface: self.bridge.continue_answer(self.origin, surface))

    async def _stream(
        self, answer: Callable[[TerminalSurface], Awaitable[Answered | Refusal]]
    ) -> None:
        """Run `answer` on a new surface (Ctrl-C stops it meanwhile), then show its result."""
        surface = self._surface()
        self._answering = True
        try:
            result = await answer(surface)
        finally:
            self._answering = False
            if surface.wrote:
                self.view.end_answer()
        self._show(result)

    async def _show_models(self) -> None:
        if self._models_next is None:
            self.view.say("No more models to show. /models [filter] lists them again.", "notice")
            return
        page = await self.bridge.models(
            self.origin,
            query=self._models_query,
            page=self._models_next,
            page_size=self._models_page_size,
        )
        if isinstance(page, Refusal):
            self._show(page)
            return
        more = page.page + 1 < page.pages
        self._models_next = page.page + 1 if more else None
        hint = (
            "/more: next page · " if more else ""
        ) + "/models TEXT: filter · /model NAME: choose"
        self.view.show_models(page, hint)

    def _show(self, result: Reply | Refusal | Answered | Imagined) -> None:
        """A result's text, or the refusal's (unless quiet). An answer or an image was shown by
        the surface already (an image saved, or the error in its place)."""
        if isinstance(result, Refusal):
            if (text := result.shown) is not None:
                self.view.say(text, "refusal")
        elif not isinstance(result, Answered | Imagined):
            self.view.say(reply_text(result))


def _read_capped(path: Path) -> tuple[bytes, bool]:
    """A file's bytes, unless it is larger than an attachment may be: (b"", True) then."""
    path = path.expanduser()
    if path.stat().st_size > MAX_ATTACHMENT_BYTES:
        return b"", True
    return path.read_bytes(), False


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def chat(bridge: Bridge) -> int:
    """Run the terminal chat on stdin/stdout until Ctrl-D, /quit or the end of the input."""
    data_dir = bridge.settings.bridge_data_dir
    log_path = data_dir / LOG_FILE
    try:
        for path in (log_path, data_dir / HISTORY_FILE):
            open_private(path)
    except OSError as exc:
        raise BridgeError(
            f"The chat cannot write its history and log in {data_dir} ({exc.strerror}). "
            "Set BRIDGE_DATA_DIR to a folder you can write."
        ) from None
    interactive = _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
    view: View
    if _is_terminal(sys.stdout):
        console = make_console(sys.stdout)
        # A page fits on the screen above the prompt and the room it keeps for completions.
        rows = console.size.height - MENU_ROWS - 5  # command, header, hint, blank line, prompt
        view, page_size = RichView(console), max(5, min(30, rows))
    else:
        view, page_size = PlainView(sys.stdout), PIPE_MODELS_PAGE

    async def model_names() -> Sequence[str]:
        return await session.model_names()

    line_keyboard = None if interactive else LineKeyboard()
    keyboard = line_keyboard or PromptKeyboard(
        data_dir / HISTORY_FILE, ChatCompleter(COMMANDS, model_names)
    )
    session = TerminalChat(
        bridge,
        keyboard=keyboard,
        view=view,
        models_page_size=page_size,
        banner_out=None if _is_terminal(sys.stdout) else sys.stderr,
    )
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:  # SIGINT: Ctrl-C in a pipe, or sent from outside
        if not session.interrupt() and line_keyboard is not None:
            line_keyboard.quit()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        with logs_to_file(log_path) as tally:
            session.log_tally, session.log_path = tally, log_path
            code = await session.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return 130 if line_keyboard is not None and line_keyboard.interrupted else code
