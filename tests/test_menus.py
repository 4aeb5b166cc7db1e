"""What adapters share for buttons, lists and refused writes: the model menu (core.menus), the
answer buttons' ids, a result's reply text, and the once-per-room notice (core.notices)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.api_models import ModelInfo
from core.menus import (
    NEXT_PAGE,
    NO_MODELS,
    PREVIOUS_PAGE,
    model_menu,
    page_payload,
    parse_page_payload,
)
from core.notices import ForbiddenNotices
from core.render.surface import AnswerButtonIds
from core.results import (
    ConversationReset,
    ModelChosen,
    ModelPage,
    Refusal,
    RefusalReason,
    Status,
    SystemPromptSet,
    WebSearchSet,
)
from core.texts import (
    Reply,
    model_chosen_text,
    models_page_text,
    persona_text,
    reply_text,
    reset_text,
    status_text,
    web_search_text,
)


def _page(number: int, pages: int, *ids: str, current: str = "b", query: str = "") -> ModelPage:
    items = tuple(ModelInfo(i, False, False) for i in ids)
    return ModelPage(items, page=number, pages=pages, total=len(ids), current=current, query=query)


def test_a_listed_menu_has_the_page_text_and_turns_both_ways() -> None:
    page = _page(1, 3, "a", "b", query="gp")
    menu = model_menu(page, choices=False)
    assert menu.text == models_page_text(page)
    assert menu.choices == ()
    assert [(b.action, b.label, b.payload) for b in menu.buttons] == [
        ("page", PREVIOUS_PAGE, "0:gp"),
        ("page", NEXT_PAGE, "2:gp"),
    ]


def test_a_menu_of_choices_marks_the_users_model_and_turns_only_where_there_is_a_page() -> None:
    menu = model_menu(_page(0, 2, "a", "b"), choices=True)
    assert [(b.action, b.label, b.payload) for b in menu.choices] == [
        ("choose_model", "a", "a"),
        ("choose_model", "✅ b", "b"),
    ]
    assert [(b.label, b.payload) for b in menu.turns] == [(NEXT_PAGE, "1:")]
    assert menu.buttons == menu.choices + menu.turns
    assert "page 1 of 2" in menu.text and "Your model: `b`" in menu.text
    assert "• `a`" not in menu.text  # the models are the buttons, not listed


def test_a_menu_of_choices_without_models_says_so_and_has_no_buttons() -> None:
    menu = model_menu(_page(0, 1), choices=True)
    assert (menu.text, menu.buttons) == (NO_MODELS, ())


def test_one_page_has_no_turns() -> None:
    assert model_menu(_page(0, 1, "a"), choices=False).buttons == ()


@given(page=st.integers(min_value=0, max_value=10**6), query=st.text(max_size=30))
def test_a_page_payload_reads_back(page: int, query: str) -> None:
    assert parse_page_payload(page_payload(page, query)) == (page, query)


@pytest.mark.parametrize("payload", ["", ":x", "x:1", "-1:", "²:", "1.5:"])
def test_what_is_no_page_payload_reads_as_none(payload: str) -> None:
    assert parse_page_payload(payload) is None


def test_answer_button_ids_go_both_ways() -> None:
    ids = AnswerButtonIds({"stop": "s", "regenerate": "r", "continue": "c"})
    assert [ids.id_of("stop"), ids.id_of("regenerate"), ids.id_of("continue")] == ["s", "r", "c"]
    assert [ids.action_of(x) for x in ("s", "r", "c", "x", None)] == [
        "stop",
        "regenerate",
        "continue",
        None,
        None,
    ]
    assert ids.get("page") is None and ids.get("stop") == "s"


def test_answer_button_ids_are_one_distinct_id_per_action() -> None:
    with pytest.raises(ValueError):
        AnswerButtonIds({"stop": "s", "regenerate": "s", "continue": "c"})
    with pytest.raises(ValueError):
        AnswerButtonIds({"stop": "s", "regenerate": "r"})


def test_reply_text_is_each_results_own_text() -> None:
    status = Status("m", "i", 1, "5/minute", 0, "", busy=False, queue_waiting=0)
    cases: list[tuple[Reply, str]] = [
        (ModelChosen("m", "chat"), model_chosen_text(ModelChosen("m", "chat"))),
        (SystemPromptSet("p"), persona_text(SystemPromptSet("p"))),
        (ConversationReset(True), reset_text(ConversationReset(True))),
        (status, status_text(status)),
        (WebSearchSet(True), web_search_text(WebSearchSet(True))),
    ]
    for result, text in cases:
        assert reply_text(result) == text
    assert len({text for _, text in cases}) == len(cases)


def test_a_refusal_replies_with_its_message_and_is_shown_unless_quiet() -> None:
    loud = Refusal(RefusalReason.NOT_ALLOWED, "Not here.")
    quiet = Refusal(RefusalReason.NOT_ALLOWED, "Not here.", quiet=True)
    assert reply_text(loud) == reply_text(quiet) == "Not here."
    assert (loud.shown, quiet.shown) == ("Not here.", None)


def test_a_forbidden_room_is_explained_once(caplog: pytest.LogCaptureFixture) -> None:
    notices = ForbiddenNotices()
    with caplog.at_level(logging.WARNING, logger="core.notices"):
        told = [notices.first("chat:1", "no"), notices.first("chat:1", "no")]
        told.append(notices.first("chat:2", "blocked"))
    assert told == [True, False, True]
    warnings = [r for r in caplog.records if "check the bot's permissions" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 2
    assert "chat:2" in warnings[1].getMessage() and "blocked" in warnings[1].getMessage()


def test_forbidden_notices_remember_the_most_recent_rooms() -> None:
    notices = ForbiddenNotices(size=2)
    assert notices.first("a", "") and notices.first("b", "")
    assert not notices.first("a", "")  # a is now the most recent
    assert notices.first("c", "")  # b is forgotten
    assert notices.first("b", "") and not notices.first("c", "")
