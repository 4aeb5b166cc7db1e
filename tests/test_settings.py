"""Settings: names, defaults, validation, and secrets kept out of reprs and logs, for core's
settings and the adapters' sections alike."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bots.discord.settings import DiscordSettings
from bots.run import open_bridge
from bots.settings import PlatformSettings, load_platform_settings
from bots.telegram.settings import TelegramSettings
from core.logs import RedactingFilter, configure_logging, secrets_of
from core.settings import Settings, SettingsError, SettingsSection, load_settings

ROOT = Path(__file__).resolve().parents[1]
SECTIONS: tuple[type[SettingsSection], ...] = (Settings, DiscordSettings, TelegramSettings)


def all_names() -> set[str]:
    """Every variable of every section, as users write it."""
    return {name.upper() for section in SECTIONS for name in section.model_fields}


def load_all(env_file: str | Path | None) -> tuple[Settings, PlatformSettings]:
    """What the program reads at start: core's settings, then the adapters' sections."""
    settings = load_settings(env_file)
    return settings, load_platform_settings(settings, env_file)


def example_names() -> dict[str, str]:
    rows = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            rows[name] = value
    return rows


def _load_all_refuses(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """Set `env`; loading every section must fail: the error's text."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_all(None)
    return str(caught.value)


def test_env_example_lists_every_setting_with_its_default() -> None:
    rows = example_names()
    assert set(rows) == all_names()
    settings, sections = load_all(ROOT / ".env.example")
    assert settings == Settings(_env_file=None)  # type: ignore[call-arg]
    assert sections.discord == DiscordSettings(_env_file=None)  # type: ignore[call-arg]
    assert sections.telegram == TelegramSettings(_env_file=None)  # type: ignore[call-arg]


def test_sections_share_no_variable() -> None:
    names = [name for section in SECTIONS for name in section.model_fields]
    assert len(names) == len(set(names))


async def test_allowed_guild_ids_are_the_spaces_core_allows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BRIDGE_STORE_URL", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    monkeypatch.setenv("ALLOWED_GUILD_IDS", "111, discord:222")
    bridge = await open_bridge(*load_all(None))
    try:
        assert bridge.policy.allowed_spaces == {"111", "discord:222"}
    finally:
        await bridge.close()


def test_every_setting_has_a_comment_line() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), line


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G4F_FALLBACK_MODELS", "gpt-4o-mini, llama-3.3-70b ,")
    monkeypatch.setenv("ALLOWED_USER_IDS", "1,telegram:2")
    settings = load_settings(None)
    assert settings.g4f_fallback_models == ("gpt-4o-mini", "llama-3.3-70b")
    assert settings.allowed_user_ids == ("1", "telegram:2")
    monkeypatch.setenv("ALLOWED_GUILD_IDS", " 123, discord:456")
    assert load_platform_settings(settings, None).discord.allowed_guild_ids == (
        "123",
        "discord:456",
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "G4F_TIMEOUT_IDLE",
            "-1",
            "invalid setting G4F_TIMEOUT_IDLE: Input should be greater than 0",
        ),
        (
            "BRIDGE_LOG_FORMAT",
            "xml",
            "invalid setting BRIDGE_LOG_FORMAT: Input should be 'text' or 'json'",
        ),
        (
            "DISCORD_GATEWAY_URL",
            "http://x",
            "invalid setting DISCORD_GATEWAY_URL: must be a ws:// or wss:// URL",
        ),
        (
            "G4F_API_KEY_HEADER",
            "bad header",
            "invalid setting G4F_API_KEY_HEADER: must be an HTTP header name",
        ),
        (
            "BRIDGE_STORE_URL",
            "mysql://db/bridge",
            "invalid setting BRIDGE_STORE_URL: MySQL (mysql://) is not supported yet; "
            "supported: postgres://, postgresql://, sqlite://",
        ),
        (
            "BRIDGE_STORE_URL",
            "postgresql://bridge@db:54x2/bridge",
            "invalid setting BRIDGE_STORE_URL: the PostgreSQL port is not a number",
        ),
        (
            "BRIDGE_STORE_URL",
            "mongodb://db/bridge",
            "invalid setting BRIDGE_STORE_URL: unsupported store URL scheme 'mongodb'",
        ),
        (
            "BRIDGE_STORE_URL",
            "./data/bridge.sqlite3",
            "invalid setting BRIDGE_STORE_URL: has no scheme; use a URL such as sqlite:///",
        ),
        (
            "BRIDGE_STORE_URL",
            "sqlite://bridge.sqlite3",
            "invalid setting BRIDGE_STORE_URL: SQLite store URL must look like sqlite:///",
        ),
        (
            "BRIDGE_LIMITS_URL",
            "memcached://x",
            "invalid setting BRIDGE_LIMITS_URL: must be memory://",
        ),
        ("BRIDGE_LIMITS_URL", "memory", "invalid setting BRIDGE_LIMITS_URL: must be memory://"),
        (
            "BRIDGE_LIMITS_URL",
            "redis://localhost:63x9/0",
            "invalid setting BRIDGE_LIMITS_URL: the Redis port is not a number",
        ),
        (
            "BRIDGE_LIMITS_URL",
            "redis://localhost:6379/cache",
            "invalid setting BRIDGE_LIMITS_URL: the Redis database must be a number",
        ),
        (
            "BRIDGE_LIMITS_URL",
            "redis://",
            "invalid setting BRIDGE_LIMITS_URL: redis:// needs a host",
        ),
        (
            "DISCORD_GUILD_IDS",
            "123456789012345678, my-server",
            "invalid setting DISCORD_GUILD_IDS: guild ids are numbers separated by commas "
            "(not 'my-server')",
        ),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    refused = _load_all_refuses(monkeypatch, {name: value})
    assert refused.startswith(message)
    assert "\n" not in refused


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_STORE_URL", "sqlite:////var/lib/g4f-bridge/store.sqlite3"),
        ("BRIDGE_STORE_URL", "sqlite:///:memory:"),
        ("BRIDGE_STORE_URL", "postgresql://bridge:pw@db.internal:5432/bridge"),
        ("BRIDGE_STORE_URL", "postgres://bridge@127.0.0.1/bridge?sslmode=require"),
        ("BRIDGE_LIMITS_URL", "redis://localhost:6379/0"),
        ("BRIDGE_LIMITS_URL", "rediss://:pw@cache.internal:6380"),
        ("BRIDGE_LIMITS_URL", "unix:///run/redis/redis.sock"),
        ("DISCORD_GUILD_IDS", "123456789012345678, 876543210987654321"),
    ],
)
def test_valid_urls_and_ids_pass(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert load_all(None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "TELEGRAM_TOKEN",
            "AAE-secret-no-bot-id",
            "invalid setting TELEGRAM_TOKEN: must look like",
        ),
        (
            "TELEGRAM_TOKEN",
            "123:secret with space",
            "invalid setting TELEGRAM_TOKEN: must look like",
        ),
        (
            "DISCORD_TOKEN",
            "Bot secret.part.three",
            "invalid setting DISCORD_TOKEN: must be the bot",
        ),
    ],
)
def test_malformed_tokens_are_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    refused = _load_all_refuses(monkeypatch, {name: value})
    assert refused.startswith(message)
    assert "secret" not in refused


def test_url_errors_never_repeat_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("BRIDGE_STORE_URL", "postgres://bridge:hunter2-pw@db:port/bridge"),
        ("BRIDGE_STORE_URL", "mysql://bridge:hunter2-pw@db/bridge"),
        ("BRIDGE_LIMITS_URL", "redis://:hunter2-pw@cache:port/0"),
        ("BRIDGE_LIMITS_URL", "memcached://:hunter2-pw@cache"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError) as caught:
            load_settings(None)
        assert name in str(caught.value) and "hunter2" not in str(caught.value)
        monkeypatch.delenv(name)


def test_secrets_stay_out_of_reprs_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "999:secret-value-for-test")
    monkeypatch.setenv("G4F_API_KEY", "api-secret-value")
    settings, sections = load_all(None)
    assert "secret-value" not in repr(settings) and "secret-value" not in str(settings)
    assert "secret-value" not in repr(sections) and "secret-value" not in str(sections)
    assert secrets_of(*sections.sections()) == ["999:secret-value-for-test"]
    monkeypatch.setenv("G4F_TIMEOUT_TOTAL", "api-secret-value")
    with pytest.raises(SettingsError) as caught:
        load_settings(None)
    assert "api-secret-value" not in str(caught.value)


def test_auth_header_forms() -> None:
    s = Settings(_env_file=None, g4f_api_key=SecretStr("k1"))  # type: ignore[call-arg]
    assert s.auth_headers() == {"g4f-api-key": "k1"}
    s = Settings(  # type: ignore[call-arg]
        _env_file=None, g4f_api_key=SecretStr("k1"), g4f_api_key_header="Authorization"
    )
    assert s.auth_headers() == {"Authorization": "Bearer k1"}
    assert Settings(_env_file=None).auth_headers() == {}  # type: ignore[call-arg]
    assert Settings(_env_file=None).api_root_url == "http://localhost:1337"  # type: ignore[call-arg]


def test_logs_never_show_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(_env_file=None, bridge_log_format="json")  # type: ignore[call-arg]
    telegram = TelegramSettings(  # type: ignore[call-arg]
        _env_file=None, telegram_token=SecretStr("123:tok-SECRET")
    )
    configure_logging(settings, more_settings=[telegram])
    try:
        logging.getLogger("telegram.ext").warning("POST https://x/bot%s/getMe", "123:tok-SECRET")
        try:
            raise RuntimeError("failed with 123:tok-SECRET")
        except RuntimeError:
            logging.getLogger("core").exception("boom")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "tok-SECRET" not in err
    assert '"message": "POST https://x/bot***/getMe"' in err
    assert "failed with ***" in err


def test_redacting_filter_ignores_tiny_values() -> None:
    assert RedactingFilter(["ab", "long-secret"]).redact("ab long-secret") == "ab ***"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(all_names()) if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook"},
            "invalid settings: TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "ftp://bot.example.org/hook"},
            "invalid setting TELEGRAM_WEBHOOK_URL: must be the public https:// URL",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://bot.example.org/healthz"},
            "invalid setting TELEGRAM_WEBHOOK_URL: the path /healthz is the endpoint's own",
        ),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://b.example.org/h", "TELEGRAM_WEBHOOK_SECRET": "a b"},
            "invalid setting TELEGRAM_WEBHOOK_SECRET: must be 1-256 characters",
        ),
        (
            {
                "TELEGRAM_WEBHOOK_URL": "https://b.example.org/h",
                "TELEGRAM_WEBHOOK_SECRET": "x" * 257,
            },
            "invalid setting TELEGRAM_WEBHOOK_SECRET: must be 1-256 characters",
        ),
        (
            {
                "TELEGRAM_WEBHOOK_URL": "https://b.example.org/h",
                "TELEGRAM_WEBHOOK_SECRET": "ok_secret-1",
                "BRIDGE_HTTP_ADDR": "off",
            },
            "invalid settings: TELEGRAM_WEBHOOK_URL is served by the bridge's HTTP endpoint",
        ),
        (
            {"DISCORD_SHARD_IDS": "0"},
            "invalid settings: DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT",
        ),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "1,2"},
            "invalid settings: DISCORD_SHARD_IDS: shard 2 does not exist with "
            "DISCORD_SHARD_COUNT=2 (ids are 0 to 1)",
        ),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "0,0"},
            "invalid setting DISCORD_SHARD_IDS: a shard id is listed twice",
        ),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "first"},
            "invalid setting DISCORD_SHARD_IDS: shard ids are numbers",
        ),
        ({"DISCORD_SHARD_COUNT": "0"}, "invalid setting DISCORD_SHARD_COUNT: must be a number"),
        ({"DISCORD_SHARD_COUNT": "many"}, "invalid setting DISCORD_SHARD_COUNT: must be a number"),
    ],
)
def test_webhook_and_shard_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    refused = _load_all_refuses(monkeypatch, env)
    assert refused.startswith(message)
    assert "\n" not in refused


def test_webhook_and_shards_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "http://lb.internal:8080/tg/hook?x=1")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "Ab-9_" * 10)
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "3, 1")
    _, sections = load_all(None)
    telegram, discord = sections.telegram, sections.discord
    assert telegram.telegram_webhook_path == "/tg/hook"  # plain http: TLS ends at the balancer
    assert "Ab-9_" not in repr(sections)
    assert discord.discord_shard_count == 4 and discord.discord_shards == (3, 1)
    polling = TelegramSettings(  # type: ignore[call-arg]
        _env_file=None, telegram_webhook_url=""
    )
    assert polling.telegram_webhook_path is None
    defaults = DiscordSettings(  # type: ignore[call-arg]
        _env_file=None, discord_shard_count=None, discord_shard_ids=()
    )
    assert defaults.discord_shard_count is None and defaults.discord_shards == ()
