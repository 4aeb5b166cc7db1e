"""Telegram's settings section: the token, the Bot API's addresses, how answers stream, and the
webhook.

Read from the same environment and `.env` as core's settings (`core.settings`); the variable
names are a contract with users, as there. `load_telegram_settings` checks the section against
core's settings too (the webhook is served by core's HTTP endpoint).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from core.settings import (
    RESERVED_PATHS,
    Settings,
    SettingsError,
    SettingsSection,
    blank_is_none,
    check_http_url,
    load_section,
)

TELEGRAM_TOKEN_FORM = re.compile(r"\d+:[A-Za-z0-9_-]+")
WEBHOOK_SECRET_FORM = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook's secret_token takes


def _secret_in_form(
    form: re.Pattern[str], problem: str
) -> Callable[[SecretStr | None], SecretStr | None]:
    """A field validator: a secret, when set, is all of `form` (else ValueError(`problem`))."""

    def check(value: SecretStr | None) -> SecretStr | None:
        if value is not None and not form.fullmatch(value.get_secret_value()):
            raise ValueError(problem)
        return value

    return check


class TelegramSettings(SettingsSection):
    """Telegram's section. Field names are the environment variables, lower-cased."""

    telegram_token: SecretStr | None = None
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str = "https://api.telegram.org/file/bot"
    telegram_stream_mode: Literal["auto", "draft", "edit"] = "auto"
    telegram_webhook_url: str = ""  # empty: long polling
    telegram_webhook_secret: SecretStr | None = None

    _blank = field_validator("telegram_token", "telegram_webhook_secret", mode="before")(
        blank_is_none
    )
    _http_url = field_validator("telegram_base_url", "telegram_base_file_url")(check_http_url)

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be the public https:// URL Telegram posts updates to, e.g. "
                "https://bot.example.org/telegram/webhook (or empty for long polling)"
            )
        if (parts.path or "/") in RESERVED_PATHS:
            raise ValueError(f"the path {parts.path} is the endpoint's own; choose another")
        return value

    _webhook_secret = field_validator("telegram_webhook_secret")(
        _secret_in_form(WEBHOOK_SECRET_FORM, "must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    )
    _telegram_token = field_validator("telegram_token")(
        _secret_in_form(
            TELEGRAM_TOKEN_FORM, "must look like 123456789:AAE... (the token @BotFather gave)"
        )
    )

    @model_validator(mode="after")
    def _webhook_complete(self) -> TelegramSettings:
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET (1-256 characters of "
                "A-Z a-z 0-9 _ -), so only Telegram can post updates"
            )
        return self

    @property
    def telegram_webhook_path(self) -> str | None:
        """The path of TELEGRAM_WEBHOOK_URL the endpoint serves; None when polling."""
        if not self.telegram_webhook_url:
            return None
        return urlsplit(self.telegram_webhook_url).path or "/"

    def check_with(self, settings: Settings) -> None:
        """`SettingsError` (one line) when the section does not fit core's settings."""
        if self.telegram_webhook_url and settings.http_listen is None:
            raise SettingsError(
                "invalid settings: TELEGRAM_WEBHOOK_URL is served by the bridge's HTTP endpoint: "
                "set BRIDGE_HTTP_ADDR (e.g. 0.0.0.0:8780) instead of off"
            )


def load_telegram_settings(
    settings: Settings, env_file: str | Path | None = ".env", **overrides: Any
) -> TelegramSettings:
    """Read Telegram's section and check it against core's `settings`; `SettingsError` with one
    line naming the first bad variable."""
    section = load_section(TelegramSettings, env_file, **overrides)
    section.check_with(settings)
    return section
