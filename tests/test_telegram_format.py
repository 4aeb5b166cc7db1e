"""bots.telegram.format: markdown to text + entities that never lose a character, and the
formatted preview of a streaming answer."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import MessageEntity

from bots.telegram.format import to_entities, utf16_len
from core.render.renderer import INDICATOR


def kinds(entities: list[MessageEntity]) -> list[tuple[str, str]]:
    return [(str(e.type), "") for e in entities]


def covered(text: str, entities: list[MessageEntity], kind: str) -> list[str]:
    """The text each entity of `kind` covers (offsets in UTF-16 code units)."""
    units = text.encode("utf-16-le")
    return [
        units[2 * e.offset : 2 * (e.offset + e.length)].decode("utf-16-le")
        for e in entities
        if e.type == kind
    ]


# --- nothing the model wrote is lost ------------------------------------------------------------


@pytest.mark.parametrize(
    "markdown",
    [
        "Use the <div> element, <br> for breaks, and compare a<b and c>d.",
        "In Rust, Vec<u8> holds bytes; in Java, List<String> holds strings.",
        "fn parse<T: FromStr>(s: &str) -> Option<T>",
        "<details>\nsummary text here\n</details>",
        "<!-- a comment --> and <?php echo 1; ?> and <![CDATA[ data ]]>",
    ],
)
def test_text_that_looks_like_html_is_kept(markdown: str) -> None:
    text, _ = to_entities(markdown)
    assert text == markdown


def test_html_does_not_cost_the_formatting_around_it() -> None:
    text, entities = to_entities("**Bold** then <div> and `code<b>` here")
    assert text == "Bold then <div> and code<b> here"
    assert covered(text, entities, "bold") == ["Bold"]
    assert covered(text, entities, "code") == ["code<b>"]


def test_an_html_line_does_not_swallow_its_paragraph() -> None:
    text, entities = to_entities("<div>\nhello **there**\n</div>\n\nnext *word*")
    assert text == "<div>\nhello there\n</div>\n\nnext word"
    assert covered(text, entities, "bold") == ["there"]
    assert covered(text, entities, "italic") == ["word"]


def test_a_block_the_converter_would_cut_is_sent_as_written() -> None:
    # A table row with more cells than its header: the converter drops the extra cell.
    markdown = "Intro **bold**.\n\n| a | b |\n|---|---|\n| 1 | 2 | 3 |\n\nEnd *here*."
    text, entities = to_entities(markdown)
    assert "| 1 | 2 | 3 |" in text
    assert text.startswith("Intro bold.\n\n| a | b |") and text.endswith("\n\nEnd here.")
    assert covered(text, entities, "bold") == ["bold"]
    assert covered(text, entities, "italic") == ["here"]


def test_a_link_reference_definition_is_sent_as_written() -> None:
    text, _ = to_entities("[docs]: https://example.com/docs\n\nSee **[docs]**.")
    assert "https://example.com/docs" in text and "docs" in text.split("\n")[-1]


def test_a_lone_surrogate_is_replaced_not_fatal() -> None:
    text, entities = to_entities("half \ud83d of **it**")
    assert text == "half \ufffd of it" and covered(text, entities, "bold") == ["it"]


def test_ordinary_markdown_is_formatted_as_before() -> None:
    text, entities = to_entities("# Title\n\nSome **bold** and [a link](https://example.com).")
    assert "Title" in text and "**" not in text and "](" not in text
    assert covered(text, entities, "bold") == ["Title", "bold"]
    assert [e.url for e in entities if e.type == "text_link"] == ["https://example.com"]


# --- the property: every letter and digit comes through, in order --------------------------------

TOKENS = [
    *"aZé7 \n\n*_`~[]()<>/!#|-=:\"'\\&;.,",
    "**", "__", "```", "```py\n", "\n```\n", "<div>", "</b>", "<u8>", "<a href='x'>",
    "- ", "1. ", "> ", "# ", "| x | y |\n|---|---|\n", "](http://e.x)", "[t]: /u\n",
    "&amp;", "<!--", "-->", "    ", "\t", "||", "$", "$$", "\\(", "\\)", "![i](/p)",
    "Vec<String>", "a<b and c>d", "🙂", "\u0301",
]  # fmt: skip


def from_tokens(data: bytes) -> str:
    return "".join(TOKENS[byte % len(TOKENS)] for byte in data)


# Bytes mapped to tokens: hypothesis draws (and shrinks) bytes faster than lists of strings.
MARKUP_AND_WORDS = st.binary(max_size=48).map(from_tokens)

_ORDERED = re.compile(r"^[ \t>*+\-⦁]*[0-9]+[.)](?=[ \t]|$)", re.MULTILINE)
_REFERENCE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_MATH = re.compile(r"\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)


def letters_and_digits(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


def must_show(markdown: str) -> str:
    """The letters and digits of the source a reader must find, in order: all of them, except
    list numbers (lists are renumbered), checkbox letters ([x] becomes a symbol), character
    references (&amp; becomes &) and LaTeX (\\(\\alpha\\) becomes α)."""
    text = _MATH.sub(" ", markdown)
    text = _REFERENCE.sub(lambda m: " " + html.unescape(m.group()) + " ", text)
    text = re.sub(r"\[[xX]\]", " ", text)
    return letters_and_digits(_ORDERED.sub(" ", text))


def shows(text: str, entities: list[MessageEntity]) -> str:
    """Letters and digits the message shows: its text, each link address after the link's text,
    each code block's language before the code."""
    units = text.encode("utf-16-le")
    inserts = sorted(
        [(e.offset + e.length, e.url or "") for e in entities if e.type == "text_link"]
        + [(e.offset, e.language or "") for e in entities if e.type == "pre"]
    )
    out, cursor = [], 0
    for offset, extra in inserts:
        out += [units[2 * cursor : 2 * offset].decode("utf-16-le"), " ", extra, " "]
        cursor = max(cursor, offset)
    out.append(units[2 * cursor :].decode("utf-16-le"))
    return letters_and_digits(_ORDERED.sub(" ", "".join(out)))


def is_subsequence(needle: str, haystack: str) -> bool:
    chars = iter(haystack)
    return all(c in chars for c in needle)


def check_entities(text: str, entities: list[MessageEntity]) -> None:
    """What Telegram checks: entities inside the text, which is trimmed and not empty."""
    assert text == text.strip()
    size = utf16_len(text)
    for e in entities:
        assert e.length > 0 and e.offset >= 0 and e.offset + e.length <= size, (e, text)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MARKUP_AND_WORDS)
def test_every_letter_and_digit_is_shown_in_order(markdown: str) -> None:
    text, entities = to_entities(markdown)
    check_entities(text, entities)
    assert is_subsequence(must_show(markdown), shows(text, entities)), (text, entities)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MARKUP_AND_WORDS)
def test_a_preview_shows_every_letter_and_digit_and_ends_with_the_indicator(
    markdown: str,
) -> None:
    text, entities = to_entities(markdown + INDICATOR)
    check_entities(text, entities)
    assert text.endswith("▌")
    assert all(e.offset + e.length <= utf16_len(text) - utf16_len(INDICATOR) for e in entities)
    assert is_subsequence(must_show(markdown), shows(text, entities)), (text, entities)


# --- while streaming --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interim", "shown", "kind", "inside"),
    [
        ("Here is **Enh" + INDICATOR, "Here is Enh ▌", "bold", "Enh"),
        ("Say *hel" + INDICATOR, "Say hel ▌", "italic", "hel"),
        ("Say _hel" + INDICATOR, "Say hel ▌", "italic", "hel"),
        ("Run `pip inst" + INDICATOR, "Run pip inst ▌", "code", "pip inst"),
        ("Gone ~~old" + INDICATOR, "Gone old ▌", "strikethrough", "old"),
        ("**Bold *and it" + INDICATOR, "Bold and it ▌", "italic", "and it"),
        ("Code:\n\n```python\nprint(1)\nfor i" + INDICATOR, "Code:\n\nprint(1)\nfor i ▌", "pre",
         "print(1)\nfor i"),
        ("Done **here**." + INDICATOR, "Done here. ▌", "bold", "here"),
    ],
)  # fmt: skip
def test_an_interim_text_is_formatted_with_its_unfinished_markup_closed(
    interim: str, shown: str, kind: str, inside: str
) -> None:
    text, entities = to_entities(interim)
    assert text == shown
    assert inside in covered(text, entities, kind)
    assert all(e.offset + e.length <= utf16_len(text) - 2 for e in entities)  # not the indicator


@pytest.mark.parametrize(
    ("interim", "shown"),
    [
        ("Now **" + INDICATOR, "Now ▌"),  # the stream stopped right after an opening marker
        ("A list:\n\n``" + INDICATOR, "A list: ▌"),
        ("2 * 3 is six" + INDICATOR, "2 * 3 is six ▌"),  # not markup: nothing is added
        ("snake_case_name" + INDICATOR, "snake_case_name ▌"),
        ("…" + INDICATOR, "… ▌"),
        (INDICATOR, "▌"),
    ],
)
def test_an_interim_text_never_shows_a_marker_it_made_up(interim: str, shown: str) -> None:
    assert to_entities(interim)[0] == shown


def test_the_final_text_is_not_closed_or_cut() -> None:
    assert to_entities("Now **")[0] == "Now **"
    assert to_entities("Say *hel")[0] == "Say *hel"
    assert to_entities("Say *hel" + INDICATOR, partial=False)[0] == "Say *hel ▌"
    assert to_entities("Say *hel", partial=True)[0] == "Say hel ▌"


def test_an_open_fence_shows_as_a_code_block_with_its_language() -> None:
    for interim in ("```py\nx = 1", "```py\nx = 1\n", "  ~~~~ py\nx = 1\n```\n"):
        text, entities = to_entities(interim + INDICATOR)
        assert text == "x = 1 ▌" or text == "x = 1\n``` ▌", text
        [pre] = entities
        assert pre.type == "pre" and pre.language == "py"
