"""Logging setup: text or JSON lines, and secrets scrubbed from every record.

Libraries log URLs (some platforms put the bot token in the URL), so a filter replaces every
configured secret with `***` in each record's final message, whatever logger emitted it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

from core.settings import Settings


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
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def secrets_of(settings: Settings) -> list[str]:
    values = (settings.g4f_api_key, settings.discord_token, settings.telegram_token)
    return [v.get_secret_value() for v in values if v is not None]


def configure_logging(
    settings: Settings, *, quiet: bool = False, noisy: tuple[str, ...] = ()
) -> None:
    """Install one stderr handler with the configured level, format and secret scrubbing.

    `quiet` (one-shot commands): only warnings, unless BRIDGE_LOG_LEVEL was set explicitly.
    `noisy`: more loggers whose INFO lines are noise (the platform libraries').
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.bridge_log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    explicit = "bridge_log_level" in settings.model_fields_set
    root.setLevel("WARNING" if quiet and not explicit else settings.bridge_log_level)
    # Request lines of HTTP libraries are noise at INFO (and may carry tokens in URLs).
    for name in ("httpx", "httpcore", *noisy):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
