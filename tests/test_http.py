"""The health and metrics endpoint over real HTTP: /healthz, /readyz, /metrics, and `g4f-bridge
run` serving it next to a platform (the real python-telegram-bot against the emulated Bot API)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.bridge import Bridge
from core.conversations import Origin
from core.errors import ModelProviderFailed, UpstreamTimeout
from core.http import API_PROBE_TTL, HealthServer, HttpAddressError, serve_bridge
from core.metrics import Metrics, error_kind
from core.results import Answered
from tests.conftest import MakeSettings
from tests.fakes.clock import InstantClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import CLI, endpoint_url, telegram_run_env
from tests.test_cli import run_cli

WHERE = Origin("test", "chat-4242", "user-7777", is_private=True)
OpenBridge = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Bridge], Awaitable[HealthServer]]]:
    servers: list[HealthServer] = []

    async def start(bridge: Bridge) -> HealthServer:
        server = serve_bridge(bridge, host="127.0.0.1", port=0)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def get(server: HealthServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.get(path)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics body by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- /healthz and /readyz --------------------------------------------------------------------
async def test_healthz_answers_on_a_free_port(open_bridge: OpenBridge, serve: Any) -> None:
    server = await serve(await open_bridge())
    assert server.port != 0
    reply = await get(server, "/healthz")
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


async def test_not_ready_while_shutting_down(open_bridge: OpenBridge, serve: Any) -> None:
    bridge = await open_bridge()
    server = await serve(bridge)
    bridge.shutdown()  # what SIGTERM starts: answers in flight finish, new ones are refused
    reply = await get(server, "/readyz")
    assert reply.status_code == 503
    assert reply.json()["checks"]["accepting"].startswith("restarting")


async def test_ready_when_api_store_and_limits_answer(
    open_bridge: OpenBridge, serve: Any, g4f: FakeG4F
) -> None:
    server = await serve(await open_bridge())
    reply = await get(server, "/readyz")
    assert reply.status_code == 200
    assert reply.json() == {
        "ready": True,
        "checks": {"api": "ok", "limits": "ok", "store": "ok", "accepting": "ok"},
    }
    probe = g4f.chat_requests()[0].json
    assert probe["max_tokens"] == 1 and probe["model"] == "gpt-4o"


async def test_not_ready_says_the_provider_failed_and_caches_the_verdict(
    open_bridge: OpenBridge, serve: Any, g4f: FakeG4F
) -> None:
    clock = InstantClock()
    server = await serve(await open_bridge(clock=clock))
    g4f.down_models.add("gpt-4o")
    reply = await get(server, "/readyz")
    assert reply.status_code == 503
    checks = reply.json()["checks"]
    assert checks["api"] == ModelProviderFailed.text_for("gpt-4o")
    assert checks["store"] == "ok" and checks["limits"] == "ok"
    g4f.down_models.clear()
    assert (await get(server, "/readyz")).status_code == 503  # the verdict is cached
    assert g4f.calls_by_model["gpt-4o"] == 1
    clock.advance(API_PROBE_TTL)
    assert (await get(server, "/readyz")).status_code == 200
    assert len(g4f.chat_requests()) == 2


async def test_not_ready_when_the_api_is_unreachable(open_bridge: OpenBridge, serve: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    server = await serve(await open_bridge(g4f_base_url=url))
    reply = await get(server, "/readyz")
    assert reply.status_code == 503
    assert reply.json()["checks"]["api"].startswith(f"Cannot reach the AI server at {url}.")


async def test_not_ready_when_the_store_or_redis_fail(
    open_bridge: OpenBridge, serve: Any, make_settings: MakeSettings
) -> None:
    bridge = await open_bridge()
    server = await serve(bridge)
    await bridge.store.close()
    checks = (await get(server, "/readyz")).json()["checks"]
    assert checks["store"].startswith("StoreError: store is not open")
    redis_down = await Bridge.open(
        make_settings(bridge_limits_url=f"redis://127.0.0.1:{free_port()}/0")
    )
    try:
        server = await serve(redis_down)
        reply = await get(server, "/readyz")
        assert reply.status_code == 503
        assert reply.json()["checks"]["limits"].startswith("unreachable")
        assert reply.json()["checks"]["api"] == "ok"
    finally:
        await redis_down.close()


async def test_a_probe_that_hangs_times_out(open_bridge: OpenBridge) -> None:
    server = HealthServer(Metrics(), host="127.0.0.1", port=0, probe_timeout=0.05)
    never = asyncio.Event()

    async def stuck() -> str | None:
        await never.wait()
        return None

    async def fine() -> str | None:
        return None

    server.add_probe("platform-a", stuck)
    server.add_probe("platform-b", fine)
    await server.start()
    try:
        reply = await get(server, "/readyz")
    finally:
        await server.stop()
    assert reply.status_code == 503
    assert reply.json()["checks"] == {"platform-a": "no answer within 0.05 s", "platform-b": "ok"}


async def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(Metrics(), host="127.0.0.1", port=port)
        with pytest.raises(HttpAddressError) as caught:
            await server.start()
        assert str(caught.value) == (
            f"BRIDGE_HTTP_ADDR 127.0.0.1:{port}: the port is already in use; choose another "
            "port (0 takes a free one) or stop what listens there"
        )
        code, out, err = await run_cli(
            "run",
            env={"BRIDGE_HTTP_ADDR": f"127.0.0.1:{port}", "G4F_BASE_URL": "http://127.0.0.1:9/v1"},
        )
    assert (code, out) == (2, "")
    assert err == f"g4f-bridge: {caught.value}\n"


async def test_invalid_address_is_refused_at_start() -> None:
    code, _, err = await run_cli("run", env={"BRIDGE_HTTP_ADDR": "localhost"})
    assert code == 2
    assert err.startswith("g4f-bridge: invalid setting BRIDGE_HTTP_ADDR: must be HOST:PORT")


# --- /metrics --------------------------------------------------------------------------------
async def test_metrics_count_answers_without_user_text_or_ids(
    open_bridge: OpenBridge, serve: Any, g4f: FakeG4F
) -> None:
    bridge = await open_bridge()
    server = await serve(bridge)
    chat = ChatServer(clock=bridge.clock, interval=1.0)
    g4f.answers["my secret question"] = "a private answer of six words"
    done = await bridge.ask(WHERE, "my secret question", RecordingSurface(chat, chat="chat-4242"))
    failed = await bridge.ask(
        WHERE, "again", RecordingSurface(chat, chat="chat-4242"), model="fail-500"
    )
    assert isinstance(done, Answered) and isinstance(failed, Answered)
    reply = await get(server, "/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    body = reply.text
    for private in ("secret", "private answer", "chat-4242", "user-7777"):
        assert private not in body
    got = samples(body)
    test = (("platform", "test"),)
    assert got[("g4f_bridge_answers_total", (("outcome", "done"), *test))] == 1
    assert got[("g4f_bridge_answers_total", (("outcome", "failed"), *test))] == 1
    assert got[("g4f_bridge_platform_writes_total", test)] == len(chat.writes)
    assert got[("g4f_bridge_platform_rate_limited_total", test)] == chat.rate_limited == 0
    assert got[("g4f_bridge_first_token_seconds_count", ())] == 1
    assert got[("g4f_bridge_first_visible_seconds_count", test)] == 1
    assert got[("g4f_bridge_upstream_errors_total", (("kind", "model_provider_failed"),))] == 1
    assert got[("g4f_bridge_tokens_total", (("kind", "prompt"),))] == 3
    assert got[("g4f_bridge_tokens_total", (("kind", "completion"),))] == 6
    assert got[("g4f_bridge_streams_active", ())] == 0
    assert got[("g4f_bridge_queue_depth", ())] == 0


async def test_metrics_show_the_queue_and_streams_now(
    open_bridge: OpenBridge, serve: Any, g4f: FakeG4F
) -> None:
    bridge = await open_bridge(bridge_max_concurrency=1)
    server = await serve(bridge)
    chat = ChatServer(clock=bridge.clock, interval=1.0)
    g4f.answers["long"] = " ".join(f"w{i}" for i in range(40))
    g4f.trickle_interval = 0.05
    first = asyncio.create_task(
        bridge.ask(WHERE, "long", RecordingSurface(chat, chat="a"), model="trickle")
    )
    other = Origin("test", "chat-b", "user-b", is_private=True)
    second = asyncio.create_task(bridge.ask(other, "hi", RecordingSurface(chat, chat="b")))
    while not (bridge.gate.waiting == 1 and chat.writes):
        await asyncio.sleep(0.01)
    got = samples((await get(server, "/metrics")).text)
    assert got[("g4f_bridge_queue_depth", ())] == 1
    assert got[("g4f_bridge_slots_in_use", ())] == 1
    assert got[("g4f_bridge_streams_active", ())] == 1
    bridge.shutdown()
    await asyncio.gather(first, second)


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.upstream_failed(UpstreamTimeout("idle", 60))
    assert b'g4f_bridge_upstream_errors_total{kind="upstream_timeout_idle"} 1.0' in one.render()
    assert b"upstream_timeout_idle" not in two.render()
    assert error_kind(ModelProviderFailed("m")) == "model_provider_failed"


# --- `g4f-bridge run` serves it ----------------------------------------------------------------
async def test_run_serves_the_endpoint_with_the_platform_probe(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram:
        env = telegram_run_env(g4f, telegram, tmp_path)
        proc = await asyncio.create_subprocess_exec(
            *CLI, "run", env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            url = await asyncio.wait_for(endpoint_url(proc), 30)
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                assert (await http.get("/healthz")).status_code == 200
                ready = await http.get("/readyz")
                while ready.json()["checks"]["telegram"] == "not connected yet":
                    await asyncio.sleep(0.05)
                    ready = await http.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"] == {
                    "api": "ok", "limits": "ok", "store": "ok", "accepting": "ok",
                    "telegram": "ok",
                }  # fmt: skip
                metrics = await http.get("/metrics")
                assert "g4f_bridge_queue_depth 0.0" in metrics.text
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_sigterm_lets_answers_finish_then_ends_the_rest_in_place(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    """A restart: a short answer finishes within the grace, a long one is ended in place with
    its text kept and the restart named, and the process exits 0."""
    g4f.trickle_interval = 0.05
    short_answer = " ".join(f"s{i}" for i in range(30))  # 1.5 s: it finishes within the grace
    g4f.answers["short one"] = short_answer
    g4f.answers["long one"] = " ".join(f"w{i}" for i in range(400))  # 20 s at 0.05 s a word
    async with FakeTelegram() as telegram:
        env = telegram_run_env(
            g4f, telegram, tmp_path, G4F_DEFAULT_MODEL="trickle", BRIDGE_SHUTDOWN_GRACE="2"
        )
        proc = await asyncio.create_subprocess_exec(
            *CLI, "run", env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            url = await asyncio.wait_for(endpoint_url(proc), 30)
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                while (await http.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.05)
            telegram.push_text(-100, "/ask long one", user_id=1, chat_type="supergroup")
            telegram.push_text(-200, "/ask short one", user_id=2, chat_type="supergroup")
            await telegram.wait_for(
                lambda: bool(telegram.bot_messages(-100) and telegram.bot_messages(-200)),
                timeout=20,
            )
            proc.send_signal(signal.SIGTERM)  # both answers are streaming now
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        [short] = telegram.bot_messages(-200)
        assert short.text == short_answer
        [long] = telegram.bot_messages(-100)
        assert long.text is not None and long.text.startswith("w0 w1")
        assert long.text.endswith("⏹ Interrupted by a restart: ask again.")
        assert "▌" not in long.text
