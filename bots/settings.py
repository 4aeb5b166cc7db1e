"""Every adapter's settings section, read together at start (next to core's `Settings`).

`load_platform_settings` reads Discord's and Telegram's sections from the same environment and
`.env`, so a bad value in either stops the program at start with one line, as core's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bots.discord.settings import DiscordSettings, load_discord_settings
from bots.telegram.settings import TelegramSettings, load_telegram_settings
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """The adapters' sections."""

    discord: DiscordSettings
    telegram: TelegramSettings

    def tokens(self) -> dict[str, SecretStr | None]:
        """Each platform's token, by platform name (None: not set, the platform is off)."""
        return {"discord": self.discord.discord_token, "telegram": self.telegram.telegram_token}

    def sections(self) -> tuple[DiscordSettings, TelegramSettings]:
        """Every section (e.g. for the log scrubber, which scrubs their secrets)."""
        return (self.discord, self.telegram)


def load_platform_settings(
    settings: Settings, env_file: str | Path | None = ".env"
) -> PlatformSettings:
    """Read every adapter's section; `SettingsError` with one line naming the first bad
    variable."""
    return PlatformSettings(
        discord=load_discord_settings(env_file),
        telegram=load_telegram_settings(settings, env_file),
    )
