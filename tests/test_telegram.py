"""The Telegram adapter end to end: the real PTB Application against FakeTelegram over loopback.

The bridge and the emulator share one ScaledClock, so Telegram's 1-second limits pass quickly in
real time while every rule (and every 429 the emulator would give) still holds in clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bots.telegram.app import serve
from bots.telegram.format import to_entities, utf16_len
from bots.telegram.settings import TelegramSettings
from core.bridge import Bridge
from core.client import G4FClient
from core.store.base import MessageKey, open_store
from tests.conftest import MakeSettings, cancel_task, split_section, until_ready
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.telegram_server import FakeMessage, FakeTelegram

FACTOR = 20.0
PRIVATE = 4242
GROUP = -100555
ANN, BOB, CID = 1001, 1002, 1003
WRITES = {"sendmessage", "editmessagetext", "sendphoto", "editmessagereplymarkup"}


@dataclass
class Harness:
    """One emulated Telegram, one emulated G4F, and the adapter serving between them."""

    fake: FakeTelegram
    g4f: FakeG4F
    clock: ScaledClock
    make_settings: MakeSettings
    bridge: Bridge | None = None
    task: asyncio.Task[None] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    async def start(self, **overrides: Any) -> None:
        """Open a bridge on the shared SQLite file and serve Telegram until `stop`."""
        self.overrides = {**self.overrides, **overrides}
        section, rest = split_section(
            TelegramSettings,
            {
                "telegram_token": self.fake.token,
                "telegram_base_url": self.fake.base_url,
                "telegram_base_file_url": self.fake.base_file_url,
                **self.overrides,
            },
        )
        settings = self.make_settings(**rest)
        store = open_store(settings.bridge_store_url)
        await store.open()
        client = G4FClient(settings, clock=self.clock)
        self.bridge = Bridge(settings, client=client, store=store, clock=self.clock)
        ready = asyncio.Event()
        self.task = asyncio.create_task(serve(self.bridge, section, ready=ready))
        await until_ready(self.task, ready)

    async def stop(self) -> None:
        if self.task is not None:
            await cancel_task(self.task)
            self.task = None
        if self.bridge is not None:
            await self.bridge.close()
            self.bridge = None

    # --- driving and looking --------------------------------------------------------------
    def ask(self, chat: int, text: str, *, user: int = ANN, **kw: Any) -> int:
        """A user writes `text`; its message id."""
        chat_type = "private" if chat > 0 else "supergroup"
        return int(
            self.fake.push_text(chat, text, user_id=user, chat_type=chat_type, **kw)["message_id"]
        )

    def bot(self, chat: int) -> list[FakeMessage]:
        return self.fake.bot_messages(chat)

    async def until(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        await self.fake.wait_for(predicate, timeout=seconds)

    async def finished(self, chat: int, count: int = 1) -> list[FakeMessage]:
        """Wait until `count` answers in `chat` show their final state (the core stores an
        answer before its final write, so it is stored by then too)."""
        await self.until(lambda: len([m for m in self.bot(chat) if _has(m, "regen")]) >= count)
        return self.bot(chat)

    async def streaming(self, chat: int, prompt: str, word: str, *, command: str = "") -> None:
        """Start a slow 100-word answer of `word0 word1 …` and wait until `word2` shows."""
        await self.start(g4f_default_model="trickle")
        self.g4f.trickle_interval = 0.05
        self.g4f.answers[prompt] = _words(100, word)
        self.ask(chat, f"{command} {prompt}".strip())
        seen = f"{word}2"
        await self.until(
            lambda: (
                any(seen in (m.text or "") for m in self.bot(chat))
                or any(seen in text for _, text in self.fake.drafts(chat))
            )
        )

    def writes(self, chat: int) -> list[float]:
        return [
            c.at for c in self.fake.calls if c.ok and c.chat_id == chat and c.name.lower() in WRITES
        ]

    def assert_clean(self) -> None:
        """No 429 was provoked, and no edit that changed nothing."""
        assert self.fake.rate_limited == 0
        assert not [c for c in self.fake.calls if "not modified" in (c.description or "")]
        assert not [c for c in self.fake.calls if c.error_code == 500]


def _has(message: FakeMessage, data: str) -> bool:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return any(button.get("callback_data") == data for row in rows for button in row)


def _buttons(message: FakeMessage) -> list[str]:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return [str(button["callback_data"]) for row in rows for button in row]


def _shown(answer: str) -> str:
    """The text Telegram shows for markdown `answer`."""
    return to_entities(answer)[0]


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


@pytest.fixture
async def harness(g4f: FakeG4F, make_settings: MakeSettings) -> AsyncIterator[Harness]:
    clock = ScaledClock(FACTOR)
    async with FakeTelegram(clock=clock.now) as fake:
        h = Harness(fake, g4f, clock, make_settings)
        try:
            yield h
        finally:
            await h.stop()


@pytest.fixture
async def tg(harness: Harness) -> Harness:
    await harness.start()
    return harness


# --- streaming ---------------------------------------------------------------------------------


async def test_private_answer_streams_as_drafts_then_one_message(tg: Harness) -> None:
    answer = _words(80, "draftword")
    tg.g4f.answers["tell me a story"] = answer
    tg.g4f.stream_delay = 0.01
    tg.ask(PRIVATE, "tell me a story")
    [message] = await tg.finished(PRIVATE)
    assert message.text == answer
    assert message.reply_to is None  # private chats need no reply
    drafts = tg.fake.drafts(PRIVATE)
    assert len(drafts) >= 2
    assert len({draft_id for draft_id, _ in drafts}) == 1 and drafts[0][0] != 0
    assert all(answer.startswith(text.removesuffix(" ▌")) for _, text in drafts)
    assert tg.fake.calls_named("editMessageText") == []
    # "typing" shows until the first draft, nothing else
    actions = tg.fake.calls_named("sendChatAction")
    assert actions and {c.params["action"] for c in actions} == {"typing"}
    assert actions[0].at <= tg.fake.calls_named("sendMessageDraft")[0].at
    tg.assert_clean()


async def test_group_answer_starts_with_its_first_text_and_edits_in_place(tg: Harness) -> None:
    answer = _words(60, "groupword")
    tg.g4f.answers["explain groups"] = answer
    tg.g4f.stream_delay = 0.01
    asked = tg.ask(GROUP, "/ask explain groups")
    [message] = await tg.finished(GROUP)
    first = tg.fake.calls_named("sendMessage")[0]
    assert first.params["text"].startswith("groupword0")  # no placeholder spent a write first
    assert first.params["reply_parameters"]["message_id"] == asked
    assert _buttons(message) == ["regen"]
    assert message.text == answer and message.reply_to == asked and message.edits >= 2
    assert tg.fake.drafts(GROUP) == []
    tg.assert_clean()


async def test_three_answers_at_once_in_one_group_without_429(tg: Harness) -> None:
    tg.g4f.stream_delay = 0.01
    asked = {}
    for user in (ANN, BOB, CID):
        tg.g4f.answers[f"question of {user}"] = _words(40, f"u{user}w")
        asked[user] = tg.ask(GROUP, f"/ask question of {user}", user=user)
    messages = await tg.finished(GROUP, count=3)
    assert len(messages) == 3
    by_asker = {m.reply_to: m.text for m in messages}
    assert by_asker == {asked[u]: _words(40, f"u{u}w") for u in (ANN, BOB, CID)}
    first_texts = [
        c.params["reply_parameters"]["message_id"] for c in tg.fake.calls_named("sendMessage")
    ]
    assert first_texts == [asked[u] for u in (ANN, BOB, CID)]  # visible in the order asked
    times = tg.writes(GROUP)
    assert all(b - a >= 60.0 for a, b in zip(times, times[20:], strict=False))  # 20 a minute
    tg.assert_clean()


def _long_answer() -> str:
    """Over 10,000 characters: prose and code blocks, one of them longer than a message."""
    sections = []
    for n in range(8):
        code = "\n".join(f"value_{n}_{i} = compute({i}, {n})  # step {i}" for i in range(18))
        sections.append(
            f"Section {n} explains **item {n}** in plain words.\n\n```python\n{code}\n```"
        )
    huge = "\n".join(f"value_big_{i} = compute({i}, 'big')  # a long block" for i in range(130))
    sections.append(f"And one block longer than a message:\n\n```python\n{huge}\n```")
    return "\n\n".join(sections)


async def test_long_answer_with_code_is_split_into_valid_messages(tg: Harness) -> None:
    answer = _long_answer()
    assert len(answer) > 10_000
    tg.g4f.answers["long please"] = answer
    tg.g4f.chunk_size_words = 40
    tg.g4f.stream_delay = 0.002
    tg.ask(PRIVATE, "long please")
    messages = await tg.finished(PRIVATE)
    assert len(messages) >= 3
    for message in messages:
        assert message.text is not None and utf16_len(message.text) <= 4096
        assert "▌" not in message.text
        pres = [e for e in message.entities if e["type"] == "pre"]
        lines = message.text.split("\n")
        code_lines = [line for line in lines if line.startswith("value_")]
        assert code_lines and pres  # every part carries code, as pre entities
        covered = "".join(_utf16_slice(message.text, e["offset"], e["length"]) for e in pres)
        assert all(line in covered for line in code_lines)
    shown = "\n".join(m.text or "" for m in messages)
    for line in answer.split("\n"):
        if line and not line.startswith("```"):
            assert line.replace("**", "") in shown
    tg.assert_clean()


def _utf16_slice(text: str, offset: int, length: int) -> str:
    raw = text.encode("utf-16-le")
    return raw[offset * 2 : (offset + length) * 2].decode("utf-16-le")


# --- stop, regenerate, failures ----------------------------------------------------------------


async def test_stop_button_ends_a_trickling_answer(harness: Harness) -> None:
    await harness.start(g4f_default_model="trickle")
    harness.g4f.trickle_interval = 0.05
    harness.g4f.answers["slowly"] = _words(100, "slow")
    harness.ask(GROUP, "/ask slowly")
    await harness.until(
        lambda: any("slow3" in (m.text or "") and _has(m, "stop") for m in harness.bot(GROUP))
    )
    [streaming] = harness.bot(GROUP)
    harness.fake.push_callback(GROUP, streaming.message_id, "stop", user_id=ANN)
    [message] = await harness.finished(GROUP)
    assert message.text is not None and message.text.endswith("⏹ Stopped.")
    assert "slow99" not in message.text
    await harness.until(lambda: harness.g4f.open_requests == 0, seconds=2)
    assert [c.ok for c in harness.fake.calls_named("answerCallbackQuery")] == [True]
    harness.assert_clean()


async def test_stop_command_and_other_users_cannot_stop(harness: Harness) -> None:
    await harness.streaming(GROUP, "slowly", "slow", command="/ask")
    [streaming] = harness.bot(GROUP)
    harness.fake.push_callback(GROUP, streaming.message_id, "stop", user_id=BOB)
    await harness.until(lambda: len(harness.fake.calls_named("answerCallbackQuery")) == 1)
    assert "Stopped" not in (harness.bot(GROUP)[0].text or "")
    harness.ask(GROUP, "/stop")
    [message] = await harness.finished(GROUP)
    assert message.text is not None and message.text.endswith("⏹ Stopped.")
    harness.assert_clean()


async def test_stop_command_stops_a_drafted_answer(harness: Harness) -> None:
    await harness.streaming(PRIVATE, "slowly", "slow")
    assert harness.bot(PRIVATE) == []  # only a draft so far: no message to put a button on
    harness.ask(PRIVATE, "/stop")
    [message] = await harness.finished(PRIVATE)
    assert message.text is not None and message.text.endswith("⏹ Stopped.")
    assert "slow99" not in message.text
    await harness.until(lambda: harness.g4f.open_requests == 0, seconds=2)
    harness.ask(PRIVATE, "/stop")
    await harness.until(lambda: len(harness.bot(PRIVATE)) == 2)
    assert harness.bot(PRIVATE)[1].text == "There is no answer of yours being written here."
    harness.assert_clean()


async def test_regenerate_answers_the_same_question_again(tg: Harness) -> None:
    asked = tg.ask(GROUP, "/ask roll a die")
    [first] = await tg.finished(GROUP)
    tg.fake.push_callback(GROUP, first.message_id, "regen", user_id=ANN)
    messages = await tg.finished(GROUP, count=2)
    assert [m.text for m in messages] == ["You said: roll a die"] * 2
    assert messages[1].reply_to == asked
    prompts = [r.json["messages"][-1]["content"] for r in tg.g4f.chat_requests()]
    assert prompts == ["roll a die", "roll a die"]
    assert [c.ok for c in tg.fake.calls_named("answerCallbackQuery")] == [True]
    tg.assert_clean()


async def test_upstream_error_midstream_keeps_text_and_adds_warning(harness: Harness) -> None:
    await harness.start(g4f_default_model="midstream-error")
    answer = _words(30, "partial")
    harness.g4f.answers["break"] = answer
    harness.ask(PRIVATE, "break")
    await harness.until(lambda: any("⚠️" in (m.text or "") for m in harness.bot(PRIVATE)))
    [message] = harness.bot(PRIVATE)
    assert message.text is not None
    kept, _, warning = message.text.partition("\n\n⚠️ ")
    assert kept and answer.startswith(kept) and kept != answer
    assert warning
    harness.assert_clean()


async def test_deleted_message_ends_the_stream_and_the_request(harness: Harness) -> None:
    await harness.streaming(GROUP, "to delete", "gone", command="/ask")
    [streaming] = harness.bot(GROUP)
    harness.fake.delete_message(GROUP, streaming.message_id)
    await harness.until(lambda: harness.g4f.open_requests == 0, seconds=2)
    failed = [c for c in harness.fake.calls_named("editMessageText") if not c.ok]
    assert [c.description for c in failed] == ["Bad Request: message to edit not found"]
    assert harness.bot(GROUP) == []
    harness.assert_clean()


async def test_a_chat_that_forbids_writes_is_logged_once(
    tg: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    tg.fake.block(PRIVATE)

    def refused_texts() -> int:  # each answer ends at its first refused text
        texts = ("sendmessagedraft", "sendmessage")
        return len([c for c in tg.fake.calls if c.error_code == 403 and c.name.lower() in texts])

    tg.ask(PRIVATE, "first try")
    await tg.until(lambda: refused_texts() >= 1)
    tg.ask(PRIVATE, "second try")  # a new answer on a new surface, in the same chat
    await tg.until(lambda: refused_texts() >= 2)
    await tg.stop()  # every handler has finished (and logged) by now
    assert len(tg.g4f.chat_requests()) == 2
    warnings = [r for r in caplog.records if "check the bot's permissions" in r.getMessage()]
    assert len(warnings) == 1 and f"telegram:{PRIVATE}" in warnings[0].getMessage()
    assert tg.bot(PRIVATE) == []


# --- images ------------------------------------------------------------------------------------


async def test_imagine_uploads_the_picture_with_a_caption(tg: Harness) -> None:
    asked = tg.ask(GROUP, "/imagine a red fox")
    await tg.until(lambda: any(m.photo for m in tg.bot(GROUP)))
    [photo] = tg.bot(GROUP)
    assert photo.photo == tg.g4f.image_bytes
    assert photo.caption is not None and "a red fox" in photo.caption and "flux" in photo.caption
    assert photo.reply_to == asked
    assert {c.params["action"] for c in tg.fake.calls_named("sendChatAction")} == {"upload_photo"}
    tg.assert_clean()


async def test_imagine_failure_is_shown_as_a_message(harness: Harness) -> None:
    await harness.start(g4f_image_model="img-fail")
    harness.ask(PRIVATE, "/imagine a broken fox")
    await harness.until(lambda: len(harness.bot(PRIVATE)) == 1)
    [message] = harness.bot(PRIVATE)
    assert message.photo is None and message.text is not None and message.text.startswith("⚠️")
    harness.assert_clean()


# --- access, models, commands ------------------------------------------------------------------


async def test_allowlist_refuses_once_then_stays_quiet(harness: Harness) -> None:
    allowed = 777
    await harness.start(allowed_user_ids=str(allowed))
    harness.ask(PRIVATE, "hello?")
    await harness.until(lambda: len(harness.bot(PRIVATE)) == 1)
    harness.ask(PRIVATE, "anyone?")
    harness.ask(PRIVATE, "/status")
    # Updates are handled in order; once the allowed user has an answer, the two before it
    # (refused quietly, without any request) have been handled too.
    harness.ask(allowed, "/help", user=allowed)
    await harness.until(lambda: len(harness.bot(allowed)) == 1)
    [refusal] = harness.bot(PRIVATE)
    assert refusal.text is not None and "private" in refusal.text
    assert harness.g4f.chat_requests() == []
    harness.assert_clean()


async def test_choosing_a_model_from_the_keyboard(tg: Harness) -> None:
    tg.ask(PRIVATE, "/models")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 1)
    [menu] = tg.bot(PRIVATE)
    assert "mp:1" in _buttons(menu) and "m:gpt-4o" in _buttons(menu)
    tg.fake.push_callback(PRIVATE, menu.message_id, "mp:1")
    await tg.until(lambda: "page 2 of 2" in (tg.bot(PRIVATE)[0].text or ""))
    assert "mp:0" in _buttons(tg.bot(PRIVATE)[0])
    tg.fake.push_callback(PRIVATE, menu.message_id, "mp:0")
    await tg.until(lambda: "page 1 of 2" in (tg.bot(PRIVATE)[0].text or ""))
    tg.fake.push_callback(PRIVATE, menu.message_id, "m:gpt-4.1")
    await tg.until(
        lambda: "gpt-4.1" in (tg.bot(PRIVATE)[0].text or "") and not _buttons(tg.bot(PRIVATE)[0])
    )
    assert tg.bot(PRIVATE)[0].text == "✅ Your model is now gpt-4.1."
    tg.ask(PRIVATE, "which model?")
    await tg.finished(PRIVATE)
    assert tg.g4f.chat_requests()[-1].json["model"] == "gpt-4.1"
    assert all(c.ok for c in tg.fake.calls_named("answerCallbackQuery"))
    tg.assert_clean()


async def test_model_by_name_refusal_carries_suggestions(tg: Harness) -> None:
    tg.ask(PRIVATE, "/model gpt-4.0")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 1)
    text = tg.bot(PRIVATE)[0].text or ""
    assert "Did you mean" in text and "gpt-4o" in text
    tg.assert_clean()


async def test_help_status_reset_and_commands(tg: Harness) -> None:
    assert {c["command"] for c in tg.fake.commands} >= {"ask", "imagine", "models", "stop"}
    tg.ask(PRIVATE, "/start")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 1)
    assert "gpt-4o" in (tg.bot(PRIVATE)[0].text or "")
    tg.ask(PRIVATE, "remember me")
    await tg.finished(PRIVATE)
    tg.ask(PRIVATE, "/status")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 3)
    status = tg.bot(PRIVATE)[2].text or ""
    assert "Conversation: 2 messages" in status and "gpt-4o" in status
    tg.ask(PRIVATE, "/new")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 4)
    tg.ask(PRIVATE, "fresh start")
    await tg.finished(PRIVATE, count=2)
    assert [m["content"] for m in tg.g4f.chat_requests()[-1].json["messages"]] == ["fresh start"]
    tg.assert_clean()


async def test_group_mentions_and_replies_are_answered_chatter_is_not(tg: Harness) -> None:
    tg.ask(GROUP, "just chatting among ourselves")
    tg.ask(GROUP, "@bridge_test_bot what is up")
    [first] = await tg.finished(GROUP)
    assert first.text == "You said: what is up"
    tg.ask(GROUP, "and then?", user=BOB, reply_to=first.message_id)
    await tg.finished(GROUP, count=2)
    contents = [m["content"] for m in tg.g4f.chat_requests()[-1].json["messages"]]
    assert contents == ["what is up", "You said: what is up", "and then?"]
    assert len(tg.g4f.chat_requests()) == 2
    tg.assert_clean()


# --- restarts and fallbacks --------------------------------------------------------------------


async def test_conversation_continues_across_a_restart(tg: Harness) -> None:
    tg.ask(PRIVATE, "first turn")
    await tg.finished(PRIVATE)
    await tg.stop()
    await tg.start()
    tg.ask(PRIVATE, "second turn")
    messages = await tg.finished(PRIVATE, count=2)
    assert [m.text for m in messages] == ["You said: first turn", "You said: second turn"]
    contents = [m["content"] for m in tg.g4f.chat_requests()[-1].json["messages"]]
    assert contents == ["first turn", "You said: first turn", "second turn"]
    tg.assert_clean()


async def test_refused_drafts_fall_back_to_an_edited_message(harness: Harness) -> None:
    # A Bot API server without sendMessageDraft (an older self-hosted one) answers 404.
    harness.fake.remove_method("sendMessageDraft")
    await harness.start()
    answer = _words(60, "fallback")
    harness.g4f.answers["no drafts here"] = answer
    harness.g4f.stream_delay = 0.01
    harness.ask(PRIVATE, "no drafts here")
    [message] = await harness.finished(PRIVATE)
    assert message.text == answer and message.edits >= 1
    assert len(harness.fake.calls_named("sendMessageDraft")) == 1
    harness.ask(PRIVATE, "again")
    await harness.finished(PRIVATE, count=2)
    assert len(harness.fake.calls_named("sendMessageDraft")) == 1  # remembered for the chat
    assert harness.bot(PRIVATE)[1].text == "You said: again"
    harness.assert_clean()


async def test_shutdown_stops_running_answers_and_leaves_no_tasks(harness: Harness) -> None:
    await harness.streaming(GROUP, "until shutdown", "late", command="/ask")
    async with asyncio.timeout(5):
        await harness.stop()
    [message] = harness.bot(GROUP)
    assert message.text is not None and message.text.endswith(
        "Interrupted by a restart: ask again."
    )
    assert _buttons(message) == ["regen"]

    def leftover() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]

    # The emulator's side of a closed long poll ends a moment later; ours must all be gone.
    with contextlib.suppress(AssertionError):
        await harness.until(lambda: not leftover(), seconds=2)
    assert leftover() == [], leftover()
    harness.assert_clean()


# --- formatting while streaming -----------------------------------------------------------------


def _entities_of(call_params: dict[str, Any]) -> list[dict[str, Any]]:
    raw = call_params.get("entities") or []
    return list(json.loads(raw) if isinstance(raw, str) else raw)


async def test_interim_edits_show_formatted_text_not_raw_markdown(harness: Harness) -> None:
    tg = harness
    bold = " ".join(f"strong{i}" for i in range(12))
    code = "\n".join(f"line_{i} = {i}" for i in range(12))
    answer = f"Intro **{bold}** after.\n\n```python\n{code}\n```\nDone."
    tg.g4f.answers["format while streaming"] = answer
    tg.g4f.trickle_interval = 0.05
    await tg.start(g4f_default_model="trickle")
    tg.ask(GROUP, "/ask format while streaming")
    [message] = await tg.finished(GROUP)
    assert message.text == _shown(answer)
    interim = [
        c.params
        for c in tg.fake.calls
        if c.ok
        and c.name.lower() in ("sendmessage", "editmessagetext")
        and str(c.params.get("text", "")).endswith("▌")
    ]
    texts = [str(p["text"]) for p in interim]
    assert len(texts) >= 4
    assert not [t for t in texts if "**" in t or "```" in t]  # no raw markup, ever
    in_bold = [p for p in interim if "strong1 " in str(p["text"]) and "after" not in p["text"]]
    assert in_bold and all(
        any(e["type"] == "bold" for e in _entities_of(p)) for p in in_bold
    )  # an unclosed ** already shows bold
    in_code = [p for p in interim if "line_1 = 1" in str(p["text"]) and "Done" not in p["text"]]
    assert in_code and all(any(e["type"] == "pre" for e in _entities_of(p)) for p in in_code)
    for params in interim:  # the indicator stays plain text at the end
        text = str(params["text"])
        end = utf16_len(text) - utf16_len(" ▌")
        assert all(e["offset"] + e["length"] <= end for e in _entities_of(params))


# --- access and input --------------------------------------------------------------------------


def _callback_answers(h: Harness) -> list[str | None]:
    return [c.params.get("text") for c in h.fake.calls_named("answerCallbackQuery")]


async def test_a_chat_allowlist_closes_private_chats_of_unlisted_users(harness: Harness) -> None:
    boss = 9999
    await harness.start(allowed_chat_ids=str(GROUP), admin_user_ids=str(boss))
    harness.ask(PRIVATE, "answer me in private")
    await harness.until(lambda: len(harness.bot(PRIVATE)) == 1)
    [refusal] = harness.bot(PRIVATE)
    assert refusal.text == "Sorry, this bot is private and not available to you here."
    harness.ask(GROUP, "/ask in the listed group")
    await harness.finished(GROUP)
    harness.ask(boss, "admin in private", user=boss)
    await harness.finished(boss)
    prompts = [r.json["messages"][-1]["content"] for r in harness.g4f.chat_requests()]
    assert prompts == ["in the listed group", "admin in private"]
    harness.assert_clean()


async def test_model_refuses_a_provider_and_caps_what_it_echoes(tg: Harness) -> None:
    tg.ask(PRIVATE, "/model PollinationsAI")
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 1)
    provider = tg.bot(PRIVATE)[0].text or ""
    assert provider.startswith("'PollinationsAI' is a provider, not a model")
    assert "G4F_PROVIDER" in provider
    tg.ask(PRIVATE, "/model " + "n" * 4000)  # a user's message holds at most 4,096
    await tg.until(lambda: len(tg.bot(PRIVATE)) == 2)
    echoed = tg.bot(PRIVATE)[1].text or ""
    assert echoed.startswith(f"The server has no chat model called '{'n' * 99}…'.")
    assert len(echoed) < 200
    tg.ask(PRIVATE, "which model?")
    await tg.finished(PRIVATE)
    assert tg.g4f.chat_requests()[-1].json["model"] == "gpt-4o"  # nothing was chosen
    tg.assert_clean()


async def test_a_long_prompt_is_capped_in_the_caption(tg: Harness) -> None:
    tg.ask(PRIVATE, "/imagine " + "a red fox " * 300)
    await tg.until(lambda: any(m.photo for m in tg.bot(PRIVATE)))
    [photo] = tg.bot(PRIVATE)
    caption = photo.caption or ""
    assert caption.startswith("🎨 a red fox") and caption.endswith("…\n— flux")
    assert len(caption) < 320  # was cut only at Telegram's 1,024
    tg.assert_clean()


async def test_stop_says_why_it_did_not_stop(harness: Harness) -> None:
    await harness.streaming(GROUP, "slowly", "slow", command="/ask")
    [streaming] = harness.bot(GROUP)
    harness.fake.push_callback(GROUP, streaming.message_id, "stop", user_id=BOB)
    await harness.until(lambda: len(_callback_answers(harness)) == 1)
    harness.fake.push_callback(GROUP, streaming.message_id, "stop", user_id=ANN)
    [message] = await harness.finished(GROUP)
    assert message.text is not None and message.text.endswith("⏹ Stopped.")
    # A client still showing the Stop button (or a late press): the asker is told it finished.
    harness.fake.push_callback(GROUP, message.message_id, "stop", check_button=False)
    await harness.until(lambda: len(_callback_answers(harness)) == 3)
    assert _callback_answers(harness) == [
        "Only the person who asked (or an admin) can stop this answer.",
        "⏹ Stopping…",
        "This answer has already finished. For a new one, press 🔁 Regenerate or ask again.",
    ]
    harness.assert_clean()


@pytest.mark.parametrize("data", ["", "zzz", "mi:1:x", "mp:", "m:", "stop ", "mp:1234567"])
async def test_unknown_or_malformed_callback_data_is_answered_as_stale(
    tg: Harness, data: str
) -> None:
    tg.ask(GROUP, "/ask roll a die")
    [answer] = await tg.finished(GROUP)
    tg.fake.push_callback(GROUP, answer.message_id, data, check_button=False)
    await tg.until(lambda: len(_callback_answers(tg)) == 1)
    assert _callback_answers(tg) == [
        "This button is no longer valid. Ask again, or open /models for a fresh list."
    ]
    assert tg.bot(GROUP) == [answer] and len(tg.g4f.chat_requests()) == 1
    tg.assert_clean()


# --- length limits (issue 12) ------------------------------------------------------------------


async def test_a_cut_answer_offers_continue_which_asks_for_the_rest(tg: Harness) -> None:
    from core.continuation import CONTINUE_PROMPT, LENGTH_NOTE

    tg.g4f.length_limit_words = 3
    tg.g4f.answers["count"] = "one two three four five"
    tg.ask(GROUP, "/ask count")
    [cut] = await tg.finished(GROUP)
    assert cut.text is not None and cut.text.splitlines()[-1] == LENGTH_NOTE
    assert _buttons(cut) == ["cont", "regen"]
    # A short answer's one message is sent by its final write and linked to the stored turn
    # just after it: wait for the link, as a user's press would come after it.
    assert tg.bridge is not None
    store, key = tg.bridge.store, MessageKey("telegram", str(GROUP), str(cut.message_id))
    async with asyncio.timeout(5):
        while await store.turn_for_message(key) is None:
            await asyncio.sleep(0.01)
    tg.g4f.length_limit_words = 0
    tg.g4f.answers[CONTINUE_PROMPT] = "four five"
    tg.fake.push_callback(GROUP, cut.message_id, "cont", user_id=ANN)
    messages = await tg.finished(GROUP, count=2)
    rest = messages[1]
    assert rest.text == "four five" and rest.reply_to == cut.message_id
    assert _buttons(rest) == ["regen"]
    sent = tg.g4f.chat_requests()[-1].json["messages"]
    assert [m["content"] for m in sent[-3:]] == ["count", "one two three", CONTINUE_PROMPT]
    assert [c.ok for c in tg.fake.calls_named("answerCallbackQuery")] == [True]
    tg.assert_clean()


# --- images and files (issue 12) ---------------------------------------------------------------


async def test_a_photo_with_a_caption_is_a_question_about_it(tg: Harness) -> None:
    from tests.fakes.g4f_server import build_png

    png = build_png(4, 4)
    tg.fake.push_file(PRIVATE, png, caption="what colour is it?")
    [answer] = await tg.finished(PRIVATE)
    assert answer.text == "I see 1 image(s). You said: what colour is it?"
    assert tg.g4f.images_received == [[png]]
    # A later question replying to the answer asks about the same picture again.
    tg.ask(PRIVATE, "and its size?", reply_to=answer.message_id)
    await tg.finished(PRIVATE, count=2)
    assert tg.g4f.images_received == [[png], [png]]
    tg.assert_clean()


async def test_a_photo_then_a_question_replying_to_it(tg: Harness) -> None:
    from bots.telegram.media import PHOTO_HINT
    from tests.fakes.g4f_server import build_png

    png = build_png(2, 3)
    photo = tg.fake.push_file(PRIVATE, png)
    await tg.until(lambda: any(m.text == PHOTO_HINT for m in tg.bot(PRIVATE)))
    assert tg.g4f.chat_requests() == []
    tg.ask(PRIVATE, "what is this?", reply_to=int(photo["message_id"]))
    await tg.finished(PRIVATE)
    assert tg.g4f.images_received == [[png]]


async def test_an_album_is_one_question_with_all_its_photos(tg: Harness) -> None:
    from tests.fakes.g4f_server import build_png

    photos = [build_png(i + 1, 1) for i in range(3)]
    for index, png in enumerate(photos):
        caption = "compare these" if index == 0 else None
        tg.fake.push_file(PRIVATE, png, caption=caption, media_group_id="album-1")
    [answer] = await tg.finished(PRIVATE)
    assert answer.text == "I see 3 image(s). You said: compare these"
    assert tg.g4f.images_received == [photos]
    assert len(tg.g4f.chat_requests()) == 1


async def test_documents_text_is_read_and_others_get_one_line(tg: Harness) -> None:
    from core.attachments import ACCEPTED_LINE

    tg.fake.push_file(
        PRIVATE, b"line one\nline two\n", caption="summarise", document=("app.log", "text/plain")
    )
    await tg.finished(PRIVATE)
    sent = tg.g4f.chat_requests()[-1].json["messages"][-1]["content"]
    assert sent == "summarise\n\nFile app.log:\n```\nline one\nline two\n```"
    tg.fake.push_file(
        PRIVATE, b"%PDF-1.7", caption="read it", document=("paper.pdf", "application/pdf")
    )
    line = ACCEPTED_LINE.format(names="paper.pdf", verb="is")
    await tg.until(lambda: any(m.text == line for m in tg.bot(PRIVATE)))
    assert len(tg.g4f.chat_requests()) == 1


async def test_web_asks_searching_and_alone_toggles_the_chat(tg: Harness) -> None:
    tg.ask(GROUP, "/web what happened today")
    [answer] = await tg.finished(GROUP)
    assert answer.text is not None and answer.text.endswith(
        "🔎 Sources: Example Domain · Another (odd) title"
    )
    links = [e for e in answer.entities if e.get("type") == "text_link"]
    assert [e["url"] for e in links] == ["https://example.com/page", "https://example.org/b?q=1"]
    tg.ask(GROUP, "/web")
    await tg.until(lambda: any("Web search is on" in (m.text or "") for m in tg.bot(GROUP)))
    tg.ask(GROUP, "/ask and now")
    await tg.finished(GROUP, count=2)
    assert [r.json.get("web_search") for r in tg.g4f.chat_requests()] == [True, True]
