"""What a chat or a user chooses: the model, the persona, web search, a fresh start."""

from __future__ import annotations

import difflib
import math

from core.api_models import ModelInfo
from core.bridge.base import BridgeBase, ModelKind, apologizes, chat_scope, user_scope
from core.conversations import Origin
from core.echo import echo
from core.errors import UpstreamError
from core.menus import MODELS_PAGE_SIZE
from core.results import (
    ConversationReset,
    ModelChosen,
    ModelPage,
    ModelScope,
    Refusal,
    RefusalReason,
    SystemPromptSet,
    WebSearchSet,
)
from core.text import clean_text


class Preferences(BridgeBase):
    """The model, the persona and web search a chat or user chose, and a fresh start."""

    async def _models(self, origin: Origin) -> list[ModelInfo] | Refusal:
        """The API's models, for someone allowed here."""
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        try:
            return await self.client.list_models()
        except UpstreamError as exc:
            return Refusal(RefusalReason.UPSTREAM, exc.user_message)

    @apologizes
    async def models(
        self,
        origin: Origin,
        *,
        query: str = "",
        page: int = 0,
        page_size: int = MODELS_PAGE_SIZE,
        kind: ModelKind = "chat",
    ) -> ModelPage | Refusal:
        """One page of the models (chat models by default), filtered by a substring."""
        models = await self._models(origin)
        if isinstance(models, Refusal):
            return models
        needle = query.strip().lower()
        chosen = [
            m
            for m in models
            if (kind == "all" or m.draws_images == (kind == "image"))
            and (kind == "all" or not m.is_provider)
            and needle in m.id.lower()
        ]
        pages = max(1, math.ceil(len(chosen) / page_size))
        page = min(max(page, 0), pages - 1)
        current = self.settings.g4f_image_model if kind == "image" else await self.model_for(origin)
        return ModelPage(
            items=tuple(chosen[page * page_size : (page + 1) * page_size]),
            page=page,
            pages=pages,
            total=len(chosen),
            current=current,
            query=query,
        )

    @apologizes
    async def set_model(
        self, origin: Origin, name: str, *, scope: ModelScope = "user"
    ) -> ModelChosen | Refusal:
        """Choose the user's model (everywhere, or only in this chat), checked against the API."""
        name = clean_text(name)
        models = await self._models(origin)
        if isinstance(models, Refusal):
            return models
        usable = {m.id: m for m in models if not m.draws_images and not m.is_provider}
        wanted = name.strip().lower()
        exact = usable.get(name) or next(
            (m for m in usable.values() if m.id.lower() == wanted), None
        )
        if exact is None:
            provider = next(
                (m.id for m in models if m.is_provider and m.id.lower() == wanted), None
            )
            if provider is not None:
                return Refusal(RefusalReason.IS_PROVIDER, self._provider_hint(provider))
            close = tuple(difflib.get_close_matches(name.strip(), list(usable), n=3, cutoff=0.5))
            hint = f" Did you mean {', '.join(close)}?" if close else " See /models for the list."
            return Refusal(
                RefusalReason.UNKNOWN_MODEL,
                f"The server has no chat model called {echo(name)!r}.{hint}",
                suggestions=close,
            )
        scope_key = user_scope(origin, per_chat=scope == "chat")
        await self.store.set_preference(scope_key, "model", exact.id)
        return ModelChosen(exact.id, scope)

    def _provider_hint(self, provider: str) -> str:
        """Why a provider's name is no model, and the one way to pin a provider here."""
        head = f"{provider!r} is a provider, not a model: choose a chat model from /models."
        if (self.settings.g4f_provider or "").lower() == provider.lower():
            return f"{head} Every answer already comes from {provider}."
        return (
            f"{head} A provider can only be pinned for the whole bot, by its operator "
            f"(the G4F_PROVIDER setting)."
        )

    @apologizes
    async def set_system_prompt(self, origin: Origin, text: str) -> SystemPromptSet | Refusal:
        """Set this chat's system prompt (admins only); empty text restores the default."""
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        if not self.is_admin(origin):
            return Refusal(RefusalReason.NOT_ADMIN, "Only the bot's admins can change its persona.")
        text = clean_text(text).strip()
        await self.store.set_preference(chat_scope(origin), "system_prompt", text or None)
        return SystemPromptSet(text or self.settings.bridge_system_prompt)

    @apologizes
    async def reset(self, origin: Origin) -> ConversationReset | Refusal:
        """Start a new conversation in this chat."""
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        had = await self.store.get_head(origin.chat) is not None
        await self.store.clear_head(origin.chat)
        return ConversationReset(had)

    @apologizes
    async def set_web_search(
        self, origin: Origin, on: bool | None = None
    ) -> WebSearchSet | Refusal:
        """Turn web search on or off for this chat (None: the other way round)."""
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        if on is None:
            on = not await self.web_search_for(origin)
        await self.store.set_preference(chat_scope(origin), "web_search", "on" if on else None)
        return WebSearchSet(on)
