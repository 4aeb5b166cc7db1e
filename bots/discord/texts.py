"""The Discord-only texts and ids: the apology, and the model list's page-turn custom ids."""

from __future__ import annotations

from core.menus import parse_page_payload

SORRY = "⚠️ Something went wrong on my side. Please try again."
PAGE_ID_PREFIX = "g4f:page:"  # a page turn (core.menus): g4f:page:<page>:<filter>


def parse_page_id(custom_id: str) -> tuple[int, str] | None:
    """(page, query) of a page button's custom id, or None when it is not one."""
    if not custom_id.startswith(PAGE_ID_PREFIX):
        return None
    return parse_page_payload(custom_id.removeprefix(PAGE_ID_PREFIX))
