"""The bridge's own HTTP endpoint (BRIDGE_HTTP_ADDR): /healthz, /readyz and /metrics.

- ``/healthz``: 200 while the process and its event loop are alive (it answers at all).
- ``/readyz``: 200 when every readiness probe passes, else 503; the JSON body says which failed.
  Probes are registered by a neutral name (``api``, ``store``, ``limits``, and one per platform
  the adapters start); each runs with a timeout, all at once.
- ``/metrics``: the Prometheus text format (core.metrics).
- any path an adapter adds with ``add_route`` (e.g. a platform's webhook), added and removed
  while the server runs; an unknown path answers 404.

Nothing here knows a platform: adapters register their probes and routes like any other.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from core.clock import Clock
from core.errors import UpstreamError
from core.limits import Rate
from core.metrics import PROMETHEUS_CONTENT_TYPE, Metrics
from core.settings import RESERVED_PATHS

if TYPE_CHECKING:
    from core.bridge import Bridge

log = logging.getLogger(__name__)

# A probe answers None when all is well, else a short reason (no secrets, no user data).
Probe = Callable[[], Awaitable[str | None]]
# A route's handler: any method on its path.
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBE_TIMEOUT = 5.0
API_PROBE_TTL = 15.0  # a real completion per scrape would cost the API; cache the verdict
OK = "ok"


class Routes(Protocol):
    """Where an adapter adds the paths it serves (a `HealthServer`)."""

    def add_route(self, path: str, handler: RouteHandler) -> None: ...

    def remove_route(self, path: str) -> None: ...


class HttpAddressError(Exception):
    """The endpoint cannot listen where BRIDGE_HTTP_ADDR says; one line for the user."""


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # name -> "ok" or what is wrong


class CachedProbe:
    """Runs `probe` at most once per `ttl` seconds; callers meanwhile share the last verdict
    (and one run in flight)."""

    def __init__(self, probe: Probe, ttl: float, clock: Clock) -> None:
        self._probe = probe
        self._ttl = ttl
        self._clock = clock
        self._verdict: tuple[float, str | None] | None = None
        self._running: asyncio.Task[str | None] | None = None

    async def __call__(self) -> str | None:
        now = self._clock.now()
        if self._verdict is not None and now - self._verdict[0] < self._ttl:
            return self._verdict[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> str | None:
        try:
            verdict = await self._probe()
        except Exception as exc:  # a probe's failure is a verdict, not a crash
            verdict = _failure(exc)
        self._verdict = (self._clock.now(), verdict)
        return verdict


class HealthServer:
    """The aiohttp server behind BRIDGE_HTTP_ADDR."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._probe_timeout = probe_timeout
        self._probes: dict[str, Probe] = {}
        self._routes: dict[str, RouteHandler] = {}
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()

    def add_probe(self, name: str, probe: Probe) -> None:
        """Make `/readyz` depend on `probe` (a later probe of the same name replaces it)."""
        self._probes[name] = probe

    def remove_probe(self, name: str) -> None:
        self._probes.pop(name, None)

    def add_route(self, path: str, handler: RouteHandler) -> None:
        """Serve `path` (exactly, any method) with `handler`, before or after `start`."""
        if not path.startswith("/") or path in RESERVED_PATHS:
            raise ValueError(f"cannot serve {path!r}: a path starts with / and is not one of ours")
        if path in self._routes:
            raise ValueError(f"{path!r} is served already")
        self._routes[path] = handler

    def remove_route(self, path: str) -> None:
        """Stop serving `path` (it answers 404 from now on)."""
        self._routes.pop(path, None)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises HttpAddressError (one line) when the address is taken or invalid."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # aiohttp's router is frozen once running: added routes are looked up here instead.
        app.router.add_route("*", "/{path:.*}", self._added_route)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.host}:{self.port}"
            if exc.errno == errno.EADDRINUSE:
                raise HttpAddressError(
                    f"BRIDGE_HTTP_ADDR {where}: the port is already in use; choose another "
                    "port (0 takes a free one) or stop what listens there"
                ) from None
            raise HttpAddressError(
                f"BRIDGE_HTTP_ADDR {where}: cannot listen there ({exc.strerror or exc})"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health and metrics at %s (/healthz, /readyz, /metrics)", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def readiness(self) -> Readiness:
        """Run every probe at once, each within the timeout."""
        names = sorted(self._probes)
        verdicts = await asyncio.gather(*(self._run_probe(self._probes[n]) for n in names))
        checks = {name: verdict or OK for name, verdict in zip(names, verdicts, strict=True)}
        return Readiness(all(v is None for v in verdicts), checks)

    async def _run_probe(self, probe: Probe) -> str | None:
        try:
            async with asyncio.timeout(self._probe_timeout):
                return await probe()
        except TimeoutError:
            return f"no answer within {self._probe_timeout:g} s"
        except Exception as exc:
            return _failure(exc)

    # --- handlers ---------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        uptime = round(time.monotonic() - self._started, 1)
        return _json({"status": "ok", "uptime_seconds": uptime}, 200)

    async def _readyz(self, request: web.Request) -> web.Response:
        state = await self.readiness()
        body = {"ready": state.ready, "checks": state.checks}
        return _json(body, 200 if state.ready else 503)

    async def _added_route(self, request: web.Request) -> web.StreamResponse:
        handler = self._routes.get(request.path)
        if handler is None:
            return _json({"error": "not found"}, 404)
        return await handler(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _json(body: object, status: int) -> web.Response:
    return web.Response(
        text=json.dumps(body, indent=1) + "\n", status=status, content_type="application/json"
    )


# --- the core's own probes -------------------------------------------------------------------
def api_probe(bridge: Bridge, *, ttl: float = API_PROBE_TTL) -> Probe:
    """The API answers a real one-token completion with the default model (cached `ttl`)."""

    async def probe() -> str | None:
        try:
            await bridge.client.probe()
        except UpstreamError as exc:
            return exc.user_message
        return None

    return CachedProbe(probe, ttl, bridge.clock)


def store_probe(bridge: Bridge) -> Probe:
    """The conversation store answers a read."""

    async def probe() -> str | None:
        await bridge.store.get_preference("health", "probe")
        return None

    return probe


def limits_probe(bridge: Bridge) -> Probe:
    """The rate-limit backend (memory, or Redis) answers; not ready while a shared backend is
    unreachable and the limits have fallen back to this process alone."""
    rate = Rate.parse("1000/second")

    async def probe() -> str | None:
        if bridge.limits_degraded:
            return "unreachable: rate limits and locks are per process until it is back"
        await bridge.limiter.peek("health:probe", rate)
        return None

    return probe


def accepting_probe(bridge: Bridge) -> Probe:
    """Not ready while shutting down (a load balancer sends new work elsewhere)."""

    async def probe() -> str | None:
        return "restarting: answers in flight are finishing" if bridge.closing else None

    return probe


def serve_bridge(bridge: Bridge, *, host: str, port: int) -> HealthServer:
    """A server for `bridge` with the core's probes (api, store, limits) registered."""
    server = HealthServer(bridge.client.metrics, host=host, port=port)
    server.add_probe("api", api_probe(bridge))
    server.add_probe("store", store_probe(bridge))
    server.add_probe("limits", limits_probe(bridge))
    server.add_probe("accepting", accepting_probe(bridge))
    return server
