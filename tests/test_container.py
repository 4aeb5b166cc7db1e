"""The container image, run as a user would: against the emulated G4F and Telegram servers on
this host (host network). Run by deploy/smoke.sh, which builds the image and names it in
SMOKE_IMAGE; deselected from the ordinary suite (marker `container`)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.g4f_server import FakeG4F
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.container

IMAGE = os.environ.get("SMOKE_IMAGE", "localhost/g4f-bridge:smoke")
PODMAN = ["podman", "--runtime", "runc"]


async def podman(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *PODMAN, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run_args(g4f: FakeG4F, *env: str) -> list[str]:
    settings = [f"G4F_BASE_URL={g4f.base_url}", "G4F_RETRIES=0", *env]
    return ["run", "--rm", "--network", "host", *(f"-e{e}" for e in settings), IMAGE]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def g4f() -> AsyncIterator[FakeG4F]:
    async with FakeG4F() as server:
        yield server


async def test_check_passes_in_the_container(g4f: FakeG4F) -> None:
    code, out, err = await podman(*run_args(g4f), "g4f-bridge", "check")
    assert code == 0, out + err
    assert "ok   a one-token answer from 'gpt-4o' came back via FakeProvider" in out
    assert "FAIL" not in out


async def test_the_image_runs_as_a_user_with_only_the_bridge_inside() -> None:
    code, out, err = await podman(
        "run", "--rm", IMAGE, "sh", "-c", "id -u; ls -A /app; ls -ld /app/data; g4f-bridge --help"
    )
    assert code == 0, err
    uid, *rest = out.splitlines()
    assert uid == "10001"
    listing = "\n".join(rest)
    for absent in (".git", ".venv", ".env", "tests", "pyproject.toml"):
        assert f"\n{absent}\n" not in f"\n{listing}\n"
    assert " bridge bridge " in listing and "usage: g4f-bridge" in listing


async def test_ask_streams_from_the_container(g4f: FakeG4F, tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(30)]
    g4f.answers["hello"] = " ".join(words)
    g4f.trickle_interval = 0.1
    cidfile = tmp_path / "cid"
    run, *options = run_args(g4f)
    proc = await asyncio.create_subprocess_exec(
        *PODMAN, run, f"--cidfile={cidfile}", *options, "g4f-bridge", "ask", "hello",
        "--model", "trickle", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await asyncio.wait_for(proc.stdout.read(2), 120)
        assert first == b"w0"
        assert g4f.open_requests == 1  # text arrived while the answer was still streaming
        rest, err = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), 60
        )
        assert await proc.wait() == 0, err.decode()
    finally:
        if proc.returncode is None:  # stop the container by its id, then its client
            if cidfile.exists():
                await podman("rm", "--force", cidfile.read_text().strip())
            proc.kill()
            await proc.wait()
    assert (first + rest).decode() == " ".join(words) + "\n"


async def test_run_is_healthy_ready_and_stops_on_sigterm(g4f: FakeG4F) -> None:
    port = free_port()
    async with FakeTelegram() as telegram:
        settings = [
            f"G4F_BASE_URL={g4f.base_url}",
            f"BRIDGE_HTTP_ADDR=127.0.0.1:{port}",
            f"TELEGRAM_TOKEN={telegram.token}",
            f"TELEGRAM_BASE_URL={telegram.base_url}",
            f"TELEGRAM_BASE_FILE_URL={telegram.base_file_url}",
        ]
        name = f"g4f-bridge-smoke-{secrets.token_hex(4)}"
        # Detached and without --rm: its exit code is read after it stops.
        code, out, err = await podman(
            "run", "-d", "--network", "host", "--name", name, *(f"-e{e}" for e in settings), IMAGE
        )
        assert code == 0, err
        container = out.strip()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                ready = await _ready(http)
                assert ready.json()["checks"] == {
                    "accepting": "ok", "api": "ok", "limits": "ok", "store": "ok", "telegram": "ok"
                }  # fmt: skip
                assert (await http.get("/healthz")).status_code == 200
                assert "g4f_bridge_streams_active" in (await http.get("/metrics")).text
            code, out, err = await podman("healthcheck", "run", container)
            assert code == 0, out + err  # the image's HEALTHCHECK
            code, _, err = await podman("kill", "--signal", "TERM", container)
            assert code == 0, err
            code, out, err = await podman("wait", container)
            assert (code, out.strip()) == (0, "0"), err
            _, logs, _ = await podman("logs", container)
        finally:
            await podman("rm", "--force", container)
    assert "Traceback" not in logs


async def _ready(http: httpx.AsyncClient) -> httpx.Response:
    """/readyz once the bridge in the container is up and connected (or its last answer)."""
    for _ in range(600):
        try:
            reply = await http.get("/readyz")
        except httpx.TransportError:
            await asyncio.sleep(0.1)  # the container is still starting
            continue
        if reply.status_code == 200:
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError(f"never ready: {reply.text}")
