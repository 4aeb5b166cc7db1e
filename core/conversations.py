"""Conversations: where a new message continues, and the history sent with it.

Rules:
- Replying to a bot answer continues that answer's branch; replying to an older answer forks a new
  branch from it (turns form a tree in the store).
- In a private chat, a message that is not a reply continues the chat's latest conversation, until
  it is reset or has been idle for the configured minutes.
- Elsewhere, a message that is not a reply starts a new conversation.
- History is trimmed oldest first to a message count and a character budget; the system prompt
  and the new message are never dropped, and the result says whether anything was left out.
- Images kept with a question go with it while it is in the history (core.attachments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.api_models import ChatMessage, ContentPart, TextPart
from core.attachments import MAX_IMAGES_SENT, StoredImage
from core.store.base import ChatKey, ConversationStore, MessageKey, Role, Turn


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request comes from, in platform-neutral terms: the platform, the chat (and the
    space it belongs to, if any), the user who wrote it, and who they are to the bot.

    `is_operator`: the person running the bot (the terminal chat): always allowed, an admin.
    """

    platform: str
    chat_id: str
    user_id: str
    space_id: str | None = None  # the group of rooms the chat belongs to, if any
    is_private: bool = False
    is_operator: bool = False

    @property
    def chat(self) -> ChatKey:
        return ChatKey(self.platform, self.chat_id)

    def message(self, message_id: str) -> MessageKey:
        return MessageKey(self.platform, self.chat_id, message_id)


@dataclass(frozen=True, slots=True)
class History:
    """The messages to send, and whether earlier turns were left out."""

    messages: list[ChatMessage]
    trimmed: bool


async def find_parent(
    store: ConversationStore,
    origin: Origin,
    *,
    reply_to: str | None,
    now: float,
    idle_seconds: float,
) -> int | None:
    """The turn a new message continues, or None for a new conversation."""
    if reply_to is not None:
        turn_id = await store.turn_for_message(origin.message(reply_to))
        if turn_id is not None:
            return turn_id
    if not origin.is_private:
        return None
    head = await store.get_head(origin.chat)
    if head is None:
        return None
    if idle_seconds > 0 and now - head.updated_at > idle_seconds:
        return None
    return head.turn_id


def build_history(
    system_prompt: str,
    earlier: list[Turn],
    prompt: str,
    *,
    max_messages: int,
    max_chars: int,
    images: Mapping[int, Sequence[StoredImage]] | None = None,
    new_images: Sequence[StoredImage] = (),
) -> History:
    """System prompt + as many of the newest earlier turns as fit + the new prompt.

    `images`: the images kept with earlier turns, by turn id; only turns that fit carry theirs,
    and at most `MAX_IMAGES_SENT` images go in all, the new message's first, then the newest.
    """
    fixed: list[ChatMessage] = []
    if system_prompt:
        fixed.append(ChatMessage(role="system", content=system_prompt))
    budget_chars = max_chars - len(system_prompt) - len(prompt)
    budget_messages = max_messages - 1  # the new message always goes
    kept: list[Turn] = []
    for turn in reversed([t for t in earlier if t.role != "system"]):
        if len(kept) >= budget_messages or len(turn.content) > budget_chars:
            break
        budget_chars -= len(turn.content)
        kept.append(turn)
    kept.reverse()
    # A history that starts with an assistant turn lost its question: drop it too.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    trimmed = len([t for t in earlier if t.role != "system"]) > len(kept)
    room = max(0, MAX_IMAGES_SENT - len(new_images))
    pictures: dict[int, list[StoredImage]] = {}
    for turn in reversed(kept):  # the newest images first
        for image in reversed((images or {}).get(turn.id, ())):
            if room <= 0:
                break
            pictures.setdefault(turn.id, []).insert(0, image)
            room -= 1
    messages = [_message(t.role, t.content, pictures.get(t.id, ())) for t in kept]
    new = _message("user", prompt, new_images[:MAX_IMAGES_SENT])
    return History([*fixed, *messages, new], trimmed)


def _message(role: Role, text: str, images: Sequence[StoredImage]) -> ChatMessage:
    if role == "system":
        return ChatMessage(role="system", content=text)
    if not images or role != "user":
        return ChatMessage(role=role, content=text)
    parts: list[ContentPart] = [TextPart(text=text), *(image.part() for image in images)]
    return ChatMessage(role="user", content=parts)
