"""Nothing stuck after a crash: a bridge process killed mid-answer, then started again.

The real `g4f-bridge run` runs as its own process against the emulated Telegram (in this test
process) and the emulated G4F server; SIGKILL leaves its half-written message showing the
streaming marker and Stop. The next process ends that message in place (text kept, "Interrupted:
ask again.", Regenerate instead of Stop) and keeps the question and the partial answer in the
conversation, so a reply to the message continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from core.bridge import STALE_AFTER, Bridge
from core.render.renderer import INDICATOR
from tests.conftest import MakeSettings, RedisDb, leave_streaming
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import kill, start_run, telegram_run_env

GROUP = -100777


def _recorded(db: Path) -> bool:
    """The store holds a record of a streaming answer with a few words in it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT messages FROM streaming WHERE answered = 1").fetchall()
    except sqlite3.Error:
        return False
    return any(str(messages).count(" ") >= 6 for (messages,) in rows)


async def test_a_killed_answer_is_ended_in_place_and_its_conversation_goes_on(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    g4f.trickle_interval = 0.05
    g4f.answers["tell a long story"] = " ".join(f"w{i}" for i in range(600))  # 30 s
    async with FakeTelegram() as telegram:
        env = telegram_run_env(
            g4f,
            telegram,
            tmp_path,
            G4F_DEFAULT_MODEL="trickle",
            BRIDGE_HTTP_ADDR="off",
            BRIDGE_STORE_URL=f"sqlite:///{tmp_path}/store.sqlite3",
        )
        first = await start_run(env, tmp_path)
        try:
            asked = int(
                telegram.push_text(GROUP, "/ask tell a long story", chat_type="supergroup")[
                    "message_id"
                ]
            )

            def streaming() -> bool:
                shown = telegram.bot_messages(GROUP)
                return bool(shown) and (shown[0].text or "").count(" ") >= 6

            await telegram.wait_for(streaming, timeout=30)
            # What the message shows is recorded in the background: kill once it is.
            await telegram.wait_for(lambda: _recorded(tmp_path / "store.sqlite3"), timeout=30)
            first.kill()  # SIGKILL: no final write, no cleanup
            await first.wait()
        finally:
            await kill(first)
        [stuck] = telegram.bot_messages(GROUP)
        assert (stuck.text or "").endswith(INDICATOR.strip())
        left = stuck.text or ""

        second = await start_run(env, tmp_path)
        try:

            def ended() -> bool:
                text = telegram.bot_messages(GROUP)[0].text or ""
                return text.endswith("⏹ Interrupted: ask again.")

            await telegram.wait_for(ended, timeout=30)
            [message] = telegram.bot_messages(GROUP)
            kept = left.removesuffix(INDICATOR)
            assert (message.text or "").startswith(kept.strip()[:40])  # the text is kept
            assert INDICATOR.strip() not in (message.text or "")
            buttons = [
                b["callback_data"]
                for row in (message.reply_markup or {}).get("inline_keyboard", [])
                for b in row
            ]
            assert buttons == ["regen"]  # Regenerate, no Stop
            assert message.reply_to == asked

            # A reply to it continues the conversation: the question and the partial answer.
            g4f.answers["and then?"] = "The end."
            telegram.push_text(
                GROUP, "and then?", chat_type="supergroup", reply_to=message.message_id
            )
            await telegram.wait_for(
                lambda: any(m.text == "The end." for m in telegram.bot_messages(GROUP)),
                timeout=30,
            )
            sent = g4f.chat_requests()[-1].json
            assert sent is not None
            roles = [(m["role"], str(m["content"])[:9]) for m in sent["messages"]]
            assert ("user", "tell a lo") in roles and ("assistant", "w0 w1 w2 ") in roles
            assert roles[-1] == ("user", "and then?")
        finally:
            await kill(second)


async def test_with_replicas_sharing_the_store_only_stale_records_are_ended(
    make_settings: MakeSettings, g4f: FakeG4F, redis_db: RedisDb
) -> None:
    """Another replica may be streaming a fresh record's answer: it is left alone; one left
    unrefreshed past STALE_AFTER is ended by the sweep."""
    bridge = await Bridge.open(
        make_settings(bridge_limits_url=redis_db.url, bridge_limits_prefix=redis_db.prefix)
    )
    try:
        assert bridge.limits_health is not None  # replicas share limits (and so the store)
        chat = ChatServer(clock=bridge.clock, interval=0.001, burst=10)
        s = RecordingSurface(chat, chat="room", max_length=4000)
        now = bridge.clock.wall()
        refs = {}
        for name, updated_at in (("alive", now), ("dead", now - 2 * STALE_AFTER)):
            refs[name] = await leave_streaming(bridge, s, name, updated_at)
        assert await bridge.end_interrupted("test", lambda chat_id: s) == 0  # the sweep's job
        async with asyncio.timeout(10):
            while not chat.messages[refs["dead"].id].endswith("Interrupted: ask again."):
                await asyncio.sleep(0.01)
        assert chat.messages[refs["alive"].id] == "alive text" + INDICATOR
        left = await bridge.store.streaming_answers("test")
        assert [a.messages[0][0] for a in left] == [refs["alive"].id]
    finally:
        await bridge.close()
