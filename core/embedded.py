"""The embedded g4f: a real `g4f api` that the bridge starts, watches and stops.

When nothing answers at G4F_BASE_URL and it names this machine (``http://localhost:PORT/v1`` or
``http://127.x.y.z:PORT/v1``), `start_embedded_g4f` starts ``g4f api --bind 127.0.0.1:PORT`` as a
child in a process group of its own (BRIDGE_EMBEDDED_G4F=auto, the default; ``always`` insists on
starting it, ``never`` never does), waits (bounded) until it answers, starts it again with backoff
whenever it dies, and on `stop` ends its whole process group. Its output goes to
``BRIDGE_DATA_DIR/g4f.log``. The key (G4F_API_KEY) reaches it in its environment, never on its
command line or in a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from core.clock import Clock, SystemClock
from core.errors import BridgeError

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

LOG_FILE = "g4f.log"


class EmbeddedG4FFailed(BridgeError):
    """The embedded g4f could not be started (or must not be); one line for the operator."""


def embedded_listen_address(base_url: str) -> tuple[str, int] | None:
    """Where a g4f started here must listen to answer at `base_url`, or None when it cannot:
    only ``http://`` URLs with the path ``/v1`` on localhost or an IPv4 loopback address (g4f's
    ``--bind`` takes no IPv6 address)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.path.rstrip("/") != "/v1" or parts.username:
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    host = parts.hostname or ""
    if host == "localhost":
        return "127.0.0.1", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version != 4 or not address.is_loopback:
        return None
    return str(address), port


def find_g4f(configured: str = "") -> str | None:
    """The g4f executable: `configured` when set, else the one installed next to this Python
    (the bridge's virtualenv), else ``g4f`` on PATH."""
    if configured:
        return configured
    beside = Path(sys.executable).parent / "g4f"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("g4f")


class Answering(enum.Enum):
    """What a server at a URL did when asked for its model list."""

    YES = "answers"  # any HTTP response, 401 included
    NOTHING = "nothing listens"  # connection refused
    SILENT = "something listens but does not answer"


async def probe(base_url: str, seconds: float = 3.0) -> Answering:
    """Whether an HTTP server answers at `base_url` within `seconds` (GET /models; never
    through a proxy)."""
    async with httpx.AsyncClient(timeout=seconds, trust_env=False) as http:
        return await _probe_with(http, base_url)


async def _probe_with(http: httpx.AsyncClient, base_url: str) -> Answering:
    try:
        await http.get(f"{base_url.rstrip('/')}/models")
    except httpx.ConnectError:
        return Answering.NOTHING
    except httpx.HTTPError:
        return Answering.SILENT
    return Answering.YES


@dataclass(frozen=True)
class EmbeddedConfig:
    """How to run, watch and stop one embedded g4f. Times are in seconds of the injected clock."""

    executable: str
    host: str
    port: int
    log_path: Path
    env: Mapping[str, str]
    start_timeout: float = 120.0
    poll_interval: float = 0.25
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    stable_after: float = 60.0  # up this long, a crash starts the backoff afresh
    stop_timeout: float = 10.0  # after SIGTERM, before SIGKILL

    @property
    def argv(self) -> tuple[str, ...]:
        bind = f"{self.host}:{self.port}"
        return (self.executable, "api", "--bind", bind, "--no-gui", "--disable-colors")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def spawn_argv(self, parent_pid: int) -> tuple[str, ...]:
        """The command actually run: on Linux through `ORPHAN_GUARD`, so that g4f gets SIGTERM
        even when the bridge dies without stopping it (SIGKILL, an unhandled SIGTERM)."""
        if not sys.platform.startswith("linux"):
            return self.argv
        return (sys.executable, "-c", ORPHAN_GUARD, str(parent_pid), *self.argv)


# Run in the fresh child before it becomes g4f: ask the kernel for SIGTERM when the parent dies
# (PR_SET_PDEATHSIG survives exec), leave at once if the parent is already gone, then exec g4f
# (same pid, so its process group is still the one `stop` ends).
ORPHAN_GUARD = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def next_backoff(current: float, config: EmbeddedConfig) -> float:
    """The wait before the restart after one that waited `current` (doubling, capped)."""
    return min(current * 2, config.max_backoff)


class EmbeddedG4F:
    """One supervised `g4f api` child: `start`, then `stop` (always, also after a failure)."""

    def __init__(self, config: EmbeddedConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.restarts = 0
        self.last_pid: int | None = None  # the latest child started, running or not
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._log_start = 0  # where this run's output begins in the log file
        self._changed = asyncio.Condition()

    @property
    def pid(self) -> int | None:
        """The running child's pid (also its process group's id), None between two runs."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start g4f and wait until it answers; then watch it. Raises `EmbeddedG4FFailed` (and
        leaves nothing running) when it exits first or does not answer within start_timeout."""
        await self._launch()
        assert self._proc is not None
        log.info(
            "nothing answered at %s, so started the embedded g4f (pid %d): %s; it stops with "
            "the bridge, its output goes to %s",
            self.config.base_url,
            self._proc.pid,
            " ".join(self.config.argv),
            self.config.log_path,
        )
        self._watcher = asyncio.create_task(self._watch(), name="embedded-g4f")

    async def stop(self) -> None:
        """Stop watching and end the child's process group (SIGTERM, then SIGKILL)."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            await self._terminate(proc)
            log.info("stopped the embedded g4f (pid %d)", proc.pid)

    async def wait_for_restarts(self, count: int) -> None:
        """Return once g4f was started again `count` times in all and answers (for tests and
        callers that want to wait out a restart)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.restarts >= count)

    async def __aenter__(self) -> EmbeddedG4F:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- running one child ---------------------------------------------------------------
    async def _launch(self) -> None:
        self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.config.env, "PYTHONUNBUFFERED": "1"}
        with self.config.log_path.open("ab") as output:
            self._log_start = output.tell()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.config.spawn_argv(os.getpid()),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group: no Ctrl-C from our terminal
                )
            except OSError as exc:
                raise EmbeddedG4FFailed(
                    f"The embedded g4f ({self.config.executable}) cannot be started: "
                    f"{exc.strerror or exc}. Set BRIDGE_EMBEDDED_G4F_PATH to the g4f command, or "
                    "BRIDGE_EMBEDDED_G4F=never and start a server yourself."
                ) from None
        self.last_pid = proc.pid
        try:
            await self._wait_until_answers(proc)
        except BaseException:
            await self._terminate(proc)
            raise
        self._proc = proc
        self._started_at = self.clock.now()

    async def _wait_until_answers(self, proc: asyncio.subprocess.Process) -> None:
        deadline = self.clock.now() + self.config.start_timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            while True:
                if proc.returncode is not None:
                    raise self._exited_early(proc.returncode)
                if await _probe_with(http, self.config.base_url) is Answering.YES:
                    return
                if self.clock.now() >= deadline:
                    raise EmbeddedG4FFailed(
                        f"The embedded g4f did not answer at {self.config.base_url} within "
                        f"{self.config.start_timeout:g} s, so it was stopped. Its output is in "
                        f"{self.config.log_path}; raise BRIDGE_EMBEDDED_G4F_START_TIMEOUT, or set "
                        "BRIDGE_EMBEDDED_G4F=never and start a server yourself."
                    )
                await self.clock.sleep(self.config.poll_interval)

    def _exited_early(self, code: int) -> EmbeddedG4FFailed:
        last = _last_line(self.config.log_path, self._log_start)
        said = f": {last}" if last else ""
        return EmbeddedG4FFailed(
            f"The embedded g4f exited with code {code} before it answered{said}. Its output is "
            f"in {self.config.log_path}; fix that, or set BRIDGE_EMBEDDED_G4F=never and start a "
            "server yourself."
        )

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        if not await _within(proc.wait(), self.config.stop_timeout, self.clock):
            log.warning("the embedded g4f (pid %d) ignored SIGTERM; killing it", proc.pid)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # whatever it left in its group

    async def _watch(self) -> None:
        backoff = self.config.first_backoff
        while not self._stopping:
            assert self._proc is not None
            proc = self._proc
            code = await proc.wait()
            _signal_group(proc.pid, signal.SIGKILL)  # what it left behind
            self._proc = None
            if self.clock.now() - self._started_at >= self.config.stable_after:
                backoff = self.config.first_backoff
            log.warning(
                "the embedded g4f (pid %d) exited with code %s; starting it again in %g s "
                "(its output is in %s)",
                proc.pid,
                code,
                backoff,
                self.config.log_path,
            )
            while True:
                await self.clock.sleep(backoff)
                backoff = next_backoff(backoff, self.config)
                try:
                    await self._launch()
                    break
                except EmbeddedG4FFailed as exc:
                    log.warning("the embedded g4f did not come back (%s); next try in %g s",
                                exc.user_message, backoff)  # fmt: skip
            assert self._proc is not None
            async with self._changed:
                self.restarts += 1
                self._changed.notify_all()
            log.info("the embedded g4f is back (pid %d, restart %d)", self._proc.pid, self.restarts)


async def start_embedded_g4f(
    settings: Settings, *, clock: Clock | None = None
) -> EmbeddedG4F | None:
    """Start the embedded g4f when the settings call for it (see the module's doc); None when
    another server answers, G4F_BASE_URL is not on this machine, or BRIDGE_EMBEDDED_G4F=never.
    Raises `EmbeddedG4FFailed` with one line when it was needed and could not start."""
    mode = settings.bridge_embedded_g4f
    address = embedded_listen_address(settings.g4f_base_url)
    if mode == "never" or address is None:  # `always` with a remote URL is a settings error
        return None
    url = settings.g4f_base_url
    found = await probe(url)
    if found is not Answering.NOTHING:
        if mode == "always":
            raise EmbeddedG4FFailed(
                f"BRIDGE_EMBEDDED_G4F=always, but {found.value} at {url}: stop it, or set "
                "BRIDGE_EMBEDDED_G4F=auto to use it."
            )
        if found is Answering.SILENT:
            log.warning("something listens at %s but does not answer; not starting g4f", url)
        return None
    executable = find_g4f(settings.bridge_embedded_g4f_path)
    if executable is None:
        message = (
            f"Nothing answers at {url} and there is no g4f here to start: run `make setup` (or "
            "`pip install 'g4f[api]'`), or set G4F_BASE_URL to where a server runs."
        )
        if mode == "always":
            raise EmbeddedG4FFailed(message)
        log.warning("%s", message)
        return None
    env = dict(os.environ)
    if settings.g4f_api_key is not None:
        env["G4F_API_KEY"] = settings.g4f_api_key.get_secret_value()
    config = EmbeddedConfig(
        executable=executable,
        host=address[0],
        port=address[1],
        log_path=settings.bridge_data_dir / LOG_FILE,
        env=env,
        start_timeout=settings.bridge_embedded_g4f_start_timeout,
    )
    server = EmbeddedG4F(config, clock=clock)
    await server.start()
    return server


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _within(awaitable: Awaitable[object], seconds: float, clock: Clock) -> bool:
    """Await `awaitable` for at most `seconds` of `clock`; True when it finished."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait([work, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return False
    return True


def _last_line(path: Path, start: int, limit: int = 300) -> str:
    """The last non-empty line written to a log file after `start`, shortened (empty when
    there is none)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(start, file.tell() - 8192))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""
