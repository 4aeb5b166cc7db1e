"""Reading what comes over the wire, the same way everywhere: a Retry-After, a capped body.

`parse_retry_after` reads the wait a server (the G4F API, a chat platform) asks for, from a header's
text or a number a platform library already parsed. `read_capped` reads a streamed body up to a
limit and says whether there was more.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterable
from datetime import timedelta

# delay-seconds (RFC 9110 §10.2.3) are digits; platforms also send a decimal fraction.
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | float | timedelta | None) -> float | None:
    """The wait in seconds that a Retry-After asks for, or None when there is none to read.

    Text is a number of seconds (digits, optionally a decimal fraction, spaces around ignored);
    anything else (an HTTP date, a sign, an exponent, garbage) reads as None. A number or a
    timedelta is taken as it is. Negative or infinite waits (digits beyond a float) are None.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _SECONDS.fullmatch(text):
            return None
        seconds = float(text)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


async def read_capped(chunks: AsyncIterable[bytes], limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of a streamed body, and whether it had more (reading stops there)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False
