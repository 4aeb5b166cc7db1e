"""Pictures: /imagine."""

from __future__ import annotations

import asyncio
import logging

from core.bridge.base import BridgeBase, apologizes, check_prompt, send_quietly
from core.conversations import Origin
from core.echo import MAX_PROMPT_ECHO, echo
from core.errors import UpstreamError
from core.logs import follows_answer
from core.render.renderer import keep_active
from core.render.surface import (
    MessageSurface,
    SurfaceError,
)
from core.results import (
    Imagined,
    Refusal,
)
from core.text import clean_text

log = logging.getLogger(__name__)


class Imagining(BridgeBase):
    """Pictures drawn for /imagine."""

    @follows_answer
    @apologizes
    async def imagine(
        self,
        origin: Origin,
        prompt: str,
        surface: MessageSurface,
        *,
        model: str | None = None,
        size: str | None = None,
    ) -> Imagined | Refusal:
        """Draw `prompt` and upload it; on failure the error is shown in the image's place."""
        prompt = clean_text(prompt).strip()
        refusal = check_prompt(prompt, "Please describe the picture after the command.")
        if refusal is None:
            refusal = await self._admit(origin)
        if refusal is not None:
            return refusal
        chosen = model or self.settings.g4f_image_model
        activity = asyncio.create_task(keep_active(surface, "drawing", self.clock))
        try:
            async with self.gate.slot():
                image = await self.client.generate_image(prompt, model=chosen, size=size)
        except UpstreamError as exc:
            activity.cancel()
            ref = await send_quietly(surface, f"⚠️ {exc.user_message}")
            log.info("image failed: %s", exc)
            return Imagined(chosen, ref, error=exc.user_message)
        finally:
            activity.cancel()
        shown = echo(prompt, MAX_PROMPT_ECHO)
        caption = _caption(shown, echo(image.model), surface.limits.max_caption)
        try:
            ref = await surface.upload(
                image.data,
                filename=f"image.{image.extension}",
                content_type=image.content_type,
                caption=caption,
                prompt=shown,
                model=echo(image.model),
            )
        except SurfaceError as exc:
            log.warning("image upload failed: %r", exc)
            ref = await send_quietly(surface, "⚠️ The image could not be uploaded here.")
            return Imagined(image.model, ref, error="upload failed")
        return Imagined(image.model, ref, revised_prompt=image.revised_prompt)


def _caption(prompt: str, model: str, limit: int) -> str:
    tail = f"\n— {model}"
    head = f"🎨 {prompt}"
    room = limit - len(tail)
    if len(head) > room:
        head = head[: max(0, room - 1)] + "…"
    return head + tail
