"""User input repeated back to the user, capped first.

A refusal or a confirmation that names what the user typed (a model name, a filter, a prompt in
an image caption) shows at most a few lines of it: a 5,000-character "model name" is echoed as
its first 100 characters and an ellipsis, never as a wall of text cut by the platform.
"""

from __future__ import annotations

MAX_ECHO = 100  # model names, filters, ids
MAX_PROMPT_ECHO = 300  # a prompt repeated under its picture


def echo(text: str, limit: int = MAX_ECHO) -> str:
    """`text` fit to repeat back: at most `limit` characters, ending in "…" when cut."""
    if limit < 1:
        raise ValueError(f"echo limit must be at least 1, got {limit}")
    return text if len(text) <= limit else text[: limit - 1] + "…"
