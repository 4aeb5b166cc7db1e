"""The Discord-only texts: the apology and the model list's page buttons."""

from __future__ import annotations

from core.render.surface import Button
from core.results import ModelPage
from core.texts import models_page_text

SORRY = "⚠️ Something went wrong on my side. Please try again."
MAX_QUERY_IN_ID = 80  # custom ids hold at most 100 characters
PAGE_ACTION = "page"
PAGE_ID_PREFIX = f"g4f:{PAGE_ACTION}:"


def models_message(page: ModelPage) -> tuple[str, tuple[Button, ...]]:
    """One page of the model list, and the buttons to turn pages."""
    query = page.query[:MAX_QUERY_IN_ID]
    buttons: list[Button] = []
    if page.page > 0:
        buttons.append(Button(PAGE_ACTION, "◀ Previous", f"{page.page - 1}:{query}"))
    if page.page + 1 < page.pages:
        buttons.append(Button(PAGE_ACTION, "Next ▶", f"{page.page + 1}:{query}"))
    return models_page_text(page), tuple(buttons)


def parse_page_id(custom_id: str) -> tuple[int, str] | None:
    """(page, query) of a page button's custom id, or None when it is not one."""
    if not custom_id.startswith(PAGE_ID_PREFIX):
        return None
    number, _, query = custom_id.removeprefix(PAGE_ID_PREFIX).partition(":")
    return (int(number), query) if number.isdigit() else None
