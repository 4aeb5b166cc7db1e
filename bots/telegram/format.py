"""Markdown to Telegram text + entities, never a parse mode.

Model output is CommonMark, often half-finished while it streams. Converting it ourselves with
telegramify-markdown and sending `entities` (UTF-16 offsets) means Telegram never parses markup, so
"can't parse entities" cannot happen for well-formed output. Telegram trims whitespace around a
message; `to_entities` trims too (and moves the entities), so what we remember having sent is what
the chat shows, and an edit that only changes trailing whitespace is recognised as a no-op.
"""

from __future__ import annotations

import logging

import telegramify_markdown
from telegram import MessageEntity
from telegramify_markdown import RenderConfig

log = logging.getLogger(__name__)

# An independent render configuration: nothing else in the process can change it under us.
_CONFIG = RenderConfig.isolated()


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


def to_entities(markdown: str) -> tuple[str, list[MessageEntity]]:
    """Convert markdown to (plain text, entities), trimmed as Telegram will show it."""
    try:
        text, raw = telegramify_markdown.convert(markdown, config=_CONFIG)
    except Exception:  # a converter bug must not cost the message: show it unformatted
        log.warning("markdown conversion failed; sending plain text", exc_info=True)
        return markdown.strip(), []
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
    return _trimmed(text, entities)


def _trimmed(text: str, entities: list[MessageEntity]) -> tuple[str, list[MessageEntity]]:
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
            kept.append(
                MessageEntity(
                    e.type,
                    start,
                    end - start,
                    url=e.url,
                    language=e.language,
                    custom_emoji_id=e.custom_emoji_id,
                )
            )
    return stripped, kept
