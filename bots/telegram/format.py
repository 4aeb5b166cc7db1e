"""Markdown to Telegram text + entities, never a parse mode, never a character lost.

Model output is CommonMark, often half-finished while it streams. Converting it ourselves with
telegramify-markdown and sending `entities` (UTF-16 offsets) means Telegram never parses markup, so
"can't parse entities" cannot happen for well-formed output. Telegram trims whitespace around a
message; `to_entities` trims too (and moves the entities), so what we remember having sent is what
the chat shows, and an edit that only changes trailing whitespace is recognised as a no-op.

Nothing the model wrote is lost
    A markdown converter drops what it takes for markup it cannot show: HTML tags (`Vec<u8>`,
    `a<b and c>d`, a `<div>` line with the paragraph under it), link reference definitions, table
    cells beyond the header's count. Here HTML is escaped before conversion (`\\<`), so it reads as
    text; then the conversion is checked: every letter and digit of the source must appear, in
    order, in what the message shows (the text, plus each link's address and each code block's
    language, which the entities carry). If one is missing, the source is converted block by block
    (paragraphs, lists, tables, code blocks) and each block that still loses something is sent as
    it was written, unformatted.

While an answer streams
    A text that ends with the streaming indicator (" ▌", see core.render.renderer) is an interim
    preview: its unfinished markup is closed for the preview (an open code fence is closed, so the
    code shows as a code block; an unclosed `**`, `*`, `_`, `~~` or `` ` `` on the last paragraph
    is closed when that gives formatting, and a bare marker the stream just ended on is left
    out), it is converted like a final text, and the indicator follows as plain text.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from itertools import pairwise

import pyromark
import telegramify_markdown
from telegram import MessageEntity
from telegramify_markdown import RenderConfig
from telegramify_markdown.converter import STANDARD_OPTIONS

from core.render.renderer import INDICATOR
from core.render.split import fence_state_at_end
from core.text import clean_text

log = logging.getLogger(__name__)

__all__ = ["cut_utf16", "to_entities", "utf16_len"]

# An independent render configuration: nothing else in the process can change it under us.
_CONFIG = RenderConfig.isolated()

Converted = tuple[str, list[MessageEntity]]

_MAX_ESCAPE_ROUNDS = 16  # each round escapes every HTML the parser still finds; a few suffice


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, Telegram's unit for text length and entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def cut_utf16(text: str, limit: int) -> str:
    """`text` shortened (with "…") to at most `limit` UTF-16 code units."""
    if utf16_len(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        size = utf16_len(char)
        if used + size > limit - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def to_entities(markdown: str, *, partial: bool | None = None) -> Converted:
    """Convert markdown to (plain text, entities), trimmed as Telegram will show it.

    `partial`: whether `markdown` is an interim preview of a streaming answer (see the module
    docstring); None (the default) decides by the trailing streaming indicator " ▌".
    """
    markdown = clean_text(markdown)  # a lone surrogate cannot be encoded, parsed or sent
    if partial is None:
        partial = markdown.endswith(INDICATOR)
    if not partial:
        return _convert(markdown)
    text, entities = _preview(markdown.removesuffix(INDICATOR))
    if not text:
        return INDICATOR.strip(), []
    return text + INDICATOR, entities


# --- never a character lost -------------------------------------------------------------------


def _convert(markdown: str) -> Converted:
    """The whole text converted, or block by block where the whole would lose a character."""
    text, entities = _checked(markdown)
    if text is not None:
        return text, entities
    return _by_blocks(markdown)


def _checked(markdown: str) -> tuple[str | None, list[MessageEntity]]:
    """(text, entities) of `markdown` if the conversion keeps every character, else (None, [])."""
    try:
        text, entities = _library_convert(_escape_html(markdown))
    except Exception:  # a converter bug must not cost the message: the caller shows it plainly
        log.warning("markdown conversion failed; sending this text unformatted", exc_info=True)
        return None, []
    text, entities = _trimmed(text, entities)  # as Telegram shows it (a link on spaces is gone)
    if _keeps_everything(markdown, text, entities):
        return text, entities
    return None, []


def _library_convert(markdown: str) -> Converted:
    text, raw = telegramify_markdown.convert(markdown, config=_CONFIG)
    entities = [
        MessageEntity(
            e.type,
            e.offset,
            e.length,
            url=e.url,
            language=e.language,
            custom_emoji_id=e.custom_emoji_id,
        )
        for e in raw
        if e.type != "text_mention"  # needs a User object; the converter never makes one
    ]
    return text, entities


def _escape_html(markdown: str) -> str:
    """`markdown` with a backslash before every `<` that CommonMark would read as HTML."""
    text = markdown
    for _ in range(_MAX_ESCAPE_ROUNDS):
        if "<" not in text:
            return text
        source = text.encode("utf-8")
        offsets: list[int] = []
        for payload, where in pyromark.events_with_range(text, options=STANDARD_OPTIONS):
            if not isinstance(payload, dict):
                continue
            start = where["start"]
            if "InlineHtml" in payload or payload.get("Start") == "HtmlBlock":
                bracket = source.find(b"<", start, where["end"])
                if bracket >= 0:
                    offsets.append(bracket)
        if not offsets:
            return text
        bounds = [0, *sorted(set(offsets)), len(source)]
        text = b"\\".join(source[a:b] for a, b in pairwise(bounds)).decode()
    return text  # still HTML after many rounds: the check below catches any loss


# Markup whose letters or digits the message shows otherwise, or not at all by design.
_CHARACTER_REFERENCE = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)
_TASK_MARKER = re.compile(r"\[[xX]\]")
_ORDERED_MARKER = re.compile(r"^[ \t>*+\-⦁]*[0-9]{1,9}[.)](?=[ \t]|$)", re.MULTILINE)
_LATEX_SPAN = re.compile(r"\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)


def _significant(text: str) -> str:
    """The letters and digits of `text`: what a reader must find in the message."""
    return "".join(char for char in text if char.isalnum())


def _required(markdown: str) -> str:
    """The letters and digits of markdown source that the message must show, in order."""
    text = _LATEX_SPAN.sub(" ", markdown)  # LaTeX becomes Unicode symbols
    text = _CHARACTER_REFERENCE.sub(lambda m: " " + html.unescape(m.group()) + " ", text)
    text = _TASK_MARKER.sub(" ", text)  # a checkbox symbol
    text = _ORDERED_MARKER.sub(" ", text)  # lists are renumbered
    return _significant(text)


def _shown(text: str, entities: Sequence[MessageEntity]) -> str:
    """The letters and digits a message shows, with each link's address after its text and
    each code block's language before its code."""
    extras = [(e.offset + e.length, e.url) for e in entities if e.url and e.type == "text_link"] + [
        (e.offset, e.language) for e in entities if e.language
    ]
    if not extras:
        return _significant(_ORDERED_MARKER.sub(" ", text))
    units = _utf16_starts(text)
    pieces: list[str] = []
    cursor = 0
    for offset, extra in sorted(extras, key=lambda item: item[0]):
        index = units.get(offset, len(text))
        pieces += [text[cursor:index], " ", extra, " "]
        cursor = max(cursor, index)
    pieces.append(text[cursor:])
    return _significant(_ORDERED_MARKER.sub(" ", "".join(pieces)))


def _utf16_starts(text: str) -> dict[int, int]:
    """Python index of each UTF-16 offset that starts a character (and of the end)."""
    starts: dict[int, int] = {}
    offset = 0
    for index, char in enumerate(text):
        starts[offset] = index
        offset += 2 if ord(char) > 0xFFFF else 1
    starts[offset] = len(text)
    return starts


def _keeps_everything(markdown: str, text: str, entities: Sequence[MessageEntity]) -> bool:
    """Whether every required letter and digit of `markdown` is shown, in order."""
    shown = iter(_shown(text, entities))
    return all(char in shown for char in _required(markdown))


def _by_blocks(markdown: str) -> Converted:
    """Convert each top-level block alone; a block that would lose a character stays as written.

    Blocks are joined by a blank line where the source has one between them, else a line break.
    """
    pieces: list[tuple[str, Converted]] = []  # (separator before it, the converted piece)
    shown_end = 0  # where the source of the last piece ends (its trailing whitespace excluded)

    def add(start: int, end: int, converted: Converted) -> None:
        nonlocal shown_end
        if converted[0]:
            separator = "\n\n" if markdown.count("\n", shown_end, start) >= 2 else "\n"
            pieces.append((separator, converted))
            shown_end = end

    cursor = 0
    for start, end in [*_block_ranges(markdown), (len(markdown), len(markdown))]:
        gap = markdown[cursor:start]
        if gap.strip():  # text that no block holds (a link reference definition): as written
            first = cursor + len(gap) - len(gap.lstrip())
            last = cursor + len(gap.rstrip())
            add(first, last, (markdown[first:last], []))
        block = markdown[start:end]
        if block.strip():
            text, entities = _checked(block)
            converted = (text, entities) if text is not None else (block.strip(), [])
            add(start + len(block) - len(block.lstrip()), start + len(block.rstrip()), converted)
        cursor = max(cursor, end)
    out: list[str] = []
    moved: list[MessageEntity] = []
    used = 0
    for separator, (text, entities) in pieces:
        if out:
            out.append(separator)
            used += len(separator)
        moved += [_moved(e, e.offset + used, e.length) for e in entities]
        out.append(text)
        used += utf16_len(text)
    return _trimmed("".join(out), moved)


def _block_ranges(markdown: str) -> list[tuple[int, int]]:
    """(start, end) string indices of the top-level blocks of `markdown`."""
    source = markdown.encode("utf-8")
    ranges: list[tuple[int, int]] = []
    depth = 0
    for payload, where in pyromark.events_with_range(markdown, options=STANDARD_OPTIONS):
        if isinstance(payload, dict) and "End" in payload:
            depth -= 1
            continue
        if depth == 0:
            ranges.append((where["start"], where["end"]))
        if isinstance(payload, dict) and "Start" in payload:
            depth += 1
    # byte offsets to string indices
    return [
        (len(source[:start].decode("utf-8", "ignore")), len(source[:end].decode("utf-8", "ignore")))
        for start, end in ranges
    ]


# --- while streaming ------------------------------------------------------------------------

_INLINE_MARKER = re.compile(r"`+|\*+|_+|~~")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_TRAILING_MARKER = re.compile(r"(?:^|(?<=\s))(?:`+|\*+|_+|~+)$")


def _preview(markdown: str) -> Converted:
    """An interim preview of `markdown`: its unfinished markup closed or left out, converted.

    An open code fence is closed (the code shows as a code block). Otherwise a marker run the text
    ends on after a space is left out (its text has not come yet), and the inline markers left
    open in the last paragraph are closed, unless a closer would show as a character (it was not
    markup after all: it then ends the converted text).
    """
    fence = fence_state_at_end(markdown)
    if fence is not None:
        return _convert(markdown + ("" if markdown.endswith("\n") else "\n") + fence.close)
    markdown = _TRAILING_MARKER.sub("", markdown.rstrip()).rstrip()
    closers = _open_markers(_last_paragraph(markdown))
    if closers:
        text, entities = _convert(markdown + closers)
        if not text or text[-1] not in closers:
            return text, entities
    return _convert(markdown)


def _last_paragraph(markdown: str) -> str:
    """The last paragraph of `markdown` (what follows its last blank line)."""
    end = 0
    for blank in _BLANK_LINE.finditer(markdown):
        end = blank.end()
    return markdown[end:]


def _open_markers(paragraph: str) -> str:
    """The closers of the inline markers `paragraph` leaves open, innermost first."""
    stack: list[str] = []
    code: str | None = None
    for match in _INLINE_MARKER.finditer(paragraph):
        run = match.group()
        if code is not None:
            if run == code:
                code = None
            continue
        if run[0] == "`":
            code = run
            continue
        before = paragraph[match.start() - 1] if match.start() else " "
        after = paragraph[match.end()] if match.end() < len(paragraph) else " "
        if run[0] == "_" and before.isalnum() and after.isalnum():
            continue  # snake_case: not emphasis
        for marker in _marker_units(run):
            if stack and stack[-1] == marker and not before.isspace():
                stack.pop()
            elif not after.isspace():
                stack.append(marker)
    closers = "".join(reversed(stack))
    return (code or "") + closers


def _marker_units(run: str) -> list[str]:
    """A delimiter run as emphasis markers: `***` is strong plus emphasis."""
    if run[0] == "~":
        return ["~~"]
    units = [run[0] * 2] * (len(run) // 2)
    if len(run) % 2:
        units.append(run[0])
    return units[:3]


# --- trimming ---------------------------------------------------------------------------------


def _moved(e: MessageEntity, offset: int, length: int) -> MessageEntity:
    return MessageEntity(
        e.type,
        offset,
        length,
        url=e.url,
        language=e.language,
        custom_emoji_id=e.custom_emoji_id,
    )


def _trimmed(text: str, entities: list[MessageEntity]) -> Converted:
    """Strip surrounding whitespace and move/clip the entities to match."""
    stripped = text.strip()
    if stripped == text:
        return text, [e for e in entities if e.length > 0]
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    kept: list[MessageEntity] = []
    for e in entities:
        start = max(0, e.offset - lead)
        end = min(total, e.offset + e.length - lead)
        if end > start:
            kept.append(_moved(e, start, end - start))
    return stripped, kept
