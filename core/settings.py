"""Settings, read from the environment and `.env`: core's own, and what every section shares.

The variable names are a contract with users (`.env.example`, the README) and with the container
files. An invalid value stops the program at start with one line naming the variable
(`SettingsError`), never a traceback. Tokens and keys are `SecretStr`: they never appear in reprs,
logs or error messages.

`Settings` holds what core uses. Each adapter owns a section of its own (a `SettingsSection` in its
package, read from the same environment and `.env`, loaded with `load_section`) and hands core any
value core needs from it in neutral terms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.embedded import embedded_listen_address
from core.limits import Rate
from core.store.base import check_store_url

CommaList = Annotated[tuple[str, ...], NoDecode]  # a comma list (see `split_commas`)
RESERVED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # the endpoint's own


def split_commas(value: Any) -> Any:
    """A `mode="before"` validator for a `CommaList`: "a, b ," is ("a", "b")."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def check_http_url(value: str) -> str:
    """The URL without a trailing slash; ValueError unless it is an http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def blank_is_none(value: Any) -> Any:
    """A `mode="before"` validator: an empty or blank value is unset."""
    return None if isinstance(value, str) and not value.strip() else value


def check_limits_url(url: str) -> None:
    """ValueError unless `url` is memory:// or a Redis URL redis-py can use.

    Messages never repeat the URL (it may hold a password).
    """
    if url == "memory://":
        return
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("redis", "rediss"):
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the Redis port is not a number") from None
        if not parts.hostname:
            raise ValueError(f"{scheme}:// needs a host, e.g. redis://localhost:6379/0")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the Redis database must be a number (redis://HOST:{port or 6379}/0)")
        return
    if scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs the socket path, e.g. unix:///run/redis/redis.sock")
        return
    raise ValueError(
        "must be memory:// (one process) or a Redis URL: redis://HOST:6379/0, rediss:// (TLS) "
        "or unix:///path/to/redis.sock"
    )


def parse_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as a pair; ValueError saying the form."""
    form = "must be HOST:PORT, e.g. 127.0.0.1:8780 (port 0 takes a free one), or off"
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        raise ValueError(form) from None
    if not parts.hostname or port is None or parts.path or parts.username or parts.query:
        raise ValueError(form)
    return parts.hostname, port


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line fit for a user."""


class SettingsSection(BaseSettings):
    """A group of settings read from the environment and `.env`. Field names are the
    environment variables, lower-cased; every section ignores the others' variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )


class Settings(SettingsSection):
    """Core's settings: the API, the store and limits, the bridge's behaviour, access, the
    HTTP endpoint and logs."""

    # --- The G4F / OpenAI-compatible API ---------------------------------------------------
    g4f_base_url: str = "http://localhost:1337/v1"
    g4f_api_key: SecretStr | None = None
    g4f_api_key_header: str = "g4f-api-key"
    g4f_provider: str | None = None
    g4f_default_model: str = "gpt-4o"
    g4f_image_model: str = "flux"
    g4f_image_models: CommaList = ()
    g4f_fallback_models: CommaList = ()
    g4f_timeout_connect: float = Field(10.0, gt=0)
    g4f_timeout_first_token: float = Field(120.0, gt=0)
    g4f_timeout_idle: float = Field(60.0, gt=0)
    g4f_timeout_total: float = Field(600.0, gt=0)
    g4f_retries: int = Field(2, ge=0, le=10)
    g4f_image_max_bytes: int = Field(20 * 1024 * 1024, gt=0)
    g4f_image_timeout: float = Field(60.0, gt=0)
    g4f_models_cache_seconds: float = Field(300.0, ge=0)

    # --- The bridge ------------------------------------------------------------------------
    # Out of reprs: a postgresql:// URL may hold a password.
    bridge_store_url: str = Field(default="sqlite:///./data/g4f-bridge.sqlite3", repr=False)
    bridge_data_dir: Path = Path("./data")  # the terminal chat's input history and log
    bridge_limits_url: str = "memory://"
    # Prefix of every Redis key and channel: fleets sharing one Redis keep apart by it.
    bridge_limits_prefix: str = Field("g4f-bridge:", min_length=1, max_length=64)
    bridge_system_prompt: str = ""
    bridge_conversation_idle_minutes: float = Field(60.0, ge=0)
    bridge_history_max_messages: int = Field(40, ge=1)
    bridge_history_max_chars: int = Field(24_000, ge=100)
    bridge_user_rate: str = "10/minute"
    bridge_max_concurrency: int = Field(8, ge=1)
    bridge_shutdown_grace: float = Field(20.0, ge=0, le=600)
    # With Redis limits: seconds a replica that stopped refreshing its answers and slots still
    # counts as alive; then another replica ends its half-written messages in place.
    bridge_replica_lease: float = Field(15.0, ge=1, le=600)
    bridge_show_reasoning: bool = False
    allowed_user_ids: CommaList = ()
    allowed_chat_ids: CommaList = ()
    admin_user_ids: CommaList = ()
    bridge_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    bridge_log_format: Literal["text", "json"] = "text"
    bridge_http_addr: str = "127.0.0.1:8780"
    bridge_embedded_g4f: Literal["auto", "always", "never"] = "auto"
    bridge_embedded_g4f_path: str = ""  # the g4f executable; empty: the one installed with us
    bridge_embedded_g4f_start_timeout: float = Field(120.0, gt=0)

    _split = field_validator(
        "g4f_image_models",
        "g4f_fallback_models",
        "allowed_user_ids",
        "allowed_chat_ids",
        "admin_user_ids",
        mode="before",
    )(split_commas)

    @field_validator("bridge_embedded_g4f", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("bridge_embedded_g4f")
    @classmethod
    def _embedded_needs_local_url(cls, value: str, info: ValidationInfo) -> str:
        base_url = info.data.get("g4f_base_url")
        if value == "always" and base_url and embedded_listen_address(base_url) is None:
            raise ValueError(
                "always starts g4f on this machine, so G4F_BASE_URL must be "
                "http://localhost:PORT/v1 or http://127.0.0.1:PORT/v1; use auto or never for "
                "a server elsewhere"
            )
        return value

    @field_validator("bridge_embedded_g4f_path")
    @classmethod
    def _g4f_executable(cls, value: str) -> str:
        value = value.strip()
        if value and not (Path(value).is_file() and os.access(value, os.X_OK)):
            raise ValueError("no executable file there (the g4f command of a g4f install)")
        return value

    @field_validator("bridge_log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    _http_url = field_validator("g4f_base_url")(check_http_url)

    @field_validator("g4f_api_key_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        name = value.strip().lower()
        if not name or any(c in name for c in " :\r\n"):
            raise ValueError("must be an HTTP header name such as g4f-api-key or authorization")
        return name

    @field_validator("bridge_store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        check_store_url(value)
        return value

    @field_validator("bridge_limits_url")
    @classmethod
    def _limits_url(cls, value: str) -> str:
        check_limits_url(value)
        return value

    @field_validator("bridge_http_addr")
    @classmethod
    def _http_addr(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "off"):
            return "off"
        parse_host_port(value)
        return value

    @field_validator("bridge_user_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    _blank = field_validator("g4f_provider", "g4f_api_key", mode="before")(blank_is_none)

    @model_validator(mode="after")
    def _timeouts_consistent(self) -> Settings:
        if self.g4f_timeout_total < self.g4f_timeout_connect:
            raise ValueError("G4F_TIMEOUT_TOTAL must not be shorter than G4F_TIMEOUT_CONNECT")
        return self

    # --- Derived values --------------------------------------------------------------------
    @property
    def user_rate(self) -> Rate:
        return Rate.parse(self.bridge_user_rate)

    @property
    def api_root_url(self) -> str:
        """The server's root (the base URL without a trailing /v1), for /media and /api paths."""
        base = self.g4f_base_url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    @property
    def http_listen(self) -> tuple[str, int] | None:
        """Host and port of the health/metrics endpoint; None when BRIDGE_HTTP_ADDR=off."""
        return None if self.bridge_http_addr == "off" else parse_host_port(self.bridge_http_addr)

    def auth_headers(self) -> dict[str, str]:
        """The header that carries the API key, as configured (empty without a key)."""
        if self.g4f_api_key is None:
            return {}
        key = self.g4f_api_key.get_secret_value()
        if self.g4f_api_key_header == "authorization":
            return {"Authorization": f"Bearer {key}"}
        return {self.g4f_api_key_header: key}


S = TypeVar("S", bound=SettingsSection)


def load_section(section: type[S], env_file: str | Path | None = ".env", **overrides: Any) -> S:
    """Read one section; raise `SettingsError` with one line naming the first bad variable."""
    try:
        return section(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read core's settings; raise `SettingsError` with one line naming the first bad variable."""
    return load_section(Settings, env_file, **overrides)


def describe_validation_error(exc: ValidationError) -> str:
    """One line: the variable (as users write it) and what is wrong with it."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if str(part) != "__root__"]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return f"invalid settings: {message}"
    return f"invalid setting {loc[0].upper()}: {message}"
