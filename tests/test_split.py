"""Tests for core.render.split: platform-sized parts, no character lost, code fences kept whole."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest
import regex
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.render.split import (
    MIN_MAX_LENGTH,
    FenceState,
    fence_state_at_end,
    join_parts,
    open_fence_at_end,
    split_text,
    unwrap_parts,
)

Length = Callable[[str], int]

_CLUSTER = regex.compile(r"\X")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)

FAMILY = "👨\u200d👩\u200d👧"  # 5 code points, 8 UTF-16 units, one grapheme
FLAG_DE = "🇩🇪"  # 2 regional indicators
E_ACUTE = "e\u0301"  # e + combining acute
CLEF = "𝄞"  # astral: 1 code point, 2 UTF-16 units
THUMB = "👍🏽"  # emoji + skin tone modifier


def utf16(text: str) -> int:
    """Telegram's length: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def boundaries(text: str) -> set[int]:
    """All grapheme-cluster boundaries of `text`."""
    return {0} | {match.end() for match in _CLUSTER.finditer(text)}


def cut_positions(parts: list[str]) -> list[int]:
    """Where the original text was cut, from the parts' original text."""
    positions, position = [], 0
    for piece in unwrap_parts(parts)[:-1]:
        position += len(piece)
        positions.append(position)
    return positions


def check_split(text: str, max_length: int, length: Length = len) -> list[str]:
    """Split, then assert the invariants every split must keep; return the parts."""
    parts = split_text(text, max_length, length=length)
    joined = join_parts(parts)
    assert "".join(unwrap_parts(parts)) == joined
    # exact, except trailing whitespace that does not fit in the last part (or a blank text)
    assert joined == text or (joined == text[: len(joined)] and text[len(joined) :].isspace())
    assert joined.rstrip() == text.rstrip()
    assert all(parts)
    assert all(length(part) <= max_length for part in parts), [length(p) for p in parts]
    pieces, marks = unwrap_parts(parts), boundaries(joined)
    for index, cut in enumerate(cut_positions(parts)):
        # a cut splits a grapheme cluster only where the cluster does not fit in a code block's
        # part beside the fence lines that keep the block closed
        assert cut in marks or parts[index] != pieces[index], (cut, parts[index])
    return parts


# --- basics -------------------------------------------------------------------------------------


def test_empty_text_gives_no_parts() -> None:
    assert split_text("", 2000) == []
    assert join_parts([]) == ""


@pytest.mark.parametrize(
    ("text", "max_length"),
    [("hello", 2000), ("x" * 2000, 2000), ("```py\nunclosed", 16)],
)
def test_text_that_fits_is_returned_unchanged(text: str, max_length: int) -> None:
    assert split_text(text, max_length) == [text]


@pytest.mark.parametrize("text", ["   ", "  \n  ", "\n", " " * 5000])
def test_whitespace_only_text_gives_no_parts(text: str) -> None:
    assert split_text(text, 16) == []  # nothing to send: a blank message is refused


def test_trailing_whitespace_never_makes_a_part_of_its_own() -> None:
    text = "hello world" + " " * 5000
    assert split_text(text, 4096) == ["hello world" + " " * 4085]
    words = " ".join(f"w{i}" for i in range(1500))  # two parts' worth of words
    assert len(split_text(words + " " * 5000, 4096)) == len(split_text(words, 4096)) == 2


def test_fit_is_measured_with_the_given_length() -> None:
    text = CLEF * 10  # 10 characters, 20 UTF-16 units
    assert split_text(text, 16) == [text]
    assert split_text(text, 16, length=utf16) == [CLEF * 8, CLEF * 2]


def test_max_length_below_the_minimum_is_rejected() -> None:
    assert MIN_MAX_LENGTH == 16
    with pytest.raises(ValueError, match="at least 16"):
        split_text("x" * 100, 15)
    assert split_text("x" * 20, 16) == ["x" * 16, "x" * 4]


def test_join_parts_of_unrelated_strings_just_concatenates() -> None:
    assert join_parts(["a", "b\n", "```"]) == "ab\n```"


# --- where a part ends --------------------------------------------------------------------------


def test_paragraph_break_is_preferred_and_keeps_its_whitespace() -> None:
    text = "First paragraph here.\n\nSecond one is here, short."
    assert check_split(text, 40) == ["First paragraph here.\n\n", "Second one is here, short."]


def test_paragraph_break_with_spaces_on_the_blank_line() -> None:
    text = "First paragraph here.\n  \nSecond one is here, short."
    assert check_split(text, 40) == ["First paragraph here.\n  \n", "Second one is here, short."]


def test_early_paragraph_break_gives_way_to_a_later_line_break() -> None:
    text = "Hi.\n\nline one is long enough\nline two continues here"
    assert check_split(text, 40) == ["Hi.\n\nline one is long enough\n", "line two continues here"]


def test_line_break_is_preferred_to_a_later_word_break() -> None:
    text = "alpha beta gamma\ndelta epsilon zeta eta theta"
    assert check_split(text, 30) == ["alpha beta gamma\n", "delta epsilon zeta eta theta"]


def test_word_break() -> None:
    text = "one two three four five six seven eight"
    assert check_split(text, 20) == ["one two three four ", "five six seven eight"]


def test_early_word_break_gives_way_to_a_hard_cut() -> None:
    text = "ab " + "c" * 40
    assert check_split(text, 20) == ["ab " + "c" * 17, "c" * 20, "c" * 3]


def test_long_word_is_cut_hard() -> None:
    assert check_split("x" * 45, 20) == ["x" * 20, "x" * 20, "x" * 5]


def test_whitespace_that_does_not_fit_moves_to_the_next_part() -> None:
    text = "aaaa bbbb cccc dddd" + " " * 10 + "eeee"
    assert check_split(text, 20) == ["aaaa bbbb cccc dddd ", " " * 9 + "eeee"]


def test_remainder_is_never_whitespace_only() -> None:
    # Trailing whitespace fills the last part as far as it fits and never makes one of its own
    # (this split used to give two messages, for the sake of four trailing spaces).
    text = "aaaa bbbb cccc dddd eeee" + " " * 10
    assert split_text(text, 30) == ["aaaa bbbb cccc dddd eeee" + " " * 6]
    text = "aaaa bbbb cccc dddd eeee ffff gggg" + " " * 10
    assert check_split(text, 30) == ["aaaa bbbb cccc dddd eeee ffff ", "gggg" + " " * 10]


def test_leading_whitespace_stays_with_the_first_word() -> None:
    text = " " * 10 + "aaaa bbbb cccc dddd"
    parts = check_split(text, 20)
    assert parts == [" " * 10 + "aaaa bbbb ", "cccc dddd"]


def test_every_part_has_visible_text_in_ordinary_prose() -> None:
    words, gaps = ["lorem", "ipsum", "dolor", "sit", "amet"], [" ", " ", "  ", "\n", "\n\n"]
    rng = random.Random(7)
    text = "".join(rng.choice(words) + rng.choice(gaps) for _ in range(3000))
    for max_length in (16, 17, 50, 333, 2000):
        assert all(part.strip() for part in check_split(text, max_length))


# --- grapheme clusters --------------------------------------------------------------------------


def test_zwj_sequence_is_never_broken() -> None:
    text = "x" * 19 + FAMILY + "y" * 10
    assert check_split(text, 20) == ["x" * 19, FAMILY + "y" * 10]
    text = "x" * 15 + FAMILY + "y" * 10
    assert check_split(text, 20, utf16) == ["x" * 15, FAMILY + "y" * 10]


def test_flags_stay_in_pairs() -> None:
    assert check_split(FLAG_DE * 20, 17) == [FLAG_DE * 8, FLAG_DE * 8, FLAG_DE * 4]
    assert check_split(FLAG_DE * 10, 18, utf16) == [FLAG_DE * 4, FLAG_DE * 4, FLAG_DE * 2]


def test_combining_marks_stay_with_their_base() -> None:
    expected = [E_ACUTE * 8, E_ACUTE * 8, E_ACUTE * 8, E_ACUTE * 6]
    assert check_split(E_ACUTE * 30, 17) == expected


def test_astral_characters_count_twice_in_utf16() -> None:
    assert check_split(CLEF * 30, 17, utf16) == [CLEF * 8, CLEF * 8, CLEF * 8, CLEF * 6]


def test_crlf_is_not_split() -> None:
    text = "a" * 19 + "\r\n" + "b" * 10
    assert check_split(text, 20) == ["a" * 19, "\r\n" + "b" * 10]


@pytest.mark.parametrize("length", [len, utf16])
def test_mixed_emoji_near_every_cut(length: Length) -> None:
    pieces = [FAMILY, FLAG_DE, E_ACUTE, CLEF, THUMB, "a", "bc", " ", "\n", "é"]
    rng = random.Random(3)
    text = "".join(rng.choice(pieces) for _ in range(400))
    for max_length in range(16, 80):
        check_split(text, max_length, length)


def test_a_grapheme_cluster_longer_than_a_part_is_cut_at_code_points() -> None:
    text = "e" + "\u0301" * 40  # one cluster of 41 code points
    assert check_split_lossless(text, 16) == ["e" + "\u0301" * 15, "\u0301" * 16, "\u0301" * 9]


def check_split_lossless(text: str, max_length: int) -> list[str]:
    """Split a text whose clusters cannot all stay whole: only fit and exactness are kept."""
    parts = split_text(text, max_length)
    assert join_parts(parts) == text
    assert all(0 < len(part) <= max_length for part in parts)
    return parts


# --- code fences --------------------------------------------------------------------------------


def test_cut_inside_a_code_block_closes_and_reopens_it() -> None:
    text = "```py\nline1\nline2\nline3\nline4\nline5\nline6\n```"
    assert check_split(text, 40) == [
        "```py\nline1\nline2\nline3\nline4\nline5\n\n```",
        "```py\nline6\n```",
    ]


def test_tilde_fence_indented_and_longer_is_closed_with_the_same_fence() -> None:
    text = "  ~~~~ js\nlet a = 1;\nlet b = 2;\nlet c = 3;\n  ~~~~\nafter"
    assert check_split(text, 30) == [
        "  ~~~~ js\nlet a = 1;\n\n~~~~",
        "  ~~~~ js\nlet b = 2;\n\n~~~~",
        "  ~~~~ js\nlet c = 3;\n  ~~~~\n",
        "after",
    ]


def test_long_code_line_is_cut_hard_inside_the_block() -> None:
    text = "word word word word\n```py\n" + "x" * 34 + "\n```"
    assert check_split(text, 30) == [
        "word word word word\n",
        "```py\n" + "x" * 20 + "\n```",
        "```py\n" + "x" * 14 + "\n```",
    ]


def test_no_part_ends_with_an_empty_code_block() -> None:
    # The latest line break lies right after the opening line; the one before it is taken.
    text = "word word word word\n```py\nprint(1)\n```"
    assert check_split(text, 30) == ["word word word word\n", "```py\nprint(1)\n```"]


def test_no_part_starts_with_a_block_that_closes_at_once() -> None:
    # The latest line break lies right before the closing line; the one before it is taken.
    text = "```py\n" + "x = 1\n" * 4 + "```\nafter words here"
    assert check_split(text, 33) == [
        "```py\nx = 1\nx = 1\nx = 1\n\n```",
        "```py\nx = 1\n```\nafter words here",
    ]


def test_a_paragraph_break_before_a_block_beats_cutting_the_block() -> None:
    block = "```python\n" + "".join(f"print({i})\n" for i in range(6)) + "```"
    intro = "Some introduction text goes here, and more of it."  # ends past half the window
    assert check_split(intro + "\n\n" + block, 80) == [intro + "\n\n", block]


def make_answer(rng: random.Random, size: int) -> str:
    """A chat answer of about `size` characters: prose paragraphs and fenced code blocks."""
    words = ["the", "a", "model", "answer", "code", "python", "data", "list", "will", "can"]
    chunks: list[str] = []
    while sum(len(chunk) + 2 for chunk in chunks) < size:
        if rng.random() < 0.35:
            opener = rng.choice(["```python", "```", "```python", "```bash"])
            body = "".join(
                f"    value_{i} = compute({rng.randint(0, 999)})  # {rng.choice(words)}\n"
                for i in range(rng.randint(5, 90))
            )
            chunks.append(f"{opener}\n{body}```")
        else:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(10, 120)))
            chunks.append(sentence.capitalize() + ".")
    return "\n\n".join(chunks)


def fence_lines(part: str) -> list[str]:
    """The fence lines of a part (only ``` fences appear in make_answer's code)."""
    return [match.group(1) for match in _FENCE_LINE.finditer(part)]


def test_long_answer_with_code_blocks_at_2000() -> None:
    text = make_answer(random.Random(2024), 10_000)
    assert len(text) >= 10_000
    parts = check_split(text, 2000)
    pieces = unwrap_parts(parts)
    assert len(parts) >= 5
    reopened, reopen = 0, ""
    for index, (part, piece) in enumerate(zip(parts, pieces, strict=True)):
        assert len(fence_lines(part)) % 2 == 0, part
        assert part.strip()
        if index == len(parts) - 1:
            assert part == reopen + piece
            break
        assert piece.endswith("\n")  # code and prose alike are cut at line breaks here
        state = fence_state_at_end("".join(pieces[: index + 1]))
        if state is None:
            assert part == reopen + piece
            reopen = ""
        else:  # the split closed the block here and reopens it with the same language
            assert part == reopen + piece + "\n```"
            assert state.line in ("```python", "```bash", "```")
            reopen = state.line + "\n"
            assert parts[index + 1].startswith(reopen)
            reopened += 1
    assert reopened >= 2


@pytest.mark.parametrize(
    "text",
    [
        "```\ncode\n```\n```\nmore\n```",  # an original close followed by an opener
        "```python\na\n```\n```python\nb\n```\nend",  # the exact form split_text adds
        "```python\nunclosed block\nline\nline\nline\nline",
        "text\n```\n```\n```\n```\n```\n```\n```\n```",
        "~~~\n```\ninside tilde\n```\n~~~\n```\nb\n```",
        "````\n```\nnot closed by three\n```\n````\ntail",
        "   ```x\n    ```\n   ```\n```a`b\nnot a fence\n```",
        "```py\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n```",
        "a```\n```b\n``` \n```\t\r\n```\r\n```",
        "```" + "`" * 60 + "\n```\nx\n" + "`" * 70 + "\ny",
        "```" + "x" * 40 + "\ncode code code code code\n```",
        "```\n" + "```" * 30 + "\n```",
    ],
)
@pytest.mark.parametrize("length", [len, utf16])
def test_tricky_fences_round_trip_at_every_length(text: str, length: Length) -> None:
    for max_length in range(MIN_MAX_LENGTH, len(text) + 2):
        check_split(text, max_length, length)


# --- fence state --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("plain", None),
        ("```python\nx = 1", "```python"),
        ("```python\nx = 1\n```", None),
        ("```python\nx = 1\n```\n", None),
        ("~~~\n```\n", "~~~"),
        ("````\n```\n", "````"),
        ("````\n`````\n", None),
        ("    ```\n", None),  # four spaces: indented code, not a fence
        ("   ```js\n", "   ```js"),
        ("```a`b\n", None),  # a backtick fence's info string may not hold a backtick
        ("~~~ a`b\n", "~~~ a`b"),
        ("```\n```py\n", "```"),  # a closing fence takes no info string
        ("```\n```   \n", None),
        ("```", "```"),
    ],
)
def test_open_fence_at_end(text: str, expected: str | None) -> None:
    assert open_fence_at_end(text) == expected


def test_fence_state_describes_the_open_block() -> None:
    state = fence_state_at_end("intro\n ~~~~ python title=x\ncode\n")
    assert state == FenceState(line=" ~~~~ python title=x", char="~", size=4, info="python title=x")
    assert state.close == "~~~~"
    assert state.language == "python"


# --- randomised round trip ----------------------------------------------------------------------

_TOKENS = [
    "word", "a", "longerword", "x" * 30, " ", " ", " ", "  ", "\n", "\n", "\n\n", "\r\n", "\t",
    FAMILY, FLAG_DE, E_ACUTE, CLEF, THUMB, "\u0301", "\u200d",
    "```", "```python\n", "\n```\n", "\n```python\n", "~~~~\n", "\n~~~~\n", "  ```js\n", "`", "``",
]  # fmt: skip


def random_text(rng: random.Random) -> str:
    """Random words, whitespace, fences and emoji."""
    return "".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 250)))


@pytest.mark.parametrize("seed", range(300))
def test_random_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng)
    length: Length = rng.choice([len, utf16])
    max_length = rng.randint(MIN_MAX_LENGTH, 300)
    parts = check_split(text, max_length, length)
    if not text:
        assert parts == []
    elif length(text) <= max_length:
        assert parts == [text]


# --- properties (hypothesis) --------------------------------------------------------------------

_PROPERTY_TOKENS = [
    "a", "é", "word", "x" * 20, " ", " ", "  ", " " * 12, "\t", "\n", "\n", "\n\n", "\r\n",
    "`", "~", "```", "~~~", "````", "```py", "```py\n", "\n```\n", "\n```", "~~~~\n", "  ```js\n",
    "[", "_", "\x00", FAMILY, FLAG_DE, E_ACUTE, CLEF, THUMB, "\u0301", "\u0301" * 20, "\u200d",
]  # fmt: skip


def from_tokens(data: bytes) -> str:
    return "".join(_PROPERTY_TOKENS[byte % len(_PROPERTY_TOKENS)] for byte in data)


PROPERTY_TEXTS = st.binary(max_size=60).map(from_tokens)
PROPERTY_LENGTHS = st.sampled_from([len, utf16])


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_properties(text: str, max_length: int, length: Length, *, fences: bool) -> list[str]:
    """What every split keeps (and, with `fences`, that each part closes its code blocks)."""
    parts = split_text(text, max_length, length=length)
    assert all(length(part) <= max_length for part in parts), [length(p) for p in parts]
    assert all(part.strip() for part in parts)  # no blank part: platforms refuse them
    joined = join_parts(parts)
    assert without_whitespace(joined) == without_whitespace(text)  # only whitespace may go
    body = text.rstrip()
    if not re.search(rf"\s{{{max_length // 2 + 1},}}", body):
        # exact, but for trailing whitespace beyond what fits in the last part
        assert joined == text[: len(joined)] and joined.rstrip() == body
    if fences:
        ends_open = fence_state_at_end(joined) is not None
        for index, part in enumerate(parts):
            state = fence_state_at_end(part)
            if index < len(parts) - 1:
                assert state is None, (index, part)  # a part closes every code block it opens
            else:
                assert (state is not None) == ends_open, (index, part)
    return parts


@settings(max_examples=3000, deadline=None)
@given(PROPERTY_TEXTS, st.integers(min_value=MIN_MAX_LENGTH, max_value=60), PROPERTY_LENGTHS)
def test_split_fits_is_never_blank_and_joins_back(
    text: str, max_length: int, length: Length
) -> None:
    check_properties(text, max_length, length, fences=False)


_ANSWER_TOKENS = [
    "a", "é", "word", "x" * 20, " ", "  ", " " * 12, "\t", "\n", "\n", "\n\n", "\r\n",
    "\n```py\n", "\n```\n", "\n~~~~\n", "a ```py", "`", "``", " ```", "\x00", "_", "[",
    FAMILY, FLAG_DE, E_ACUTE, CLEF, THUMB, "\u0301" * 20,
]  # fmt: skip
_FENCE_RUN = re.compile(r"`{3,}|~{3,}")


def answer_from_tokens(data: bytes) -> str:
    return "".join(_ANSWER_TOKENS[byte % len(_ANSWER_TOKENS)] for byte in data)


@settings(max_examples=2500, deadline=None)
@given(
    st.one_of(PROPERTY_TEXTS, st.binary(max_size=60).map(answer_from_tokens)),
    st.integers(min_value=MIN_MAX_LENGTH, max_value=60),
    PROPERTY_LENGTHS,
)
def test_split_closes_every_code_block_in_its_part(
    text: str, max_length: int, length: Length
) -> None:
    # Every fence-like run must fit a part twice (opened and closed) beside a character of code:
    # a fence of ten backticks cannot be kept at a limit of 16, and no real limit is that close.
    runs = _FENCE_RUN.finditer(text)
    assume(all(2 * len(run.group()) + 6 <= max_length for run in runs))
    check_properties(text, max_length, length, fences=True)


# --- regressions from issue 11 ------------------------------------------------------------------


def test_inline_backticks_never_start_a_part_as_a_fence() -> None:
    text = "a~\néb\né[a    ```py\n_\x00\n"
    parts = check_split(text, 16)
    assert all(fence_state_at_end(part) is None for part in parts), parts
    text = "[ " + "x" * 20 + " ```py and more words here"
    for max_length in range(16, len(text)):
        for part in check_split(text, max_length):
            assert fence_state_at_end(part) is None, (max_length, part)


def test_a_grapheme_cluster_longer_than_a_part_inside_code_keeps_the_block_closed() -> None:
    text = "```\n" + "e" + "\u0301" * 40 + "\n```"
    parts = split_text(text, 16)
    assert join_parts(parts) == text
    assert all(len(part) <= 16 and part.strip() for part in parts)
    assert all(fence_state_at_end(part) is None for part in parts), parts


@pytest.mark.parametrize(
    "text",
    [
        "```" + "x" * 20 + "\nfoo\n```",
        "intro words\n```python-with-a-very-long-info-string\nprint(1)\nprint(2)\n```\nend",
        "\n\t\n````" + FLAG_DE + "  " + "x" * 20,
        "  ~~~~ " + "y" * 30 + "\ncode line\n  ~~~~\nafter",
    ],
)
@pytest.mark.parametrize("length", [len, utf16])
def test_a_fence_line_longer_than_a_part_keeps_every_part_closed(text: str, length: Length) -> None:
    for max_length in range(16, 40):
        check_properties(text, max_length, length, fences=True)


def test_a_long_whitespace_run_never_makes_a_blank_part() -> None:
    text = "word " + " " * 40 + "\n" + "more words here and there " * 3
    parts = split_text(text, 16)
    assert all(part.strip() and len(part) <= 16 for part in parts), parts
    assert without_whitespace(join_parts(parts)) == without_whitespace(text)
