"""Logging setup: text or JSON lines, secrets scrubbed, and the answer each line belongs to.

Libraries log URLs (some platforms put the bot token in the URL), so a filter replaces every
configured secret with `***` in each record's final message, whatever logger emitted it.

Every answer (ask, regenerate, imagine) runs under one short random answer id (a contextvar, so
the tasks it starts inherit it): every record logged meanwhile, by core, the API client, the
renderer or the platform library, carries it (` [a1b2c3d4]` in text, "answer_id" in JSON).
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar

from core.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

ANSWER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("answer_id", default=None)


def follows_answer(use_case: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run `use_case` under a new answer id (kept when the caller already set one)."""

    @functools.wraps(use_case)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if ANSWER_ID.get() is not None:
            return await use_case(*args, **kwargs)
        token = ANSWER_ID.set(secrets.token_hex(4))
        try:
            return await use_case(*args, **kwargs)
        finally:
            ANSWER_ID.reset(token)

    return run


class AnswerIdFilter(logging.Filter):
    """Puts the current answer id on each record (`answer_id`, and ` [id]` as `answer`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        answer_id = ANSWER_ID.get()
        record.answer_id = answer_id
        record.answer = f" [{answer_id}]" if answer_id else ""
        return True


class RedactingFilter(logging.Filter):
    """Replaces secret values in a record's message (and arguments) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        answer_id = getattr(record, "answer_id", None)
        if answer_id:
            entry["answer_id"] = answer_id
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def secrets_of(settings: Settings) -> list[str]:
    return settings.secret_values()


def configure_logging(
    settings: Settings,
    *,
    quiet: bool = False,
    noisy: tuple[str, ...] = (),
    extra_secrets: Iterable[str] = (),
) -> None:
    """Install one stderr handler with the configured level, format and secret scrubbing.

    `extra_secrets`: more values to scrub (the adapters' tokens), besides the settings' own.

    `quiet` (one-shot commands): only warnings, unless BRIDGE_LOG_LEVEL was set explicitly.
    `noisy`: more loggers whose INFO lines are noise (the platform libraries').
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.bridge_log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s%(answer)s: %(message)s")
        )
    handler.addFilter(AnswerIdFilter())
    handler.addFilter(RedactingFilter([*secrets_of(settings), *extra_secrets]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    explicit = "bridge_log_level" in settings.model_fields_set
    root.setLevel("WARNING" if quiet and not explicit else settings.bridge_log_level)
    # Request lines of HTTP libraries are noise at INFO (and may carry tokens in URLs).
    for name in ("httpx", "httpcore", *noisy):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
