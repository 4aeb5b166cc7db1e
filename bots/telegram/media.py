"""Photos and documents a user sends: downloaded through the Bot API, handed to the core.

A photo (its largest size) or a document becomes a `core.attachments.Attachment`; whatever the
platform says is larger than `MAX_ATTACHMENT_BYTES` is not downloaded (the core says so). The
photos of one album arrive as separate messages sharing a `media_group_id`: `Albums` collects
them for `ALBUM_WAIT` seconds and asks once, with the caption one of them carries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Bot, Message
from telegram.error import TelegramError

from core.attachments import MAX_ATTACHMENT_BYTES, Attachment
from core.clock import Clock

log = logging.getLogger(__name__)

ALBUM_WAIT = 1.0  # seconds: an album's messages arrive together
PHOTO_HINT = "📷 Got the picture. Send your question as its caption, or as a reply to the picture."


def has_media(message: Message) -> bool:
    return bool(message.photo) or message.document is not None


async def attachments_of(bot: Bot, message: Message) -> list[Attachment]:
    """The photo or document of `message`, downloaded (nothing when it has neither)."""
    if message.photo:
        size = message.photo[-1]  # the largest
        return [await _download(bot, size.file_id, size.file_size, "photo.jpg", "image/jpeg")]
    document = message.document
    if document is not None:
        name = document.file_name or "file"
        found = await _download(bot, document.file_id, document.file_size, name, document.mime_type)
        return [found]
    return []


async def _download(
    bot: Bot, file_id: str, size: int | None, name: str, declared: str | None
) -> Attachment:
    if size is not None and size > MAX_ATTACHMENT_BYTES:
        return Attachment(name, b"", declared, too_big=True)
    try:
        file = await bot.get_file(file_id)
        if file.file_size is not None and file.file_size > MAX_ATTACHMENT_BYTES:
            return Attachment(name, b"", declared, too_big=True)
        data = bytes(await file.download_as_bytearray())
    except TelegramError as exc:
        log.warning("could not download an attachment: %r", exc)
        return Attachment(name, b"", declared)  # unreadable: refused as not an accepted kind
    return Attachment(name, data, declared, too_big=len(data) > MAX_ATTACHMENT_BYTES)


AlbumDone = Callable[[list[Message]], Awaitable[None]]


class Albums:
    """Collects the messages of each album, then hands them over together once."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._open: dict[str, list[Message]] = {}

    async def collect(self, message: Message, done: AlbumDone) -> None:
        """Add an album's message; the first one waits for the rest, then calls `done`."""
        group = message.media_group_id
        if group is None:
            await done([message])
            return
        if group in self._open:
            self._open[group].append(message)
            return
        self._open[group] = [message]
        try:
            await self._clock.sleep(ALBUM_WAIT)
        finally:
            messages = self._open.pop(group, [])
        await done(sorted(messages, key=lambda m: m.message_id))
