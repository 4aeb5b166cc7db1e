"""The Discord emulator against the real discord.py client (Client + app_commands.CommandTree)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands

from tests.fakes.clock import ManualClock
from tests.fakes.discord_server import FakeDiscord, FakeMessage

TOKEN = "fake-bot-token-not-real"


@contextlib.asynccontextmanager
async def emulator(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with discord.py's REST base and gateway pointed at it."""
    async with FakeDiscord(**kwargs) as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
        )
        yield fake


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """Default emulator."""
    async with emulator(monkeypatch) as server:
        yield server


def make_bot() -> tuple[discord.Client, app_commands.CommandTree[discord.Client]]:
    """A Client with message content intent, a fast on_ready and a command tree."""
    intents = discord.Intents.default()
    intents.message_content = True
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    return client, app_commands.CommandTree(client)


@contextlib.asynccontextmanager
async def running(client: discord.Client) -> AsyncIterator[discord.Client]:
    """Log in, connect (no reconnect), wait for on_ready; always close."""
    await client.login(TOKEN)
    task = asyncio.create_task(client.connect(reconnect=False))
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        await asyncio.wait({ready, task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise AssertionError(
                f"client not ready: {task.exception() if task.done() else 'timeout'}"
            )
        yield client
    finally:
        ready.cancel()
        await client.close()
        await asyncio.wait_for(task, 5)


def original(fake: FakeDiscord, interaction_id: int) -> FakeMessage | None:
    """The interaction's @original message, if it exists."""
    message_id = fake.interaction(interaction_id).original_message_id
    if message_id is None:
        return None
    try:
        return fake.message(message_id)
    except KeyError:
        return None


def shows(fake: FakeDiscord, interaction_id: int, content: str) -> Callable[[], bool]:
    """Predicate: @original shows `content`."""

    def check() -> bool:
        msg = original(fake, interaction_id)
        return msg is not None and msg.content == content

    return check


async def request(
    fake: FakeDiscord, method: str, path: str, body: Any = None, *, auth: bool = True
) -> tuple[int, dict[str, str], Any]:
    """A request straight to the emulator: (status, response headers, JSON body)."""
    headers = {"Authorization": f"Bot {TOKEN}"} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.api_base + path, json=body, headers=headers) as resp,
    ):
        payload = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, dict(resp.headers), payload


async def raw(
    fake: FakeDiscord, method: str, path: str, body: Any = None, *, auth: bool = True
) -> tuple[int, str, Any]:
    """A request straight to the emulator: (status, content type header, JSON body)."""
    status, headers, payload = await request(fake, method, path, body, auth=auth)
    return status, headers.get("Content-Type", ""), payload


async def test_login_ready_and_auth(fake: FakeDiscord) -> None:
    client, _ = make_bot()
    async with running(client):
        assert client.user is not None and client.user.id == fake.bot_user_id
        assert client.application_id == fake.application_id
        guild = client.get_guild(fake.guild_id)
        assert guild is not None and guild.get_channel(fake.channel_id) is not None
    routes = {(c.method, c.route) for c in fake.calls}
    assert {("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")} <= routes
    assert fake.identifies[0]["intents"] == client.intents.value
    status, content_type, body = await raw(fake, "GET", "/users/@me", auth=False)
    assert (status, content_type, body["code"]) == (401, "application/json", 0)


async def test_tree_sync_registers_global_and_guild_commands(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    guild = discord.Object(fake.guild_id)

    @tree.command(name="ask", description="Ask the model")
    async def ask(interaction: discord.Interaction, prompt: str) -> None: ...

    @tree.command(name="reset", description="Forget", guild=guild)
    async def reset(interaction: discord.Interaction) -> None: ...

    async with running(client):
        synced = await tree.sync()
        guild_synced = await tree.sync(guild=guild)
    assert [c.name for c in synced] == ["ask"] and synced[0].options[0].name == "prompt"
    assert [c.name for c in guild_synced] == ["reset"]
    assert {(c["name"], c["scope"]) for c in fake.commands} == {
        ("ask", "global"),
        ("reset", "guild"),
    }


async def test_defer_then_edit_original_three_times(fake: FakeDiscord) -> None:
    client, tree = make_bot()

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        for i in range(3):
            await interaction.edit_original_response(content=f"{prompt} {i}")

    async with running(client):
        await tree.sync()
        inter = await fake.slash("ask", {"prompt": "hi"})
        await fake.wait_for(shows(fake, inter.id, "hi 2"))
    msg = original(fake, inter.id)
    assert msg is not None
    assert (msg.edits, msg.loading, msg.ephemeral) == (3, False, False)
    assert (msg.author_id, msg.interaction_id, msg.channel_id) == (
        fake.bot_user_id,
        inter.id,
        fake.channel_id,
    )
    assert inter.response_type == 5
    assert inter.payload["data"]["options"] == [{"name": "prompt", "type": 3, "value": "hi"}]


async def test_too_long_edit_raises_invalid_form_body(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    errors: list[discord.HTTPException] = []

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="x" * 2000)
        try:
            await interaction.edit_original_response(content="y" * 2001)
        except discord.HTTPException as exc:
            errors.append(exc)

    async with running(client):
        inter = await fake.slash("ask")
        await fake.wait_for(lambda: bool(errors))
    assert (errors[0].status, errors[0].code) == (400, 50035)
    assert "content" in str(errors[0]) and "2000 or fewer" in str(errors[0])
    msg = original(fake, inter.id)
    assert msg is not None and msg.content == "x" * 2000


async def test_channel_write_burst_gets_429_and_discord_py_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with emulator(monkeypatch, rate_limit_window=1.0) as fake:
        client, _ = make_bot()
        async with running(client):
            channel = client.get_channel(fake.channel_id)
            assert isinstance(channel, discord.TextChannel)
            first = await channel.send("v0")
            others = [await channel.send(f"other {i}") for i in range(2)]
            await asyncio.gather(
                *(first.edit(content=f"v{i}") for i in range(1, 5)),
                *(m.delete() for m in others),
                *(channel.send(f"tail {i}") for i in range(3)),
            )
        # Edits and deletes race in one bucket before discord.py knows it: one of the six is
        # refused. Creates are paced by discord.py from the headers of the first three.
        assert fake.rate_limited_by_bucket.keys() == {"edit"}
        assert fake.rate_limited == fake.rate_limited_by_bucket["edit"]
        assert 429 in {c.status for c in fake.calls}
        contents = [m.content for m in fake.messages(fake.channel_id)]
        assert contents[0] == "v4" and sorted(contents[1:]) == ["tail 0", "tail 1", "tail 2"]


async def test_creates_and_edits_are_counted_in_separate_buckets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now) as fake:
        path = f"/channels/{fake.channel_id}/messages"
        creates = [await request(fake, "POST", path, {"content": f"m{i}"}) for i in range(5)]
        assert [status for status, _, _ in creates] == [200] * 5
        assert [h["X-RateLimit-Remaining"] for _, h, _ in creates] == ["4", "3", "2", "1", "0"]
        status, headers, body = await request(fake, "POST", path, {"content": "one too many"})
        assert status == 429 and body["retry_after"] == 5.0
        create_hash = headers["X-RateLimit-Bucket"]
        # The create bucket is empty; edits and deletes have their own five.
        ids = [body["id"] for _, _, body in creates]
        edits = [await request(fake, "PATCH", f"{path}/{i}", {"content": "e"}) for i in ids]
        edits.append(await request(fake, "DELETE", f"{path}/{ids[0]}"))
        assert [status for status, _, _ in edits] == [200] * 5 + [429]
        edit_hash = edits[0][1]["X-RateLimit-Bucket"]
        assert edit_hash != create_hash
        assert fake.rate_limited_by_bucket == {"create": 1, "edit": 1}
        # Another channel has buckets of its own; the window ends on the injected clock.
        other = fake.add_channel()
        status, _, _ = await request(fake, "POST", f"/channels/{other}/messages", {"content": "x"})
        assert status == 200
        await clock.advance(5.0)
        status, _, _ = await request(fake, "POST", path, {"content": "after the window"})
        assert status == 200
        assert [m.content for m in fake.messages(fake.channel_id)] == ["e"] * 5 + [
            "after the window"
        ]


async def test_interaction_token_bucket_is_apart_from_the_channel_buckets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now) as fake:
        client, tree = make_bot()
        gate = asyncio.Event()
        statuses: list[int] = []

        @tree.command(name="ask", description="Ask")
        async def ask(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await gate.wait()
            assert interaction.token is not None
            webhook = f"/webhooks/{fake.application_id}/{interaction.token}/messages/@original"
            for i in range(6):
                status, _, _ = await request(
                    fake, "PATCH", webhook, {"content": f"t{i}"}, auth=False
                )
                statuses.append(status)

        async with running(client):
            inter = await fake.slash("ask")
            await fake.wait_for(lambda: inter.acknowledged)
            path = f"/channels/{fake.channel_id}/messages"
            for i in range(5):
                await request(fake, "POST", path, {"content": f"c{i}"})
            gate.set()
            await fake.wait_for(lambda: len(statuses) == 6)
        assert statuses == [200] * 5 + [429]
        assert fake.rate_limited_by_bucket == {"token": 1}


@dataclass
class GatedAsk:
    """An /ask command that defers, optionally shows `first`, waits for `gate`, then makes
    `attempts` (collecting the HTTP errors they raise) and finally runs `after`."""

    gate: asyncio.Event
    errors: list[discord.HTTPException]


Attempts = Callable[[discord.Interaction], list[Callable[[], Awaitable[object]]]]


def gated_ask(
    tree: app_commands.CommandTree[discord.Client],
    attempts: Attempts,
    *,
    first: str | None = None,
    after: Callable[[discord.Interaction], Awaitable[object]] | None = None,
) -> GatedAsk:
    gated = GatedAsk(asyncio.Event(), [])

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        if first is not None:
            await interaction.edit_original_response(content=first)
        await gated.gate.wait()
        for attempt in attempts(interaction):
            try:
                await attempt()
            except discord.HTTPException as exc:
                gated.errors.append(exc)
        if after is not None:
            await after(interaction)

    return gated


def edit_to(text: str) -> Attempts:
    return lambda interaction: [lambda: interaction.edit_original_response(content=text)]


async def test_deleted_message_raises_not_found(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    gated = gated_ask(tree, edit_to("second"), first="first")

    async with running(client):
        inter = await fake.slash("ask")
        await fake.wait_for(shows(fake, inter.id, "first"))
        assert inter.original_message_id is not None
        fake.delete_message(fake.channel_id, inter.original_message_id)
        gated.gate.set()
        await fake.wait_for(lambda: bool(gated.errors))
    assert (gated.errors[0].status, gated.errors[0].code) == (404, 10008)
    assert fake.messages(fake.channel_id) == []


async def test_expired_token_gives_invalid_webhook_token(fake: FakeDiscord) -> None:
    client, tree = make_bot()

    async def continue_in_channel(interaction: discord.Interaction) -> None:
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send("continued as a channel message")

    gated = gated_ask(
        tree,
        lambda interaction: [
            lambda: interaction.edit_original_response(content="late"),
            lambda: interaction.followup.send("late followup"),
        ],
        after=continue_in_channel,
    )

    async with running(client):
        inter = await fake.slash("ask")
        await fake.wait_for(lambda: inter.acknowledged)
        fake.expire_interaction(inter.token)
        gated.gate.set()
        await fake.wait_for(lambda: len(fake.messages(fake.channel_id)) == 2)
    assert [(e.status, e.code) for e in gated.errors] == [(401, 50027), (401, 50027)]
    assert fake.messages(fake.channel_id)[-1].content == "continued as a channel message"


async def test_token_ttl_follows_the_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now, interaction_token_ttl=900.0) as fake:
        client, tree = make_bot()
        gated = gated_ask(tree, edit_to("too late"), first="in time")

        async with running(client):
            inter = await fake.slash("ask")
            await fake.wait_for(shows(fake, inter.id, "in time"))
            await clock.advance(900.0)
            gated.gate.set()
            await fake.wait_for(lambda: bool(gated.errors))
        assert gated.errors[0].code == 50027


async def test_mention_and_reply_reach_on_message(fake: FakeDiscord) -> None:
    client, _ = make_bot()
    seen: list[discord.Message] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    async with running(client):
        first = await fake.user_message(fake.channel_id, "hello", mention_bot=True)
        second = await fake.user_message(fake.channel_id, "and?", reply_to=first)
        await fake.wait_for(lambda: len(seen) == 2)
    assert client.user is not None
    assert seen[0].id == first and client.user in seen[0].mentions
    assert seen[0].content == f"<@{fake.bot_user_id}> hello" and seen[0].author.id == 2001
    assert seen[1].id == second and seen[1].type is discord.MessageType.reply
    assert seen[1].reference is not None and seen[1].reference.message_id == first
    assert [m.reference for m in fake.messages(fake.channel_id)] == [None, first]


async def test_button_click_reaches_view_callback(fake: FakeDiscord) -> None:
    client, tree = make_bot()

    class Confirm(discord.ui.View):
        @discord.ui.button(label="OK", custom_id="ok")
        async def ok(
            self, interaction: discord.Interaction, button: discord.ui.Button[Any]
        ) -> None:
            await interaction.response.edit_message(content="clicked", view=None)

    @tree.command(name="btn", description="Button")
    async def btn(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("press", view=Confirm())

    async with running(client):
        inter = await fake.slash("btn")
        await fake.wait_for(shows(fake, inter.id, "press"))
        assert inter.original_message_id is not None
        click = await fake.click(inter.original_message_id, "ok")
        await fake.wait_for(shows(fake, inter.id, "clicked"))
    msg = original(fake, inter.id)
    assert msg is not None and msg.components == [] and msg.edits == 1
    assert (click.type, click.response_type) == (3, 7)


async def test_autocomplete_choices_are_recorded(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    models = ["gpt-4o", "gpt-4o-mini", "claude"]

    @tree.command(name="model", description="Pick a model")
    async def model(interaction: discord.Interaction, name: str) -> None: ...

    @model.autocomplete("name")
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=m, value=m) for m in models if current in m]

    async with running(client):
        await tree.sync()
        inter = await fake.autocomplete("model", "name", "gpt")
        await fake.wait_for(lambda: inter.autocomplete_choices is not None)
    assert inter.autocomplete_choices == [
        {"name": "gpt-4o", "value": "gpt-4o"},
        {"name": "gpt-4o-mini", "value": "gpt-4o-mini"},
    ]


async def test_followups_fill_defer_then_carry_file(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    data = b"line one\nline two\n" * 100
    downloaded: list[bytes] = []

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.followup.send("answer")
        sent = await interaction.followup.send(
            "full log", file=discord.File(io.BytesIO(data), "log.txt"), wait=True
        )
        downloaded.append(await sent.attachments[0].read())

    async with running(client):
        inter = await fake.slash("ask")
        await fake.wait_for(lambda: bool(downloaded))
    first, second = fake.messages(fake.channel_id)
    assert first.id == inter.original_message_id and first.content == "answer"
    assert first.ephemeral and not first.loading
    assert second.attachments == [("log.txt", data)] and second.interaction_id == inter.id
    assert downloaded == [data]


async def test_refusals_over_raw_http(fake: FakeDiscord) -> None:
    client, tree = make_bot()
    errors: list[discord.HTTPException] = []

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        assert isinstance(interaction.channel, discord.TextChannel)
        big = discord.File(io.BytesIO(b"\0" * (interaction.filesize_limit + 1)), "big.bin")
        try:
            await interaction.channel.send(file=big)
        except discord.HTTPException as exc:
            errors.append(exc)

    async with running(client):
        inter = await fake.slash("ask")
        await fake.wait_for(lambda: bool(errors))
    assert (errors[0].status, errors[0].code) == (413, 40005)
    callback = f"/interactions/{inter.id}/{inter.token}/callback"
    status, content_type, body = await raw(fake, "POST", callback, {"type": 5}, auth=False)
    assert (status, content_type, body["code"]) == (400, "application/json", 40060)
    status, _, body = await raw(fake, "POST", "/interactions/1/x/callback", {"type": 5})
    assert (status, body["code"]) == (404, 10062)
    path = f"/channels/{fake.channel_id}/messages"
    status, _, body = await raw(fake, "POST", path, {"content": ""})
    assert (status, body["code"]) == (400, 50006)
    status, _, body = await raw(fake, "POST", path, {"embeds": [{"description": "d" * 4097}]})
    assert body["errors"]["embeds"]["0"]["description"]["_errors"][0]["code"] == (
        "BASE_TYPE_MAX_LENGTH"
    )


async def test_dm_ephemeral_reply_is_hidden_from_channel_routes(fake: FakeDiscord) -> None:
    client, tree = make_bot()

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        note = discord.File(io.BytesIO(b"note"), "note.md")
        await interaction.response.send_message(
            f"hi {interaction.user.id}", ephemeral=True, file=note
        )

    async with running(client):
        inter = await fake.slash("ask", dm=True, user_id=3003)
        await fake.wait_for(shows(fake, inter.id, "hi 3003"))
    assert inter.guild_id is None and inter.payload["user"]["id"] == "3003"
    msg = original(fake, inter.id)
    assert msg is not None and msg.ephemeral and msg.attachments == [("note.md", b"note")]
    status, _, body = await raw(fake, "GET", f"/channels/{inter.channel_id}/messages/{msg.id}")
    assert (status, body["code"]) == (404, 10008)


async def test_gateway_reconnect_resumes_the_session(fake: FakeDiscord) -> None:
    client, _ = make_bot()
    resumed = asyncio.Event()
    seen: list[str] = []

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message.content)

    async with running(client):
        await fake.reconnect_gateway()
        await asyncio.wait_for(resumed.wait(), 5)
        await fake.user_message(fake.channel_id, "after resume")
        await fake.wait_for(lambda: seen == ["after resume"])
    assert len(fake.identifies) == 1


async def test_rate_limits_off_means_no_429_and_no_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    async with emulator(monkeypatch, enforce_rate_limits=False) as fake:
        client, _ = make_bot()
        async with running(client):
            channel = client.get_channel(fake.channel_id)
            assert isinstance(channel, discord.TextChannel)
            message = await channel.send("0")
            loop = asyncio.get_running_loop()
            started = loop.time()
            for i in range(1, 9):
                await message.edit(content=str(i))
            assert loop.time() - started < 2.0
        assert fake.rate_limited == 0
        assert [m.content for m in fake.messages(fake.channel_id)] == ["8"]


@dataclass
class SlowAck:
    """An /ask command that waits for `gate` before its first callback (a defer)."""

    gate: asyncio.Event
    errors: list[discord.HTTPException]
    deferred: asyncio.Event


def slow_ack(tree: app_commands.CommandTree[discord.Client]) -> SlowAck:
    slow = SlowAck(asyncio.Event(), [], asyncio.Event())

    @tree.command(name="ask", description="Ask")
    async def ask(interaction: discord.Interaction) -> None:
        await slow.gate.wait()
        try:
            await interaction.response.defer()
            slow.deferred.set()
        except discord.HTTPException as exc:
            slow.errors.append(exc)
            with contextlib.suppress(discord.HTTPException):
                await interaction.followup.send("too late anyway")

    return slow


async def test_initial_response_after_three_seconds_is_unknown_interaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now) as fake:
        client, tree = make_bot()
        slow = slow_ack(tree)
        async with running(client):
            inter = await fake.slash("ask")
            await clock.advance(3.01)
            slow.gate.set()
            await fake.wait_for(lambda: bool(slow.errors))
        assert [(e.status, e.code) for e in slow.errors] == [(404, 10062)]
        assert inter.missed_deadline and not inter.acknowledged
        assert fake.messages(fake.channel_id) == []  # the followup had no acknowledged token
        followups = [c for c in fake.calls if c.route == "/webhooks/{application_id}/{token}"]
        assert [c.status for c in followups] == [404]


async def test_initial_response_within_the_deadline_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now) as fake:
        client, tree = make_bot()
        slow = slow_ack(tree)
        async with running(client):
            inter = await fake.slash("ask")
            await clock.advance(3.0)
            slow.gate.set()
            await fake.wait_for(lambda: slow.deferred.is_set() or bool(slow.errors))
        assert slow.errors == [] and inter.response_type == 5 and not inter.missed_deadline


async def test_initial_response_deadline_is_a_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now, initial_response_deadline=10.0) as fake:
        client, tree = make_bot()
        slow = slow_ack(tree)
        async with running(client):
            inter = await fake.slash("ask")
            await clock.advance(9.0)
            slow.gate.set()
            await fake.wait_for(lambda: slow.deferred.is_set() or bool(slow.errors))
        assert slow.errors == [] and inter.acknowledged


def written_at(fake: FakeDiscord, interaction_id: int, at: float) -> Callable[[], bool]:
    """Predicate: @original's last write was applied at clock time `at`."""

    def check() -> bool:
        msg = original(fake, interaction_id)
        return msg is not None and msg.last_write_at == at

    return check


async def test_messages_record_when_content_first_showed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    async with emulator(monkeypatch, clock=clock.now) as fake:
        client, tree = make_bot()
        steps = [asyncio.Event() for _ in range(3)]
        done = asyncio.Event()

        @tree.command(name="ask", description="Ask")
        async def ask(interaction: discord.Interaction) -> None:
            await interaction.response.defer()  # "thinking…": nothing to read yet
            for step, content in zip(steps, ("first", "first", "second"), strict=True):
                await step.wait()
                await interaction.edit_original_response(content=content)
            done.set()

        async with running(client):
            inter = await fake.slash("ask")
            await fake.wait_for(lambda: inter.acknowledged)
            start = clock.now()
            deferred = original(fake, inter.id)
            assert deferred is not None and deferred.loading
            assert (deferred.first_visible_at, deferred.content_history) == (None, ())
            assert deferred.last_write_at == start
            for offset, step in zip((1.5, 2.0, 2.5), steps, strict=True):
                await clock.advance(offset - (clock.now() - start))
                step.set()
                await fake.wait_for(written_at(fake, inter.id, start + offset))
            await fake.wait_for(done.is_set)
            channel = client.get_channel(fake.channel_id)
            assert isinstance(channel, discord.TextChannel)
            await clock.advance(1.0)
            posted = await channel.send("posted")
        shown = original(fake, inter.id)
        assert shown is not None
        assert shown.first_visible_at == start + 1.5
        assert shown.content_history == ((start + 1.5, "first"), (start + 2.5, "second"))
        assert shown.last_write_at == start + 2.5
        assert fake.first_visible_at(shown.id) == start + 1.5
        assert fake.message(posted.id).first_visible_at == start + 3.5
        assert fake.message(posted.id).content_history == ((start + 3.5, "posted"),)
