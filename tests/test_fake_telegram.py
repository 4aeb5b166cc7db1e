"""The Telegram emulator, driven by the real python-telegram-bot `Bot` and `Application`."""

from __future__ import annotations

import asyncio
import datetime as dtm
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.clock import ManualClock
from tests.fakes.telegram_server import FakeTelegram

PRIVATE = 42
GROUP = -100777
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (64).to_bytes(4, "big") * 2 + b"rest"


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to RetryAfter.retry_after as a timedelta (no PTB deprecation warning)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock.now) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


def err(text: str) -> re.Pattern[str]:
    """PTB strips "Bad Request: " and capitalizes the description: match case-insensitively."""
    return re.compile(re.escape(text), re.IGNORECASE)


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in data]])


async def test_send_edit_not_modified_not_found(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.push_text(PRIVATE, "hello")
    sent = await bot.send_message(
        PRIVATE,
        "Hi there",
        entities=[MessageEntity(MessageEntity.BOLD, 0, 2)],
        reply_markup=keyboard("stop"),
        reply_to_message_id=user["message_id"],
    )
    assert sent.from_user is not None and sent.from_user.is_bot
    assert sent.from_user.username == "bridge_test_bot"
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "hello"
    assert sent.entities == (MessageEntity(MessageEntity.BOLD, 0, 2),)
    assert sent.reply_markup == keyboard("stop")

    edited = await bot.edit_message_text(
        "Hi there!", PRIVATE, sent.message_id, reply_markup=keyboard("stop")
    )
    assert isinstance(edited, type(sent)) and edited.edit_date is not None
    with pytest.raises(BadRequest, match=err("message is not modified")):
        await bot.edit_message_text(
            "Hi there!", PRIVATE, sent.message_id, reply_markup=keyboard("stop")
        )
    # Editing without reply_markup removes the keyboard, as Telegram does.
    await bot.edit_message_text("Hi there!", PRIVATE, sent.message_id)
    with pytest.raises(BadRequest, match=err("message to edit not found")):
        await bot.edit_message_text("x", PRIVATE, 999)
    with pytest.raises(BadRequest, match=err("message can't be edited")):
        await bot.edit_message_text("x", PRIVATE, user["message_id"])

    [shown] = fake.bot_messages(PRIVATE)
    assert (shown.text, shown.entities, shown.reply_markup) == ("Hi there!", [], None)
    assert shown.edits == 2 and shown.reply_to == user["message_id"]
    assert [m.from_bot for m in fake.messages(PRIVATE)] == [False, True]

    fake.delete_message(PRIVATE, sent.message_id)
    with pytest.raises(BadRequest, match=err("message to edit not found")):
        await bot.edit_message_text("again", PRIVATE, sent.message_id)
    assert [c.ok for c in fake.calls_named("editMessageText")] == [True, False, True] + [False] * 3
    assert fake.calls_named("sendmessage")[0].chat_id == PRIVATE


async def test_reply_markup_edit_and_delete(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(PRIVATE, "pick", reply_markup=keyboard("a", "b"))
    await bot.edit_message_reply_markup(PRIVATE, sent.message_id, reply_markup=keyboard("a"))
    with pytest.raises(BadRequest, match=err("not modified")):
        await bot.edit_message_reply_markup(PRIVATE, sent.message_id, reply_markup=keyboard("a"))
    assert fake.bot_messages(PRIVATE)[0].reply_markup == keyboard("a").to_dict()
    with pytest.raises(BadRequest, match=err("BUTTON_DATA_INVALID")):
        await bot.send_message(PRIVATE, "x", reply_markup=keyboard("d" * 65))
    assert await bot.delete_message(PRIVATE, sent.message_id)
    with pytest.raises(BadRequest, match=err("message to delete not found")):
        await bot.delete_message(PRIVATE, sent.message_id)
    assert fake.messages(PRIVATE) == []


async def test_length_and_entity_limits(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    fake.enforce_rate_limits = False
    await bot.send_message(PRIVATE, "x" * 4096)
    await bot.send_message(PRIVATE, "😀" * 2048)  # 4096 UTF-16 code units
    for too_long in ("x" * 4097, "😀" * 2049):
        with pytest.raises(BadRequest, match=err("message is too long")):
            await bot.send_message(PRIVATE, too_long)
    for empty in ("", "   "):
        with pytest.raises(BadRequest, match=err("message text is empty")):
            await bot.send_message(PRIVATE, empty)
    # "😀a": the emoji is 2 UTF-16 units, so an entity of length 3 fits and 4 does not.
    await bot.send_message(PRIVATE, "😀a", entities=[MessageEntity("bold", 0, 3)])
    with pytest.raises(BadRequest, match=err("can't parse entities")):
        await bot.send_message(PRIVATE, "😀a", entities=[MessageEntity("bold", 0, 4)])
    with pytest.raises(BadRequest, match=err("can't parse entities")):
        await bot.send_message(PRIVATE, "link", entities=[MessageEntity("text_link", 0, 4)])
    with pytest.raises(BadRequest, match=err("can't parse entities")):
        await bot.send_message(PRIVATE, "*half bold", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=err("reserved")):
        await bot.send_message(PRIVATE, "end.", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=err("can't parse entities")):
        await bot.send_message(PRIVATE, "<b>open", parse_mode="HTML")
    ok = await bot.send_message(PRIVATE, "*bold* and `code`\\.", parse_mode="MarkdownV2")
    assert ok.text == "bold and code."
    assert [(e.type, e.offset, e.length) for e in ok.entities] == [("bold", 0, 4), ("code", 9, 4)]
    html = await bot.send_message(PRIVATE, "<b>a</b> &lt; <a href='https://x.org'>b</a>", "HTML")
    assert html.text == "a < b" and html.entities[1].url == "https://x.org"
    assert fake.rate_limited == 0


async def test_private_burst_then_retry_after(
    fake: FakeTelegram, bot: Bot, clock: ManualClock
) -> None:
    for n in range(3):
        await bot.send_message(PRIVATE, f"burst {n}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(PRIVATE, "one too many")
    assert caught.value.retry_after == dtm.timedelta(seconds=1)
    assert fake.rate_limited == 1
    assert [m.text for m in fake.bot_messages(PRIVATE)] == ["burst 0", "burst 1", "burst 2"]
    last = fake.calls[-1]
    assert (last.name, last.ok, last.error_code) == ("sendMessage", False, 429)
    # Edits count too; another chat has its own bucket.
    await bot.send_message(PRIVATE + 1, "other chat")
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("edit", PRIVATE, 1)
    await clock.advance(1.0)
    await bot.send_message(PRIVATE, "after waiting")
    with pytest.raises(RetryAfter):
        await bot.send_message(PRIVATE, "still too fast")
    assert fake.rate_limited == 3


async def test_group_twenty_per_minute(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    for n in range(20):
        await bot.send_message(GROUP, f"m{n}")
        await clock.advance(1.0)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP, "m20")
    assert caught.value.retry_after == dtm.timedelta(seconds=40)  # the first one was at t=0
    await clock.advance(40.0)
    await bot.send_message(GROUP, "m20")
    assert len(fake.bot_messages(GROUP)) == 21


async def test_global_thirty_per_second(fake: FakeTelegram, bot: Bot) -> None:
    for chat_id in range(1, 31):
        await bot.send_message(chat_id, "hi")
    with pytest.raises(RetryAfter):
        await bot.send_message(31, "hi")


async def test_drafts_private_only(fake: FakeTelegram, bot: Bot) -> None:
    fake.push_text(PRIVATE, "question")
    assert await bot.send_message_draft(PRIVATE, 7, "Hel")
    assert await bot.send_message_draft(PRIVATE, 7, "Hello", entities=[MessageEntity("bold", 0, 5)])
    assert fake.drafts(PRIVATE) == [(7, "Hel"), (7, "Hello")]
    assert fake.bot_messages(PRIVATE) == []  # drafts are not messages
    with pytest.raises(BadRequest, match=err("TEXTDRAFT_PEER_INVALID")):
        await bot.send_message_draft(GROUP, 7, "Hel")
    with pytest.raises(BadRequest, match=err("non-zero")):
        await bot.send_message_draft(PRIVATE, 0, "Hel")
    for n in range(3):  # drafts have their own bucket (5), not the 3-message burst
        await bot.send_message_draft(PRIVATE, 7, f"Hello {n}")
    with pytest.raises(RetryAfter):
        await bot.send_message_draft(PRIVATE, 7, "Hello again")
    await bot.send_message(PRIVATE, "Hello, final")


async def test_messages_record_when_their_text_first_showed(
    fake: FakeTelegram, bot: Bot, clock: ManualClock
) -> None:
    start = clock.now()
    placeholder = await bot.send_message(GROUP, "…")
    await clock.advance(1.5)
    await bot.edit_message_text("Hello", GROUP, placeholder.message_id)
    await clock.advance(1.5)
    await bot.edit_message_reply_markup(GROUP, placeholder.message_id, reply_markup=keyboard("a"))
    await clock.advance(1.5)
    await bot.edit_message_text("Hello world", GROUP, placeholder.message_id)
    [shown] = fake.bot_messages(GROUP)
    assert shown.first_visible_at == start  # "…" is text the user sees
    assert shown.text_history == [
        (start, "…"),
        (start + 1.5, "Hello"),
        (start + 4.5, "Hello world"),
    ]
    assert shown.last_write_at == start + 4.5
    photo = await bot.send_photo(GROUP, PNG)
    await clock.advance(1.0)
    await bot.edit_message_caption(GROUP, photo.message_id, caption="a red dot")
    pictured = fake.bot_messages(GROUP)[-1]
    assert pictured.first_visible_at == start + 5.5  # a photo without caption shows no text
    assert pictured.text_history == [(start + 5.5, "a red dot")]


async def test_private_message_is_visible_from_the_drafts_it_replaces(
    fake: FakeTelegram, bot: Bot, clock: ManualClock
) -> None:
    start = clock.now()
    await bot.send_message_draft(PRIVATE, 7, "")  # "Thinking…": no text yet
    await clock.advance(0.5)
    await bot.send_message_draft(PRIVATE, 7, "Hel")
    await clock.advance(0.5)
    await bot.send_message_draft(PRIVATE, 7, "Hello")
    await clock.advance(0.5)
    await bot.send_message(PRIVATE, "Hello there")
    [answer] = fake.bot_messages(PRIVATE)
    assert answer.first_visible_at == start + 0.5
    assert answer.text_history == [
        (start + 0.5, "Hel"),
        (start + 1.0, "Hello"),
        (start + 1.5, "Hello there"),
    ]
    assert fake.draft_first_visible_at(PRIVATE, 7) == start + 0.5
    assert [(d.at - start, d.text) for d in fake.draft_history(PRIVATE)] == [
        (0.0, ""),
        (0.5, "Hel"),
        (1.0, "Hello"),
    ]
    # The next message replaces only the drafts shown after the previous one.
    await clock.advance(1.0)
    await bot.send_message(PRIVATE, "Plain")
    plain = fake.bot_messages(PRIVATE)[-1]
    assert plain.first_visible_at == start + 2.5
    assert plain.text_history == [(start + 2.5, "Plain")]
    assert fake.draft_first_visible_at(PRIVATE, 8) is None


async def test_blocked_wrong_token_unknown_method(fake: FakeTelegram, bot: Bot) -> None:
    fake.block(PRIVATE)
    with pytest.raises(Forbidden, match=err("bot was blocked by the user")):
        await bot.send_message(PRIVATE, "hi")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(PRIVATE, "typing")
    other = Bot("999:wrong", base_url=fake.base_url, base_file_url=fake.base_file_url)
    try:
        with pytest.raises(InvalidToken):
            await other.initialize()
    finally:
        await other.shutdown()
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{fake.base_url}{fake.token}/noSuchMethod")
        assert reply.status_code == 404
        assert reply.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found: method not found",
        }
        # Plain form values: strings stay strings, other values are JSON-decoded.
        form = await client.post(
            f"{fake.base_url}{fake.token}/SENDMESSAGE", data={"chat_id": "5", "text": "123"}
        )
        assert form.json()["result"]["text"] == "123"
        as_json = await client.post(
            f"{fake.base_url}{fake.token}/sendMessage", json={"chat_id": 6, "text": "json"}
        )
        assert as_json.json()["result"]["chat"] == {"id": 6, "type": "private", "first_name": "Ann"}
    assert fake.calls_named("sendMessage")[-1].params == {"chat_id": 6, "text": "json"}


async def test_commands_and_chat_action(fake: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("new", "New conversation")])
    assert fake.commands == [
        {"command": "start", "description": "Start"},
        {"command": "new", "description": "New conversation"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "new"]
    with pytest.raises(BadRequest, match=err("BOT_COMMAND_INVALID")):
        await bot.set_my_commands([("Bad-Name", "x")])
    assert await bot.send_chat_action(PRIVATE, "typing")
    with pytest.raises(BadRequest):
        await bot.send_chat_action(PRIVATE, "dancing")


async def test_send_photo_upload_and_caption(fake: FakeTelegram, bot: Bot) -> None:
    fake.enforce_rate_limits = False
    sent = await bot.send_photo(PRIVATE, PNG, caption="a chart")
    assert sent.caption == "a chart" and sent.photo[-1].width == 64
    [shown] = fake.bot_messages(PRIVATE)
    assert shown.photo == PNG and shown.caption == "a chart" and shown.text is None
    with pytest.raises(BadRequest, match=err("message caption is too long")):
        await bot.send_photo(PRIVATE, PNG, caption="c" * 1025)
    await bot.send_photo(PRIVATE, PNG, caption="c" * 1024)
    await bot.edit_message_caption(PRIVATE, sent.message_id, caption="new caption")
    with pytest.raises(BadRequest, match=err("no text in the message")):
        await bot.edit_message_text("text", PRIVATE, sent.message_id)
    again = await bot.send_photo(PRIVATE, sent.photo[-1].file_id)  # by file_id
    assert fake.bot_messages(PRIVATE)[-1].photo == PNG and again.caption is None
    file = await bot.get_file(sent.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == PNG
    assert fake.bot_messages(PRIVATE)[0].caption == "new caption"


async def test_long_poll_returns_on_update_and_conflict(fake: FakeTelegram, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    pushed = fake.push_text(PRIVATE, "/start@bridge_test_bot hi @bridge_test_bot")
    [update] = await poll
    assert loop.time() - started < 1.0
    assert update.message is not None and update.message.message_id == pushed["message_id"]
    assert [(e.type, e.offset, e.length) for e in update.message.entities] == [
        ("bot_command", 0, 22),
        ("mention", 26, 16),
    ]
    # Confirmed by the offset: not delivered again.
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
    # A second poller (one Bot polls one request at a time) terminates the first, as Telegram does.
    async with Bot(fake.token, base_url=fake.base_url) as other:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.05)
        assert await other.get_updates(timeout=0) == ()
        with pytest.raises(Conflict):
            await first


async def test_stop_wakes_pending_long_poll() -> None:
    server = FakeTelegram()
    await server.start()
    bot = Bot(server.token, base_url=server.base_url, base_file_url=server.base_file_url)
    try:
        await bot.initialize()
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.stop(), 2)
        assert await asyncio.wait_for(poll, 2) == ()
    finally:
        await bot.shutdown()
        await server.stop()


async def test_polling_application_command_and_callback() -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("hi", reply_markup=keyboard("more"))

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("ok")
        await query.edit_message_text(f"pressed {query.data}")

    async with FakeTelegram() as fake:
        app = (
            Application.builder()
            .token(fake.token)
            .base_url(fake.base_url)
            .base_file_url(fake.base_file_url)
            .build()
        )
        app.add_handler(CommandHandler("start", start))
        app.add_handler(CallbackQueryHandler(button))
        async with app:
            await app.start()
            try:
                await app.updater.start_polling(poll_interval=0, timeout=1)  # type: ignore[union-attr]
                fake.push_text(PRIVATE, "/start")
                await fake.wait_for(lambda: [m.text for m in fake.bot_messages(PRIVATE)] == ["hi"])
                [reply] = fake.bot_messages(PRIVATE)
                fake.push_callback(PRIVATE, reply.message_id, "more")
                await fake.wait_for(lambda: reply.text == "pressed more")
                await fake.wait_for(lambda: bool(fake.calls_named("answerCallbackQuery")))
                assert fake.calls_named("answerCallbackQuery")[0].ok
                assert reply.reply_markup is None and reply.edits == 1
            finally:
                if app.updater is not None and app.updater.running:
                    await app.updater.stop()
                await app.stop()
        names = [c.name for c in fake.calls]
        assert names[0] == "getMe" and "deleteWebhook" in names
        assert all(c.ok for c in fake.calls), [c for c in fake.calls if not c.ok]


async def test_wait_for_times_out_with_a_useful_message(fake: FakeTelegram) -> None:
    with pytest.raises(AssertionError, match=err("still false after 0.05 s")):
        await fake.wait_for(lambda: False, timeout=0.05)
