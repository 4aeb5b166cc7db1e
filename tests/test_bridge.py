"""The use cases against the emulated G4F server and a real SQLite store in a temp directory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.bridge import Bridge
from core.conversations import Origin
from core.echo import MAX_PROMPT_ECHO
from core.render.renderer import INDICATOR, Outcome
from core.render.surface import Button, MessageRef
from core.results import (
    Answered,
    ConversationReset,
    Imagined,
    ModelChosen,
    ModelPage,
    Refusal,
    RefusalReason,
    Status,
    StopResult,
    SystemPromptSet,
)
from core.store.base import StreamingAnswer
from core.store.postgres import PostgresConversationStore
from core.texts import models_page_header, stop_text
from tests.conftest import MakeSettings, OpenBridge
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface

DM = Origin("test", "dm-1", "u1", is_private=True)
GROUP = Origin("test", "group-1", "u1", space_id="g1")


@pytest.fixture
def chat(clock: ScaledClock) -> ChatServer:
    return ChatServer(clock=clock, interval=1.0)


def surface(chat: ChatServer, origin: Origin = DM, max_length: int = 2000) -> RecordingSurface:
    return RecordingSurface(chat, chat=origin.chat_id, max_length=max_length)


def sent_messages(g4f: FakeG4F) -> list[dict[str, str]]:
    body = g4f.chat_requests()[-1].json
    assert body is not None
    return body["messages"]  # type: ignore[no-any-return]


async def ask(
    bridge: Bridge, chat: ChatServer, prompt: str, origin: Origin = DM, **kw: Any
) -> Answered:
    result = await bridge.ask(origin, prompt, surface(chat, origin), **kw)
    assert isinstance(result, Answered), result
    return result


class HeldFinalWrite(RecordingSurface):
    """A surface that holds the edit putting Regenerate under the answer until released."""

    def __init__(self, server: ChatServer, *, chat: str) -> None:
        super().__init__(server, chat=chat, max_length=2000)
        self.final_started = asyncio.Event()
        self.release = asyncio.Event()

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        if any(b.action == "regenerate" for b in buttons):
            self.final_started.set()
            await self.release.wait()
        await super().edit(ref, text, buttons=buttons)


class TestConversations:
    async def test_private_chat_continues_until_reset(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(bridge_system_prompt="Be nice.")
        first = await ask(bridge, chat, "one")
        assert first.outcome is Outcome.DONE and first.text == "You said: one"
        assert chat.messages[first.messages[0].id] == "You said: one"
        await ask(bridge, chat, "two")
        assert sent_messages(g4f) == [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "You said: one"},
            {"role": "user", "content": "two"},
        ]
        reset = await bridge.reset(DM)
        assert reset == ConversationReset(had_conversation=True)
        await ask(bridge, chat, "three")
        assert [m["content"] for m in sent_messages(g4f)] == ["Be nice.", "three"]

    async def test_group_message_without_reply_starts_new(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        await ask(bridge, chat, "one", GROUP)
        await ask(bridge, chat, "two", GROUP)
        assert sent_messages(g4f) == [{"role": "user", "content": "two"}]

    async def test_reply_continues_branch_and_reply_to_older_answer_forks(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        a1 = await ask(bridge, chat, "q1", GROUP)
        a2 = await ask(bridge, chat, "q2", GROUP, reply_to=a1.messages[0].id)
        await ask(bridge, chat, "q3", GROUP, reply_to=a2.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == [
            "q1",
            "You said: q1",
            "q2",
            "You said: q2",
            "q3",
        ]
        await ask(bridge, chat, "fork", GROUP, reply_to=a1.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == ["q1", "You said: q1", "fork"]

    async def test_idle_conversation_expires(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer, clock: ScaledClock
    ) -> None:
        bridge = await open_bridge(bridge_conversation_idle_minutes=10)
        await ask(bridge, chat, "one")
        clock.advance(9 * 60)
        await ask(bridge, chat, "two")
        assert len(sent_messages(g4f)) == 3
        clock.advance(10 * 60 + 1)
        await ask(bridge, chat, "three")
        assert sent_messages(g4f) == [{"role": "user", "content": "three"}]

    async def test_trimming_keeps_system_and_new_message_and_tells_the_user(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(bridge_history_max_messages=3, bridge_system_prompt="Sys.")
        for prompt in ("one", "two"):
            await ask(bridge, chat, prompt)
        third = await ask(bridge, chat, "three")
        assert [m["content"] for m in sent_messages(g4f)] == [
            "Sys.",
            "two",
            "You said: two",
            "three",
        ]
        assert third.history_trimmed
        shown = chat.messages[third.messages[-1].id]
        assert shown == (
            "You said: three\n\nℹ️ Older messages were left out to fit the history limit."
        )
        assert third.text == "You said: three"

    async def test_character_budget_trims_oldest(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(bridge_history_max_chars=100)
        g4f.answers["long"] = "x" * 80
        await ask(bridge, chat, "long")
        await ask(bridge, chat, "short")
        await ask(bridge, chat, "last")
        assert [m["content"] for m in sent_messages(g4f)] == ["short", "You said: short", "last"]

    async def test_conversation_survives_a_restart(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        first = await ask(bridge, chat, "remember me", GROUP)
        await bridge.close()
        again = await open_bridge()
        await ask(again, chat, "do you?", GROUP, reply_to=first.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == [
            "remember me",
            "You said: remember me",
            "do you?",
        ]

    async def test_regenerate_makes_a_sibling_answer(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        first = await ask(bridge, chat, "q1", GROUP)
        second = await bridge.regenerate(GROUP, first.messages[0].id, surface(chat, GROUP))
        assert isinstance(second, Answered) and second.text == "You said: q1"
        assert second.messages[0] != first.messages[0]
        assert sent_messages(g4f) == [{"role": "user", "content": "q1"}]
        third = await ask(bridge, chat, "next", GROUP, reply_to=second.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == ["q1", "You said: q1", "next"]
        assert third.outcome is Outcome.DONE


class TestLimits:
    async def test_allowlist_refuses_politely_once(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(allowed_user_ids="someone-else")
        first = await bridge.ask(DM, "hi", surface(chat))
        second = await bridge.ask(DM, "hi", surface(chat))
        assert isinstance(first, Refusal) and first.reason is RefusalReason.NOT_ALLOWED
        assert not first.quiet and "not available to you" in first.message
        assert isinstance(second, Refusal) and second.quiet
        assert chat.writes == []

    async def test_admins_and_listed_spaces_pass(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(allowed_spaces=["g1"], admin_user_ids="test:boss")
        assert isinstance(await bridge.ask(GROUP, "hi", surface(chat, GROUP)), Answered)
        elsewhere = Origin("test", "c9", "u1", space_id="g9")
        assert isinstance(await bridge.ask(elsewhere, "hi", surface(chat, elsewhere)), Refusal)
        boss = Origin("test", "c9", "boss", space_id="g9")
        assert isinstance(await bridge.ask(boss, "hi", surface(chat, boss)), Answered)

    async def test_a_chat_allowlist_closes_dms_to_everyone_unlisted(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        # Only ALLOWED_CHAT_IDS set: the listed group is open, a stranger's DM is not (it was).
        bridge = await open_bridge(allowed_chat_ids="group-1", admin_user_ids="test:boss")
        refused = await bridge.ask(DM, "hi", surface(chat))
        assert isinstance(refused, Refusal) and refused.reason is RefusalReason.NOT_ALLOWED
        assert isinstance(await bridge.status(DM), Refusal)
        assert isinstance(await bridge.ask(GROUP, "hi", surface(chat, GROUP)), Answered)
        boss_dm = Origin("test", "dm-boss", "boss", is_private=True)
        assert isinstance(await bridge.ask(boss_dm, "hi", surface(chat, boss_dm)), Answered)
        listed_dm = await open_bridge(allowed_chat_ids="group-1,dm-1")
        assert isinstance(await listed_dm.ask(DM, "hi", surface(chat)), Answered)

    async def test_user_rate_limit(
        self, open_bridge: OpenBridge, chat: ChatServer, clock: ScaledClock
    ) -> None:
        bridge = await open_bridge(bridge_user_rate="2/minute")
        await ask(bridge, chat, "one")
        await ask(bridge, chat, "two")
        third = await bridge.ask(DM, "three", surface(chat))
        assert isinstance(third, Refusal) and third.reason is RefusalReason.RATE_LIMITED
        assert third.message.startswith("You are sending requests too fast (limit 2/minute).")
        other_user = Origin("test", "dm-2", "u2", is_private=True)
        assert isinstance(await bridge.ask(other_user, "hi", surface(chat, other_user)), Answered)
        clock.advance(61)
        await ask(bridge, chat, "later")

    async def test_one_answer_in_flight_per_user_per_chat(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.trickle_interval = 0.2
        first = asyncio.create_task(bridge.ask(DM, "slow", surface(chat), model="trickle"))
        while not g4f.chat_requests():
            await asyncio.sleep(0.01)
        second = await bridge.ask(DM, "again", surface(chat))
        assert isinstance(second, Refusal) and second.reason is RefusalReason.BUSY
        elsewhere = await bridge.ask(GROUP, "fine here", surface(chat, GROUP))
        assert isinstance(elsewhere, Answered)
        assert isinstance(await first, Answered)
        assert isinstance(await bridge.ask(DM, "now", surface(chat)), Answered)

    async def test_queue_is_fair_and_shows_positions(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(bridge_max_concurrency=1)
        g4f.trickle_interval = 0.1
        users = [Origin("test", f"c{i}", f"u{i}") for i in range(4)]
        tasks = []
        for i, origin in enumerate(users):
            tasks.append(
                asyncio.create_task(
                    bridge.ask(origin, f"p{i}", surface(chat, origin), model="trickle")
                )
            )
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks)
        assert all(isinstance(r, Answered) and r.outcome is Outcome.DONE for r in results)
        prompts = [r.json["messages"][-1]["content"] for r in g4f.chat_requests()]
        assert prompts == ["p0", "p1", "p2", "p3"]
        first_texts = {w.message_id.split("/")[0]: w.text for w in reversed(chat.writes)}
        assert first_texts["c1"].startswith("⏳ Waiting for a free slot: you are number 1 in line.")
        assert first_texts["c3"].startswith("⏳ Waiting for a free slot: you are number 3 in line.")
        final = {r.messages[0].id: chat.messages[r.messages[0].id] for r in results}
        assert sorted(final.values()) == [f"You said: p{i}" for i in range(4)]


class TestModels:
    async def test_set_model_with_typo_suggests(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge()
        result = await bridge.set_model(DM, "gpt4o")
        assert isinstance(result, Refusal) and result.reason is RefusalReason.UNKNOWN_MODEL
        assert "gpt-4o" in result.suggestions
        assert "Did you mean gpt-4o" in result.message

    async def test_chosen_model_is_used_per_user_and_per_chat(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        assert await bridge.set_model(DM, "GPT-4O-MINI") == ModelChosen("gpt-4o-mini", "user")
        await ask(bridge, chat, "hi", GROUP)
        assert g4f.chat_requests()[-1].json["model"] == "gpt-4o-mini"
        assert await bridge.set_model(GROUP, "llama-3.3-70b", scope="chat") == ModelChosen(
            "llama-3.3-70b", "chat"
        )
        await ask(bridge, chat, "hi", GROUP)
        assert g4f.chat_requests()[-1].json["model"] == "llama-3.3-70b"
        await ask(bridge, chat, "hi", DM)
        assert g4f.chat_requests()[-1].json["model"] == "gpt-4o-mini"

    async def test_image_models_cannot_be_chat_models(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge()
        result = await bridge.set_model(DM, "flux")
        assert isinstance(result, Refusal)

    async def test_models_paged_and_filtered(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge()
        page = await bridge.models(DM, page_size=5)
        assert isinstance(page, ModelPage)
        assert page.page == 0 and len(page.items) == 5 and page.pages == -(-page.total // 5)
        assert all(not m.is_provider and not m.draws_images for m in page.items)
        last = await bridge.models(DM, page=99, page_size=5)
        assert isinstance(last, ModelPage) and last.page == page.pages - 1
        gpt = await bridge.models(DM, query="GPT-4")
        assert isinstance(gpt, ModelPage)
        assert {m.id for m in gpt.items} == {"gpt-4o", "gpt-4o-mini", "gpt-4.1"}
        images = await bridge.models(DM, kind="image", query="flux")
        assert isinstance(images, ModelPage)
        assert {m.id for m in images.items} == {"flux", "flux-dev", "flux-schnell"}

    async def test_unreachable_api_is_a_refusal_not_an_exception(
        self, open_bridge: OpenBridge
    ) -> None:
        bridge = await open_bridge(g4f_base_url="http://127.0.0.1:9/v1")
        result = await bridge.models(DM)
        assert isinstance(result, Refusal) and result.reason is RefusalReason.UPSTREAM
        assert "Cannot reach the AI server" in result.message

    async def test_a_provider_name_is_no_model(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge()
        assert any(
            m.is_provider and m.id == "PollinationsAI" for m in await bridge.client.list_models()
        )
        for name in ("PollinationsAI", " pollinationsai "):
            result = await bridge.set_model(DM, name)
            assert isinstance(result, Refusal) and result.reason is RefusalReason.IS_PROVIDER
            assert result.message.startswith("'PollinationsAI' is a provider, not a model")
            assert "/models" in result.message and "G4F_PROVIDER" in result.message
        assert await bridge.model_for(DM) == "gpt-4o"  # nothing was stored
        near = await bridge.set_model(DM, "PollinationAI")  # suggestions are chat models only
        assert isinstance(near, Refusal) and near.reason is RefusalReason.UNKNOWN_MODEL
        assert not any("Pollinations" in s for s in near.suggestions)

    async def test_a_provider_already_pinned_is_said_so(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge(g4f_provider="PollinationsAI")
        result = await bridge.set_model(DM, "PollinationsAI")
        assert isinstance(result, Refusal) and result.reason is RefusalReason.IS_PROVIDER
        assert "Every answer already comes from PollinationsAI." in result.message

    async def test_echoed_names_and_filters_are_capped(self, open_bridge: OpenBridge) -> None:
        bridge = await open_bridge()
        result = await bridge.set_model(DM, "x" * 5000)
        assert isinstance(result, Refusal) and result.reason is RefusalReason.UNKNOWN_MODEL
        assert f"'{'x' * 99}…'" in result.message and len(result.message) < 200
        page = await bridge.models(DM, query="y" * 5000)
        assert isinstance(page, ModelPage)
        header = models_page_header(page)
        assert header.endswith(f"“{'y' * 99}…”)") and len(header) < 200


class TestPersonaStatus:
    async def test_system_prompt_admins_only_per_chat(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(admin_user_ids="boss", bridge_system_prompt="Default.")
        refused = await bridge.set_system_prompt(GROUP, "Pirate.")
        assert isinstance(refused, Refusal) and refused.reason is RefusalReason.NOT_ADMIN
        boss = Origin("test", GROUP.chat_id, "boss", space_id="g1")
        assert await bridge.set_system_prompt(boss, "Talk like a pirate.") == SystemPromptSet(
            "Talk like a pirate."
        )
        await ask(bridge, chat, "hi", GROUP)
        assert sent_messages(g4f)[0] == {"role": "system", "content": "Talk like a pirate."}
        await ask(bridge, chat, "hi", DM)
        assert sent_messages(g4f)[0] == {"role": "system", "content": "Default."}
        assert await bridge.set_system_prompt(boss, "") == SystemPromptSet("Default.")

    async def test_status(self, open_bridge: OpenBridge, chat: ChatServer) -> None:
        bridge = await open_bridge(bridge_user_rate="5/minute")
        await ask(bridge, chat, "one")
        await ask(bridge, chat, "two")
        status = await bridge.status(DM)
        assert isinstance(status, Status)
        assert (status.model, status.requests_left, status.rate) == ("gpt-4o", 3, "5/minute")
        assert status.conversation_turns == 4 and not status.busy


class TestFailures:
    async def test_upstream_error_shown_in_place_and_partial_text_kept(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.answers["go"] = "one two three four five six"
        result = await ask(bridge, chat, "go", model="midstream-error")
        assert result.outcome is Outcome.FAILED
        shown = chat.messages[result.messages[-1].id]
        assert shown.startswith("one two")
        assert shown.endswith("\n\n⚠️ The AI provider failed while answering.")
        follow = await ask(bridge, chat, "continue")
        assert follow.outcome is Outcome.DONE
        assert sent_messages(g4f)[1]["content"] == result.text

    async def test_error_before_text(self, open_bridge: OpenBridge, chat: ChatServer) -> None:
        bridge = await open_bridge()
        result = await ask(bridge, chat, "hi", model="fail-500")
        assert result.outcome is Outcome.FAILED and result.turn_id is None
        assert chat.messages[result.messages[0].id] == (
            "⚠️ The AI server is up, but the provider behind 'fail-500' failed to answer (often "
            "for a while). Try again in a minute, or pick another model (/models): another "
            "model may use a working provider."
        )

    async def test_an_unknown_model_is_echoed_capped_in_the_error(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(g4f_retries=0)
        result = await ask(bridge, chat, "hi", model="q" * 5000)  # e.g. Discord's /ask model:
        assert result.outcome is Outcome.FAILED
        shown = chat.messages[result.messages[0].id]
        assert shown.startswith(f"⚠️ The AI server does not offer the model '{'q' * 99}…'.")
        assert len(shown) < 200

    async def test_stop_by_asker_or_admin_only(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge(admin_user_ids="boss")
        g4f.trickle_interval = 0.3
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(50))
        task = asyncio.create_task(bridge.ask(GROUP, "long", surface(chat, GROUP), model="trickle"))
        while not chat.writes:
            await asyncio.sleep(0.01)
        message_id = chat.writes[0].message_id
        stranger = Origin("test", GROUP.chat_id, "u2", space_id="g1")
        assert await bridge.stop(stranger, message_id) is StopResult.NOT_YOURS
        assert await bridge.stop(GROUP, message_id) is StopResult.STOPPED
        result = await task
        assert isinstance(result, Answered) and result.outcome is Outcome.STOPPED
        assert chat.messages[message_id].endswith("\n\n⏹ Stopped.")
        assert result.text and result.turn_id is not None
        # The asker pressing Stop again is told it has finished, not that it is someone else's.
        assert await bridge.stop(GROUP, message_id) is StopResult.FINISHED
        assert "already finished" in stop_text(StopResult.FINISHED)

    async def test_stop_pressed_while_the_final_write_is_under_way_says_finished(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.trickle_interval = 0.05
        g4f.answers["late"] = " ".join(f"w{i}" for i in range(8))
        held = HeldFinalWrite(chat, chat=DM.chat_id)
        task = asyncio.create_task(bridge.ask(DM, "late", held, model="trickle"))
        await asyncio.wait_for(held.final_started.wait(), 10)
        message_id = chat.writes[0].message_id
        # not "Stopping…" for nothing
        assert await bridge.stop(DM, message_id) is StopResult.FINISHED
        held.release.set()
        result = await task
        assert isinstance(result, Answered) and result.outcome is Outcome.DONE

    async def test_stop_current_answer_of_the_user(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.trickle_interval = 0.3
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(50))
        task = asyncio.create_task(bridge.ask(DM, "long", surface(chat), model="trickle"))
        while not g4f.chat_requests():
            await asyncio.sleep(0.01)
        other = Origin("test", DM.chat_id, "u2", is_private=True)
        assert not await bridge.stop_current(other)
        assert await bridge.stop_current(DM)
        result = await task
        assert isinstance(result, Answered) and result.outcome is Outcome.STOPPED
        assert not await bridge.stop_current(DM)

    async def test_shutdown_stops_answers_and_refuses_new_ones(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.trickle_interval = 0.3
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(50))
        task = asyncio.create_task(bridge.ask(GROUP, "long", surface(chat, GROUP), model="trickle"))
        while not chat.writes:
            await asyncio.sleep(0.01)
        bridge.shutdown()
        result = await task
        assert isinstance(result, Answered) and result.outcome is Outcome.STOPPED
        shown = chat.messages[result.messages[0].id]
        assert shown.startswith("w0") and shown.endswith(
            "\n\n⏹ Interrupted by a restart: ask again."
        )
        late = await bridge.ask(DM, "hello", surface(chat))
        assert isinstance(late, Refusal) and late.reason is RefusalReason.UNAVAILABLE
        assert len(g4f.chat_requests()) == 1

    async def test_drain_lets_answers_finish_within_the_grace_then_interrupts_the_rest(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        g4f.trickle_interval = 0.05
        g4f.answers["short"] = "one two three"
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(400))
        short_chat = Origin("test", "g-short", "u1")
        quick = asyncio.create_task(
            bridge.ask(short_chat, "short", surface(chat, short_chat), model="trickle")
        )
        slow = asyncio.create_task(bridge.ask(GROUP, "long", surface(chat, GROUP), model="trickle"))
        while len(g4f.chat_requests()) < 2:
            await asyncio.sleep(0.01)
        await bridge.drain(grace=20.0)  # clock seconds: 1 s of real time
        done, cut = await quick, await slow
        assert isinstance(done, Answered) and done.outcome is Outcome.DONE
        assert chat.messages[done.messages[-1].id] == "one two three"
        assert isinstance(cut, Answered) and cut.outcome is Outcome.STOPPED
        shown = chat.messages[cut.messages[-1].id]
        assert shown.startswith("w0 w1") and shown.endswith("Interrupted by a restart: ask again.")
        assert cut.turn_id is not None  # the partial answer is kept in the conversation


class TestImagine:
    async def test_uploads_bytes_with_caption(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        s = surface(chat)
        result = await bridge.imagine(DM, "a red fox " * 200, s)
        assert isinstance(result, Imagined) and result.error is None
        assert s.uploads == [("image.png", "image/png", g4f.image_bytes)]
        caption = chat.messages[result.message.id]  # type: ignore[union-attr]
        assert len(caption) <= 1024 and caption.endswith("…\n— flux")
        assert s.activities[0] == "drawing"

    async def test_a_long_prompt_is_capped_in_the_caption(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        result = await bridge.imagine(DM, "a red fox " * 200, surface(chat))
        assert isinstance(result, Imagined) and result.message is not None
        caption = chat.messages[result.message.id]
        assert caption.startswith("🎨 a red fox") and caption.endswith("…\n— flux")
        assert len(caption) == len("🎨 \n— flux") + MAX_PROMPT_ECHO

    async def test_failure_is_shown_where_the_image_would_be(
        self, open_bridge: OpenBridge, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        s = surface(chat)
        result = await bridge.imagine(DM, "a fox", s, model="img-html")
        assert isinstance(result, Imagined) and result.error
        assert chat.messages[result.message.id] == (  # type: ignore[union-attr]
            "⚠️ The server sent something that is not an image."
        )
        assert s.uploads == []

    async def test_empty_prompt(self, open_bridge: OpenBridge, chat: ChatServer) -> None:
        bridge = await open_bridge()
        result = await bridge.imagine(DM, "  ", surface(chat))
        assert isinstance(result, Refusal) and result.reason is RefusalReason.EMPTY
        too_long = await bridge.imagine(DM, "x" * 20_000, surface(chat))
        assert isinstance(too_long, Refusal) and "too long" in too_long.message


@pytest.mark.postgres
async def test_a_bridge_on_postgresql_answers_and_replies_continue_across_a_restart(
    make_settings: MakeSettings,
    g4f: FakeG4F,
    chat: ChatServer,
    clock: ScaledClock,
    postgres_url: str,
) -> None:
    settings = make_settings(bridge_store_url=postgres_url)
    first = await Bridge.open(settings, clock=clock)
    try:
        assert isinstance(first.store, PostgresConversationStore)
        a1 = await ask(first, chat, "q1", GROUP)
        assert a1.outcome is Outcome.DONE and chat.messages[a1.messages[0].id] == "You said: q1"
        a2 = await ask(first, chat, "q2", GROUP, reply_to=a1.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == ["q1", "You said: q1", "q2"]
    finally:
        await first.close()

    # Another process on the same database: replying to the last answer goes on with the story.
    second = await Bridge.open(settings, clock=clock)
    try:
        await ask(second, chat, "q3", GROUP, reply_to=a2.messages[0].id)
        assert [m["content"] for m in sent_messages(g4f)] == [
            "q1",
            "You said: q1",
            "q2",
            "You said: q2",
            "q3",
        ]
    finally:
        await second.close()


def test_store_file_is_in_the_temp_dir(make_settings: MakeSettings, tmp_path: Path) -> None:
    assert str(tmp_path) in make_settings().bridge_store_url


class TestNothingRaisesAtTheAdapter:
    async def test_a_broken_store_is_an_apology_not_an_exception(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        await bridge.store.close()  # every store call now fails
        for result in (
            await bridge.ask(DM, "hello", surface(chat)),
            await bridge.status(DM),
            await bridge.reset(DM),
            await bridge.set_model(DM, "gpt-4o"),
        ):
            assert isinstance(result, Refusal) and result.reason is RefusalReason.FAILED
            assert result.message.startswith("⚠️ Something went wrong on my side")
        assert not await bridge.locks.held("inflight:test:dm-1:u1")  # the lease was released


class TestTextIsText:
    async def test_a_lone_surrogate_in_a_prompt_is_replaced_not_fatal(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        result = await ask(bridge, chat, "half an emoji \ud83d please")
        assert result.outcome is Outcome.DONE
        assert sent_messages(g4f)[-1] == {"role": "user", "content": "half an emoji \ufffd please"}

    @pytest.mark.parametrize(
        ("model", "expected"),
        [
            ("split-surrogate", "Smile 😀 and 👍🏽 then 🇩🇪 done."),
            ("lone-surrogate", "Broken \ufffd here and \ufffd there."),
        ],
    )
    async def test_surrogates_in_an_answer_are_shown_stored_and_sent_back_clean(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer, model: str, expected: str
    ) -> None:
        bridge = await open_bridge()
        result = await ask(bridge, chat, "smile", model=model)
        assert result.outcome is Outcome.DONE and result.text == expected
        assert chat.messages[result.messages[-1].id] == expected
        assert result.turn_id is not None
        stored = await bridge.store.get_turn(result.turn_id)  # read back from SQLite
        assert stored is not None and stored.content == expected
        await ask(bridge, chat, "again")  # the private chat continues: history from the store
        assert sent_messages(g4f)[1] == {"role": "assistant", "content": expected}


class TestAfterACrash:
    async def test_answers_left_streaming_are_ended_in_place_once(
        self, open_bridge: OpenBridge, g4f: FakeG4F, chat: ChatServer
    ) -> None:
        bridge = await open_bridge()
        chat.burst = 5  # the messages a previous process left, written here at once
        s = surface(chat, GROUP)
        answered = await s.send("Half of it" + INDICATOR, buttons=(Button("stop", "Stop"),))
        waiting = await s.send("…" + INDICATOR, buttons=(Button("stop", "Stop"),))
        for n, (ref, text, words) in enumerate(
            [(answered, "Half of it" + INDICATOR, True), (waiting, "…" + INDICATOR, False)]
        ):
            question = await bridge.store.add_turn(
                parent_id=None, role="user", content=f"q{n}", model=None, created_at=1.0
            )
            await bridge.store.save_streaming(
                StreamingAnswer(
                    GROUP.chat, GROUP.user_id, question.id, "m", ((ref.id, text),), 1.0, words
                )
            )
        assert await bridge.end_interrupted("test", lambda chat_id: s) == 2
        assert chat.messages[answered.id] == "Half of it\n\n⏹ Interrupted: ask again."
        assert chat.messages[waiting.id] == "⏹ Interrupted: ask again."
        assert chat.buttons[answered.id] == ("regenerate",)
        turn_id = await bridge.store.turn_for_message(GROUP.message(answered.id))
        turn = await bridge.store.get_turn(turn_id) if turn_id is not None else None
        assert turn is not None and turn.content == "Half of it" and turn.role == "assistant"
        assert await bridge.store.turn_for_message(GROUP.message(waiting.id)) is None
        assert await bridge.end_interrupted("test", lambda chat_id: s) == 0  # once only
