"""core.text: surrogate halves joined, lone ones replaced, so text can be stored and sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.store.base import StoreError
from core.store.sqlite import SqliteConversationStore
from core.text import REPLACEMENT, SurrogateJoiner, clean_text

HIGH, LOW = "\ud83d", "\ude00"
GRIN = "😀"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("", ""),
        (GRIN, GRIN),
        (HIGH + LOW, GRIN),  # a pair held as two code points (two JSON strings joined)
        ("a" + HIGH + "b", "a" + REPLACEMENT + "b"),
        (LOW + HIGH, REPLACEMENT * 2),  # the wrong order is no pair
        (HIGH, REPLACEMENT),
        (HIGH + HIGH + LOW, REPLACEMENT + GRIN),
        ("\udfff", REPLACEMENT),
        ("\ud7ff\ue000", "\ud7ff\ue000"),  # neighbours of the surrogate range are characters
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    clean.encode("utf-8")  # encodable


def test_clean_text_returns_clean_text_itself() -> None:
    text = "no surrogates here 🙂" * 100
    assert clean_text(text) is text


def test_joiner_joins_a_pair_split_across_pieces() -> None:
    joiner = SurrogateJoiner()
    assert joiner.feed("Smile " + HIGH) == "Smile "
    assert joiner.holding
    assert joiner.feed(LOW + " done") == GRIN + " done"
    assert joiner.flush() == ""


def test_joiner_replaces_a_half_that_stays_alone() -> None:
    joiner = SurrogateJoiner()
    assert joiner.feed("x" + HIGH) == "x"
    assert joiner.feed("y") == REPLACEMENT + "y"
    assert joiner.feed(HIGH) == ""
    assert joiner.flush() == REPLACEMENT
    assert not joiner.holding


surrogate_text = st.lists(
    st.one_of(st.sampled_from([HIGH, LOW, "\udbff", "\udc00", GRIN, "a", " "]), st.text()),
    max_size=30,
).map("".join)


@given(surrogate_text, st.lists(st.integers(min_value=0, max_value=100), max_size=8))
def test_joiner_gives_the_clean_text_however_it_is_cut(text: str, cuts: list[int]) -> None:
    joiner = SurrogateJoiner()
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    out = "".join(joiner.feed(piece) for piece in pieces) + joiner.flush()
    assert out == clean_text(text)
    out.encode("utf-8")


async def test_a_clean_prompt_is_stored_where_a_raw_one_is_refused(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "store.sqlite3")
    await store.open()
    try:
        prompt = "why " + HIGH + " this?"
        with pytest.raises((UnicodeEncodeError, StoreError)):
            await store.add_turn(
                parent_id=None, role="user", content=prompt, model=None, created_at=1.0
            )
        turn = await store.add_turn(
            parent_id=None, role="user", content=clean_text(prompt), model=None, created_at=1.0
        )
        stored = await store.get_turn(turn.id)
        assert stored is not None and stored.content == "why " + REPLACEMENT + " this?"
    finally:
        await store.close()
