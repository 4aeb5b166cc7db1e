"""Discord's settings section: the token, where discord.py connects, commands, shards, and the
servers the bridge answers in.

Read from the same environment and `.env` as core's settings (`core.settings`); the variable
names are a contract with users, as there. The allowed servers (ALLOWED_GUILD_IDS) reach core's
access policy as its allowed spaces, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from core.settings import (
    CommaList,
    SettingsSection,
    blank_is_none,
    check_http_url,
    load_section,
    split_commas,
)

SHARD_COUNT_FORM = "must be a number of shards (1 or more), auto, or empty"


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _numeric_ids(value: tuple[str, ...]) -> tuple[str, ...]:
    bad = [part for part in value if not _is_number(part)]
    if bad:
        raise ValueError(
            f"guild ids are numbers separated by commas (not {bad[0]!r}); in Discord, "
            "right-click the server with Developer Mode on and Copy Server ID"
        )
    return value


class DiscordSettings(SettingsSection):
    """Discord's section. Field names are the environment variables, lower-cased."""

    discord_token: SecretStr | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_ids: CommaList = ()
    discord_message_content: bool = False
    # None: one shard, as before; "auto": Discord's recommended count, all in this process.
    discord_shard_count: int | Literal["auto"] | None = None
    discord_shard_ids: CommaList = ()
    # The servers answered in (core's access policy has them as spaces).
    allowed_guild_ids: CommaList = ()

    _split = field_validator(
        "discord_shard_ids", "discord_guild_ids", "allowed_guild_ids", mode="before"
    )(split_commas)
    _blank = field_validator("discord_token", mode="before")(blank_is_none)
    _http_url = field_validator("discord_api_base_url")(check_http_url)

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _shard_count(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value and value != "auto" and not _is_number(value):
                raise ValueError(SHARD_COUNT_FORM)
            return value or None
        return value

    @field_validator("discord_shard_count")
    @classmethod
    def _positive_shards(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError(SHARD_COUNT_FORM)
        return value

    @field_validator("discord_shard_ids")
    @classmethod
    def _shard_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [part for part in value if not _is_number(part)]
        if bad:
            raise ValueError(f"shard ids are numbers separated by commas (not {bad[0]!r})")
        if len(set(map(int, value))) != len(value):
            raise ValueError("a shard id is listed twice")
        return value

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @field_validator("discord_token")
    @classmethod
    def _discord_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c.isspace() for c in value.get_secret_value().strip()):
            raise ValueError("must be the bot token alone (no 'Bot ' before it, no spaces)")
        return value

    _guild_ids = field_validator("discord_guild_ids")(_numeric_ids)

    @model_validator(mode="after")
    def _shards_consistent(self) -> DiscordSettings:
        ids = self.discord_shard_ids
        count = self.discord_shard_count
        if ids and not isinstance(count, int):
            raise ValueError(
                "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the fleet's total number of shards)"
            )
        if isinstance(count, int) and (too_big := [i for i in ids if int(i) >= count]):
            raise ValueError(
                f"DISCORD_SHARD_IDS: shard {too_big[0]} does not exist with "
                f"DISCORD_SHARD_COUNT={count} (ids are 0 to {count - 1})"
            )
        return self

    @property
    def discord_shards(self) -> tuple[int, ...]:
        """This process's shard ids (empty: one shard, or all of the count)."""
        return tuple(int(i) for i in self.discord_shard_ids)


def load_discord_settings(
    env_file: str | Path | None = ".env", **overrides: Any
) -> DiscordSettings:
    """Read Discord's section; `SettingsError` with one line naming the first bad variable."""
    return load_section(DiscordSettings, env_file, **overrides)
