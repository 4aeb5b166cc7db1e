"""Reading over the wire: Retry-After and capped bodies (core.wire)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.render.surface import SurfaceRateLimited
from core.wire import parse_retry_after, read_capped

DIGITS = st.text("0123456789", min_size=1, max_size=12)
SPACE = st.sampled_from(["", " ", "\t", "  "])


@given(whole=DIGITS, fraction=st.none() | DIGITS, before=SPACE, after=SPACE)
def test_seconds_in_text_are_read(
    whole: str, fraction: str | None, before: str, after: str
) -> None:
    number = whole if fraction is None else f"{whole}.{fraction}"
    assert parse_retry_after(f"{before}{number}{after}") == float(number)


@given(st.text(max_size=20))
def test_any_text_reads_as_a_finite_wait_or_none(text: str) -> None:
    seconds = parse_retry_after(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    if seconds is not None:  # only plain decimal seconds are read
        assert text.strip().replace(".", "", 1).isdecimal() and text.strip().isascii()


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "soon",
        "-1",
        "+1",
        "1e3",
        "1_0",
        "nan",
        "inf",
        "1.",
        ".5",
        "1.2.3",
        "٣",  # a digit, but not an ASCII one
        "Wed, 21 Oct 2026 07:28:00 GMT",  # an HTTP date: not read (no wait is known)
        "9" * 400,  # beyond a float
    ],
)
def test_what_is_not_seconds_reads_as_none(text: str) -> None:
    assert parse_retry_after(text) is None


def test_numbers_and_durations_from_platform_libraries() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after(3) == 3.0
    assert parse_retry_after(0.25) == 0.25
    assert parse_retry_after(timedelta(seconds=90)) == 90.0
    assert parse_retry_after(-1) is None
    assert parse_retry_after(timedelta(seconds=-1)) is None
    assert parse_retry_after(math.inf) is None
    assert parse_retry_after(math.nan) is None


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@given(parts=st.lists(st.binary(max_size=40), max_size=8), limit=st.integers(0, 200))
async def test_read_capped_keeps_at_most_the_limit(parts: list[bytes], limit: int) -> None:
    body = b"".join(parts)
    data, more = await read_capped(_chunks(*parts), limit)
    assert data == body[:limit]
    assert more == (len(body) > limit)


async def test_read_capped_stops_reading_past_the_limit() -> None:
    read: list[bytes] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            read.append(b"x" * 10)
            yield read[-1]

    data, more = await read_capped(endless(), 25)
    assert (data, more) == (b"x" * 25, True)
    assert len(read) == 3  # the chunk that went past the limit is the last one read


def test_a_refusal_without_a_readable_wait_waits_the_default() -> None:
    """What every adapter passes on from an unreadable Retry-After (None) waits one default."""
    unreadable = SurfaceRateLimited(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"))
    assert unreadable.retry_after == SurfaceRateLimited.UNSAID_WAIT == 1.0
    assert SurfaceRateLimited(parse_retry_after("2.5")).retry_after == 2.5
