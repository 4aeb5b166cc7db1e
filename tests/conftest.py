"""Shared fixtures. Tests are hermetic: no developer .env, no inherited bridge variables."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from core.settings import Settings
from tests.fakes.g4f_server import FakeG4F

SETTING_PREFIXES = ("G4F_", "DISCORD_", "TELEGRAM_", "BRIDGE_", "ALLOWED_", "ADMIN_")
# Read at import: `_hermetic` drops every G4F_ variable before a test runs.
REQUIRE_SERVICES = bool(os.environ.get("G4F_BRIDGE_REQUIRE_SERVICES"))


def service_missing(reason: str) -> NoReturn:
    """Skip a test that needs a missing service, or fail it when services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing (G4F_BRIDGE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop bridge variables from the environment and run in an empty directory (no .env)."""
    for name in list(os.environ):
        if name.upper().startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def g4f() -> AsyncIterator[FakeG4F]:
    """The emulated G4F server on a random loopback port."""
    async with FakeG4F() as server:
        yield server


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(g4f: FakeG4F, tmp_path: Path) -> MakeSettings:
    """Settings pointing at the emulated server; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "g4f_base_url": g4f.base_url,
            "g4f_retries": 0,
            "bridge_store_url": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make
