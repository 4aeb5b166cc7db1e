"""The short texts the Discord adapter shows for the core's results (no decisions are made here)."""

from __future__ import annotations

from core.render.surface import Button
from core.results import ConversationReset, ModelChosen, ModelPage, Status, SystemPromptSet

SORRY = "⚠️ Something went wrong on my side. Please try again."
NOT_STOPPABLE = "This answer is not running any more, or only its asker (or an admin) can stop it."
MAX_QUERY_IN_ID = 80  # custom ids hold at most 100 characters
PAGE_ACTION = "page"
PAGE_ID_PREFIX = f"g4f:{PAGE_ACTION}:"


def models_message(page: ModelPage) -> tuple[str, tuple[Button, ...]]:
    """One page of the model list, and the buttons to turn pages."""
    head = f"**Chat models** (page {page.page + 1}/{page.pages}, {page.total} in all"
    head += f", matching “{page.query}”)" if page.query else ")"
    lines = [head]
    for model in page.items:
        mark = "  ← yours" if model.id == page.current else ""
        lines.append(f"• `{model.id}`{mark}")
    if not page.items:
        lines.append("No model matches.")
    lines.append(f"Your model: `{page.current}`. Choose another with `/model`.")
    query = page.query[:MAX_QUERY_IN_ID]
    buttons: list[Button] = []
    if page.page > 0:
        buttons.append(Button(PAGE_ACTION, "◀ Previous", f"{page.page - 1}:{query}"))
    if page.page + 1 < page.pages:
        buttons.append(Button(PAGE_ACTION, "Next ▶", f"{page.page + 1}:{query}"))
    return "\n".join(lines), tuple(buttons)


def parse_page_id(custom_id: str) -> tuple[int, str] | None:
    """(page, query) of a page button's custom id, or None when it is not one."""
    if not custom_id.startswith(PAGE_ID_PREFIX):
        return None
    number, _, query = custom_id.removeprefix(PAGE_ID_PREFIX).partition(":")
    return (int(number), query) if number.isdigit() else None


def model_chosen_message(chosen: ModelChosen) -> str:
    where = "in this channel" if chosen.scope == "chat" else "everywhere"
    return f"✅ Your model is now `{chosen.model}` ({where})."


def reset_message(reset: ConversationReset) -> str:
    if reset.had_conversation:
        return "🧹 Done: your next message here starts a new conversation."
    return "There was no conversation to reset; your next message starts a new one."


def system_prompt_message(result: SystemPromptSet) -> str:
    if not result.prompt:
        return "✅ This channel's persona is back to none."
    return f"✅ This channel's persona is now:\n> {_shorten(result.prompt, 1500)}"


def status_message(status: Status) -> str:
    """The user's model, limits and this channel's conversation."""
    turns = status.conversation_turns
    lines = [
        f"**Model:** `{status.model}` (images: `{status.image_model}`)",
        f"**Requests left:** {status.requests_left} (limit {status.rate})",
        f"**Conversation here:** {f'{turns} messages' if turns else 'none'}",
        "**Persona:** "
        + (f"“{_shorten(status.system_prompt, 300)}”" if status.system_prompt else "none"),
    ]
    if status.busy:
        lines.append("⏳ An answer of yours is still coming in here.")
    if status.queue_waiting:
        lines.append(f"⏳ {status.queue_waiting} request(s) are waiting for a free slot.")
    lines += [f"**{key}:** {value}" for key, value in status.extra.items()]
    return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
