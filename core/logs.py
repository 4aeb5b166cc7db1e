"""Logging setup: text or JSON lines, secrets scrubbed, and the answer each line belongs to.

Libraries log URLs (some platforms put the bot token in the URL), so a filter replaces every
secret of the settings (each `SecretStr` field, whatever its name) with `***` in each record's
final message and traceback, whatever logger emitted it.

Every answer (ask, regenerate, imagine) runs under one short random answer id, bound in
structlog's context variables (so the tasks it starts inherit it): every record logged
meanwhile, by core, the API client, the renderer or the platform library, carries it
(` [a1b2c3d4]` in text, "answer_id" in JSON). JSON lines are rendered by structlog's
`ProcessorFormatter` for the standard library's records.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

import structlog
from pydantic import BaseModel, SecretBytes, SecretStr
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from core.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

_ANSWER_KEY = "answer_id"


class _AnswerId:
    """The current answer id, kept in structlog's context variables (None outside an answer)."""

    def get(self) -> str | None:
        value = get_contextvars().get(_ANSWER_KEY)
        return value if isinstance(value, str) else None

    def set(self, answer_id: str) -> contextvars.Token[Any]:
        """Bind `answer_id`; pass the token to `reset` to restore what was bound before."""
        return bind_contextvars(**{_ANSWER_KEY: answer_id})[_ANSWER_KEY]

    def reset(self, token: contextvars.Token[Any]) -> None:
        reset_contextvars(**{_ANSWER_KEY: token})


ANSWER_ID = _AnswerId()


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


def secrets_of(*models: BaseModel) -> list[str]:
    """The value of every `SecretStr` / `SecretBytes` field of `models`, nested models and
    collections of them included."""
    return sorted(set(_secret_values(models)))


def _secret_values(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, SecretBytes):
        yield value.get_secret_value().decode("utf-8", "replace")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _secret_values(item)


# --- JSON lines (structlog) ---------------------------------------------------------------

_JSON_ORDER = ("time", "level", "logger", "message", _ANSWER_KEY, "exception")


def _record_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Level and logger name from the standard library's record; a traceback the redacting
    filter already formatted (and scrubbed) as `exception`."""
    record: logging.LogRecord = event_dict["_record"]
    event_dict["level"] = record.levelname
    event_dict["logger"] = record.name
    if record.exc_text and "exc_info" not in event_dict:
        event_dict["exception"] = record.exc_text
    return event_dict


def _json_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The fields of a JSON line, in a stable order; no answer id outside an answer."""
    if not event_dict.get(_ANSWER_KEY):
        event_dict.pop(_ANSWER_KEY, None)
    ordered = {key: event_dict.pop(key) for key in _JSON_ORDER if key in event_dict}
    ordered.update(event_dict)
    return ordered


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, answer_id (in an answer), and the
    exception's traceback when there is one."""
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="%Y-%m-%dT%H:%M:%S", utc=False, key="time"),
        _record_fields,
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _json_fields,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s%(answer)s: %(message)s")


def configure_logging(
    settings: Settings,
    *,
    quiet: bool = False,
    noisy: tuple[str, ...] = (),
    more_settings: Iterable[BaseModel] = (),
) -> None:
    """Install one stderr handler with the configured level, format and secret scrubbing.

    `quiet` (one-shot commands): only warnings, unless BRIDGE_LOG_LEVEL was set explicitly.
    `noisy`: more loggers whose INFO lines are noise (the platform libraries').
    `more_settings`: further settings objects whose secrets are scrubbed too (`settings`' are).
    """
    handler = logging.StreamHandler(sys.stderr)
    json_lines = settings.bridge_log_format == "json"
    handler.setFormatter(json_formatter() if json_lines else text_formatter())
    handler.addFilter(AnswerIdFilter())
    handler.addFilter(RedactingFilter(secrets_of(settings, *more_settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    explicit = "bridge_log_level" in settings.model_fields_set
    root.setLevel("WARNING" if quiet and not explicit else settings.bridge_log_level)
    # Request lines of HTTP libraries are noise at INFO (and may carry tokens in URLs).
    for name in ("httpx", "httpcore", *noisy):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
