"""The Discord adapter: slash commands, mentions, DMs and buttons become `Bridge` use cases.

What users can do
    /ask prompt [model] [private], /imagine prompt [model] [size], /models [filter], /model name,
    /reset, /system prompt (admins), /status; mention the bot or DM it; reply to one of its answers
    to continue that conversation (replying to an older answer forks it); press Stop or Regenerate.

Gateway intents (for the README)
    The bot asks only for `guilds`, `guild_messages` and `dm_messages`, none of them privileged.
    It does not need the privileged Message Content intent: Discord still delivers the text of
    DMs, of messages that mention the bot, and of replies that ping it (Discord's default for a
    reply). Slash commands never need it. A reply to the bot's answer with the ping switched off
    arrives with empty text and is ignored, unless the Message Content intent is enabled in the
    Developer Portal (Bot → Privileged Gateway Intents) and DISCORD_MESSAGE_CONTENT=true is set.

Networking
    `DISCORD_API_BASE_URL` and `DISCORD_GATEWAY_URL` point discord.py at Discord (the defaults)
    or at a REST/gateway proxy, as large bots run in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

from bots.discord.inflight import InFlight
from bots.discord.media import attachments_of
from bots.discord.settings import DiscordSettings, load_discord_settings
from bots.discord.surface import (
    ANSWER_IDS,
    DEFAULT_ATTACHMENT_LIMIT,
    ChannelSurface,
    InteractionSurface,
    buttons_view,
    rate_limit_observer,
)
from bots.discord.texts import SORRY, parse_page_id
from core.bridge import Bridge, ModelKind
from core.conversations import Origin
from core.http import Routes
from core.menus import model_menu
from core.notices import ForbiddenNotices
from core.results import Answered, ModelPage, Refusal, StopResult
from core.settings import SettingsError
from core.texts import STALE_BUTTON, reply_text, stop_text

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_CHOICES = 25
PROMPT_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
INTENTS_NOTICE = (
    "Discord intents: guilds, guild_messages, dm_messages. Mentions, DMs and replies that ping "
    "the bot work without the privileged Message Content intent; replies without the ping "
    "need it (enable it in the Developer Portal and set DISCORD_MESSAGE_CONTENT=true)."
)
SHUTDOWN_GRACE = 5.0  # seconds for stopped answers to write their final edit
_PLATFORM_ERRORS = (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError)


def origin_of_interaction(interaction: discord.Interaction) -> Origin:
    """The platform-neutral place of an interaction."""
    channel = interaction.channel
    return Origin(
        platform=PLATFORM,
        chat_id=str(interaction.channel_id),
        user_id=str(interaction.user.id),
        space_id=str(interaction.guild_id) if interaction.guild_id else None,
        is_private=channel is not None and channel.type is discord.ChannelType.private,
    )


def origin_of_message(message: discord.Message) -> Origin:
    """The platform-neutral place of a message."""
    return Origin(
        platform=PLATFORM,
        chat_id=str(message.channel.id),
        user_id=str(message.author.id),
        space_id=str(message.guild.id) if message.guild else None,
        is_private=message.channel.type is discord.ChannelType.private,
    )


class InteractionTokenFilter(logging.Filter):
    """Hides interaction tokens in discord.py's debug logs (webhook URLs, raw gateway events).

    An interaction token lets anyone edit the bot's answer for 15 minutes: it is a secret too.
    """

    _PATTERNS = (
        (re.compile(r"(/(?:webhooks|interactions)/\d+/)[\w.\-]+"), r"\1***"),
        (re.compile(r"('token': ')[^']+(')"), r"\1***\2"),
    )
    LOGGERS = ("discord.webhook.async_", "discord.gateway", "discord.http", "discord.state")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        record.msg, record.args = text, None
        return True

    @classmethod
    def install(cls) -> None:
        """Attach one filter to each discord.py logger that writes tokens (idempotent)."""
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())


def bridge_intents(*, message_content: bool = False) -> discord.Intents:
    """The fewest intents the adapter needs (see the module docstring)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


class BridgeTree(app_commands.CommandTree["BridgeClient"]):
    """The command tree; it counts each command's handler as in flight."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Every command may run (access is the core's decision); count it for shutdown."""
        self.client.inflight.track_current()
        return True


class BridgeClient(discord.Client):
    """The discord.py client: translates events into `Bridge` calls and shows the results."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        guild_ready_timeout: float | None = None,
        message_content: bool = False,
        shards: dict[str, Any] | None = None,
        command_guilds: tuple[str, ...] = (),
    ) -> None:
        options: dict[str, Any] = dict(shards or {})
        if guild_ready_timeout is not None:
            options["guild_ready_timeout"] = guild_ready_timeout
        super().__init__(
            intents=bridge_intents(message_content=message_content),
            allowed_mentions=discord.AllowedMentions.none(),  # model output never pings
            http_trace=rate_limit_observer(bridge.writes.observe),
            **options,
        )
        self.bridge = bridge
        self.command_guilds = command_guilds  # DISCORD_GUILD_IDS
        self.tree = BridgeTree(self)
        self.notices = ForbiddenNotices()
        self.inflight = InFlight()
        self.ready_event: asyncio.Event | None = None
        self._synced = False
        self.tree.error(self.on_app_command_error)
        register_commands(self)

    # --- lifecycle --------------------------------------------------------------------------
    async def on_ready(self) -> None:
        """Sync the slash commands once, then tell the caller we are ready."""
        if not self._synced:
            self._synced = True
            await self.sync_commands()
            await self.bridge.end_interrupted(PLATFORM, self.channel_surface)
        log.info("Discord: connected as %s", self.user)
        if self.ready_event is not None:
            self.ready_event.set()

    def channel_surface(self, channel_id: str) -> ChannelSurface:
        """Where the bot edits its own messages in a channel it knows only by id."""
        return ChannelSurface(self.get_partial_messageable(int(channel_id)), notices=self.notices)

    async def sync_commands(self) -> None:
        """Register the commands globally, or in DISCORD_GUILD_IDS (visible there at once)."""
        guild_ids = self.command_guilds
        try:
            if not guild_ids:
                synced = await self.tree.sync()
                log.info("Discord: %d global commands synced", len(synced))
                return
            for guild_id in guild_ids:
                guild = discord.Object(int(guild_id))
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("Discord: %d commands synced to guild %s", len(synced), guild_id)
        except (discord.HTTPException, ValueError) as exc:
            log.error("Discord: could not sync the slash commands: %s", exc)

    # --- errors -----------------------------------------------------------------------------
    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """The one handler for errors in events (messages, buttons): log, apologise if we can."""
        log.exception("Discord: error in %s", event_method)
        interaction = next((a for a in args if isinstance(a, discord.Interaction)), None)
        if interaction is not None:
            await self.apologize(interaction)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The one handler for errors in slash commands: log, apologise if we can."""
        name = interaction.command.name if interaction.command else "?"
        log.error("Discord: /%s failed", name, exc_info=error)
        await self.apologize(interaction)

    async def apologize(self, interaction: discord.Interaction) -> None:
        """Tell the user privately that something failed (interactions must be answered)."""
        try:
            if interaction.response.is_done():
                await interaction.followup.send(SORRY, ephemeral=True)
            else:
                await interaction.response.send_message(SORRY, ephemeral=True)
        except _PLATFORM_ERRORS as exc:
            log.info("Discord: could not apologise: %r", exc)

    # --- showing results --------------------------------------------------------------------
    async def reply(self, interaction: discord.Interaction, text: str) -> None:
        """A private reply; after an ephemeral defer it fills the deferred message."""
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    async def refuse_early(self, interaction: discord.Interaction, origin: Origin) -> bool:
        """Answer privately and return True when the user may not use the bot here."""
        refusal = self.bridge.check_access(origin)
        if refusal is None:
            return False
        await self.reply(interaction, refusal.message)
        return True

    @contextlib.asynccontextmanager
    async def answer_surface(
        self, interaction: discord.Interaction, *, ephemeral: bool, text_soon: bool = True
    ) -> AsyncIterator[InteractionSurface]:
        """The surface an interaction's answer goes to, acknowledged within Discord's 3 s: by
        the first text when it comes in time (`text_soon`), else by deferring ("thinking…")."""
        surface = InteractionSurface(
            interaction, clock=self.bridge.clock, notices=self.notices, ephemeral=ephemeral
        )
        self.inflight.track_current()
        if not text_soon:
            await surface.defer()
        acknowledge = asyncio.create_task(surface.respond_in_time())
        try:
            yield surface
        finally:
            acknowledge.cancel()

    async def answer(
        self,
        interaction: discord.Interaction,
        run: Callable[[Origin, InteractionSurface], Awaitable[object]],
        *,
        ephemeral: bool,
        text_soon: bool = True,
    ) -> None:
        """Unless the user may not use the bot here, `run` the use case on the interaction's
        `answer_surface`; a refusal it returns replaces the answer."""
        origin = origin_of_interaction(interaction)
        if await self.refuse_early(interaction, origin):
            return
        async with self.answer_surface(
            interaction, ephemeral=ephemeral, text_soon=text_soon
        ) as surface:
            result = await run(origin, surface)
            if isinstance(result, Refusal):
                await surface.refuse(result.message)

    # --- slash commands ---------------------------------------------------------------------
    async def cmd_ask(
        self,
        interaction: discord.Interaction,
        prompt: str,
        model: str | None,
        private: bool,
        image: discord.Attachment | None = None,
        web: bool = False,
    ) -> None:
        """/ask: defer at once, then stream the answer into the deferred message."""

        async def ask(origin: Origin, surface: InteractionSurface) -> Answered | Refusal:
            files = await attachments_of([image]) if image is not None else []
            return await self.bridge.ask(
                origin, prompt, surface, model=model, attachments=files,
                web_search=True if web else None,
            )  # fmt: skip

        await self.answer(interaction, ask, ephemeral=private)

    async def cmd_imagine(
        self, interaction: discord.Interaction, prompt: str, model: str | None, size: str | None
    ) -> None:
        """/imagine: defer, then the image (or the error) replaces the deferred message."""
        await self.answer(
            interaction,
            lambda origin, surface: self.bridge.imagine(
                origin, prompt, surface, model=model, size=size
            ),
            ephemeral=False,
            text_soon=False,
        )

    async def cmd_models(self, interaction: discord.Interaction, query: str) -> None:
        """/models: the first page of the (filtered) model list, privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        page = await self.bridge.models(origin_of_interaction(interaction), query=query)
        await self.show_models(interaction, page)

    async def show_models(
        self, interaction: discord.Interaction, page: ModelPage | Refusal
    ) -> None:
        """Fill the (deferred) message with a page of models and its page buttons."""
        if isinstance(page, Refusal):
            await interaction.edit_original_response(content=page.message, view=None)
            return
        menu = model_menu(page, choices=False)  # the models are listed in the text
        await interaction.edit_original_response(content=menu.text, view=buttons_view(menu.buttons))

    async def cmd_model(self, interaction: discord.Interaction, name: str, here: bool) -> None:
        """/model: choose the user's model (everywhere, or only in this channel)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await self.bridge.set_model(
            origin_of_interaction(interaction), name, scope="chat" if here else "user"
        )
        await self.reply(interaction, reply_text(result))

    async def model_choices(
        self, interaction: discord.Interaction, current: str, kind: ModelKind
    ) -> list[app_commands.Choice[str]]:
        """Autocomplete: up to 25 models whose name contains what the user typed."""
        page = await self.bridge.models(
            origin_of_interaction(interaction), query=current, page_size=MAX_CHOICES, kind=kind
        )
        if isinstance(page, Refusal):
            return []
        return [app_commands.Choice(name=m.id[:100], value=m.id[:100]) for m in page.items]

    async def cmd_reset(self, interaction: discord.Interaction) -> None:
        """/reset: start a new conversation in this channel."""
        result = await self.bridge.reset(origin_of_interaction(interaction))
        await self.reply(interaction, reply_text(result))

    async def cmd_system(self, interaction: discord.Interaction, prompt: str) -> None:
        """/system: set this channel's system prompt (the core lets only admins)."""
        result = await self.bridge.set_system_prompt(origin_of_interaction(interaction), prompt)
        await self.reply(interaction, reply_text(result))

    async def cmd_status(self, interaction: discord.Interaction) -> None:
        """/status: the user's model, limits and this channel's conversation."""
        result = await self.bridge.status(origin_of_interaction(interaction))
        await self.reply(interaction, reply_text(result))

    # --- buttons ----------------------------------------------------------------------------
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Route button clicks (custom ids g4f:*); slash commands go through the tree."""
        if interaction.type is not discord.InteractionType.component:
            return
        self.inflight.track_current()
        custom_id = str(interaction.data.get("custom_id", "")) if interaction.data else ""
        message = interaction.message
        if message is None:
            return
        action = ANSWER_IDS.action_of(custom_id)
        if action == "stop":
            await self.stop_clicked(interaction, message)
        elif action == "regenerate":
            await self.regenerate_clicked(interaction, message)
        elif action == "continue":
            await self.continue_clicked(interaction, message)
        elif (page := parse_page_id(custom_id)) is not None:
            await self.page_clicked(interaction, *page)
        else:  # a button of an older version, or forged: answered so the click does not hang
            await interaction.response.send_message(STALE_BUTTON, ephemeral=True)

    async def stop_clicked(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """Stop: end the answer streaming in the clicked message (its asker or an admin)."""
        result = await self.bridge.stop(origin_of_interaction(interaction), str(message.id))
        if result is StopResult.STOPPED:
            await interaction.response.defer()  # the answer's own final edit shows "Stopped"
        else:
            await interaction.response.send_message(stop_text(result), ephemeral=True)

    async def regenerate_clicked(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """Regenerate: answer the same question again, as a new message (a new branch)."""
        await self.answer(
            interaction,
            lambda origin, surface: self.bridge.regenerate(origin, str(message.id), surface),
            ephemeral=message.flags.ephemeral,
        )

    async def continue_clicked(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """Continue: the rest of an answer cut at the length limit, as a reply to it."""
        await self.answer(
            interaction,
            lambda origin, surface: self.bridge.continue_answer(
                origin, surface, message_id=str(message.id)
            ),
            ephemeral=message.flags.ephemeral,
        )

    async def page_clicked(self, interaction: discord.Interaction, page: int, query: str) -> None:
        """Turn a page of a /models list."""
        await interaction.response.defer()
        result = await self.bridge.models(
            origin_of_interaction(interaction), query=query, page=page
        )
        await self.show_models(interaction, result)

    # --- messages ---------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        """A DM, a mention of the bot or a reply to one of its answers is a prompt."""
        prompt = self.prompt_of(message)
        if prompt is None:
            return
        reference = message.reference
        reply_to = (
            str(reference.message_id)
            if reference is not None
            and reference.message_id is not None
            and reference.channel_id == message.channel.id
            else None
        )
        guild = message.guild
        surface = ChannelSurface(
            self.get_partial_messageable(message.channel.id, guild_id=guild.id if guild else None),
            notices=self.notices,
            reply_to=message,
            attachment_limit=guild.filesize_limit if guild else DEFAULT_ATTACHMENT_LIMIT,
        )
        origin = origin_of_message(message)
        self.inflight.track_current()
        files = await attachments_of(message.attachments)
        result = await self.bridge.ask(
            origin, prompt, surface, reply_to=reply_to, attachments=files
        )
        if isinstance(result, Refusal) and (text := result.shown) is not None:
            # A reply of our own, within the channel's write budget shared with the answers.
            await self.bridge.write_within_budget(surface, lambda: surface.send(text))

    def prompt_of(self, message: discord.Message) -> str | None:
        """The prompt in a message addressed to the bot (mention removed), else None."""
        me = self.user
        if me is None or message.author.bot or message.type not in PROMPT_MESSAGE_TYPES:
            return None
        direct = message.channel.type is discord.ChannelType.private
        mentioned = any(user.id == me.id for user in message.mentions)
        resolved = message.reference.resolved if message.reference else None
        replied = isinstance(resolved, discord.Message) and resolved.author.id == me.id
        if not (direct or mentioned or replied):
            return None
        text = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        if not text and not (direct or mentioned):
            log.debug("Discord: a reply without text (needs the Message Content intent)")
            return None
        return text


def register_commands(bot: BridgeClient) -> None:
    """Declare the slash commands; each one hands over to a `BridgeClient` method."""
    tree = bot.tree

    async def chat_models(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await bot.model_choices(interaction, current, "chat")

    async def image_models(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await bot.model_choices(interaction, current, "image")

    @tree.command(name="ask", description="Ask the AI a question")
    @app_commands.describe(
        prompt="Your question",
        model="Model for this answer (default: yours)",
        private="Only you see the answer",
        image="A picture (or a text file) to ask about",
        web="Let the model search the web (sources are listed after the answer)",
    )
    @app_commands.autocomplete(model=chat_models)
    async def ask(
        interaction: discord.Interaction,
        prompt: str,
        model: str | None = None,
        private: bool = False,
        image: discord.Attachment | None = None,
        web: bool = False,
    ) -> None:
        await bot.cmd_ask(interaction, prompt, model, private, image, web)

    @tree.command(name="imagine", description="Draw a picture")
    @app_commands.describe(
        prompt="What to draw", model="Image model", size="Size as WxH, e.g. 1024x1024"
    )
    @app_commands.autocomplete(model=image_models)
    async def imagine(
        interaction: discord.Interaction,
        prompt: str,
        model: str | None = None,
        size: str | None = None,
    ) -> None:
        await bot.cmd_imagine(interaction, prompt, model, size)

    @tree.command(name="models", description="List the chat models")
    @app_commands.describe(filter="Only models whose name contains this")
    async def models(interaction: discord.Interaction, filter: str = "") -> None:
        await bot.cmd_models(interaction, filter)

    @tree.command(name="model", description="Choose your chat model")
    @app_commands.describe(name="Model name", here="Only in this channel")
    @app_commands.autocomplete(name=chat_models)
    async def model(interaction: discord.Interaction, name: str, here: bool = False) -> None:
        await bot.cmd_model(interaction, name, here)

    @tree.command(name="reset", description="Start a new conversation in this channel")
    async def reset(interaction: discord.Interaction) -> None:
        await bot.cmd_reset(interaction)

    @tree.command(name="system", description="Set this channel's persona (admins)")
    @app_commands.describe(prompt="The system prompt; leave empty for the default")
    async def system(interaction: discord.Interaction, prompt: str = "") -> None:
        await bot.cmd_system(interaction, prompt)

    @tree.command(name="status", description="Your model, limits and conversation")
    async def status(interaction: discord.Interaction) -> None:
        await bot.cmd_status(interaction)


class ShardedBridgeClient(BridgeClient, discord.AutoShardedClient):
    """`BridgeClient` running several shards (or Discord's recommended count) in one process."""


def shard_options(settings: DiscordSettings) -> tuple[bool, dict[str, Any]]:
    """Whether this process runs several shards, and the client's shard keyword arguments.

    No DISCORD_SHARD_COUNT: one shard, as ever. One id: that shard of the count. Several ids, a
    count alone (every shard here) or ``auto``: an AutoShardedClient (``auto`` asks Discord).
    """
    count, ids = settings.discord_shard_count, settings.discord_shards
    if count is None:
        return False, {}
    if count == "auto":
        return True, {}
    if len(ids) == 1:
        return False, {"shard_id": ids[0], "shard_count": count}
    return True, {"shard_count": count, "shard_ids": list(ids) if ids else None}


def build_client(
    bridge: Bridge, settings: DiscordSettings, *, guild_ready_timeout: float | None = None
) -> BridgeClient:
    """A ready-to-run client with its command tree (not logged in)."""
    several, shards = shard_options(settings)
    kind = ShardedBridgeClient if several else BridgeClient
    return kind(
        bridge,
        guild_ready_timeout=guild_ready_timeout,
        message_content=settings.discord_message_content,
        shards=shards,
        command_guilds=settings.discord_guild_ids,
    )


def point_at(settings: DiscordSettings) -> None:
    """Send discord.py's REST calls and gateway connection where the settings say."""
    discord.http.Route.BASE = settings.discord_api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def serve(
    bridge: Bridge,
    settings: DiscordSettings | None = None,
    *,
    ready: asyncio.Event | None = None,
    routes: Routes | None = None,
    guild_ready_timeout: float | None = None,
    shutdown_grace: float = SHUTDOWN_GRACE,
) -> None:
    """Run the Discord bot until cancelled, then disconnect cleanly.

    On cancellation, answers still streaming are stopped (they end with "⏹ Stopped."), handlers
    get `shutdown_grace` seconds to finish and are cancelled after that; then the connection
    closes. `ready` is set once the gateway session is ready and the commands are synced.
    Discord serves no paths of its own: `routes` is unused. `settings`: Discord's section
    (default: read from the environment and `.env`).
    """
    if settings is None:
        settings = load_discord_settings()
    token = settings.discord_token
    if token is None:
        raise SettingsError("DISCORD_TOKEN is not set")
    point_at(settings)
    client = build_client(bridge, settings, guild_ready_timeout=guild_ready_timeout)
    client.ready_event = ready
    InteractionTokenFilter.install()
    log.info(INTENTS_NOTICE)
    async with client:
        try:
            await client.login(token.get_secret_value())
            await client.connect(reconnect=True)
        finally:
            await client.inflight.shutdown(bridge, grace=shutdown_grace)
