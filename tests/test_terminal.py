"""The terminal chat through the real use cases, and `g4f-bridge chat`/`run` as processes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.terminal import TerminalChat
from core.bridge import Bridge
from core.render.renderer import INDICATOR
from tests.conftest import MakeSettings
from tests.fakes.g4f_server import FakeG4F
from tests.test_cli import api, run_cli


class Keyboard:
    """Lines typed by a user; None is Ctrl-D."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def read(self, prompt: str) -> str | None:
        return await self.queue.get()

    def type(self, *lines: str | None) -> None:
        for line in lines:
            self.queue.put_nowait(line)


@pytest.fixture
async def bridge(make_settings: MakeSettings) -> AsyncIterator[Bridge]:
    b = await Bridge.open(make_settings())
    yield b
    await b.close()


def session(bridge: Bridge, keyboard: Keyboard, tmp_path: Path) -> tuple[TerminalChat, io.StringIO]:
    out = io.StringIO()
    return TerminalChat(bridge, read_line=keyboard.read, out=out, image_dir=tmp_path / "img"), out


async def test_chat_streams_answers_and_commands(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    g4f.answers["hello"] = "Hello there, friend."
    keyboard.type("hello", "/model gpt4o", "/model gpt-4o-mini", "/status", "again", None)
    assert await chat.run() == 0
    text = out.getvalue()
    assert "Hello there, friend.\n" in text
    assert INDICATOR not in text.replace("\b \b" * len(INDICATOR), "").split("friend.")[1][:3]
    assert "Did you mean gpt-4o" in text
    assert "✅ Your model is now `gpt-4o-mini`." in text
    assert "Conversation: 2 messages" in text
    last = g4f.chat_requests()[-1].json
    assert last is not None and last["model"] == "gpt-4o-mini"
    assert [m["content"] for m in last["messages"]] == ["hello", "Hello there, friend.", "again"]


async def test_imagine_saves_the_file(bridge: Bridge, g4f: FakeG4F, tmp_path: Path) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/imagine a lighthouse", None)
    await chat.run()
    saved = list((tmp_path / "img").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == g4f.image_bytes
    assert f"Saved {saved[0]}" in out.getvalue()
    assert "🎨 a lighthouse\n— flux" in out.getvalue()


async def test_models_reset_system_and_unknown(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/models llama", "/system Be short.", "hi", "/reset", "/bogus", None)
    await chat.run()
    text = out.getvalue()
    assert "1 in all, matching “llama”)\n• `llama-3.3-70b`\n" in text
    assert "persona is now:\n> Be short." in text
    assert "Started a new conversation." in text
    assert "Unknown command /bogus." in text
    assert g4f.chat_requests()[-1].json["messages"][0]["content"] == "Be short."  # type: ignore[index]


async def test_ctrl_c_stops_the_answer_not_the_chat(
    bridge: Bridge, g4f: FakeG4F, tmp_path: Path
) -> None:
    g4f.trickle_interval = 0.2
    g4f.answers["long"] = " ".join(f"w{i}" for i in range(40))
    keyboard = Keyboard()
    chat, out = session(bridge, keyboard, tmp_path)
    keyboard.type("/model trickle", "long")
    running = asyncio.create_task(chat.run())
    while "w1" not in out.getvalue():
        await asyncio.sleep(0.02)
    assert chat.stop_answer()
    keyboard.type("/status", None)
    assert await running == 0
    assert "\n\n⏹ Stopped." in out.getvalue()
    assert "w39" not in out.getvalue()
    assert "Conversation: 2 messages" in out.getvalue()


async def test_chat_command_as_a_process(g4f: FakeG4F, tmp_path: Path) -> None:
    g4f.answers["ping"] = "pong"
    store = {"BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3"}
    code, out, err = await run_cli("chat", env={**api(g4f), **store}, cwd=tmp_path, stdin=b"ping\n")
    assert code == 0, err
    assert "pong\n" in out


async def test_run_without_tokens_starts_the_terminal_chat(g4f: FakeG4F, tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "run",
        env={**api(g4f), "BRIDGE_STORE_URL": f"sqlite:///{tmp_path}/s.sqlite3"},
        cwd=tmp_path,
    )
    assert code == 0
    assert "No platform token is set: starting the terminal chat" in err
    assert "TELEGRAM_TOKEN" in err
    assert out.startswith("g4f-bridge chat with gpt-4o")


async def test_run_named_platform_without_token_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await run_cli("run", "--platform", "telegram", cwd=tmp_path)
    assert code == 2
    assert err == "g4f-bridge: TELEGRAM_TOKEN is not set, so telegram cannot start\n"


async def test_ctrl_c_in_the_chat_process_stops_only_the_answer(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    import os
    import signal

    from tests.test_cli import CLI, ROOT

    g4f.trickle_interval = 0.2
    g4f.answers["long"] = " ".join(f"w{i}" for i in range(60))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    env.update(api(g4f), PYTHONPATH=str(ROOT), BRIDGE_STORE_URL=f"sqlite:///{tmp_path}/s.sqlite3")
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "chat",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"/model trickle\nlong\n")
    await proc.stdin.drain()
    seen = b""
    while b"w2" not in seen:
        seen += await asyncio.wait_for(proc.stdout.read(100), 10)
    proc.send_signal(signal.SIGINT)
    proc.stdin.write(b"/status\n")
    proc.stdin.close()
    rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    out = (seen + rest).decode()
    assert proc.returncode == 0
    assert "\n\n⏹ Stopped." in out
    assert "w59" not in out
    assert "Conversation: 2 messages" in out
