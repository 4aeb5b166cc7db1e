"""The Telegram adapter: python-telegram-bot updates in, Bridge use cases out.

Nothing here decides anything: access, limits, conversations and models are the Bridge's
(core.bridge). The handlers find out who wrote what where, build a `TelegramSurface` for the answer,
call the use case, and show the typed result. State lives in one `TelegramBot` object (kept in
`application.bot_data`), never in module globals.

Where prompts come from: in private chats any text; in groups /ask, a message that mentions the
bot, or a reply to one of the bot's messages (all of which Telegram delivers with privacy mode on).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from telegram import (
    Bot,
    BotCommand,
    CallbackQuery,
    Chat,
    Message,
    MessageEntity,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.telegram.format import cut_utf16
from bots.telegram.media import PHOTO_HINT, Albums, attachments_of, has_media
from bots.telegram.settings import TelegramSettings, load_telegram_settings
from bots.telegram.surface import (
    ANSWER_DATA,
    MAX_CALLBACK_DATA,
    SentMessages,
    StreamMode,
    TelegramSurface,
)
from bots.telegram.webhook import WebhookReceiver
from core.attachments import Attachment
from core.bridge import Bridge
from core.conversations import Origin
from core.http import Routes
from core.menus import ModelMenu, model_menu, parse_page_payload
from core.notices import ForbiddenNotices
from core.render.surface import Button, MessageRef
from core.results import Answered, ModelPage, Refusal
from core.settings import SettingsError
from core.texts import (
    STALE_BUTTON,
    Reply,
    current_model_text,
    model_chosen_text,
    reply_text,
    stop_text,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Context = ContextTypes.DEFAULT_TYPE
TelegramApp = Application[Any, Any, Any, Any, Any, Any]

STATE_KEY = "g4f_bridge"
PLATFORM = "telegram"
MAX_CALLBACK_ANSWER = 200
# The callback data of the model list's buttons (see `model_callback` and `menu_buttons`).
MODEL_PAGE_DATA = re.compile(r"mp:(\d{1,6})")
MODEL_NAME_DATA = re.compile(r"m:\S.*")
MODEL_INDEX_DATA = re.compile(r"mi:(\d{1,6}):(\d{1,3})")

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]

COMMANDS = (
    BotCommand("ask", "Ask the AI (in private chats, just write)"),
    BotCommand("web", "Ask searching the web; alone: web search on/off here"),
    BotCommand("imagine", "Draw a picture from a description"),
    BotCommand("models", "Choose a chat model from a list"),
    BotCommand("model", "Choose a chat model by name"),
    BotCommand("new", "Start a new conversation"),
    BotCommand("reset", "Start a new conversation"),
    BotCommand("stop", "Stop your answer that is being written"),
    BotCommand("status", "Your model, limits and conversation"),
    BotCommand("system", "Set this chat's persona (admins only)"),
    BotCommand("help", "What this bot does"),
)

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+\-.!|>~<])")


def escape_markdown(text: str) -> str:
    """`text` shown literally when rendered as markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def origin_of(chat: Chat, user: User) -> Origin:
    """The platform-neutral place of a message."""
    return Origin(
        platform=PLATFORM,
        chat_id=str(chat.id),
        user_id=str(user.id),
        space_id=None,  # Telegram has no spaces
        is_private=chat.type == ChatType.PRIVATE,
    )


def command_argument(message: Message) -> str:
    """The text after the leading /command (newlines kept)."""
    text = message.text or ""
    for entity in message.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            return text[len(message.parse_entity(entity)) :].strip()
    return text.strip()


def replied_bot_message(message: Message, bot_id: int) -> int | None:
    """The id of the bot message this message replies to, if it does."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return replied.message_id
    return None


def mentions(message: Message, username: str) -> bool:
    """Whether the message @mentions the bot."""
    wanted = f"@{username}".lower()
    return any(
        text.lower() == wanted for text in message.parse_entities([MessageEntity.MENTION]).values()
    )


def strip_mention(text: str, username: str) -> str:
    return re.sub(rf"@{re.escape(username)}\b", "", text, flags=re.IGNORECASE).strip()


def addressed(
    text: str, chat: Chat, username: str, mentioned: bool, replied: int | None
) -> str | None:
    """The prompt in a message's text: all of it in a private chat; in a group, when it
    mentions the bot (the mention removed) or replies to one of its messages; else None."""
    if chat.type == ChatType.PRIVATE:
        return text
    if mentioned:
        return strip_mention(text, username)
    return text if replied is not None else None


def help_text(model: str, username: str) -> str:
    return (
        "🤖 **G4F bridge**: I answer with an AI model.\n\n"
        "In a private chat just write to me; each message continues our conversation until "
        f"/new. In groups use /ask, mention @{escape_markdown(username)}, or reply to one of my "
        "messages.\n\n"
        f"Your model: `{model}`\n\n"
        "/ask TEXT: ask a question\n"
        "/web TEXT: ask searching the web (/web alone: on/off in this chat)\n"
        "Send a photo or a text file with a caption to ask about it\n"
        "/imagine TEXT: draw a picture\n"
        "/models: choose a model from a list; /model NAME: by name\n"
        "/new or /reset: start a new conversation\n"
        "/stop: stop your answer that is being written\n"
        "/status: your model, limits and conversation\n"
        "/system TEXT: set this chat's persona (admins)\n\n"
        "Under each answer: ⏹ Stop while it is written, 🔁 Regenerate when it is done."
    )


def model_callback(page: ModelPage, index: int) -> str:
    """m:<id> when it fits in Telegram's 64 bytes, else mi:<page>:<index>."""
    data = f"m:{page.items[index].id}"
    return data if len(data.encode()) <= MAX_CALLBACK_DATA else f"mi:{page.page}:{index}"


def menu_buttons(menu: ModelMenu) -> tuple[Button, ...]:
    """The /models menu's buttons, their payloads set to Telegram's callback data: a model's
    `model_callback`, a page turn's mp:<page> (Telegram's list has no filter)."""
    choices = [
        replace(button, payload=model_callback(menu.page, index))
        for index, button in enumerate(menu.choices)
    ]
    turns = [
        replace(button, payload=f"mp:{turn[0]}")
        for button in menu.turns
        if (turn := parse_page_payload(button.payload)) is not None
    ]
    return (*choices, *turns)


def models_view(page: ModelPage) -> tuple[str, tuple[Button, ...]]:
    """The /models message: text and buttons of models (in rows of two) with ◀ ▶ paging."""
    menu = model_menu(page, choices=True)
    return menu.text, menu_buttons(menu)


@dataclass(frozen=True, slots=True)
class Command:
    """A command message, where it was sent, and the surface that replies to it."""

    message: Message
    origin: Origin
    surface: TelegramSurface


ButtonHandler = Callable[[Update, Context], Awaitable[None]]


class CallbackAck:
    """Answers a callback query once: at the answer's first write, or with the refusal."""

    def __init__(self, query: CallbackQuery) -> None:
        self._query = query
        self._done = False

    async def __call__(self, text: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._query.answer(cut_utf16(text, MAX_CALLBACK_ANSWER) if text else None)
        except TelegramError as exc:
            log.info("could not answer a button press: %s", exc.message)


class TelegramBot:
    """The handlers and their state: the bridge, the chats' draft support, running answers."""

    def __init__(self, bridge: Bridge, stream_mode: str = "auto") -> None:
        self.bridge = bridge
        self.configured_mode = stream_mode  # TELEGRAM_STREAM_MODE
        self.sent = SentMessages()
        self.notices = ForbiddenNotices()  # a chat that forbids writes is logged once
        self.no_drafts: set[int] = set()  # chats whose server refused sendMessageDraft
        self.albums = Albums(bridge.clock)  # the photos of an album, asked about together

    def register(self, app: TelegramApp) -> None:
        """Add every handler and the one error handler to `app`."""
        app.add_handler(CommandHandler(["start", "help"], self.on_help))
        app.add_handler(CommandHandler("ask", self.on_ask))
        app.add_handler(CommandHandler("web", self.on_web))
        app.add_handler(CommandHandler("imagine", self.on_imagine))
        app.add_handler(CommandHandler("models", self.on_models))
        app.add_handler(CommandHandler("model", self.on_model))
        app.add_handler(CommandHandler(["reset", "new"], self.on_reset))
        app.add_handler(CommandHandler("system", self.on_system))
        app.add_handler(CommandHandler("status", self.on_status))
        app.add_handler(CommandHandler("stop", self.on_stop))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self.on_text))
        app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, self.on_media))
        # One handler for every button: PTB hands a press with empty data to the first
        # pattern handler, so the data is checked here, before any action is chosen.
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_error_handler(self.on_error)

    # --- surfaces and writes ----------------------------------------------------------------
    def stream_mode(self, chat_id: int, private: bool) -> StreamMode:
        """Drafts in private chats (unless configured off or refused there), else edits."""
        if self.configured_mode == "edit" or not private:
            return "edit"
        return "edit" if chat_id in self.no_drafts else "draft"

    def surface(
        self,
        context: Context,
        chat: Chat,
        *,
        reply_to: int | None,
        on_first_write: Callable[[], Awaitable[None]] | None = None,
    ) -> TelegramSurface:
        private = chat.type == ChatType.PRIVATE
        return TelegramSurface(
            context.bot,
            chat.id,
            private=private,
            mode=self.stream_mode(chat.id, private),
            reply_to=reply_to,
            sent=self.sent,
            notices=self.notices,
            on_draft_refused=lambda: self.no_drafts.add(chat.id),
            on_first_write=on_first_write,
        )

    def chat_surface(self, bot: Bot) -> Callable[[str], TelegramSurface]:
        """Where the bot edits its own messages in a chat it knows only by id (after a restart):
        private chats have positive ids, groups negative ones."""

        def surface_for(chat_id: str) -> TelegramSurface:
            chat = int(chat_id)
            return TelegramSurface(
                bot, chat, private=chat > 0, sent=self.sent, notices=self.notices
            )

        return surface_for

    async def write_within_budget(
        self, surface: TelegramSurface, call: Callable[[], Awaitable[T]]
    ) -> T | None:
        """A write of our own, inside the chat's write budget that answers share."""
        return await self.bridge.write_within_budget(surface, call)

    async def say(
        self, surface: TelegramSurface, text: str, buttons: tuple[Button, ...] = ()
    ) -> MessageRef | None:
        """Send markdown `text` where the answer would go; the message, None on failure."""
        return await self.write_within_budget(surface, lambda: surface.send(text, buttons=buttons))

    async def revise(
        self, surface: TelegramSurface, message_id: int, text: str, buttons: tuple[Button, ...] = ()
    ) -> None:
        """Edit one of the bot's messages (a model list) to show `text` and `buttons`."""
        ref = MessageRef(str(message_id))
        await self.write_within_budget(surface, lambda: surface.edit(ref, text, buttons=buttons))

    async def refuse(self, surface: TelegramSurface, refusal: Refusal) -> None:
        """Show a refusal's message (plain text), unless it is quiet (the user was told)."""
        if (text := refusal.shown) is not None:
            await self.say(surface, escape_markdown(text))

    # --- messages ---------------------------------------------------------------------------
    def command(self, update: Update, context: Context) -> Command | None:
        """Who sent a command where, and the surface its reply goes to (replying to it)."""
        if (parts := _parts(update)) is None:
            return None
        message, chat, user = parts
        surface = self.surface(context, chat, reply_to=message.message_id)
        return Command(message, origin_of(chat, user), surface)

    async def show(self, surface: TelegramSurface, result: Reply | Refusal) -> None:
        """A use case's result as a reply: its text, or the refusal (unless quiet)."""
        if isinstance(result, Refusal):
            await self.refuse(surface, result)
        else:
            await self.say(surface, reply_text(result))

    async def on_help(self, update: Update, context: Context) -> None:
        """/start and /help: what the bot does, the user's model, the commands."""
        if (cmd := self.command(update, context)) is None:
            return
        if (refusal := self.bridge.check_access(cmd.origin)) is not None:
            return await self.refuse(cmd.surface, refusal)
        model = await self.bridge.model_for(cmd.origin)
        await self.say(cmd.surface, help_text(model, context.bot.username))

    async def on_ask(self, update: Update, context: Context) -> None:
        """/ask PROMPT, anywhere."""
        if (parts := _parts(update)) is None:
            return
        message = parts[0]
        await self.answer(
            update, context, command_argument(message), replied_bot_message(message, context.bot.id)
        )

    async def on_web(self, update: Update, context: Context) -> None:
        """/web QUESTION: answer searching the web; /web alone: web search on/off here."""
        if (cmd := self.command(update, context)) is None:
            return
        question = command_argument(cmd.message)
        if question.strip():
            replied = replied_bot_message(cmd.message, context.bot.id)
            await self.answer(update, context, question, replied, web_search=True)
            return
        await self.show(cmd.surface, await self.bridge.set_web_search(cmd.origin))

    async def on_text(self, update: Update, context: Context) -> None:
        """Plain text: a prompt in private chats; in groups only if it mentions/replies to us."""
        if (parts := _parts(update)) is None:
            return
        message, chat, _ = parts
        replied = replied_bot_message(message, context.bot.id)
        mentioned = mentions(message, context.bot.username)
        text = addressed(message.text or "", chat, context.bot.username, mentioned, replied)
        if text is None:
            return  # group chatter not meant for the bot
        await self.answer(update, context, text, replied)

    async def on_media(self, update: Update, context: Context) -> None:
        """A photo, an album or a document: with a caption it is a question (in groups the
        caption mentions the bot, or it replies to an answer); without one, a hint."""
        if (parts := _parts(update)) is None:
            return
        message, chat, _ = parts

        async def ask(messages: list[Message]) -> None:
            given = next((m.caption for m in messages if m.caption), "") or ""
            replied = next(
                (r for m in messages if (r := replied_bot_message(m, context.bot.id))), None
            )
            mentioned = f"@{context.bot.username}".lower() in given.lower()
            caption = addressed(given, chat, context.bot.username, mentioned, replied)
            if caption is None:
                return  # group chatter not meant for the bot
            if not caption.strip():
                if chat.type == ChatType.PRIVATE:
                    surface = self.surface(context, chat, reply_to=message.message_id)
                    await self.say(surface, escape_markdown(PHOTO_HINT))
                return
            files = [a for m in messages for a in await attachments_of(context.bot, m)]
            await self.answer(update, context, caption, replied, attachments=files)

        await self.albums.collect(message, ask)

    async def answer(
        self,
        update: Update,
        context: Context,
        prompt: str,
        replied: int | None,
        *,
        attachments: list[Attachment] | None = None,
        web_search: bool | None = None,
    ) -> None:
        """Stream the answer to `prompt`; in groups it replies to the asker's message. A
        question replying to a photo or file of the user's brings it along."""
        if (parts := _parts(update)) is None:
            return
        message, chat, user = parts
        origin = origin_of(chat, user)
        surface = self.surface(context, chat, reply_to=message.message_id)
        if attachments is None:
            earlier = message.reply_to_message
            attachments = []
            if earlier is not None and replied is None and has_media(earlier):
                attachments = await attachments_of(context.bot, earlier)
        result = await self.bridge.ask(
            origin,
            prompt,
            surface,
            reply_to=str(replied) if replied is not None else None,
            attachments=attachments,
            web_search=web_search,
        )
        if isinstance(result, Refusal):
            await self.refuse(surface, result)

    async def on_stop(self, update: Update, context: Context) -> None:
        """/stop: stop the user's answer being written in this chat (drafts included)."""
        if (cmd := self.command(update, context)) is None:
            return
        if await self.bridge.stop_current(cmd.origin):
            return  # the answer itself now says "Stopped"
        if (refusal := self.bridge.check_access(cmd.origin)) is not None:
            return await self.refuse(cmd.surface, refusal)
        await self.say(cmd.surface, "There is no answer of yours being written here.")

    async def on_imagine(self, update: Update, context: Context) -> None:
        """/imagine PROMPT: core shows progress, uploads the picture or shows the failure."""
        if (cmd := self.command(update, context)) is None:
            return
        result = await self.bridge.imagine(cmd.origin, command_argument(cmd.message), cmd.surface)
        if isinstance(result, Refusal):
            await self.refuse(cmd.surface, result)

    async def on_models(self, update: Update, context: Context) -> None:
        """/models: the first page of chat models as buttons."""
        if (cmd := self.command(update, context)) is None:
            return
        page = await self.bridge.models(cmd.origin)
        if isinstance(page, Refusal):
            return await self.refuse(cmd.surface, page)
        text, buttons = models_view(page)
        await self.say(cmd.surface, text, buttons)

    async def on_model(self, update: Update, context: Context) -> None:
        """/model NAME: choose a model by name (suggestions come with a refusal)."""
        if (cmd := self.command(update, context)) is None:
            return
        if name := command_argument(cmd.message):
            return await self.show(cmd.surface, await self.bridge.set_model(cmd.origin, name))
        if (refusal := self.bridge.check_access(cmd.origin)) is not None:
            return await self.refuse(cmd.surface, refusal)
        await self.say(cmd.surface, current_model_text(await self.bridge.model_for(cmd.origin)))

    async def on_reset(self, update: Update, context: Context) -> None:
        """/reset and /new: the next message starts a new conversation."""
        if (cmd := self.command(update, context)) is not None:
            await self.show(cmd.surface, await self.bridge.reset(cmd.origin))

    async def on_system(self, update: Update, context: Context) -> None:
        """/system TEXT: this chat's persona (admins; core refuses others); empty: default."""
        if (cmd := self.command(update, context)) is not None:
            result = await self.bridge.set_system_prompt(cmd.origin, command_argument(cmd.message))
            await self.show(cmd.surface, result)

    async def on_status(self, update: Update, context: Context) -> None:
        """/status: a few lines about the user's model, limits and conversation."""
        if (cmd := self.command(update, context)) is not None:
            await self.show(cmd.surface, await self.bridge.status(cmd.origin))

    # --- buttons ----------------------------------------------------------------------------
    async def on_button(self, update: Update, context: Context) -> None:
        """Any button press, routed by its callback data. Data we never send (empty, malformed,
        from an older version, forged) is answered with "this button is no longer valid"."""
        query = update.callback_query
        handler = self.button_handler(query.data if query is not None else None)
        if handler is None:
            return await _answer_stale(update)
        await handler(update, context)

    def button_handler(self, data: str | None) -> ButtonHandler | None:
        """The handler for a button's callback data, None when it is none of ours."""
        action = ANSWER_DATA.action_of(data)
        if action == "stop":
            return self.on_stop_button
        if action == "regenerate":
            return self.on_regenerate_button
        if action == "continue":
            return self.on_continue_button
        if data is None:
            return None
        if MODEL_PAGE_DATA.fullmatch(data):
            return self.on_model_page
        if MODEL_NAME_DATA.fullmatch(data) or MODEL_INDEX_DATA.fullmatch(data):
            return self.on_model_button
        return None

    async def on_stop_button(self, update: Update, context: Context) -> None:
        """⏹ Stop under an answer being written."""
        if (found := _button(update)) is None:
            return await _answer_stale(update)
        query, message, user = found
        result = await self.bridge.stop(origin_of(message.chat, user), str(message.message_id))
        await CallbackAck(query)(stop_text(result))

    async def on_regenerate_button(self, update: Update, context: Context) -> None:
        """🔁 Regenerate under an answer: a new answer to the same question."""
        await self.answer_pressed(
            update,
            context,
            lambda origin, surface, answer: self.bridge.regenerate(origin, answer, surface),
            replying_to_answer=False,  # the new answer replies to the asker's message
        )

    async def on_continue_button(self, update: Update, context: Context) -> None:
        """▶️ Continue under an answer cut at the length limit: the rest, replying to it."""
        await self.answer_pressed(
            update,
            context,
            lambda origin, surface, answer: self.bridge.continue_answer(
                origin, surface, message_id=answer
            ),
            replying_to_answer=True,
        )

    async def answer_pressed(
        self,
        update: Update,
        context: Context,
        run: Callable[[Origin, TelegramSurface, str], Awaitable[Answered | Refusal]],
        *,
        replying_to_answer: bool,
    ) -> None:
        """A button under an answer that writes a new one: `run` the use case with the pressed
        answer's message id; the press is acknowledged at the first write (or with the
        refusal). The new answer replies to the pressed one, or to the message it replied to."""
        if (found := _button(update)) is None:
            return await _answer_stale(update)
        query, message, user = found
        ack = CallbackAck(query)
        if replying_to_answer:
            reply_to: int | None = message.message_id
        else:
            reply_to = message.reply_to_message.message_id if message.reply_to_message else None
        surface = self.surface(context, message.chat, reply_to=reply_to, on_first_write=ack)
        result = await run(origin_of(message.chat, user), surface, str(message.message_id))
        if isinstance(result, Refusal):
            await ack(result.shown)
        else:
            await ack()

    async def on_model_page(self, update: Update, context: Context) -> None:
        """◀ ▶ under the model list."""
        if (found := _button(update)) is None:
            return await _answer_stale(update)
        query, message, user = found
        ack = CallbackAck(query)
        number = int((query.data or "mp:0").removeprefix("mp:"))
        page = await self.bridge.models(origin_of(message.chat, user), page=number)
        if isinstance(page, Refusal):
            await ack(page.shown)
            return
        await ack()
        text, buttons = models_view(page)
        surface = self.surface(context, message.chat, reply_to=None)
        await self.revise(surface, message.message_id, text, buttons)

    async def on_model_button(self, update: Update, context: Context) -> None:
        """A model under the model list: choose it, and say so in place of the list."""
        if (found := _button(update)) is None:
            return await _answer_stale(update)
        query, message, user = found
        ack = CallbackAck(query)
        origin = origin_of(message.chat, user)
        name = await self._model_of_button(origin, query.data or "")
        if name is None:
            await ack("This list is out of date; open /models again.")
            return
        result = await self.bridge.set_model(origin, name)
        if isinstance(result, Refusal):
            await ack(result.shown)
            return
        await ack(f"✅ {result.model}")
        surface = self.surface(context, message.chat, reply_to=None)
        await self.revise(surface, message.message_id, model_chosen_text(result))

    async def _model_of_button(self, origin: Origin, data: str) -> str | None:
        if data.startswith("m:"):
            return data.removeprefix("m:")
        _, page_number, index = data.split(":")
        page = await self.bridge.models(origin, page=int(page_number))
        if isinstance(page, Refusal) or page.page != int(page_number):
            return None
        items = page.items
        return items[int(index)].id if int(index) < len(items) else None

    # --- errors -----------------------------------------------------------------------------
    async def on_error(self, update: object, context: Context) -> None:
        """The one error handler: log what failed (never the token: logging redacts it)."""
        update_id = update.update_id if isinstance(update, Update) else None
        error = context.error
        if error is None:
            return
        log.error(
            "error while handling update %s: %r",
            update_id,
            error,
            exc_info=(type(error), error, error.__traceback__),
        )


def _parts(update: Update) -> tuple[Message, Chat, User] | None:
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None or user is None:
        return None
    return message, chat, user


def _button(update: Update) -> tuple[CallbackQuery, Message, User] | None:
    query = update.callback_query
    if query is None or not isinstance(query.message, Message):
        return None
    return query, query.message, query.from_user


async def _answer_stale(update: Update) -> None:
    """A press we cannot act on: say so (it also stops the button's spinner)."""
    if update.callback_query is not None:
        await CallbackAck(update.callback_query)(STALE_BUTTON)


def build_application(bridge: Bridge, settings: TelegramSettings) -> TelegramApp:
    """The PTB Application for the configured bot, handlers registered, updates concurrent."""
    if settings.telegram_token is None:
        raise SettingsError("TELEGRAM_TOKEN is not set")
    app: TelegramApp = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .base_file_url(settings.telegram_base_file_url)
        .concurrent_updates(True)  # several answers stream at once
        # The long poll holds one connection; the final getUpdates that confirms the offset at
        # shutdown must not wait for it to be released.
        .get_updates_connection_pool_size(2)
        .build()
    )
    bot = TelegramBot(bridge, settings.telegram_stream_mode)
    app.bot_data[STATE_KEY] = bot
    bot.register(app)
    return app


async def serve(
    bridge: Bridge,
    settings: TelegramSettings | None = None,
    *,
    ready: asyncio.Event | None = None,
    routes: Routes | None = None,
) -> None:
    """Receive updates until cancelled (long polling, or the webhook at TELEGRAM_WEBHOOK_URL
    served on `routes`); then stop answers, polling and the app cleanly. `settings`: Telegram's
    section (default: read from the environment and `.env`)."""
    if settings is None:
        settings = load_telegram_settings(bridge.settings)
    app = build_application(bridge, settings)
    bot: TelegramBot = app.bot_data[STATE_KEY]
    webhook_path = settings.telegram_webhook_path
    if webhook_path is not None and routes is None:
        raise SettingsError("TELEGRAM_WEBHOOK_URL is served by BRIDGE_HTTP_ADDR, which is off")
    await app.initialize()
    try:
        try:
            await app.bot.set_my_commands(COMMANDS)
        except TelegramError as exc:
            log.warning("could not set the command list: %s", exc.message)
        await app.start()
        if webhook_path is not None and routes is not None:
            await _receive_webhooks(app, bridge, settings, routes, webhook_path)
        else:
            await _start_polling(app)
        await bridge.end_interrupted(PLATFORM, bot.chat_surface(app.bot))
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        if webhook_path is not None and routes is not None:
            routes.remove_route(webhook_path)  # the webhook stays set: other replicas serve it
        await _shutdown(app, bot)


async def _start_polling(app: TelegramApp) -> None:
    if app.updater is None:
        raise RuntimeError("the application has no updater")
    await app.updater.start_polling(
        drop_pending_updates=False,
        allowed_updates=ALLOWED_UPDATES,
    )
    log.info("Telegram: polling as @%s", app.bot.username)


async def _receive_webhooks(
    app: TelegramApp, bridge: Bridge, settings: TelegramSettings, routes: Routes, path: str
) -> None:
    """Serve `path`, then tell Telegram to post there (pending updates are kept)."""
    secret = settings.telegram_webhook_secret
    if secret is None:  # the settings refuse this; here for the type checker
        raise SettingsError("TELEGRAM_WEBHOOK_SECRET is not set")
    routes.add_route(path, WebhookReceiver(app, bridge, secret.get_secret_value()))
    try:
        await app.bot.set_webhook(
            settings.telegram_webhook_url,
            secret_token=secret.get_secret_value(),
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )
    except TelegramError as exc:
        raise SettingsError(
            f"Telegram refused TELEGRAM_WEBHOOK_URL: {exc.message} (Telegram posts only to "
            "https:// on port 443, 80, 88 or 8443)"
        ) from None
    log.info("Telegram: receiving updates as @%s at the webhook path %s", app.bot.username, path)


async def _shutdown(app: TelegramApp, bot: TelegramBot) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    bot.bridge.shutdown()
    if app.running:
        await app.stop()  # waits for the handlers, which finish their answers' last writes
    await app.shutdown()
    log.info("Telegram: stopped")
