"""Text is text: strings that can be encoded, stored and measured anywhere.

A JSON string may hold a surrogate escape on its own (`"\\ud83d"`), and `json.loads` turns it into
a lone surrogate code point, which no UTF encoder accepts (SQLite, the platforms' HTTP clients and
UTF-16 length counting all raise on it). A streamed answer can deliver an emoji split across two
events (`"\\ud83d"` then `"\\ude00"`), so the halves arrive in two separate strings.

`clean_text` joins adjacent surrogate halves into their character and replaces a lone one with
U+FFFD; `SurrogateJoiner` does the same for a text that arrives in pieces, holding back a high
surrogate at the end of one piece until the next piece shows whether its low half follows.
"""

from __future__ import annotations

import re

__all__ = ["REPLACEMENT", "SurrogateJoiner", "clean_text"]

REPLACEMENT = "\ufffd"
"""What a lone surrogate becomes (U+FFFD REPLACEMENT CHARACTER)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_high_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


def clean_text(text: str) -> str:
    """`text` with surrogate pairs joined into characters and lone surrogates replaced (U+FFFD).

    Text without surrogate code points is returned as it is (the common case costs one scan).
    """
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class SurrogateJoiner:
    """Cleans a text that arrives in pieces (a stream), joining pairs split across pieces.

    `feed` returns the clean text of a piece, except that a high surrogate at its very end is held
    back (it may pair with the next piece); `flush` returns what is held (as U+FFFD: no low half
    came) when the text ends.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """The clean text of `piece`, with anything held from the previous piece in front."""
        if not self._held and _SURROGATE.search(piece) is None:
            return piece
        text = self._held + piece
        self._held = ""
        if text and _is_high_surrogate(text[-1]):
            text, self._held = text[:-1], text[-1]
        return clean_text(text)

    @property
    def holding(self) -> bool:
        """Whether a high surrogate is held back, waiting for the next piece."""
        return bool(self._held)

    def flush(self) -> str:
        """What is still held, cleaned (U+FFFD for an unpaired high surrogate), and reset."""
        held, self._held = self._held, ""
        return clean_text(held)
