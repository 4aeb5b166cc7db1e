"""Streaming benchmark: N concurrent answers through the real client and renderer.

The emulated G4F server runs in its own process and streams realistic answers (prose, lists,
code blocks, emoji) at --rate deltas per second each. Every answer goes through `G4FClient`
and `StreamRenderer` into a recording surface that enforces a per-chat write limit like a chat
platform (one write per --interval seconds per chat; a faster write is refused with retry-after).

Prints, for each N: p50/p99 from the upstream first token to the first visible text, writes per
answer, rate limits provoked, characters lost, CPU seconds per 1,000 deltas (this process: client
plus renderer; the server's CPU is not counted) and peak RSS.

    python bench/stream_bench.py                       # N = 1, 100, 1000
    python bench/stream_bench.py --answers 100 --words 400
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.api_models import ChatMessage  # noqa: E402
from core.client import G4FClient  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.render.renderer import RenderOptions, RenderResult, StreamRenderer  # noqa: E402
from core.render.scheduler import WriteScheduler  # noqa: E402
from core.render.split import join_parts  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.fakes.g4f_server import long_answer, split_answer  # noqa: E402
from tests.fakes.surface import ChatServer, RecordingSurface  # noqa: E402


@dataclass
class Run:
    answers: int
    first_visible: list[float]
    writes: list[int]
    rate_limited: int
    chars_lost: int
    failed: int
    deltas: int
    cpu: float
    wall: float


def start_server(rate: float, words: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.g4f_server",
            "--port",
            "0",
            "--stream-delay",
            str(1 / rate),
            "--answer-words",
            str(words),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the emulated server did not start: {line!r}")
    return proc, line.removeprefix("READY ")


async def one_run(base_url: str, n: int, words: int, interval: float, max_length: int) -> Run:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, g4f_base_url=base_url, g4f_retries=0, g4f_timeout_first_token=60
    )
    clock = SystemClock()
    platform = ChatServer(clock=clock, interval=interval, keep_writes=False)
    scheduler = WriteScheduler(clock)
    async with G4FClient(settings) as client:
        renderers = []
        for i in range(n):
            prompt = f"question {i}"
            stream = client.chat_stream([ChatMessage(role="user", content=prompt)])
            surface = RecordingSurface(platform, chat=f"chat-{i}", max_length=max_length)
            renderers.append(
                StreamRenderer(
                    stream,
                    surface,
                    scheduler=scheduler,
                    clock=clock,
                    options=RenderOptions(),
                )
            )
        cpu0, wall0 = time.process_time(), time.monotonic()
        results: list[RenderResult] = await asyncio.gather(*(r.run() for r in renderers))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    lost = failed = deltas = 0
    for i, result in enumerate(results):
        expected = long_answer(f"question {i}", words)
        deltas += len(split_answer(expected)) + 1  # content chunks and the finish chunk
        shown = join_parts(platform.shown(result.messages))
        if result.error is not None:
            failed += 1
        if shown != expected:
            lost += max(1, abs(len(expected) - len(shown)))
    visible = [
        r.first_visible_at - r.first_token_at
        for r in results
        if r.first_visible_at is not None and r.first_token_at is not None
    ]
    return Run(
        n,
        visible,
        [r.writes for r in results],
        platform.rate_limited,
        lost,
        failed,
        deltas,
        cpu,
        wall,
    )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(run: Run) -> None:
    ms = [v * 1000 for v in run.first_visible]
    print(
        f"answers={run.answers:5d}  first-visible p50={percentile(ms, 50):6.1f} ms "
        f"p99={percentile(ms, 99):6.1f} ms  writes/answer={statistics.mean(run.writes):5.1f}  "
        f"rate-limits={run.rate_limited}  chars-lost={run.chars_lost}  failed={run.failed}  "
        f"cpu/1k-deltas={run.cpu / max(1, run.deltas) * 1000:.3f} s  deltas={run.deltas}  "
        f"wall={run.wall:.1f} s  peak-rss={peak_rss_mib():.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", default="1,100,1000", help="comma list of N")
    parser.add_argument("--words", type=int, default=200, help="words per answer")
    parser.add_argument("--rate", type=float, default=20.0, help="deltas per second per answer")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between writes per chat"
    )
    parser.add_argument("--max-length", type=int, default=2000, help="message length limit")
    args = parser.parse_args()
    proc, base_url = start_server(args.rate, args.words)
    try:
        for n in (int(x) for x in args.answers.split(",")):
            server_cpu = process_cpu(proc.pid)
            report(asyncio.run(one_run(base_url, n, args.words, args.interval, args.max_length)))
            print(f"  (emulated server process: {process_cpu(proc.pid) - server_cpu:.1f} CPU s)")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
