"""What the terminal chat shows: `RichView` on a terminal, `PlainView` for a pipe or a file.

An answer arrives as the texts of its messages (the renderer's sends and edits, the streaming
indicator already taken off). On a terminal the answer is a live region redrawn as markdown;
while it streams only its last screenful is drawn (so the region can always be redrawn in place),
and the final draw prints the whole answer once, which is what stays in the scrollback. In a pipe
complete lines are printed as they arrive and the rest when the answer ends: plain text, no
escape codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TextIO

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.text import Text

from bots.terminal_io.markdown import (
    THEME,
    GrowingMarkdown,
    Lines,
    render_markdown,
    render_text,
)
from core.render.renderer import EMPTY_ANSWER, THINKING_NOTE
from core.results import ModelPage
from core.texts import models_page_header

Tone = Literal["text", "notice", "error", "refusal", "log"]

MARKER = "▌"  # shown after the text while an answer streams
REASONING_HEAD = THINKING_NOTE.rstrip("…")  # "💭 Thinking": the reasoning part, or its note
# The renderer's status lines, shown under an answer (or in its place), by how they start.
NOTE_STYLES = {
    "⚠️": "chat.error",
    "⏹": "chat.stopped",
    "ℹ️": "chat.notice",
    "⏳": "chat.notice",
    EMPTY_ANSWER: "chat.notice",
}
TONE_STYLES: dict[Tone, str] = {
    "text": "none",
    "notice": "chat.notice",
    "error": "chat.error",
    "refusal": "chat.refusal",
    "log": "chat.log",
}


class View(Protocol):
    """Where the chat's output goes."""

    def show_answer(self, texts: Sequence[str], *, streaming: bool) -> None:
        """The current answer's messages now read `texts`."""

    def end_answer(self) -> None:
        """The current answer is complete (its last `show_answer` was the final write)."""

    def say(self, text: str, tone: Tone = "text") -> None:
        """A message of the chat's own (a command's result, a notice)."""

    def show_models(self, page: ModelPage, hint: str) -> None:
        """One page of the model list."""


def split_notes(text: str) -> tuple[str, list[str]]:
    """The answer's text and the status lines under it ("⏹ Stopped.", "⚠️ …")."""
    body, sep, last = text.rpartition("\n\n")
    lines = last.split("\n")
    if all(line.startswith(tuple(NOTE_STYLES)) for line in lines):
        return (body if sep else ""), lines
    return text, []


def note_style(line: str) -> str:
    return next((s for p, s in NOTE_STYLES.items() if line.startswith(p)), "chat.notice")


class MessageLines:
    """Renders one message of an answer as it grows: reasoning dimmed, the body as markdown,
    the notes under it styled."""

    def __init__(self) -> None:
        self._body = GrowingMarkdown()
        self._reasoning = GrowingMarkdown(style="chat.reasoning")

    def render(self, console: Console, text: str, options: ConsoleOptions) -> Lines:
        if text.startswith(REASONING_HEAD):
            return self._reasoning.render(console, text, options)
        body, notes = split_notes(text)
        lines = self._body.render(console, body, options) if body.strip() else []
        for note in notes:
            if lines:
                lines.append([])
            lines += render_markdown(console, note, options, style=note_style(note))
        return lines


class AnswerView:
    """The live region of one answer: its messages, and the marker while it streams."""

    def __init__(
        self, texts: Sequence[str], renderers: Sequence[MessageLines], *, streaming: bool
    ) -> None:
        self.texts = tuple(texts)
        self.renderers = renderers
        self.streaming = streaming

    def lines(self, console: Console, options: ConsoleOptions) -> Lines:
        lines: Lines = []
        for text, renderer in zip(self.texts, self.renderers, strict=True):
            message = renderer.render(console, text, options)
            if lines and message:
                lines.append([])
            lines += message
        if not self.streaming:
            return lines
        marker = Segment(MARKER, console.get_style("chat.marker"))
        if lines and cell_len("".join(s.text for s in lines[-1])) + 2 <= options.max_width:
            lines[-1] = [*lines[-1], Segment(" "), marker]
        else:
            lines.append([marker])
        return lines[-max(1, options.size.height - 1) :]  # the tail that fits the screen

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for index, line in enumerate(self.lines(console, options)):
            if index:
                yield Segment.line()
            yield from line


class _Lines:
    """Pre-rendered lines as a renderable."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self._lines:
            yield from line
            yield Segment.line()


class _Say:
    def __init__(self, text: str, tone: Tone) -> None:
        self.text, self.tone = text, tone

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        style = TONE_STYLES[self.tone]
        if self.tone == "text":
            lines = render_markdown(console, self.text, options)
        else:
            lines = render_text(console, self.text, options, style=style)
        yield _Lines(lines)


def make_console(out: TextIO) -> Console:
    """A rich console on `out` (a terminal); NO_COLOR and TERM=dumb are honoured by rich."""
    return Console(
        file=out,
        theme=THEME,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


class RichView:
    """Markdown, colours and a live answer, for a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._texts: tuple[str, ...] = ()
        self._renderers: list[MessageLines] = []

    def _view(self, *, streaming: bool) -> AnswerView:
        while len(self._renderers) < len(self._texts):
            self._renderers.append(MessageLines())
        return AnswerView(self._texts, self._renderers[: len(self._texts)], streaming=streaming)

    def show_answer(self, texts: Sequence[str], *, streaming: bool) -> None:
        self._texts = tuple(texts)
        view = self._view(streaming=streaming)
        if self._live is None:
            self._live = Live(
                view,
                console=self.console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="visible",
            )
            self._live.start(refresh=True)
        else:
            self._live.update(view, refresh=True)

    def end_answer(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.update(self._view(streaming=False))
            live.stop()  # draws the whole answer once more, then a new line
            self.console.line()
        self._texts, self._renderers = (), []

    def say(self, text: str, tone: Tone = "text") -> None:
        if tone == "log":  # one line, cut to the width
            line = Text(text, style=TONE_STYLES[tone], no_wrap=True, overflow="ellipsis")
            self.console.print(line)
            return
        self.console.print(_Say(text, tone))
        self.console.line()

    def show_models(self, page: ModelPage, hint: str) -> None:
        console = self.console
        console.print(Text(models_page_header(page), style="bold"))
        for model in page.items:
            if model.id == page.current:
                console.print(
                    Text.assemble(("  " + model.id, "bold"), ("  ← yours", "chat.notice"))
                )
            else:
                console.print(Text("  " + model.id))
        if not page.items:
            console.print(Text("No model matches.", style="chat.notice"))
        console.print(Text(hint, style="chat.notice"))
        console.line()


class PlainView:
    """Plain text: answers, results and notices, with no escape codes (stdout is not a tty)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._printed = ""  # of the current answer
        self._latest = ""
        self._diverged = False

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def show_answer(self, texts: Sequence[str], *, streaming: bool) -> None:
        self._latest = "\n\n".join(texts)
        if not self._latest.startswith(self._printed):
            self._diverged = True  # rewritten (rare): the final text is printed in full
        if self._diverged:
            return
        complete = self._latest[: self._latest.rfind("\n") + 1]
        if len(complete) > len(self._printed):
            self._write(complete[len(self._printed) :])
            self._printed = complete

    def end_answer(self) -> None:
        text = self._latest
        if self._diverged:
            self._write(("\n" if self._printed else "") + text + "\n\n")
        else:
            self._write(text[len(self._printed) :] + "\n\n")
        self._printed, self._latest, self._diverged = "", "", False

    def say(self, text: str, tone: Tone = "text") -> None:
        self._write("\n".join(strip_trailing(line) for line in text.split("\n")) + "\n\n")

    def show_models(self, page: ModelPage, hint: str) -> None:
        lines = [models_page_header(page)]
        lines += [f"  {m.id}" + ("  ← yours" if m.id == page.current else "") for m in page.items]
        if not page.items:
            lines.append("No model matches.")
        lines.append(hint)
        self._write("\n".join(lines) + "\n\n")


def strip_trailing(line: str) -> str:
    return line.rstrip(" ")
