"""What the user reads for each use case's result, in one place for every surface.

Texts are light markdown (code spans for model names, a quote for a persona) that reads well both
rendered (by the platform, or converted by its adapter) and raw (the terminal).
"""

from __future__ import annotations

from core.echo import echo
from core.results import (
    ConversationReset,
    ModelChosen,
    ModelPage,
    Refusal,
    Status,
    StopResult,
    SystemPromptSet,
    WebSearchSet,
)

STOP_TEXTS: dict[StopResult, str] = {
    StopResult.STOPPED: "⏹ Stopping…",
    StopResult.FINISHED: (
        "This answer has already finished. For a new one, press 🔁 Regenerate or ask again."
    ),
    StopResult.NOT_YOURS: "Only the person who asked (or an admin) can stop this answer.",
}
# The results of the commands that answer with a few lines of text.
Reply = ModelChosen | SystemPromptSet | ConversationReset | Status | WebSearchSet
STALE_BUTTON = "This button is no longer valid. Ask again, or open /models for a fresh list."


def shorten(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def models_page_header(page: ModelPage) -> str:
    """The first line of a model list: which page, how many, the filter."""
    head = f"Chat models (page {page.page + 1} of {page.pages}, {page.total} in all"
    return head + (f", matching “{echo(page.query)}”)" if page.query else ")")


def models_page_text(page: ModelPage) -> str:
    """A page of the model list, the user's model marked, and how to choose another."""
    lines = [models_page_header(page)]
    lines += [f"• `{m.id}`" + ("  ← yours" if m.id == page.current else "") for m in page.items]
    if not page.items:
        lines.append("No model matches.")
    lines.append(current_model_text(page.current))
    return "\n".join(lines)


def current_model_text(model: str) -> str:
    return f"Your model: `{echo(model)}`. Choose another with /model NAME or /models."


def model_chosen_text(chosen: ModelChosen) -> str:
    where = " (in this chat only)" if chosen.scope == "chat" else ""
    return f"✅ Your model is now `{echo(chosen.model)}`{where}."


def stop_text(result: StopResult) -> str:
    """What the person who pressed Stop is told."""
    return STOP_TEXTS[result]


def reset_text(reset: ConversationReset) -> str:
    if reset.had_conversation:
        return "🆕 Started a new conversation."
    return "There was no conversation here to reset; your next message starts a new one."


def persona_text(result: SystemPromptSet) -> str:
    if not result.prompt:
        return "✅ This chat has no persona now."
    return f"✅ This chat's persona is now:\n> {shorten(result.prompt, 1500)}"


LIMITS_DEGRADED_LINE = (
    "⚠️ Shared limits are unavailable (Redis is down): rate limits apply per process until it "
    "is back."
)


def status_text(status: Status) -> str:
    """The user's model, limits left, and this chat's conversation."""
    turns = status.conversation_turns
    persona = status.system_prompt.strip()
    lines = [
        f"Model: `{echo(status.model)}` (images: `{echo(status.image_model)}`)",
        f"Requests left: {status.requests_left} (limit {status.rate})",
        f"Conversation: {turns} messages" if turns else "Conversation: none",
        "Persona: " + (f"“{shorten(persona, 300)}”" if persona else "none"),
        f"Tokens: {status.tokens_today:,} today (UTC), "
        f"{status.conversation_tokens:,} in this conversation",
    ]
    if status.busy:
        lines.append("⏳ An answer of yours is still coming in here.")
    if status.queue_waiting:
        lines.append(f"⏳ {status.queue_waiting} request(s) are waiting for a free slot.")
    if status.web_search:
        lines.append("🔎 Web search is on in this chat.")
    if status.limits_degraded:
        lines.append(LIMITS_DEGRADED_LINE)
    lines += [f"{key}: {value}" for key, value in status.extra.items()]
    return "\n".join(lines)


def web_search_text(result: WebSearchSet) -> str:
    """What /web without a question says."""
    if result.on:
        return "🔎 Web search is on in this chat: answers may search the web and list sources."
    return "Web search is off in this chat."


def reply_text(result: Reply | Refusal) -> str:
    """What a command's result says: its text, or the refusal's message (plain text, not
    markdown; whether a quiet refusal is shown at all is the caller's: `Refusal.shown`)."""
    if isinstance(result, Refusal):
        return result.message
    if isinstance(result, ModelChosen):
        return model_chosen_text(result)
    if isinstance(result, SystemPromptSet):
        return persona_text(result)
    if isinstance(result, ConversationReset):
        return reset_text(result)
    if isinstance(result, Status):
        return status_text(result)
    return web_search_text(result)
