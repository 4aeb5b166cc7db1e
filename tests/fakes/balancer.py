"""A small round-robin HTTP forwarder on 127.0.0.1, standing in for a load balancer.

Each request goes to the next backend in turn (path, query, headers and body kept); a backend
that refuses the connection is skipped for that request, and 502 comes back when none answers.
Backends are added after they start (their ports are free ports chosen at start).
"""

from __future__ import annotations

import itertools

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from tests.fakes.served import Served

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class RoundRobin(Served):
    """Forwards each request to the next of `backends` (base URLs such as http://127.0.0.1:P)."""

    def __init__(self) -> None:
        self.backends: list[str] = []
        self.forwarded: list[tuple[str, str, int]] = []  # (backend, path, status)
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("RoundRobin is not started")
        return self._url

    def add(self, backend: str) -> None:
        self.backends.append(backend.rstrip("/"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._session = ClientSession(timeout=ClientTimeout(total=10))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        for _ in range(len(self.backends)):
            backend = self.backends[next(self._turn) % len(self.backends)]
            try:
                async with self._session.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as response:
                    answer = await response.read()
                    self.forwarded.append((backend, request.path, response.status))
                    return web.Response(status=response.status, body=answer)
            except (ClientError, OSError):
                continue
        return web.Response(status=502, text="no backend answered\n")
