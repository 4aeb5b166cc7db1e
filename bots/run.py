"""`g4f-bridge run`: serve every platform whose token is set, all sharing one core.

With no token set it starts the terminal chat and says how to add a platform. It runs until
SIGINT/SIGTERM, then stops every adapter and closes the store and the API client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from bots.settings import PlatformSettings
from core.bridge import Bridge
from core.embedded import EmbeddedG4F, start_embedded_g4f
from core.http import HealthServer, HttpAddressError, Probe, Routes, serve_bridge
from core.settings import Settings

log = logging.getLogger(__name__)

PLATFORMS = ("discord", "telegram")


class Serve(Protocol):
    """An adapter's `serve`: runs until cancelled; sets `ready` once connected; serves any
    paths of its own (a webhook) on `routes`, the endpoint at BRIDGE_HTTP_ADDR."""

    def __call__(
        self, bridge: Bridge, *, ready: asyncio.Event | None = None, routes: Routes | None = None
    ) -> Coroutine[Any, Any, None]: ...


class RunError(Exception):
    """The run cannot start (a usage problem); the message is one line for the user."""


def choose_platforms(platforms: PlatformSettings, requested: Sequence[str] | None) -> list[str]:
    """The platforms to start: the requested ones (each needs its token) or all configured."""
    tokens = platforms.tokens()
    if not requested:
        return [p for p in PLATFORMS if tokens[p] is not None]
    chosen = []
    for name in requested:
        name = name.strip().lower()
        if name not in PLATFORMS:
            raise RunError(f"unknown platform {name!r}; choose from {', '.join(PLATFORMS)}")
        if tokens[name] is None:
            raise RunError(f"{name.upper()}_TOKEN is not set, so {name} cannot start")
        chosen.append(name)
    return chosen


async def open_bridge(settings: Settings, sections: PlatformSettings) -> Bridge:
    """Core, given what it needs of the adapters' sections in its own terms: Discord's
    allowed servers (ALLOWED_GUILD_IDS) are its allowed spaces, whichever platforms run."""
    return await Bridge.open(settings, allowed_spaces=sections.discord.allowed_guild_ids)


def _server(platform: str, sections: PlatformSettings) -> Serve:
    """The platform's `serve`, given its settings section."""
    if platform == "telegram":
        from bots.telegram.app import serve as telegram_serve

        return functools.partial(telegram_serve, settings=sections.telegram)
    from bots.discord.app import serve as discord_serve

    return functools.partial(discord_serve, settings=sections.discord)


async def run(
    settings: Settings, sections: PlatformSettings, requested: Sequence[str] | None = None
) -> int:
    """Start the adapters (or the terminal chat) and serve until stopped."""
    platforms = choose_platforms(sections, requested)
    bridge = await open_bridge(settings, sections)
    health: HealthServer | None = None
    embedded: EmbeddedG4F | None = None
    try:
        embedded = await start_embedded_g4f(settings)  # when nothing answers at a local URL
        health = await _start_health(bridge)
        if not platforms:
            from bots.terminal import chat

            print(
                "No platform token is set: starting the terminal chat. To serve Discord or "
                "Telegram, set DISCORD_TOKEN or TELEGRAM_TOKEN in .env (see .env.example).",
                file=sys.stderr,
            )
            return await chat(bridge)
        return await _serve_until_stopped(bridge, platforms, sections, health)
    finally:
        if embedded is not None:
            await embedded.stop()
        if health is not None:
            await health.stop()
        await bridge.close()


async def _start_health(bridge: Bridge) -> HealthServer | None:
    """The /healthz, /readyz, /metrics endpoint at BRIDGE_HTTP_ADDR (None when off)."""
    listen = bridge.settings.http_listen
    if listen is None:
        return None
    server = serve_bridge(bridge, host=listen[0], port=listen[1])
    try:
        await server.start()
    except HttpAddressError as exc:
        raise RunError(str(exc)) from None
    return server


def _connected_probe(task: asyncio.Task[None], ready: asyncio.Event) -> Probe:
    """Ready once the adapter said it is connected, for as long as it runs."""

    async def probe() -> str | None:
        if task.done():
            return "stopped"
        return None if ready.is_set() else "not connected yet"

    return probe


async def _serve_until_stopped(
    bridge: Bridge,
    platforms: list[str],
    sections: PlatformSettings,
    health: HealthServer | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: dict[asyncio.Task[None], str] = {}
    for platform in platforms:
        ready = asyncio.Event()
        serve = _server(platform, sections)
        task = asyncio.create_task(serve(bridge, ready=ready, routes=health), name=platform)
        tasks[task] = platform
        if health is not None:
            health.add_probe(platform, _connected_probe(task, ready))
    log.info("serving %s", ", ".join(platforms))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:  # a graceful restart: the adapters keep writing while answers end
            grace = bridge.settings.bridge_shutdown_grace
            log.info("stopping: answers in flight get up to %g s to finish", grace)
            await bridge.drain(grace)
    finally:
        for running in [*tasks, stopper]:
            running.cancel()
        results = await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = [
        (tasks[t], r)
        for t, r in zip(tasks, results, strict=False)
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    for platform, error in failed:
        log.error("%s stopped: %s", platform, error, exc_info=error)
    return 1 if failed or stopper not in done else 0
