"""Two real `g4f-bridge run` replicas sharing real Redis and PostgreSQL (issue 14, item 5).

Telegram in webhook mode behind a round-robin forwarder and Discord on two shards, each against
the emulated platform and the emulated G4F server: every question answered exactly once, no 429,
the fleet-wide concurrency cap held, Stop, and a replica SIGKILLed mid-answer whose message the
survivor ends in place. The scenarios live in tests/fleet.py (bench/replicas_bench.py runs the
same and prints the figures); here every expectation they do not meet is listed at once.

The figures are printed (shown with ``-s``) and written to ``figures-<platform>.txt`` in the
test's tmp dir. Needs Redis and PostgreSQL on loopback: skipped with the reason without them,
required in CI (G4F_BRIDGE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.g4f_server import FakeG4F
from tests.fleet import Figures, Plan, run_discord, run_telegram

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

# Sizes chosen to keep both tests within about 90 s of CI time: the Telegram groups' 20 writes
# a minute bound how fast ten answers per group can complete.
TELEGRAM = Plan(questions=50, users=20, chats=5, cap=3, lease=3.0)
DISCORD = Plan(questions=20, users=10, chats=4, cap=3, lease=3.0)


def _check(figures: Figures, tmp_path: Path) -> None:
    """Print and keep the figures, then fail with every expectation they do not meet."""
    text = "\n".join(figures.lines())
    print("\n" + text)
    (tmp_path / f"figures-{figures.platform}.txt").write_text(text + "\n")
    problems = figures.problems()
    assert not problems, "\n".join(["", *problems])


async def test_telegram_two_replicas_behind_a_balancer(
    g4f: FakeG4F, postgres_url: str, redis_process_db: str, tmp_path: Path
) -> None:
    figures = await run_telegram(g4f, postgres_url, redis_process_db, tmp_path, TELEGRAM)
    _check(figures, tmp_path)


async def test_discord_two_shards_in_two_processes(
    g4f: FakeG4F, postgres_url: str, redis_process_db: str, tmp_path: Path
) -> None:
    figures = await run_discord(g4f, postgres_url, redis_process_db, tmp_path, DISCORD)
    _check(figures, tmp_path)
