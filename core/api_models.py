"""Typed shapes of the G4F / OpenAI-compatible API.

Reply models accept unknown fields and explicit nulls: servers add fields (g4f adds `provider`,
usage extras, null `reasoning`/`tool_calls`) and we must not break on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TextPart(BaseModel):
    """A text part of a message's content (OpenAI content parts)."""

    type: Literal["text"] = "text"
    text: str


class ImageUrl(BaseModel):
    url: str  # a data URI (data:image/png;base64,...): the bridge sends images inline


class ImagePart(BaseModel):
    """An image part of a message's content (OpenAI content parts)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


ContentPart = TextPart | ImagePart


class ChatMessage(BaseModel):
    """One message of a chat request: plain text, or content parts (text and images)."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]

    def text_for_count(self) -> str:
        """The message's text (its text parts joined), for budgets and estimates."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def has_images(self) -> bool:
        return not isinstance(self.content, str) and any(
            isinstance(p, ImagePart) for p in self.content
        )


class ChatRequest(BaseModel):
    """The body of POST /chat/completions."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    provider: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    web_search: bool | None = None  # g4f: let the provider search the web (None: not sent)

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Usage(_Lenient):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class _Message(_Lenient):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None


class _Choice(_Lenient):
    index: int | None = 0
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None


class ChatCompletion(_Lenient):
    """A whole (non-streamed) reply, or one streamed chunk (choices carry `delta`)."""

    id: str | None = None
    model: str | None = None
    provider: str | None = None
    choices: list[_Choice] = Field(default_factory=list)
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """One step of a streamed answer. Empty strings mean nothing new of that kind."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole answer."""

    text: str
    reasoning: str
    model: str
    provider: str | None
    finish_reason: str | None
    usage: Usage | None


class ModelEntry(_Lenient):
    id: str
    provider: bool | None = False
    image: bool | None = False
    vision: bool | None = False
    owned_by: str | None = None


class ModelList(_Lenient):
    data: list[ModelEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model the server offers. `is_provider` marks providers listed as models."""

    id: str
    is_provider: bool
    draws_images: bool


class ImageItem(_Lenient):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(_Lenient):
    data: list[ImageItem] = Field(default_factory=list)
    model: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """Image bytes ready to upload."""

    data: bytes
    content_type: str
    revised_prompt: str | None
    model: str

    @property
    def extension(self) -> str:
        return {
            "image/png": "png",
            "image/jpeg": "jpg",
            "image/webp": "webp",
            "image/gif": "gif",
        }.get(self.content_type, "img")
