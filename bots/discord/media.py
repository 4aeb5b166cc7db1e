"""Files a user attaches on Discord (a message's attachments, the `image` option of /ask),
downloaded through discord.py from Discord's CDN and handed to the core as `Attachment`s.

What Discord says is larger than `MAX_ATTACHMENT_BYTES` is not downloaded (the core says so).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from core.attachments import MAX_ATTACHMENT_BYTES, MAX_FILES, Attachment

log = logging.getLogger(__name__)


async def attachments_of(files: Sequence[discord.Attachment]) -> list[Attachment]:
    """Each file's bytes (at most `MAX_FILES` files; those too large are marked, not read)."""
    found: list[Attachment] = []
    for file in files[:MAX_FILES]:
        if file.size > MAX_ATTACHMENT_BYTES:
            found.append(Attachment(file.filename, b"", file.content_type, too_big=True))
            continue
        try:
            data = await file.read()
        except (discord.HTTPException, discord.NotFound) as exc:
            log.warning("could not download an attachment: %r", exc)
            data = b""
        found.append(Attachment(file.filename, data, file.content_type))
    return found
