"""Replicas benchmark: two real `g4f-bridge run` processes sharing Redis and PostgreSQL.

Runs the scenarios of tests/test_replicas.py (tests/fleet.py) and prints their figures: answers
given once, duplicates, 429s, the time for the load to complete, the most streams in flight at
the emulated G4F server against the fleet-wide cap, Stop and SIGKILL timings, and every
expectation of issue 14 that was not met.

- Telegram: webhooks through a round-robin forwarder, 50 questions from 20 users in 5 groups;
- Discord: shards 0 and 1 of 2, one process each, 20 /ask from 10 users in 4 channels of two
  guilds (one per shard).

It borrows the machine's PostgreSQL (127.0.0.1:5432: a database of its own, dropped after) and
Redis (127.0.0.1:6379: a database nobody uses, its keys deleted after), and runs everything else
on loopback in real time.

    python bench/replicas_bench.py                        # both platforms
    python bench/replicas_bench.py --only telegram --questions 100 --users 40 --chats 5

Exits 1 when an expectation was not met (the figures are printed either way), 2 when Redis or
PostgreSQL is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.g4f_server import FakeG4F  # noqa: E402
from tests.fleet import Figures, Plan, run_discord, run_telegram  # noqa: E402
from tests.services import ServiceMissing, scratch_postgres, scratch_redis_db  # noqa: E402
from tests.test_replicas import DISCORD, TELEGRAM  # noqa: E402

PLATFORMS = {"telegram": (run_telegram, TELEGRAM), "discord": (run_discord, DISCORD)}


async def run(platform: str, plan: Plan) -> Figures:
    scenario, _ = PLATFORMS[platform]
    async with (
        FakeG4F() as g4f,
        scratch_postgres() as store_url,
        scratch_redis_db() as redis_url,
    ):
        with tempfile.TemporaryDirectory(prefix=f"replicas-{platform}-") as workdir:
            return await scenario(g4f, store_url, redis_url, Path(workdir), plan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(PLATFORMS), action="append")
    parser.add_argument("--questions", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--chats", type=int)
    parser.add_argument("--cap", type=int, help="BRIDGE_MAX_CONCURRENCY")
    parser.add_argument("--lease", type=float, help="BRIDGE_REPLICA_LEASE, seconds")
    args = parser.parse_args(argv)
    failed = False
    for platform in args.only or list(PLATFORMS):
        plan = PLATFORMS[platform][1]
        changes = {
            name: getattr(args, name)
            for name in ("questions", "users", "chats", "cap", "lease")
            if getattr(args, name) is not None
        }
        plan = dataclasses.replace(plan, **changes)
        try:
            figures = asyncio.run(run(platform, plan))
        except ServiceMissing as exc:
            print(f"{platform}: cannot run: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
        print("\n".join(figures.lines()))
        problems = figures.problems()
        for problem in problems:
            print(f"  NOT MET: {problem}")
        if not problems:
            print("  every expectation met")
        print()
        failed = failed or bool(problems)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
