"""The Discord adapter end to end: the real discord.py client against FakeDiscord over loopback.

Time: the bridge and the emulator share a ScaledClock running FACTOR times faster than real time,
and the emulator divides the times it reports in rate-limit headers by the same factor, so every
platform window (5 writes per 5 s, 1.1 s between edits) holds in clock time while tests run fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bots.discord.app import serve
from bots.discord.settings import DiscordSettings
from core.bridge import Bridge
from core.client import G4FClient
from core.conversations import Origin
from core.render.split import join_parts, unwrap_parts
from core.results import Status
from core.store.base import MessageKey, open_store
from tests.conftest import MakeSettings, cancel_task, split_section, until_ready
from tests.fakes.clock import ScaledClock
from tests.fakes.discord_server import FakeDiscord, FakeMessage, Interaction
from tests.fakes.g4f_server import FakeG4F

FACTOR = 10.0
USER = 2001
STOP = "g4f:stop"
REGEN = "g4f:regen"


@dataclass
class World:
    fake: FakeDiscord
    g4f: FakeG4F
    bridge: Bridge
    clock: ScaledClock
    task: asyncio.Task[None]  # the running serve()

    @property
    def channel(self) -> int:
        return self.fake.channel_id


Start = Callable[..., Awaitable[World]]


@pytest.fixture
async def start(
    make_settings: MakeSettings, g4f: FakeG4F, discord_defaults: None
) -> AsyncIterator[Start]:
    """Start FakeDiscord, a Bridge and `serve` (settings overrides as keyword arguments)."""
    g4f.trickle_interval = 0.02
    async with contextlib.AsyncExitStack() as stack:

        async def start_(**overrides: Any) -> World:
            clock = ScaledClock(FACTOR)
            fake = FakeDiscord(clock=clock.now, header_time_scale=FACTOR)
            await stack.enter_async_context(fake)
            # An override may be a function of the emulator, for ids it makes (a channel's).
            section, rest = split_section(
                DiscordSettings,
                {
                    "discord_token": fake.token,
                    "discord_api_base_url": fake.api_base,
                    "discord_gateway_url": fake.gateway_url,
                    **{k: v(fake) if callable(v) else v for k, v in overrides.items()},
                },
            )
            settings = make_settings(**rest)
            store = open_store(settings.bridge_store_url)
            await store.open()
            client = G4FClient(settings, clock=clock)
            bridge = Bridge(settings, client=client, store=store, clock=clock)
            stack.push_async_callback(bridge.close)
            ready = asyncio.Event()
            task = asyncio.create_task(
                serve(bridge, section, ready=ready, guild_ready_timeout=0.05)
            )
            stack.push_async_callback(cancel_task, task)
            await until_ready(task, ready)
            return World(fake, g4f, bridge, clock, task)

        yield start_


@pytest.fixture
async def world(start: Start) -> World:
    return await start()


# --------------------------------------------------------------------------- helpers


def button_ids(message: FakeMessage) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", [])]


def bot_messages(world: World, channel_id: int | None = None) -> list[FakeMessage]:
    channel = world.channel if channel_id is None else channel_id
    return [m for m in world.fake.messages(channel) if m.author_id == world.fake.bot_user_id]


def original(world: World, inter: Interaction) -> FakeMessage | None:
    if inter.original_message_id is None:
        return None
    with contextlib.suppress(KeyError):
        return world.fake.message(inter.original_message_id)
    return None


def finished(world: World, channel_id: int | None = None, count: int = 1) -> Callable[[], bool]:
    """Predicate: `count` answers in the channel carry their final Regenerate button."""
    return lambda: sum(REGEN in button_ids(m) for m in bot_messages(world, channel_id)) >= count


async def settled(world: World, channel_id: int, user_id: int = USER) -> None:
    """Wait until the user's answer in the channel is fully stored (the in-flight lock is free)."""
    origin = Origin("discord", str(channel_id), str(user_id))
    for _ in range(500):
        status = await world.bridge.status(origin)
        if isinstance(status, Status) and not status.busy:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the answer never finished")


def last_messages(g4f: FakeG4F) -> list[str]:
    body = g4f.chat_requests()[-1].json
    assert body is not None
    return [m["content"] for m in body["messages"]]


def words(count: int, prefix: str = "word") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


FENCE = re.compile(r"^(```|~~~)(\S*)\s*$")


def open_fence(text: str) -> str | None:
    """The language of the code block still open at the end of `text` (None: all closed)."""
    current: str | None = None
    for line in text.split("\n"):
        found = FENCE.match(line)
        if found:
            current = found.group(2) if current is None else None
    return current


def long_answer_with_code() -> str:
    prose = "\n\n".join(f"Paragraph {i}: " + words(40, f"p{i}w") + "." for i in range(6))
    python = "```python\n" + "\n".join(f"value_{i} = compute({i})  # step {i}" for i in range(120))
    javascript = "```js\n" + "\n".join(f"const item{i} = build({i});" for i in range(90))
    text = f"{prose}\n\n{python}\n```\n\nMore text.\n\n{javascript}\n```\n\n{prose}\n\nThe end."
    assert 9_000 < len(text) < 11_000, len(text)
    return text


# --------------------------------------------------------------------------- answers


async def test_ask_answers_with_its_first_text_and_streams_in_place(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    answer = words(40)
    g4f.answers["tell me"] = answer
    inter = await fake.slash("ask", {"prompt": "tell me", "model": "trickle"})

    def streaming() -> bool:
        msg = original(world, inter)
        return msg is not None and msg.content.endswith("▌") and button_ids(msg) == [STOP]

    await fake.wait_for(streaming)
    await fake.wait_for(finished(world))
    msg = original(world, inter)
    assert msg is not None
    assert msg.content == answer and button_ids(msg) == [REGEN]
    assert msg.edits >= 3 and not msg.ephemeral and msg.interaction_id == inter.id
    assert [m.id for m in bot_messages(world)] == [msg.id]
    assert inter.response_type == 4  # the first text answered the interaction: no "thinking…"
    assert g4f.chat_requests()[-1].json["model"] == "trickle"


async def test_ask_defers_when_the_first_text_is_late_then_fills_the_response(
    world: World,
) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.first_token_delay = 0.4  # real seconds: 4 s of clock time, past the 2 s to respond
    inter = await fake.slash("ask", {"prompt": "take your time", "model": "slow-first"})
    await fake.wait_for(lambda: inter.response_type == 5)  # deferred: Discord shows "thinking…"
    await fake.wait_for(finished(world))
    msg = original(world, inter)
    assert msg is not None and msg.content.endswith("take your time")
    assert button_ids(msg) == [REGEN] and not msg.loading


async def test_three_answers_at_once_share_the_channel_without_429s(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    for user in (1, 2, 3):
        g4f.answers[f"question {user}"] = words(30, f"u{user}w")
    inters = await asyncio.gather(
        *(
            fake.slash("ask", {"prompt": f"question {u}", "model": "trickle"}, user_id=3000 + u)
            for u in (1, 2, 3)
        )
    )
    await fake.wait_for(finished(world, count=3), timeout=15)
    for user, inter in zip((1, 2, 3), inters, strict=True):
        msg = original(world, inter)
        assert msg is not None and msg.content == words(30, f"u{user}w")
    assert fake.rate_limited == 0
    assert 429 not in {c.status for c in fake.calls}
    # Each answer writes through its own interaction token, within that token's 5 per 5 s.
    for inter in inters:
        writes = sorted(
            c.at for c in fake.calls if c.route.startswith("/webhooks/") and inter.token in c.path
        )
        assert len(writes) >= 2
        assert all(b - a >= 5.0 for a, b in zip(writes, writes[5:], strict=False))


async def test_long_answer_with_code_is_split_with_fences_reopened(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    text = long_answer_with_code()
    g4f.answers["long one"] = text
    g4f.chunk_size_words = 20
    await fake.slash("ask", {"prompt": "long one"})
    await fake.wait_for(finished(world), timeout=15)
    parts = [m.content for m in bot_messages(world)]
    assert len(parts) >= 5
    assert all(len(p) <= 2000 for p in parts)
    assert join_parts(parts) == text
    joined_lines = set("\n".join(parts).split("\n"))
    assert all(line in joined_lines for line in text.split("\n"))
    # Each message closes its code blocks; one cut inside a block reopens it, same language.
    reopened: list[str] = []
    shown_so_far = ""
    for part, following, piece in zip(parts, [*parts[1:], ""], unwrap_parts(parts), strict=True):
        assert open_fence(part) is None, part[-60:]
        shown_so_far += piece
        language = open_fence(shown_so_far)
        if language is not None:
            assert following.startswith(f"```{language}\n"), following[:40]
            reopened.append(language)
    assert "python" in reopened and "js" in reopened
    assert REGEN in button_ids(bot_messages(world)[-1])
    assert fake.rate_limited == 0


async def test_private_answer_is_ephemeral(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    answer = words(450)  # over 2000 characters: a followup, ephemeral too
    g4f.answers["secret"] = answer
    inter = await fake.slash("ask", {"prompt": "secret", "private": True})
    await fake.wait_for(finished(world))
    messages = bot_messages(world)
    assert len(messages) == 2 and all(m.ephemeral for m in messages)
    assert messages[0].id == inter.original_message_id
    assert join_parts([m.content for m in messages]) == answer


async def test_mention_and_dm_are_prompts(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    asked = await fake.user_message(world.channel, "hello there", mention_bot=True)
    await fake.wait_for(finished(world))
    reply = bot_messages(world)[-1]
    assert reply.content == "You said: hello there" and reply.reference == asked
    assert last_messages(g4f) == ["hello there"]

    dm = fake.add_channel(guild=False, user_id=2002)
    asked_dm = await fake.user_message(dm, "hi in private", user_id=2002)
    await fake.wait_for(finished(world, dm))
    answer = bot_messages(world, dm)[-1]
    assert answer.content == "You said: hi in private" and answer.reference == asked_dm

    await fake.user_message(world.channel, "not for the bot")
    await fake.user_message(dm, "bots are ignored", user_id=fake.bot_user_id)
    await settled(world, dm, 2002)
    assert len(g4f.chat_requests()) == 2


async def test_reply_chain_continues_and_older_reply_forks(world: World) -> None:
    fake, g4f = world.fake, world.g4f

    async def ask(text: str, reply_to: int | None = None, mention: bool = False) -> int:
        before = len(bot_messages(world))
        await fake.user_message(world.channel, text, reply_to=reply_to, mention_bot=mention)
        await fake.wait_for(lambda: finished(world, count=before + 1)())
        await settled(world, world.channel)
        return bot_messages(world)[-1].id

    a1 = await ask("q1", mention=True)
    a2 = await ask("q2", reply_to=a1)
    await ask("q3", reply_to=a2)
    assert last_messages(g4f) == ["q1", "You said: q1", "q2", "You said: q2", "q3"]
    await ask("fork", reply_to=a1)
    assert last_messages(g4f) == ["q1", "You said: q1", "fork"]


async def test_stop_ends_the_answer_and_keeps_the_text(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.answers["go on"] = words(300)
    inter = await fake.slash("ask", {"prompt": "go on", "model": "trickle"})

    def some_text() -> bool:
        msg = original(world, inter)
        return msg is not None and "word5" in msg.content and STOP in button_ids(msg)

    await fake.wait_for(some_text)
    assert inter.original_message_id is not None
    click = await fake.click(inter.original_message_id, STOP)
    await fake.wait_for(finished(world))
    msg = original(world, inter)
    assert msg is not None and msg.content.endswith("\n\n⏹ Stopped.")
    assert msg.content.startswith("word0 word1") and "word299" not in msg.content
    assert button_ids(msg) == [REGEN]
    assert click.response_type == 6


async def test_regenerate_answers_again_in_a_new_message(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    first = await fake.slash("ask", {"prompt": "again please"})
    await fake.wait_for(finished(world))
    await settled(world, world.channel)
    assert first.original_message_id is not None
    click = await fake.click(first.original_message_id, REGEN)
    await fake.wait_for(finished(world, count=2))
    new = original(world, click)
    assert new is not None and new.id != first.original_message_id
    assert new.content == "You said: again please" and button_ids(new) == [REGEN]
    assert click.response_type == 4
    requests = g4f.chat_requests()
    assert len(requests) == 2
    assert requests[0].json["messages"] == requests[1].json["messages"]


async def test_upstream_error_mid_stream_keeps_the_text_and_warns(world: World) -> None:
    fake = world.fake
    inter = await fake.slash(
        "ask", {"prompt": "one two three four five six", "model": "midstream-error"}
    )
    await fake.wait_for(finished(world))
    msg = original(world, inter)
    assert msg is not None
    text, _, warning = msg.content.partition("\n\n")
    assert text == "You said: one two"  # the half the server sent before failing
    assert warning.startswith("⚠️ ") and "\n" not in warning
    assert button_ids(msg) == [REGEN]


async def test_expired_token_continues_as_channel_messages(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    answer = words(500)  # about 4,400 characters: several messages
    g4f.answers["slow and long"] = answer
    g4f.chunk_size_words = 25
    g4f.trickle_interval = 0.1
    inter = await fake.slash("ask", {"prompt": "slow and long", "model": "trickle"})

    def started() -> bool:
        msg = original(world, inter)
        return msg is not None and len(msg.content) > 100

    await fake.wait_for(started)
    fake.expire_interaction(inter.token)
    await fake.wait_for(finished(world), timeout=15)
    messages = bot_messages(world)
    assert messages[0].id == inter.original_message_id
    assert join_parts([m.content for m in messages]) == answer
    statuses = {(c.method, c.route, c.status) for c in fake.calls}
    assert any(s == 401 for _, route, s in statuses if route.startswith("/webhooks/"))
    channel_writes = [
        c for c in fake.calls if c.route.startswith("/channels/{channel_id}/messages")
    ]
    assert channel_writes and all(c.status == 200 for c in channel_writes)


async def test_private_answer_ends_quietly_when_the_token_expires(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.answers["private and slow"] = words(300)
    g4f.chunk_size_words = 20
    g4f.trickle_interval = 0.1
    inter = await fake.slash(
        "ask", {"prompt": "private and slow", "model": "trickle", "private": True}
    )

    def started() -> bool:
        msg = original(world, inter)
        return msg is not None and len(msg.content) > 50

    await fake.wait_for(started)
    shown = original(world, inter)
    fake.expire_interaction(inter.token)
    await fake.wait_for(lambda: any(c.status == 401 for c in fake.calls))
    await settled(world, world.channel)
    assert [m.ephemeral for m in bot_messages(world)] == [True]
    msg = original(world, inter)
    assert msg is not None and shown is not None and msg.content.startswith(shown.content[:40])
    assert not any(c.route.startswith("/channels/{channel_id}/messages") for c in fake.calls)


# --------------------------------------------------------------------------- other commands


async def test_imagine_uploads_the_image_with_prompt_and_model(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    inter = await fake.slash("imagine", {"prompt": "a red square"})

    def has_image() -> bool:
        msg = original(world, inter)
        return msg is not None and bool(msg.attachments)

    await fake.wait_for(has_image)
    msg = original(world, inter)
    assert msg is not None
    ((filename, data),) = msg.attachments
    assert data == g4f.image_bytes and filename.startswith("image.")
    embed = msg.embeds[0]
    assert "a red square" in embed["description"] and embed["footer"]["text"] == "flux"
    assert embed["image"]["url"] == f"attachment://{filename}"


async def test_model_autocomplete_and_choice(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    inter = await fake.autocomplete("model", "name", "gpt-4")
    await fake.wait_for(lambda: inter.autocomplete_choices is not None)
    assert inter.autocomplete_choices is not None
    names = [c["name"] for c in inter.autocomplete_choices]
    assert set(names) == {"gpt-4o", "gpt-4o-mini", "gpt-4.1"}

    chosen = await fake.slash("model", {"name": "gpt-4o-mini"})
    await fake.wait_for(lambda: (m := original(world, chosen)) is not None and not m.loading)
    msg = original(world, chosen)
    assert msg is not None and msg.ephemeral and "`gpt-4o-mini`" in msg.content
    await fake.slash("ask", {"prompt": "which model?"})
    await fake.wait_for(finished(world))
    assert g4f.chat_requests()[-1].json["model"] == "gpt-4o-mini"

    typo = await fake.slash("model", {"name": "gpt4o"})
    await fake.wait_for(lambda: (m := original(world, typo)) is not None and not m.loading)
    msg = original(world, typo)
    assert msg is not None and msg.ephemeral and "Did you mean" in msg.content


async def test_models_list_turns_pages(world: World) -> None:
    fake = world.fake
    inter = await fake.slash("models", {})
    await fake.wait_for(lambda: (m := original(world, inter)) is not None and not m.loading)
    first = original(world, inter)
    assert first is not None and first.ephemeral and "page 1 of " in first.content
    if "g4f:page:1:" not in button_ids(first):
        pytest.skip("the fake server lists too few chat models for two pages")
    await fake.click(first.id, "g4f:page:1:")
    await fake.wait_for(lambda: "page 2 of " in fake.message(first.id).content)


async def test_reset_status_and_system_prompt(start: Start) -> None:
    world = await start(admin_user_ids="discord:9999")
    fake = world.fake

    async def command(name: str, options: dict[str, object], user: int = USER) -> str:
        inter = await fake.slash(name, options, user_id=user)
        await fake.wait_for(lambda: (m := original(world, inter)) is not None and not m.loading)
        msg = original(world, inter)
        assert msg is not None and msg.ephemeral
        return msg.content

    assert "Model:" in await command("status", {})
    assert "no conversation" in await command("reset", {})
    assert "admins" in await command("system", {"prompt": "Be a pirate."})
    assert "persona is now" in await command("system", {"prompt": "Be a pirate."}, user=9999)
    assert "Be a pirate." in await command("status", {})


async def test_allowlist_refusal_is_private_and_given_once_in_channels(start: Start) -> None:
    world = await start(allowed_user_ids="someone-else", admin_user_ids="9999")
    fake, g4f = world.fake, world.g4f
    for _ in range(2):  # an interaction always needs an answer: shown each time, privately
        inter = await fake.slash("ask", {"prompt": "let me in"})
        await fake.wait_for(lambda i=inter: original(world, i) is not None)  # type: ignore[misc]
        msg = original(world, inter)
        assert msg is not None and msg.ephemeral and "not available to you" in msg.content
        assert inter.response_type == 4
    first = await fake.user_message(world.channel, "and now?", mention_bot=True, user_id=2005)
    await fake.user_message(world.channel, "still?", mention_bot=True, user_id=2005)
    await fake.user_message(world.channel, "admin here", mention_bot=True, user_id=9999)
    await fake.wait_for(finished(world))
    public = [(m.content, m.reference) for m in bot_messages(world) if not m.ephemeral]
    assert public == [
        ("Sorry, this bot is private and not available to you here.", first),
        ("You said: admin here", public[-1][1]),
    ]
    assert len(g4f.chat_requests()) == 1


async def test_commands_are_synced_and_intents_are_minimal(world: World) -> None:
    fake = world.fake
    assert {c["name"] for c in fake.commands} == {
        "ask",
        "imagine",
        "models",
        "model",
        "reset",
        "system",
        "status",
    }
    intents = discord.Intents._from_value(fake.identifies[0]["intents"])
    assert intents.guilds and intents.guild_messages and intents.dm_messages
    assert not intents.message_content and not intents.members and not intents.presences


async def test_second_question_while_one_streams_is_refused_privately(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.answers["slow"] = words(200)
    first = await fake.slash("ask", {"prompt": "slow", "model": "trickle"})
    await fake.wait_for(lambda: (m := original(world, first)) is not None and bool(m.content))
    second = await fake.slash("ask", {"prompt": "impatient"})
    await fake.wait_for(lambda: original(world, second) is not None)
    notice = original(world, second)
    assert notice is not None and notice.ephemeral and second.response_type == 4
    assert "already have an answer coming" in notice.content
    await fake.wait_for(finished(world))
    assert len(g4f.chat_requests()) == 1


async def test_deleted_answer_stops_quietly(world: World) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.answers["long story"] = words(150)  # one message
    g4f.trickle_interval = 0.05
    await fake.user_message(world.channel, "long story", mention_bot=True)
    await fake.wait_for(lambda: any("word3 " in m.content for m in bot_messages(world)))
    answer = bot_messages(world)[-1]
    fake.delete_message(world.channel, answer.id)
    await settled(world, world.channel)
    assert bot_messages(world) == []
    assert not any(c.status == 404 and c.method == "POST" for c in fake.calls)


async def test_missing_permissions_are_explained_once_per_channel(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    fake.deny_writes(world.channel)

    def denied() -> list[str]:
        return [c.route for c in fake.calls if c.status == 403]

    await fake.user_message(world.channel, "first try", mention_bot=True)
    await fake.wait_for(lambda: len(denied()) == 2)  # the answer, then the explanation
    await settled(world, world.channel)
    await fake.user_message(world.channel, "second try", mention_bot=True)
    await fake.wait_for(lambda: len(denied()) == 3)  # only the answer
    await settled(world, world.channel)
    assert denied() == ["/channels/{channel_id}/messages"] * 3
    warnings = [r for r in caplog.records if "check the bot's permissions" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert bot_messages(world) == []


def _runs_bot_code(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "/discord/" in filename or "/bots/" in filename or "/core/" in filename


async def test_serve_stops_cleanly_and_never_logs_the_token(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = asyncio.all_tasks()
    world = await start()
    inter = await world.fake.slash("ask", {"prompt": "hello"})
    await world.fake.wait_for(finished(world))
    await cancel_task(world.task)
    await settled(world, world.channel)
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert [t for t in left if _runs_bot_code(t)] == []  # the emulators' own tasks may remain
    assert world.fake.token not in caplog.text and inter.token not in caplog.text
    assert "message-content" in caplog.text.lower() or "message content" in caplog.text.lower()


async def test_shutdown_stops_streaming_answers_with_a_final_edit(start: Start) -> None:
    world = await start(g4f_default_model="trickle")
    fake, g4f = world.fake, world.g4f
    g4f.answers["endless"] = words(200)
    g4f.trickle_interval = 0.05
    inter = await fake.slash("ask", {"prompt": "endless"})
    await fake.user_message(world.channel, "endless", mention_bot=True, user_id=2002)
    await fake.wait_for(
        lambda: sum("word2 " in m.content for m in bot_messages(world)) == 2, timeout=10
    )
    await cancel_task(world.task)
    messages = bot_messages(world)
    assert len(messages) == 2 and messages[0].id == inter.original_message_id
    for msg in messages:
        assert msg.content.endswith("\n\n⏹ Interrupted by a restart: ask again.")
        assert button_ids(msg) == [REGEN]


async def test_message_content_intent_is_opt_in(start: Start) -> None:
    world = await start(discord_message_content=True)
    intents = discord.Intents._from_value(world.fake.identifies[0]["intents"])
    assert intents.message_content and intents.guild_messages


# --------------------------------------------------------------------------- access and input


async def ephemeral_reply(world: World, inter: Interaction) -> str:
    """The private reply an interaction got (after "thinking…", once it is filled)."""
    await world.fake.wait_for(lambda: (m := original(world, inter)) is not None and not m.loading)
    msg = original(world, inter)
    assert msg is not None and msg.ephemeral
    return msg.content


async def test_a_chat_allowlist_closes_dms_of_unlisted_users(start: Start) -> None:
    world = await start(
        allowed_chat_ids=lambda fake: f"discord:{fake.channel_id}", admin_user_ids="9999"
    )
    fake, g4f = world.fake, world.g4f
    stranger_dm = fake.add_channel(guild=False, user_id=2002)
    asked = await fake.user_message(stranger_dm, "answer me in private", user_id=2002)
    await fake.wait_for(lambda: len(bot_messages(world, stranger_dm)) == 1)
    [refusal] = bot_messages(world, stranger_dm)
    assert refusal.content == "Sorry, this bot is private and not available to you here."
    assert refusal.reference == asked
    await fake.user_message(world.channel, "in the listed channel", mention_bot=True)
    await fake.wait_for(finished(world))
    admin_dm = fake.add_channel(guild=False, user_id=9999)
    await fake.user_message(admin_dm, "admin in private", user_id=9999)
    await fake.wait_for(finished(world, admin_dm))
    assert [last for *_, last in (r.json["messages"] for r in g4f.chat_requests())] == [
        {"role": "user", "content": "in the listed channel"},
        {"role": "user", "content": "admin in private"},
    ]


async def test_model_refuses_a_provider_and_caps_what_it_echoes(world: World) -> None:
    fake = world.fake
    provider = await ephemeral_reply(world, await fake.slash("model", {"name": "PollinationsAI"}))
    assert provider.startswith("'PollinationsAI' is a provider, not a model")
    assert "G4F_PROVIDER" in provider
    long_name = await ephemeral_reply(world, await fake.slash("model", {"name": "n" * 3000}))
    assert long_name.startswith(f"The server has no chat model called '{'n' * 99}…'.")
    assert len(long_name) < 200
    listing = await ephemeral_reply(world, await fake.slash("models", {"filter": "f" * 3000}))
    assert listing.startswith(f"Chat models (page 1 of 1, 0 in all, matching “{'f' * 99}…”)")
    await fake.slash("ask", {"prompt": "which model?"})
    await fake.wait_for(finished(world))
    assert world.g4f.chat_requests()[-1].json["model"] == "gpt-4o"  # nothing was chosen


async def test_stop_says_why_it_did_not_stop_and_stale_buttons_are_answered(
    world: World,
) -> None:
    fake, g4f = world.fake, world.g4f
    g4f.answers["go on"] = words(300)
    inter = await fake.slash("ask", {"prompt": "go on", "model": "trickle"})
    await fake.wait_for(lambda: (m := original(world, inter)) is not None and "word5" in m.content)
    assert inter.original_message_id is not None
    answer_id = inter.original_message_id
    stranger = await fake.click(answer_id, STOP, user_id=2002)
    assert await ephemeral_reply(world, stranger) == (
        "Only the person who asked (or an admin) can stop this answer."
    )
    mine = await fake.click(answer_id, STOP)
    await fake.wait_for(finished(world))
    assert mine.response_type == 6
    # A client still showing the Stop button (or a late click): the asker is told it finished.
    late = await fake.click(answer_id, STOP, check_component=False)
    assert await ephemeral_reply(world, late) == (
        "This answer has already finished. For a new one, press 🔁 Regenerate or ask again."
    )
    forged = await fake.click(answer_id, "g4f:bogus", check_component=False)
    assert await ephemeral_reply(world, forged) == (
        "This button is no longer valid. Ask again, or open /models for a fresh list."
    )
    assert len(g4f.chat_requests()) == 1


async def test_a_long_prompt_is_capped_under_the_picture(world: World) -> None:
    fake = world.fake
    inter = await fake.slash("imagine", {"prompt": "a red square " * 300})
    await fake.wait_for(lambda: (m := original(world, inter)) is not None and bool(m.attachments))
    msg = original(world, inter)
    assert msg is not None
    description = msg.embeds[0]["description"]
    assert description.startswith("a red square") and description.endswith("…")
    assert len(description) == 300  # was cut only at the embed's 4,096


async def test_a_cut_answer_offers_continue_which_asks_for_the_rest(world: World) -> None:
    from core.continuation import CONTINUE_PROMPT, LENGTH_NOTE

    fake, g4f = world.fake, world.g4f
    g4f.length_limit_words = 3
    g4f.answers["count"] = "one two three four five"
    first = await fake.slash("ask", {"prompt": "count"})
    await fake.wait_for(finished(world))
    await settled(world, world.channel)
    cut = original(world, first)
    assert cut is not None and cut.content.splitlines()[-1] == LENGTH_NOTE
    assert button_ids(cut) == ["g4f:continue", REGEN]
    # The message is linked to the stored turn just after its final write: wait for it.
    key = MessageKey("discord", str(world.channel), str(cut.id))
    async with asyncio.timeout(5):
        while await world.bridge.store.turn_for_message(key) is None:
            await asyncio.sleep(0.01)
    g4f.length_limit_words = 0
    g4f.answers[CONTINUE_PROMPT] = "four five"
    click = await fake.click(cut.id, "g4f:continue")
    await fake.wait_for(finished(world, count=2))
    rest = original(world, click)
    assert rest is not None and rest.content == "four five" and button_ids(rest) == [REGEN]
    sent = g4f.chat_requests()[-1].json["messages"]
    assert [m["content"] for m in sent[-3:]] == ["count", "one two three", CONTINUE_PROMPT]


async def test_images_on_a_mention_and_on_ask_with_web_search(world: World) -> None:
    from tests.fakes.g4f_server import build_png

    fake, g4f = world.fake, world.g4f
    png = build_png(5, 5)
    await fake.user_message(
        world.channel, "what is this?", mention_bot=True, files=[("cat.png", png, "image/png")]
    )
    await fake.wait_for(finished(world))
    assert g4f.images_received == [[png]]
    assert bot_messages(world)[0].content == "I see 1 image(s). You said: what is this?"
    other = build_png(1, 2)
    inter = await fake.slash(
        "ask", {"prompt": "and this?", "web": True}, files={"image": ("d.png", other, "image/png")}
    )
    await fake.wait_for(finished(world, count=2))
    msg = original(world, inter)
    assert msg is not None
    assert msg.content.startswith("I see 1 image(s). You said: and this?\n\n🔎 Sources: ")
    assert g4f.images_received[-1] == [other]
    assert g4f.chat_requests()[-1].json["web_search"] is True


async def test_text_files_in_a_dm_are_read_and_others_get_one_line(world: World) -> None:
    from core.attachments import ACCEPTED_LINE

    fake, g4f = world.fake, world.g4f
    dm = fake.add_channel(guild=False, user_id=2002)
    await fake.user_message(
        dm, "what does it do?", user_id=2002, files=[("main.py", b"print('hi')\n", "text/x-python")]
    )
    await fake.wait_for(finished(world, dm))
    assert last_messages(g4f)[-1] == "what does it do?\n\nFile main.py:\n```\nprint('hi')\n```"
    await fake.user_message(
        dm, "and this?", user_id=2002, files=[("song.mp3", b"ID3\x03", "audio/mpeg")]
    )
    line = ACCEPTED_LINE.format(names="song.mp3", verb="is")
    await fake.wait_for(lambda: any(m.content == line for m in bot_messages(world, dm)))
    assert len(g4f.chat_requests()) == 1
