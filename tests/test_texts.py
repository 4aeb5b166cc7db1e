"""The shared texts every surface shows for the use cases' results."""

from __future__ import annotations

from core.api_models import ModelInfo
from core.results import ConversationReset, ModelChosen, ModelPage, Status, SystemPromptSet
from core.texts import model_chosen_text, models_page_text, persona_text, reset_text, status_text


def test_status_lines() -> None:
    status = Status(
        "gpt-4o", "flux", 3, "5/minute", 0, "", busy=True, queue_waiting=2,
        tokens_today=12345, conversation_tokens=0,
    )  # fmt: skip
    assert status_text(status) == (
        "Model: `gpt-4o` (images: `flux`)\n"
        "Requests left: 3 (limit 5/minute)\n"
        "Conversation: none\n"
        "Persona: none\n"
        "Tokens: 12,345 today (UTC), 0 in this conversation\n"
        "⏳ An answer of yours is still coming in here.\n"
        "⏳ 2 request(s) are waiting for a free slot."
    )


def test_models_page_marks_the_users_model() -> None:
    items = (ModelInfo("a", False, False), ModelInfo("b", False, False))
    page = ModelPage(items, page=1, pages=3, total=6, current="b", query="x")
    assert models_page_text(page) == (
        "Chat models (page 2 of 3, 6 in all, matching “x”)\n"
        "• `a`\n"
        "• `b`  ← yours\n"
        "Your model: `b`. Choose another with /model NAME or /models."
    )


def test_short_results() -> None:
    assert reset_text(ConversationReset(False)).startswith("There was no conversation here")
    assert persona_text(SystemPromptSet("")) == "✅ This chat has no persona now."
    assert persona_text(SystemPromptSet("x" * 2000)).endswith("x…")
    assert (
        model_chosen_text(ModelChosen("m", "chat"))
        == "✅ Your model is now `m` (in this chat only)."
    )


def test_echo_caps_with_an_ellipsis() -> None:
    from core.echo import MAX_ECHO, echo

    assert echo("x" * MAX_ECHO) == "x" * MAX_ECHO
    assert echo("x" * (MAX_ECHO + 1)) == "x" * (MAX_ECHO - 1) + "…"
    assert len(echo("y" * 5000)) == MAX_ECHO
    assert echo("abcdef", 3) == "ab…"
    assert model_chosen_text(ModelChosen("m" * 500, "user")).count("m") < 120
