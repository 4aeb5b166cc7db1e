"""Telegram webhooks end to end: the real PTB Application fed by FakeTelegram's POSTs through a
round-robin forwarder (a load balancer) to the bridge's own HTTP endpoint.

Each replica is a Bridge with its HealthServer on a free port and `serve(..., routes=server)`;
two replicas share the machine's Redis on 127.0.0.1:6379 (a random key prefix, removed after)
when the test needs updates deduplicated across processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from telegram import Bot
from telegram.error import BadRequest, Conflict

from bots.telegram.app import serve
from bots.telegram.settings import TelegramSettings
from bots.telegram.webhook import SECRET_HEADER, delivery_key
from core.bridge import Bridge
from core.client import G4FClient
from core.deliveries import MemoryFirstSeen
from core.http import HealthServer, serve_bridge
from core.limits_redis import RedisLimits, open_redis_limits
from core.store.base import open_store
from tests.conftest import REDIS_URL, MakeSettings, RedisDb, cancel_task, split_section, until_ready
from tests.fakes.balancer import RoundRobin
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.served import serve_app
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import CLI, ROOT, endpoint_url
from tests.test_cli import api

FACTOR = 20.0
PRIVATE = 4242
PATH = "/telegram/webhook"
DUPLICATE_LOG = "was handled already"


@dataclass
class Replica:
    """One bridge process: its Bridge, its HTTP endpoint, and the Telegram adapter serving."""

    bridge: Bridge
    http: HealthServer
    task: asyncio.Task[None]
    shared: RedisLimits | None = None

    @property
    def webhook(self) -> str:
        return self.http.url + PATH

    async def stop(self) -> None:
        await cancel_task(self.task)
        await self.http.stop()
        await self.bridge.close()
        if self.shared is not None:
            await self.shared.aclose()


@dataclass
class Fleet:
    """FakeTelegram, a load balancer in front of the replicas, and the replicas."""

    fake: FakeTelegram
    g4f: FakeG4F
    balancer: RoundRobin
    clock: ScaledClock
    make_settings: MakeSettings
    secret: str = field(default_factory=lambda: f"hook-{secrets.token_hex(8)}_ok")
    replicas: list[Replica] = field(default_factory=list)

    @property
    def public_url(self) -> str:
        return self.balancer.url + PATH

    async def start(self, *, redis_prefix: str | None = None, **overrides: Any) -> Replica:
        """A replica behind the balancer (sharing Redis under `redis_prefix` when given)."""
        values: dict[str, Any] = {
            "telegram_token": self.fake.token,
            "telegram_base_url": self.fake.base_url,
            "telegram_base_file_url": self.fake.base_file_url,
            "telegram_webhook_url": self.public_url,
            "telegram_webhook_secret": self.secret,
            "bridge_http_addr": "127.0.0.1:0",
        }
        section, rest = split_section(TelegramSettings, {**values, **overrides})
        settings = self.make_settings(**rest)
        section.check_with(settings)
        store = open_store(settings.bridge_store_url)
        await store.open()
        shared = None
        options: dict[str, Any] = {}
        if redis_prefix is not None:
            shared = await open_redis_limits(REDIS_URL, self.clock, prefix=redis_prefix)
            options = {
                "limiter": shared.limiter,
                "locks": shared.locks,
                "deliveries": shared.deliveries,
            }
        client = G4FClient(settings, clock=self.clock)
        bridge = Bridge(settings, client=client, store=store, clock=self.clock, **options)
        http = serve_bridge(bridge, host="127.0.0.1", port=0)
        await http.start()
        self.balancer.add(http.url)
        ready = asyncio.Event()
        task = asyncio.create_task(serve(bridge, section, ready=ready, routes=http))
        replica = Replica(bridge, http, task, shared)
        self.replicas.append(replica)
        await until_ready(task, ready)
        return replica

    async def stop(self) -> None:
        for replica in self.replicas:
            await replica.stop()
        self.replicas.clear()

    async def answered(self, chat: int, count: int) -> None:
        """Wait until `count` answers in `chat` show their final state (Regenerate button)."""

        def done() -> bool:
            return len([m for m in self.fake.bot_messages(chat) if _regen(m.reply_markup)]) >= count

        await self.fake.wait_for(done, timeout=10)


def _regen(markup: dict[str, Any] | None) -> bool:
    rows = (markup or {}).get("inline_keyboard", [])
    return any(button.get("callback_data") == "regen" for row in rows for button in row)


@pytest.fixture
async def fleet(g4f: FakeG4F, make_settings: MakeSettings) -> AsyncIterator[Fleet]:
    clock = ScaledClock(FACTOR)
    async with FakeTelegram(clock=clock.now) as fake, RoundRobin() as balancer:
        group = Fleet(fake, g4f, balancer, clock, make_settings)
        try:
            yield group
        finally:
            await group.stop()


@pytest.fixture
def redis_prefix(redis_db: RedisDb) -> str:
    """A random key prefix in the machine's Redis; its keys are deleted afterwards."""
    return redis_db.prefix


async def _redelivered_update_is_dropped(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, qa: tuple[str, str]
) -> None:
    """`qa`'s question is answered; its update delivered again is acknowledged (200) and dropped
    as a duplicate (logged)."""
    fleet.g4f.answers[qa[0]] = qa[1]
    fleet.fake.push_text(PRIVATE, qa[0])
    await fleet.answered(PRIVATE, 1)
    [first] = fleet.fake.webhook_deliveries
    with caplog.at_level(logging.INFO, logger="bots.telegram.webhook"):
        assert await fleet.fake.redeliver(first.update_id) == 200  # acknowledged, dropped
    assert [r for r in caplog.records if DUPLICATE_LOG in r.getMessage()]


async def _only_the_next_update_is_answered(
    fleet: Fleet, qa: tuple[str, str], earlier: str
) -> None:
    """A next question is answered: two answers in all, two G4F requests (none for the copy)."""
    fleet.g4f.answers[qa[0]] = qa[1]
    fleet.fake.push_text(PRIVATE, qa[0])
    await fleet.answered(PRIVATE, 2)
    assert sorted(m.text or "" for m in fleet.fake.bot_messages(PRIVATE)) == sorted(
        [qa[1], earlier]
    )
    assert len(fleet.g4f.chat_requests()) == 2


# --- receiving updates ---------------------------------------------------------------------


async def test_update_posted_with_the_secret_is_answered_without_polling(fleet: Fleet) -> None:
    await fleet.start()
    [hook] = fleet.fake.calls_named("setWebhook")
    assert hook.params["url"] == fleet.public_url
    assert hook.params["secret_token"] == fleet.secret
    assert hook.params["allowed_updates"] == ["message", "callback_query"]
    assert hook.params.get("drop_pending_updates") in (False, None)
    fleet.g4f.answers["hello over a webhook"] = "webhook answer"
    fleet.fake.push_text(PRIVATE, "hello over a webhook")
    await fleet.answered(PRIVATE, 1)
    [message] = fleet.fake.bot_messages(PRIVATE)
    assert message.text == "webhook answer"
    assert fleet.fake.calls_named("getUpdates") == []
    assert [d.status for d in fleet.fake.webhook_deliveries] == [200]
    assert fleet.fake.rate_limited == 0


async def test_wrong_or_missing_secret_gets_403_and_nothing_happens(fleet: Fleet) -> None:
    replica = await fleet.start()
    fleet.g4f.answers["forged"] = "must not be answered"
    forged = fleet.fake.text_update(PRIVATE, "forged")
    wrong = {SECRET_HEADER: fleet.secret + "x"}
    assert await fleet.fake.post_update(forged, url=replica.webhook, headers=wrong) == 403
    assert await fleet.fake.post_update(forged, url=replica.webhook, headers={}) == 403
    async with (  # refused before the body is read: not even JSON gets past
        ClientSession() as session,
        session.post(replica.webhook, data=b"{not json", headers=wrong) as response,
    ):
        assert response.status == 403
    # The refused update was not claimed either: delivered properly now, it is answered, once.
    assert await fleet.fake.post_update(forged, url=replica.webhook) == 200
    await fleet.answered(PRIVATE, 1)
    assert [m.text for m in fleet.fake.bot_messages(PRIVATE)] == ["must not be answered"]
    assert len(fleet.g4f.chat_requests()) == 1
    assert [d.status for d in fleet.fake.webhook_deliveries] == [403, 403, 200]


async def test_not_an_update_is_400(fleet: Fleet) -> None:
    replica = await fleet.start()
    headers = {SECRET_HEADER: fleet.secret}
    async with ClientSession() as session:
        for body in (b"{not json", b"[1]", b'{"update_id": "7"}'):
            async with session.post(replica.webhook, data=body, headers=headers) as response:
                assert response.status == 400
        async with session.get(replica.webhook) as response:
            assert response.status == 405


async def test_same_update_twice_to_one_replica_is_answered_once(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    await fleet.start()
    await _redelivered_update_is_dropped(fleet, caplog, ("once please", "only once"))
    await _only_the_next_update_is_answered(fleet, ("next", "next answer"), "only once")


async def test_two_replicas_sharing_redis_answer_a_redelivered_update_once(
    fleet: Fleet, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await fleet.start(redis_prefix=redis_prefix, bridge_limits_url=REDIS_URL)
    await fleet.start(redis_prefix=redis_prefix, bridge_limits_url=REDIS_URL)
    assert len(fleet.fake.calls_named("setWebhook")) == 2  # each replica sets the same URL
    await _redelivered_update_is_dropped(fleet, caplog, ("shared", "answered by one replica"))
    # The balancer took the two deliveries to different replicas: only Redis knew.
    backends = [backend for backend, path, _ in fleet.balancer.forwarded if path == PATH]
    assert len(backends) == 2 and backends[0] != backends[1]
    await _only_the_next_update_is_answered(
        fleet, ("after", "after answer"), "answered by one replica"
    )


async def test_two_replicas_without_shared_redis_each_deduplicate_only_their_own(
    fleet: Fleet,
) -> None:
    """The control for the test above: per-process memory does not see the other's updates."""
    await fleet.start()
    await fleet.start()
    fleet.g4f.answers["twice"] = "answered twice"
    fleet.fake.push_text(PRIVATE, "twice")
    await fleet.answered(PRIVATE, 1)
    [first] = fleet.fake.webhook_deliveries
    assert await fleet.fake.redeliver(first.update_id) == 200
    await fleet.answered(PRIVATE, 2)
    assert [m.text for m in fleet.fake.bot_messages(PRIVATE)] == ["answered twice"] * 2


async def test_shutting_down_answers_503_without_claiming_the_update(fleet: Fleet) -> None:
    replica = await fleet.start()
    replica.bridge.shutdown()
    update = fleet.fake.text_update(PRIVATE, "during a restart")
    assert await fleet.fake.post_update(update, url=replica.webhook) == 503
    key = delivery_key(fleet.fake.bot_id, update["update_id"])
    assert await replica.bridge.deliveries.first(key)  # still new: another replica takes it


async def test_polling_stays_the_default(fleet: Fleet) -> None:
    await fleet.start(telegram_webhook_url="", telegram_webhook_secret=None)
    assert fleet.fake.calls_named("setWebhook") == []
    assert fleet.fake.calls_named("deleteWebhook")  # PTB clears any webhook before polling
    fleet.g4f.answers["polled"] = "by polling"
    fleet.fake.push_text(PRIVATE, "polled")
    await fleet.answered(PRIVATE, 1)
    assert fleet.fake.calls_named("getUpdates")
    assert fleet.fake.webhook_deliveries == []


# --- the emulator's webhook methods --------------------------------------------------------


async def test_emulator_webhook_info_conflict_and_retry() -> None:
    received: list[str | None] = []

    async def refuse_then_accept(request: web.Request) -> web.Response:
        received.append(request.headers.get(SECRET_HEADER))
        return web.Response(status=500 if len(received) == 1 else 200)

    app = web.Application()
    app.router.add_post("/hook", refuse_then_accept)
    async with serve_app(app) as root:
        url = root + "/hook"
        async with (
            FakeTelegram(webhook_retry_seconds=0.05) as fake,
            Bot(fake.token, base_url=fake.base_url) as bot,
        ):
            assert await bot.set_webhook(url, secret_token="s3cret_-X")
            with pytest.raises(Conflict):
                await bot.get_updates()
            fake.push_text(PRIVATE, "hi")
            await fake.wait_for(lambda: len(received) == 2)
            assert received == ["s3cret_-X", "s3cret_-X"]
            info = await bot.get_webhook_info()
            assert info.url == url and info.pending_update_count == 0
            assert info.last_error_message == "Wrong response from the webhook: 500"
            assert [d.status for d in fake.webhook_deliveries] == [500, 200]
            with pytest.raises(BadRequest, match=r"(?i)unallowed characters"):
                await bot.set_webhook(url, secret_token="no spaces")
            assert await bot.delete_webhook()
            assert (await bot.get_webhook_info()).url == ""
            assert await bot.get_updates() == ()


async def test_emulator_can_insist_on_https_like_telegram() -> None:
    async with (
        FakeTelegram(webhook_https_only=True) as fake,
        Bot(fake.token, base_url=fake.base_url) as bot,
    ):
        with pytest.raises(BadRequest, match=r"(?i)https url"):
            await bot.set_webhook("http://127.0.0.1:8443/hook")
        with pytest.raises(BadRequest, match=r"(?i)ports"):
            await bot.set_webhook("https://bot.invalid:9000/hook")


# --- the pieces ----------------------------------------------------------------------------


async def test_memory_first_seen_is_bounded() -> None:
    seen = MemoryFirstSeen(capacity=3)
    assert [await seen.first(k) for k in ("a", "b", "a", "c", "d")] == [
        True,
        True,
        False,
        True,
        True,
    ]
    assert len(seen) == 3
    assert await seen.first("a")  # the oldest was forgotten
    assert not await seen.first("d")


async def test_http_routes_can_be_added_and_removed_while_running(
    make_settings: MakeSettings,
) -> None:
    from core.metrics import Metrics

    server = HealthServer(Metrics(), host="127.0.0.1", port=0)
    await server.start()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.method}")

    try:
        server.add_route("/hook", hello)
        with pytest.raises(ValueError):
            server.add_route("/healthz", hello)
        with pytest.raises(ValueError):
            server.add_route("/hook", hello)
        async with ClientSession() as session:
            async with session.post(server.url + "/hook") as response:
                assert (response.status, await response.text()) == (200, "hello POST")
            server.remove_route("/hook")
            async with session.post(server.url + "/hook") as response:
                assert response.status == 404
            async with session.get(server.url + "/healthz") as response:
                assert response.status == 200
    finally:
        await server.stop()


# --- `g4f-bridge run` in webhook mode ------------------------------------------------------


async def test_run_serves_the_webhook_on_its_endpoint(g4f: FakeG4F, tmp_path: Path) -> None:
    """The real CLI process: setWebhook at start, an update posted through the balancer to its
    endpoint is answered, SIGTERM exits 0 and leaves the webhook set for the other replicas."""
    g4f.answers["via run"] = "answered by g4f-bridge run"
    async with FakeTelegram(webhook_retry_seconds=0.05) as telegram, RoundRobin() as balancer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("G4F_", "BRIDGE_", "TELEGRAM_", "DISCORD_"))
        }
        env.update(
            api(g4f),
            PYTHONPATH=str(ROOT),
            BRIDGE_HTTP_ADDR="127.0.0.1:0",
            BRIDGE_STORE_URL=f"sqlite:///{tmp_path}/s.sqlite3",
            TELEGRAM_TOKEN=telegram.token,
            TELEGRAM_BASE_URL=telegram.base_url,
            TELEGRAM_BASE_FILE_URL=telegram.base_file_url,
            TELEGRAM_WEBHOOK_URL=balancer.url + PATH,
            TELEGRAM_WEBHOOK_SECRET="run-secret_0123",
        )
        proc = await asyncio.create_subprocess_exec(
            *CLI, "run", env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            balancer.add(await asyncio.wait_for(endpoint_url(proc), 30))
            await telegram.wait_for(lambda: telegram.webhook_url is not None, timeout=20)
            telegram.push_text(PRIVATE, "via run")
            await telegram.wait_for(lambda: bool(telegram.bot_messages(PRIVATE)), timeout=20)
            await telegram.wait_for(
                lambda: _regen(telegram.bot_messages(PRIVATE)[0].reply_markup), timeout=20
            )
            assert telegram.bot_messages(PRIVATE)[0].text == "answered by g4f-bridge run"
            assert telegram.calls_named("getUpdates") == []
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            assert telegram.webhook_url == balancer.url + PATH
            assert telegram.calls_named("deleteWebhook") == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
