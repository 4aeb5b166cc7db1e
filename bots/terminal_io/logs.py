"""Logs during the terminal chat: to a file, never onto the conversation's screen.

`logs_to_file` moves the root logger's output (its format and secret scrubbing kept) to a file
for as long as the chat runs, and tallies WARNING and above so the chat can say, in one dim
line after a turn, that something was logged and where.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.texts import shorten

SUMMARY_MESSAGE_CHARS = 100


class WarningTally(logging.Handler):
    """Counts WARNING-and-above records and keeps the last one's message."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.last = record.getMessage().splitlines()[0] if record.getMessage() else ""

    def take_summary(self, path: Path) -> str | None:
        """One line about the records since the last call (None when there were none)."""
        if not self.count:
            return None
        what = "warning" if self.count == 1 else "warnings"
        line = f"{self.count} {what} logged in {_short_path(path)}"
        if self.last:
            line += f": {shorten(self.last, SUMMARY_MESSAGE_CHARS)}"
        self.count, self.last = 0, ""
        return line


def open_private(path: Path) -> None:
    """Create `path` (and its folder) readable by its owner only, if it does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))


@contextmanager
def logs_to_file(path: Path) -> Iterator[WarningTally]:
    """Send every log record to `path` instead of the console while the block runs."""
    root = logging.getLogger()
    before = list(root.handlers)
    open_private(path)
    handler = logging.FileHandler(path, encoding="utf-8")
    tally = WarningTally()
    if before:
        handler.setFormatter(before[0].formatter)
        for old in before:
            for log_filter in old.filters:  # the secret scrubbing, first
                handler.addFilter(log_filter)
                tally.addFilter(log_filter)
    root.handlers[:] = [handler, tally]
    try:
        yield tally
    finally:
        root.handlers[:] = before
        handler.close()


def _short_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
