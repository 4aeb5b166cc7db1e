"""Markdown for the terminal: rich's renderer with the chat's choices.

- A single newline is a line break, as on the chat platforms (the model's lines stay lines).
- Headings are left-aligned and code blocks have no background or padding, and no line ends in
  spaces: code copied from the terminal is the code, without trailing blanks.
- Code blocks are highlighted with the terminal's own ANSI palette (readable on light and dark
  backgrounds), under a dim line naming the language.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.markdown import BlockQuote, CodeBlock, Heading, Markdown, MarkdownElement
from rich.segment import Segment
from rich.style import Style
from rich.syntax import Syntax
from rich.text import Text
from rich.theme import Theme

CODE_THEME = "ansi_dark"  # the terminal's palette: works on light and dark backgrounds

THEME = Theme(
    {
        "markdown.code": "bold cyan",
        "markdown.code_block": "none",
        "markdown.h1": "bold underline",
        "markdown.h2": "bold",
        "markdown.h3": "bold",
        "markdown.h4": "bold italic",
        "markdown.block_quote": "italic",
        "chat.code_label": "dim",
        "chat.reasoning": "dim",
        "chat.notice": "dim",
        "chat.stopped": "yellow",
        "chat.error": "bold red",
        "chat.refusal": "yellow",
        "chat.marker": "bold",
        "chat.prompt": "bold",
        "chat.log": "dim",
    }
)

_PARSER = MarkdownIt("commonmark").enable("strikethrough").enable("table")
_BLOCKS = MarkdownIt("commonmark").enable("table").disable("inline")  # block structure only

Lines = list[list[Segment]]


class _LeftHeading(Heading):
    LEVEL_ALIGN: ClassVar[dict[str, JustifyMethod]] = {}  # every level: left


class _CodeBlock(CodeBlock):
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        code = str(self.text).rstrip()
        if self.lexer_name != "text":
            yield Text(self.lexer_name, style="chat.code_label")
        yield Syntax(
            code,
            self.lexer_name,
            theme=self.theme,
            word_wrap=True,
            background_color="default",
            padding=0,
        )


class _BlockQuote(BlockQuote):
    """A quote marked with a thin bar (the thick one marks a streaming answer's end)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(
            self.elements, options.update(width=options.max_width - 2), style=self.style
        )
        bar = Segment("│ ", self.style)
        for line in lines:
            yield bar
            yield from line
            yield Segment.line()


class ChatMarkdown(Markdown):
    """rich's Markdown, parsed with line breaks kept, with our code blocks and headings."""

    elements: ClassVar[dict[str, type[MarkdownElement]]] = {
        **Markdown.elements,
        "heading_open": _LeftHeading,
        "fence": _CodeBlock,
        "code_block": _CodeBlock,
        "blockquote_open": _BlockQuote,
    }

    def __init__(self, markup: str, *, style: str | Style = "none") -> None:
        super().__init__("", code_theme=CODE_THEME, style=style, hyperlinks=False)
        self.markup = markup
        self.parsed = _PARSER.parse(markup)
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"  # a newline in the text is a line break


def strip_line_end(line: list[Segment]) -> list[Segment]:
    """The line without the blanks at its end that have no background (padding)."""
    line = list(line)
    while line:
        last = line[-1]
        if not last.text and not last.control:
            line.pop()
            continue
        if last.control or not _is_blank_padding(last):
            break
        kept = last.text.rstrip(" ")
        if kept:
            line[-1] = Segment(kept, last.style)
            break
        line.pop()
    return line


def _is_blank_padding(segment: Segment) -> bool:
    if not segment.text.endswith(" "):
        return False
    style = segment.style
    return style is None or style.bgcolor is None or style.bgcolor.is_default


def render_markdown(
    console: Console, text: str, options: ConsoleOptions, *, style: str = "none"
) -> Lines:
    """`text` as markdown, in lines of segments without trailing blanks."""
    lines = console.render_lines(
        ChatMarkdown(text, style=style), options.update(height=None), pad=False, new_lines=False
    )
    return [strip_line_end(line) for line in _drop_blank_edges(lines)]


def render_text(console: Console, text: str, options: ConsoleOptions, *, style: str) -> Lines:
    """`text` as plain styled text (no markdown), in lines without trailing blanks."""
    lines = console.render_lines(
        Text(text, style=style), options.update(height=None), pad=False, new_lines=False
    )
    return [strip_line_end(line) for line in lines]


def _drop_blank_edges(lines: Iterable[list[Segment]]) -> Lines:
    out = list(lines)
    while out and not "".join(s.text for s in out[-1]).strip():
        out.pop()
    while out and not "".join(s.text for s in out[0]).strip():
        out.pop(0)
    return out


def top_level_blocks(text: str) -> list[tuple[int, int]]:
    """The line ranges [start, end) of the top-level blocks of `text` (paragraph, list, fence…)."""
    return [
        (token.map[0], token.map[1])
        for token in _BLOCKS.parse(text)
        if token.level == 0 and token.nesting >= 0 and token.map is not None
    ]


class GrowingMarkdown:
    """Renders a text that grows (a streaming answer) as markdown, block by block.

    Each top-level block is rendered on its own and blocks are separated by one blank line, as
    rich does for a whole document. A block followed by another is finished: its lines are kept
    and only the text after it is parsed and rendered again on the next call. So a redraw costs
    the last block, not the whole answer. The result only depends on the text and the width.
    """

    def __init__(self, style: str = "none") -> None:
        self._style = style
        self._reset(0)

    def _reset(self, width: int) -> None:
        self._width = width
        self._done: Lines = []  # the finished blocks' lines, blank lines between them
        self._done_source = ""  # the text of the finished blocks' lines, up to a line start
        self._done_lines = 0

    def render(self, console: Console, text: str, options: ConsoleOptions) -> Lines:
        if options.max_width != self._width or not text.startswith(self._done_source):
            self._reset(options.max_width)
        source = text.split("\n")
        rest = source[self._done_lines :]
        blocks = top_level_blocks("\n".join(rest))
        for start, end in blocks[:-1]:
            self._add(
                self._done,
                render_markdown(console, "\n".join(rest[start:end]), options, style=self._style),
            )
        if blocks:
            last_start = blocks[-1][0]
            self._done_lines += last_start
            self._done_source = "\n".join(source[: self._done_lines]) + (
                "\n" if self._done_lines else ""
            )
            rest = rest[last_start:]
        lines = list(self._done)
        self._add(lines, render_markdown(console, "\n".join(rest), options, style=self._style))
        return lines

    @staticmethod
    def _add(lines: Lines, block: Lines) -> None:
        if lines and block:
            lines.append([])
        lines += block
