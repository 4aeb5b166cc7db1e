"""Telegram webhooks: updates POSTed by Telegram to the bridge's HTTP endpoint.

The route is the path of TELEGRAM_WEBHOOK_URL on the endpoint at BRIDGE_HTTP_ADDR (core.http).
A request must carry ``X-Telegram-Bot-Api-Secret-Token`` equal to TELEGRAM_WEBHOOK_SECRET
(compared in constant time; 403 before the body is read). Each update_id is handled once across
every replica sharing BRIDGE_LIMITS_URL (`Bridge.deliveries`): a duplicate is acknowledged with
200 and dropped. While the process is shutting down it answers 503 without claiming the update,
so Telegram delivers it again, to a replica that is not going away.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from core.bridge import Bridge

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024  # an update is a few kilobytes; refuse anything absurd


def delivery_key(bot_id: int, update_id: int) -> str:
    """Update ids are per bot: two bots sharing one Redis never collide."""
    return f"telegram:{bot_id}:update:{update_id}"


class WebhookReceiver:
    """The aiohttp handler that checks, deduplicates and queues updates for the Application."""

    def __init__(
        self, app: Application[Any, Any, Any, Any, Any, Any], bridge: Bridge, secret: str
    ) -> None:
        self._app = app
        self._bridge = bridge
        self._secret = secret.encode()
        self.duplicates = 0
        self.refused = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            self.refused += 1
            log.warning("Telegram webhook: refused a request without the right secret token")
            return web.Response(status=403, text="forbidden\n")
        if self._bridge.closing:  # Telegram retries; another replica takes it
            return web.Response(status=503, text="restarting\n", headers={"Retry-After": "1"})
        if (request.content_length or 0) > MAX_UPDATE_BYTES:
            return web.Response(status=413)
        try:
            data = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="not JSON\n")
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return web.Response(status=400, text="not an update\n")
        if not await self._bridge.deliveries.first(delivery_key(self._app.bot.id, update_id)):
            self.duplicates += 1
            log.info("Telegram webhook: update %d was handled already", update_id)
            return web.Response(status=200)
        await self._app.update_queue.put(Update.de_json(data, self._app.bot))
        return web.Response(status=200)
