"""A private, real `redis-server` process on a free loopback port, for fault tests.

Never the machine's Redis: each instance runs its own process with no persistence, on a port
picked free at construction, and can be killed (SIGKILL), frozen (SIGSTOP) and started again on
the same port. Tests skip when the binary is missing, unless G4F_BRIDGE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.conftest import service_missing

STARTUP_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The redis-server path; skips the test (fails it when services are required) if absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (needed for the Redis fault tests)")
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One private redis-server; `url` stays the same across kill/start."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis.from_url(self.url)

    async def start(self) -> None:
        """Start the process and wait until it answers PING."""
        assert self.process is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        try:
            await asyncio.wait_for(self._until_ping(client), STARTUP_TIMEOUT)
        finally:
            await client.aclose()

    async def _until_ping(self, client: Redis) -> None:
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start: {log}")
            try:
                await client.ping()
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.02)  # the process is starting up

    async def kill(self) -> None:
        """SIGKILL the process by its pid and reap it (its data is gone: no persistence)."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the port stays open but nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGCONT)
        await self.kill()
