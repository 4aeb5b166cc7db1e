"""Tokens per answer: what the server reported in `usage`, or an estimate when it sent none.

`AnswerTally` watches one answer's stream (each `StreamDelta`) and remembers how it finished
(`finish_reason`) and what it cost. Servers that send no `usage` (many OpenAI-compatible ones,
g4f with some providers) get an estimate of about four characters per token, marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.api_models import ChatMessage, StreamDelta, Usage

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and code
DAY = 86_400.0


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is (0 for no text, at least 1 otherwise)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass(frozen=True, slots=True)
class TokenCount:
    """What one answer used: the prompt it was sent and the completion it streamed."""

    prompt: int
    completion: int
    estimated: bool  # True: the server sent no usage; counted from characters

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class AnswerTally:
    """One answer's finish reason and usage, as its deltas pass by."""

    def __init__(self, messages: Sequence[ChatMessage]) -> None:
        self._prompt_chars = sum(len(m.text_for_count()) for m in messages)
        self._completion_chars = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def observe(self, delta: StreamDelta) -> None:
        self._completion_chars += len(delta.content) + len(delta.reasoning)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage

    @property
    def cut_by_length(self) -> bool:
        """The model stopped because it reached its token limit, not because it was done."""
        return self.finish_reason == "length"

    def tokens(self) -> TokenCount:
        """The reported usage when it has numbers, else the estimate."""
        usage = self.usage
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            return TokenCount(usage.prompt_tokens or 0, usage.completion_tokens or 0, False)
        if usage is not None and usage.total_tokens:
            return TokenCount(0, usage.total_tokens, False)
        return TokenCount(
            math.ceil(self._prompt_chars / CHARS_PER_TOKEN),
            math.ceil(self._completion_chars / CHARS_PER_TOKEN),
            True,
        )


def start_of_day(wall: float) -> float:
    """Midnight (UTC) of the day `wall` (seconds since the epoch) falls in."""
    return wall - wall % DAY
