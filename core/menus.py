"""The model list as core data: a page's text and its buttons, which each adapter maps onto its
own widgets (and button ids).

A page turn's button carries the page and the list's filter in its payload (`page_payload`); a
model's button carries the model's id. Where the models are buttons to press (`choices=True`), the
text only says which page this is and which model is the user's; else the text lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.render.surface import Button
from core.results import ModelPage
from core.texts import current_model_text, models_page_header, models_page_text

MODELS_PAGE_SIZE = 10  # models on one page of a model list
PREVIOUS_PAGE = "◀ Previous"
NEXT_PAGE = "Next ▶"
NO_MODELS = "The server lists no chat models."


@dataclass(frozen=True, slots=True)
class ModelMenu:
    """One page of the model list, as shown: its text and buttons."""

    page: ModelPage
    text: str
    choices: tuple[Button, ...] = ()  # "choose_model", one per model, when models are buttons
    turns: tuple[Button, ...] = ()  # "page": the previous and the next page, where there is one

    @property
    def buttons(self) -> tuple[Button, ...]:
        return self.choices + self.turns


def model_menu(page: ModelPage, *, choices: bool) -> ModelMenu:
    """The menu of `page`: with `choices`, each model is a button (the user's marked ✅);
    without, the text lists the models. Both turn pages with ◀ ▶ buttons."""
    if not choices:
        return ModelMenu(page, models_page_text(page), turns=_turns(page))
    if not page.items:
        return ModelMenu(page, NO_MODELS)
    buttons = tuple(
        Button("choose_model", f"✅ {m.id}" if m.id == page.current else m.id, m.id)
        for m in page.items
    )
    text = f"{models_page_header(page)}\n{current_model_text(page.current)}"
    return ModelMenu(page, text, buttons, _turns(page))


def _turns(page: ModelPage) -> tuple[Button, ...]:
    turns: list[Button] = []
    if page.page > 0:
        turns.append(Button("page", PREVIOUS_PAGE, page_payload(page.page - 1, page.query)))
    if page.page + 1 < page.pages:
        turns.append(Button("page", NEXT_PAGE, page_payload(page.page + 1, page.query)))
    return tuple(turns)


def page_payload(page: int, query: str) -> str:
    """The payload of a page turn's button: the page to show and the list's filter."""
    return f"{page}:{query}"


def parse_page_payload(payload: str) -> tuple[int, str] | None:
    """(page, filter) of a page turn's payload, None when it is not one."""
    number, _, query = payload.partition(":")
    return (int(number), query) if number.isdigit() and number.isascii() else None
