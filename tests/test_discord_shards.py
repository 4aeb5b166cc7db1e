"""Discord shards: DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS with the real discord.py against
FakeDiscord, which routes the guild's events to the shard owning it, as Discord does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bots.discord.app import BridgeClient, ShardedBridgeClient, build_client, serve
from bots.discord.settings import DiscordSettings
from core.bridge import Bridge
from core.client import G4FClient
from core.store.base import open_store
from tests.conftest import MakeSettings, cancel_task, split_section, until_ready
from tests.fakes.clock import ScaledClock
from tests.fakes.discord_server import FakeDiscord, shard_of
from tests.fakes.g4f_server import FakeG4F

FACTOR = 20.0
REGEN = "g4f:regen"


@dataclass
class Process:
    bridge: Bridge
    task: asyncio.Task[None]


@dataclass
class Fleet:
    fake: FakeDiscord
    g4f: FakeG4F
    start: Callable[..., Awaitable[Process]]

    def answers(self) -> list[str]:
        """The channel's bot messages that show a finished answer (a Regenerate button)."""
        shown = []
        for message in self.fake.messages(self.fake.channel_id):
            ids = [c["custom_id"] for row in message.components for c in row.get("components", [])]
            if message.author_id == self.fake.bot_user_id and REGEN in ids:
                shown.append(message.content)
        return shown

    def shards_identified(self) -> list[list[int] | None]:
        return sorted((i.get("shard") for i in self.fake.identifies), key=str)

    def gateway_calls(self, path: str = "/gateway/bot") -> int:
        return len([c for c in self.fake.calls if c.path == path])


@pytest.fixture
async def fleet(
    make_settings: MakeSettings, g4f: FakeG4F, discord_defaults: None
) -> AsyncIterator[Fleet]:
    g4f.trickle_interval = 0.02
    clock = ScaledClock(FACTOR)
    async with (
        FakeDiscord(clock=clock.now, header_time_scale=FACTOR) as fake,
        contextlib.AsyncExitStack() as stack,
    ):

        async def start(**overrides: Any) -> Process:
            """One bridge process serving Discord with these settings."""
            section, rest = split_section(
                DiscordSettings,
                {
                    "discord_token": fake.token,
                    "discord_api_base_url": fake.api_base,
                    "discord_gateway_url": fake.gateway_url,
                    **overrides,
                },
            )
            settings = make_settings(**rest)
            store = open_store(settings.bridge_store_url)
            await store.open()
            bridge = Bridge(settings, client=G4FClient(settings, clock=clock), store=store)
            stack.push_async_callback(bridge.close)
            ready = asyncio.Event()
            task = asyncio.create_task(
                serve(bridge, section, ready=ready, guild_ready_timeout=0.05)
            )
            stack.push_async_callback(cancel_task, task)
            await until_ready(task, ready)
            return Process(bridge, task)

        yield Fleet(fake, g4f, start)


async def _ask_once(fleet: Fleet) -> None:
    """A /ask in the guild is answered, once, by whichever process holds the guild's shard."""
    fleet.g4f.answers["sharded question"] = "sharded answer"
    await fleet.fake.slash("ask", {"prompt": "sharded question"})
    await fleet.fake.wait_for(lambda: len(fleet.answers()) >= 1)
    assert fleet.answers() == ["sharded answer"]
    assert len(fleet.g4f.chat_requests()) == 1


async def test_two_processes_with_shards_0_and_1_of_2_both_connect(fleet: Fleet) -> None:
    first = await fleet.start(discord_shard_count="2", discord_shard_ids="0")
    second = await fleet.start(discord_shard_count="2", discord_shard_ids="1")
    assert fleet.shards_identified() == [[0, 2], [1, 2]]
    assert fleet.gateway_calls() == fleet.gateway_calls("/gateway") == 0  # straight to it
    await _ask_once(fleet)
    # The process holding the guild's shard answered; the other one never saw the command.
    owner = [first, second][shard_of(fleet.fake.guild_id, 2)]
    other = second if owner is first else first
    await fleet.fake.wait_for(lambda: _answers_counted(owner.bridge) == 1)  # counted after
    assert _answers_counted(other.bridge) == 0


def _answers_counted(bridge: Bridge) -> float:
    """Answers this process ended on Discord, whatever their outcome."""
    return sum(
        sample.value
        for metric in bridge.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "g4f_bridge_answers_total" and sample.labels["platform"] == "discord"
    )


async def test_one_process_runs_several_shards(fleet: Fleet) -> None:
    await fleet.start(discord_shard_count="2", discord_shard_ids="0,1")
    # Given a count, AutoShardedClient needs no recommendation (GET /gateway/bot) first.
    assert fleet.gateway_calls() == 0
    assert fleet.shards_identified() == [[0, 2], [1, 2]]
    await _ask_once(fleet)


async def test_auto_takes_discords_recommended_count(fleet: Fleet) -> None:
    fleet.fake.recommended_shards = 2
    await fleet.start(discord_shard_count="auto")
    assert fleet.gateway_calls() == 1
    assert fleet.shards_identified() == [[0, 2], [1, 2]]
    await _ask_once(fleet)


async def test_default_is_one_unsharded_connection(fleet: Fleet) -> None:
    await fleet.start()
    assert len(fleet.fake.identifies) == 1
    assert fleet.fake.identifies[0].get("shard") in (None, [0, 1])
    assert fleet.gateway_calls() == 0
    await _ask_once(fleet)


def test_build_client_picks_the_client_kind(make_settings: MakeSettings) -> None:
    def built(**overrides: Any) -> BridgeClient:
        section, rest = split_section(
            DiscordSettings, {"discord_token": "fake-token-not-real", **overrides}
        )
        settings = make_settings(**rest)
        bridge = Bridge(
            settings, client=G4FClient(settings), store=open_store("sqlite:///:memory:")
        )
        return build_client(bridge, section)

    one = built(discord_shard_count="4", discord_shard_ids="3")
    assert type(one) is BridgeClient and (one.shard_id, one.shard_count) == (3, 4)
    several = built(discord_shard_count="4", discord_shard_ids="1,2")
    assert isinstance(several, ShardedBridgeClient)
    assert several.shard_ids == [1, 2] and several.shard_count == 4
    assert type(built()) is BridgeClient and built().shard_id is None


async def test_guilds_on_both_shards_are_each_answered_by_their_own_process(
    fleet: Fleet,
) -> None:
    fake = fleet.fake
    guilds = {shard: fake.add_guild(shard=(shard, 2)) for shard in (0, 1)}
    channels = {shard: fake.add_channel(guild_id=guild) for shard, guild in guilds.items()}
    assert [shard_of(guilds[s], 2) for s in (0, 1)] == [0, 1]
    processes = [
        await fleet.start(discord_shard_count="2", discord_shard_ids=str(shard)) for shard in (0, 1)
    ]
    ready = {int(i["shard"][0]): i for i in fake.identifies}
    assert set(ready) == {0, 1}
    for shard, channel in channels.items():
        fleet.g4f.answers[f"on shard {shard}"] = f"answer from shard {shard}"
        await fake.slash("ask", {"prompt": f"on shard {shard}"}, channel_id=channel)

    def shown(channel: int) -> list[str]:
        return [
            m.content
            for m in fake.messages(channel)
            if m.author_id == fake.bot_user_id and "▌" not in m.content and m.content
        ]

    await fake.wait_for(lambda: all(shown(c) for c in channels.values()), timeout=10)
    assert [shown(channels[s]) for s in (0, 1)] == [
        ["answer from shard 0"],
        ["answer from shard 1"],
    ]
    await fake.wait_for(lambda: [_answers_counted(p.bridge) for p in processes] == [1, 1])
