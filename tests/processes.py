"""Real `g4f-bridge run` processes for tests and benchmarks: their environment (no developer
.env, no bridge variables of the developer's), starting them, finding their HTTP endpoint, and
stopping them by their own pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import IO

from tests.fakes.g4f_server import FakeG4F
from tests.fakes.telegram_server import FakeTelegram

CLI = [sys.executable, "-m", "bots.cli"]
ROOT = Path(__file__).resolve().parents[1]
SETTING_PREFIXES = ("G4F_", "DISCORD_", "TELEGRAM_", "BRIDGE_", "ALLOWED_", "ADMIN_")
ENDPOINT_MARKER = "health and metrics at "  # the log line `run` writes once it listens


def run_env(g4f: FakeG4F, **extra: str) -> dict[str, str]:
    """The environment of a real `g4f-bridge run` against the emulated G4F server: the
    developer's bridge variables dropped, the endpoint on a free port; `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}
    env.update(
        PYTHONPATH=str(ROOT),
        G4F_BASE_URL=g4f.base_url,
        G4F_RETRIES="0",
        BRIDGE_HTTP_ADDR="127.0.0.1:0",
        BRIDGE_EMBEDDED_G4F="never",
    )
    env.update(extra)
    return env


def telegram_run_env(
    g4f: FakeG4F, telegram: FakeTelegram, tmp_path: Path, **extra: str
) -> dict[str, str]:
    """The environment of a real `g4f-bridge run` serving the emulated Telegram."""
    values = {
        "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
        "TELEGRAM_TOKEN": telegram.token,
        "TELEGRAM_BASE_URL": telegram.base_url,
        "TELEGRAM_BASE_FILE_URL": telegram.base_file_url,
    }
    return run_env(g4f, **{**values, **extra})


async def start_run(
    env: dict[str, str], cwd: Path, *, log: Path | None = None
) -> asyncio.subprocess.Process:
    """`g4f-bridge run` with `env` in `cwd`; its output goes to the file `log` (else nowhere)."""
    out: IO[bytes] | int = asyncio.subprocess.DEVNULL
    if log is not None:
        out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *CLI, "run", env=env, cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    finally:
        if not isinstance(out, int):
            out.close()  # the child has its own copy


async def endpoint_url(proc: asyncio.subprocess.Process) -> str:
    """The endpoint's URL, from the log line `run` writes once it listens (stderr piped); the
    rest of stderr keeps being read in the background (a full pipe would block the process)."""
    assert proc.stderr is not None
    stderr = proc.stderr
    while line := (await stderr.readline()).decode():
        if ENDPOINT_MARKER in line:
            drain = asyncio.create_task(stderr.read())
            _background.add(drain)
            drain.add_done_callback(_background.discard)
            return line.split(ENDPOINT_MARKER, 1)[1].split()[0]
    raise AssertionError(f"`run` ended without serving the endpoint (exit {await proc.wait()})")


_background: set[asyncio.Task[bytes]] = set()


async def endpoint_in_log(proc: asyncio.subprocess.Process, log: Path, within: float) -> str:
    """The endpoint's URL, from the log file of a process started with `start_run(log=...)`,
    once it is there (at most `within` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if (url := _endpoint_logged(log)) is not None:
            return url
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"`run` did not serve its endpoint (exit {proc.returncode}); its log:\n{tail(log)}"
    )


def _endpoint_logged(log: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text(errors="replace").splitlines():
            if ENDPOINT_MARKER in line:
                return line.split(ENDPOINT_MARKER, 1)[1].split()[0]
    return None


def tail(log: Path, lines: int = 30) -> str:
    """The last lines of a log file (for failure messages)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL (no cleanup, no final writes), and reap it."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def terminate(proc: asyncio.subprocess.Process, grace: float = 30.0) -> int:
    """SIGTERM, wait up to `grace` s for the exit (then SIGKILL); the exit code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            await kill(proc)
    assert proc.returncode is not None
    return proc.returncode
