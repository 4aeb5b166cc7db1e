"""The embedded g4f: a real `g4f api` (the PyPI release) started, restarted and stopped by the
bridge, run offline and routed to the emulated G4F server. Loopback only: g4f's home, config and
cache live in tmp_path, its provider list is a local file and its provider is the emulator."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.embedded import (
    EmbeddedConfig,
    EmbeddedG4F,
    EmbeddedG4FFailed,
    embedded_listen_address,
    find_g4f,
    next_backoff,
    start_embedded_g4f,
)
from core.settings import Settings
from tests.conftest import service_missing
from tests.fakes.clock import InstantClock, ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.test_cli import run_cli

BRIDGE_COMMAND = Path(sys.executable).parent / "g4f-bridge"  # what `make run` runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_url() -> str:
    """A G4F_BASE_URL like the default (localhost, /v1) on a free port: nothing answers there."""
    return f"http://localhost:{free_port()}/v1"


def require_g4f() -> str:
    found = find_g4f()
    if found is None:
        service_missing("g4f is not installed here (`make setup` installs g4f[api]==8.8.6)")
    return found


def offline_g4f_env(root: Path, upstream: FakeG4F) -> dict[str, str]:
    """Environment that runs g4f 8.8.6 with no internet, every request routed to `upstream`:
    its provider list (`.models/<date>/providers.json`, which it would otherwise download at
    import) and its G4F_PROVIDER (in its own .env, which the bridge does not read)."""
    cache, config = root / "g4f-cache", root / "g4f-config"
    today = datetime.date.today()
    for day in (today - datetime.timedelta(days=1), today, today + datetime.timedelta(days=1)):
        models = cache / ".models" / day.isoformat()
        models.mkdir(parents=True, exist_ok=True)
        providers = {"providers": {"default": {"baseUrl": upstream.base_url}}, "defaultModels": {}}
        (models / "providers.json").write_text(json.dumps(providers))
    (config / "cookies").mkdir(parents=True, exist_ok=True)
    (config / "cookies" / ".env").write_text(f"G4F_PROVIDER={upstream.base_url}\n")
    return {
        "HOME": str(root / "g4f-home"),
        "G4F_CONFIG_DIR": str(config),
        "G4F_DIR": str(root / "g4f-workspace"),
        "G4F_CACHE_DIR": str(cache),
        "G4F_DISABLE_PA_AUTO_DOWNLOAD": "1",  # it would fetch providers from GitHub at start
    }


@pytest.fixture
def offline_g4f(g4f: FakeG4F, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The offline environment, also set in this process (the supervisor passes it on)."""
    require_g4f()
    env = offline_g4f_env(tmp_path, g4f)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def settings_for(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "g4f_base_url": url,
        "g4f_retries": 0,
        "bridge_data_dir": tmp_path / "data",
        "bridge_store_url": f"sqlite:///{tmp_path / 'store.sqlite3'}",
    }
    values.update(overrides)
    return Settings.model_validate(values)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def process_ended(pid: int, within: float = 30) -> bool:
    """Wait (event-driven, on a pidfd) until process `pid` has ended; False at the timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def on_readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(ended, within)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def refuses_connections(url: str) -> bool:
    parts = httpx.URL(url)
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", parts.port or 80)) != 0


async def ask_through(url: str, prompt: str) -> tuple[int, str, str]:
    return await run_cli("ask", prompt, env={"G4F_BASE_URL": url, "G4F_RETRIES": "0"})


def stand_in(tmp_path: Path, name: str, body: str) -> str:
    """An executable that plays a g4f which misbehaves (a real process, for the failure paths)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
async def supervised() -> AsyncIterator[Callable[[EmbeddedG4F], EmbeddedG4F]]:
    """Stops every supervisor a test registers, whatever the test did."""
    started: list[EmbeddedG4F] = []
    yield lambda server: started.append(server) or server  # type: ignore[func-returns-value]
    for server in started:
        await server.stop()


# --- deciding ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://localhost:1337/v1", ("127.0.0.1", 1337)),
        ("http://127.0.0.1:8080/v1/", ("127.0.0.1", 8080)),
        ("http://127.0.0.2/v1", ("127.0.0.2", 80)),
        ("http://g4f:8080/v1", None),  # another machine (compose)
        ("http://192.168.1.5:1337/v1", None),
        ("https://localhost:1337/v1", None),  # g4f api serves http
        ("http://localhost:1337/api/v1", None),  # not where g4f serves its API
        ("http://[::1]:1337/v1", None),  # g4f's --bind takes no IPv6 address
        ("http://user:pw@localhost:1337/v1", None),
    ],
)
def test_only_a_loopback_v1_url_can_be_served_by_an_embedded_g4f(
    url: str, address: tuple[str, int] | None
) -> None:
    assert embedded_listen_address(url) == address


def test_backoff_doubles_up_to_its_cap() -> None:
    config = EmbeddedConfig("g4f", "127.0.0.1", 1, Path("g4f.log"), {}, max_backoff=5)
    waits = [1.0]
    for _ in range(4):
        waits.append(next_backoff(waits[-1], config))
    assert waits == [1, 2, 4, 5, 5]


async def test_a_url_on_another_machine_never_starts_it(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    fake_g4f = stand_in(tmp_path, "g4f", f"open({str(marker)!r}, 'w').close()")
    for mode in ("auto", "never"):
        settings = settings_for(
            "http://g4f:8080/v1", tmp_path, bridge_embedded_g4f=mode,
            bridge_embedded_g4f_path=fake_g4f,
        )  # fmt: skip
        assert await start_embedded_g4f(settings) is None  # decided before any connection
    assert not marker.exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"BRIDGE_EMBEDDED_G4F": "always", "G4F_BASE_URL": "http://g4f:8080/v1"},
            "invalid setting BRIDGE_EMBEDDED_G4F: always starts g4f on this machine, so "
            "G4F_BASE_URL must be http://localhost:PORT/v1",
        ),
        ({"BRIDGE_EMBEDDED_G4F": "sometimes"}, "invalid setting BRIDGE_EMBEDDED_G4F: "),
        (
            {"BRIDGE_EMBEDDED_G4F_PATH": "/nonexistent/g4f"},
            "invalid setting BRIDGE_EMBEDDED_G4F_PATH: no executable file there",
        ),
    ],
)
async def test_wrong_embedded_settings_are_one_line_at_start(
    env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.startswith("g4f-bridge: " + expected), err
    assert err.count("\n") == 1


async def test_always_refuses_to_start_over_a_server_that_answers(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    settings = settings_for(g4f.base_url, tmp_path, bridge_embedded_g4f="always")
    with pytest.raises(EmbeddedG4FFailed) as caught:
        await start_embedded_g4f(settings)
    assert caught.value.user_message == (
        f"BRIDGE_EMBEDDED_G4F=always, but answers at {g4f.base_url}: stop it, or set "
        "BRIDGE_EMBEDDED_G4F=auto to use it."
    )


async def test_auto_uses_the_server_that_answers(g4f: FakeG4F, tmp_path: Path) -> None:
    assert await start_embedded_g4f(settings_for(g4f.base_url, tmp_path)) is None


# --- failing to start (stand-ins) --------------------------------------------------------
async def test_a_g4f_that_exits_before_answering_is_one_line(tmp_path: Path) -> None:
    fake_g4f = stand_in(
        tmp_path, "g4f", "print('ImportError: no module named fastapi')\nsys.exit(3)"
    )
    env = {
        "G4F_BASE_URL": local_url(),
        "BRIDGE_EMBEDDED_G4F": "auto",
        "BRIDGE_EMBEDDED_G4F_PATH": fake_g4f,
        "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
    }
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert (code, out) == (1, "")
    last = err.splitlines()[-1]
    assert last == (
        "g4f-bridge: The embedded g4f exited with code 3 before it answered: ImportError: no "
        "module named fastapi. Its output is in data/g4f.log; fix that, or set "
        "BRIDGE_EMBEDDED_G4F=never and start a server yourself."
    )


async def test_a_g4f_that_never_answers_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    silent = stand_in(tmp_path, "g4f", "time.sleep(600)")
    config = EmbeddedConfig(
        silent, "127.0.0.1", free_port(), tmp_path / "g4f.log", dict(os.environ), start_timeout=5
    )
    clock = InstantClock()
    server = EmbeddedG4F(config, clock=clock)
    with pytest.raises(EmbeddedG4FFailed) as caught:
        await server.start()
    assert "did not answer at http://127.0.0.1:" in caught.value.user_message
    assert "within 5 s, so it was stopped" in caught.value.user_message
    assert sum(clock.sleeps) >= 5
    assert server.pid is None and server.last_pid is not None
    assert await process_ended(server.last_pid, within=1)  # ended before start raised


# --- the real g4f ------------------------------------------------------------------------
async def test_starts_g4f_when_nothing_answers_and_the_bridge_answers_through_it(
    g4f: FakeG4F,
    offline_g4f: dict[str, str],
    tmp_path: Path,
    supervised: Callable[..., EmbeddedG4F],
) -> None:
    url = local_url()
    assert refuses_connections(url)
    server = await start_embedded_g4f(settings_for(url, tmp_path))
    assert server is not None
    supervised(server)
    assert server.pid is not None and process_exists(server.pid)
    g4f.answers["hello"] = "Hello from the emulator, through g4f."
    code, out, err = await ask_through(url, "hello")
    assert (code, out) == (0, "Hello from the emulator, through g4f.\n"), err
    request = g4f.chat_requests()[-1]
    assert request.json["messages"][-1]["content"] == "hello"
    log = (tmp_path / "data" / "g4f.log").read_text()
    assert "Uvicorn running on http://127.0.0.1:" in log


async def test_a_killed_g4f_is_started_again_and_answers(
    g4f: FakeG4F,
    offline_g4f: dict[str, str],
    tmp_path: Path,
    supervised: Callable[..., EmbeddedG4F],
) -> None:
    url = local_url()
    host, port = embedded_listen_address(url) or ("", 0)
    config = EmbeddedConfig(
        require_g4f(), host, port, tmp_path / "g4f.log", dict(os.environ), start_timeout=2000
    )
    server = supervised(EmbeddedG4F(config, clock=ScaledClock(20)))  # 1 s of backoff: 0.05 s
    await server.start()
    first = server.pid
    assert first is not None
    os.killpg(first, signal.SIGKILL)
    await asyncio.wait_for(server.wait_for_restarts(1), 120)
    assert server.pid is not None and server.pid != first
    assert not process_exists(first)
    code, out, err = await ask_through(url, "again")
    assert (code, out) == (0, "You said: again\n"), err


async def test_stop_ends_g4f_and_frees_its_port(
    offline_g4f: dict[str, str], tmp_path: Path
) -> None:
    url = local_url()
    server = await start_embedded_g4f(settings_for(url, tmp_path))
    assert server is not None
    pid = server.pid
    assert pid is not None
    await server.stop()
    assert server.pid is None
    assert await process_ended(pid, within=1)  # stop returns once it is gone
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of its process group is left
    assert refuses_connections(url)


# --- as the user runs it -----------------------------------------------------------------
def started_pid(err: str) -> int:
    line = next(line for line in err.splitlines() if "started the embedded g4f (pid " in line)
    return int(line.split("(pid ", 1)[1].split(")", 1)[0])


@pytest.mark.parametrize("command", ["run", "chat"])
async def test_make_run_with_nothing_set_up_answers_through_the_embedded_g4f(
    g4f: FakeG4F, offline_g4f: dict[str, str], tmp_path: Path, command: str
) -> None:
    """The "Done when" of issue 10: `make run` (`g4f-bridge run`, no token: the terminal chat)
    in a clean directory, the emulated server reachable only through the g4f it starts."""
    if not BRIDGE_COMMAND.exists():
        service_missing(f"{BRIDGE_COMMAND} is missing: `make setup` installs it")
    g4f.answers["what is g4f?"] = "A free API for many models."
    url = local_url()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    env.update(offline_g4f, G4F_BASE_URL=url, BRIDGE_HTTP_ADDR="127.0.0.1:0")
    proc = await asyncio.create_subprocess_exec(
        str(BRIDGE_COMMAND), command, env=env, cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(b"what is g4f?\nhello\n"), 120)
    text, log = out.decode(), err.decode()
    assert proc.returncode == 0, log
    assert text == "A free API for many models.\n\nYou said: hello\n\n", log
    assert [r.json["messages"][-1]["content"] for r in g4f.chat_requests()] == [
        "what is g4f?",
        "hello",
    ]
    assert f"nothing answered at http://127.0.0.1:{url.rsplit(':', 1)[1]}" in log
    assert "g4f-api-key" not in log
    pid = started_pid(log)
    assert await process_ended(pid, within=1)  # stopped before the bridge exited
    assert refuses_connections(url)


async def test_g4f_ends_when_the_bridge_is_killed(
    g4f: FakeG4F, offline_g4f: dict[str, str], tmp_path: Path
) -> None:
    url = local_url()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    env.update(offline_g4f, G4F_BASE_URL=url, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "chat", env=env, cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    pid = 0
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 120)
        while b"started the embedded g4f" not in line:
            assert line, "the chat ended before it started g4f"
            line = await asyncio.wait_for(proc.stderr.readline(), 120)
        pid = started_pid(line.decode())
        proc.kill()  # no chance to stop it: the kernel's parent-death signal does
        await proc.wait()
        assert await process_ended(pid, within=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if pid and process_exists(pid):  # the test failed: leave nothing running all the same
            os.killpg(pid, signal.SIGKILL)


async def test_never_does_not_start_it_and_the_user_reads_cannot_reach(
    g4f: FakeG4F, offline_g4f: dict[str, str], tmp_path: Path
) -> None:
    url = local_url()
    env = {**offline_g4f, "G4F_BASE_URL": url, "BRIDGE_EMBEDDED_G4F": "never"}
    code, out, err = await run_cli("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"⚠️ Cannot reach the AI server at {url}. Start it (for example `g4f api`) or set "
        "G4F_BASE_URL to where it runs."
    )
    assert "embedded g4f" not in err
    assert not (tmp_path / "data" / "g4f.log").exists()
    assert g4f.chat_requests() == []


async def test_the_api_key_reaches_g4f_in_its_environment_only(
    g4f: FakeG4F,
    offline_g4f: dict[str, str],
    tmp_path: Path,
    supervised: Callable[..., EmbeddedG4F],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "fake-test-key-0000"
    url = local_url()
    caplog.set_level("INFO", logger="core.embedded")
    server = await start_embedded_g4f(settings_for(url, tmp_path, g4f_api_key=key))
    assert server is not None and server.pid is not None
    supervised(server)
    assert key.encode() not in command_line(server.pid)
    assert "started the embedded g4f" in caplog.text and key not in caplog.text
    without = await ask_through(url, "hello")
    assert without[0] == 1 and "refused the API key" in without[2]
    code, out, err = await run_cli(
        "ask", "hello", env={"G4F_BASE_URL": url, "G4F_RETRIES": "0", "G4F_API_KEY": key}
    )
    assert (code, out) == (0, "You said: hello\n"), err
