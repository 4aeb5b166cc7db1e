"""Typed results of the use cases. Adapters render these; nothing is raised at them.

Every failure is a `Refusal` (the request was not carried out: not allowed, too fast, busy, bad
input) or, for answers and images, an outcome that carries the user message of the client's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from core.api_models import ModelInfo
from core.render.renderer import Outcome
from core.render.surface import MessageRef
from core.usage import TokenCount


class RefusalReason(StrEnum):
    NOT_ALLOWED = "not_allowed"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    NOT_ADMIN = "not_admin"
    EMPTY = "empty"
    UNKNOWN_MODEL = "unknown_model"
    IS_PROVIDER = "is_provider"  # a provider's name where a model's was expected
    NOT_FOUND = "not_found"
    UPSTREAM = "upstream"
    UNAVAILABLE = "unavailable"  # shutting down, or the conversation store is unreachable
    FAILED = "failed"  # something below the use case broke; the message apologises
    UNSUPPORTED = "unsupported"  # attachments of a kind the bridge does not read


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request was not carried out; `message` says why, fit to show the user.

    `quiet`: the user was already told (e.g. the allowlist refusal is given once); show nothing.
    """

    reason: RefusalReason
    message: str
    quiet: bool = False
    suggestions: tuple[str, ...] = ()
    retry_after: float | None = None

    @property
    def shown(self) -> str | None:
        """The message to show the user; None when quiet (they were told already)."""
        return None if self.quiet else self.message


class StopResult(StrEnum):
    """What pressing Stop on a message did."""

    STOPPED = "stopped"  # the answer ends in place ("⏹ Stopped.")
    FINISHED = "finished"  # nothing is being written in that message any more
    NOT_YOURS = "not_yours"  # it is being written, for someone else (and the presser no admin)


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer was streamed (or failed visibly) on the surface."""

    outcome: Outcome
    text: str
    model: str
    messages: tuple[MessageRef, ...]
    turn_id: int | None
    history_trimmed: bool = False
    error: str | None = None
    finish_reason: str | None = None  # "length": cut at the model's limit (Continue offered)
    tokens: TokenCount | None = None  # what the answer used (reported, or estimated)


@dataclass(frozen=True, slots=True)
class Imagined:
    """An image was uploaded, or `error` was shown in its place."""

    model: str
    message: MessageRef | None
    error: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ModelPage:
    """One page of the model list."""

    items: tuple[ModelInfo, ...]
    page: int  # 0-based
    pages: int
    total: int
    current: str
    query: str = ""


ModelScope = Literal["user", "chat"]  # the user's model everywhere, or in one chat only


@dataclass(frozen=True, slots=True)
class ModelChosen:
    model: str
    scope: ModelScope


@dataclass(frozen=True, slots=True)
class SystemPromptSet:
    prompt: str  # "" when cleared


@dataclass(frozen=True, slots=True)
class WebSearchSet:
    """Web search is now on (or off) for the chat's answers."""

    on: bool


@dataclass(frozen=True, slots=True)
class ConversationReset:
    had_conversation: bool


@dataclass(frozen=True, slots=True)
class Status:
    model: str
    image_model: str
    requests_left: int
    rate: str
    conversation_turns: int
    system_prompt: str
    busy: bool
    queue_waiting: int
    limits_degraded: bool = False  # the shared limits backend is down: limits are per process
    tokens_today: int = 0  # the user's tokens since midnight UTC, on this platform
    web_search: bool = False  # answers in this chat search the web (/web)
    conversation_tokens: int = 0  # this chat's current conversation's tokens
    extra: dict[str, str] = field(default_factory=dict)
