"""The `g4f-bridge` command as a user runs it: a real process against the emulated server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from tests.fakes.g4f_server import FakeG4F
from tests.fakes.redis_server import free_port
from tests.processes import CLI, ROOT


async def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    clean["PYTHONPATH"] = str(ROOT)
    clean["BRIDGE_HTTP_ADDR"] = "127.0.0.1:0"  # `run` serves /healthz: never on a fixed port
    clean["BRIDGE_EMBEDDED_G4F"] = "never"  # tests that want the embedded g4f say so
    clean.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=clean,
        cwd=cwd or os.getcwd(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def api(g4f: FakeG4F, **extra: str) -> dict[str, str]:
    return {"G4F_BASE_URL": g4f.base_url, "G4F_RETRIES": "0", **extra}


async def test_ask_streams_the_answer(g4f: FakeG4F) -> None:
    g4f.answers["hello"] = "Hello! How can I help?"
    code, out, err = await run_cli("ask", "hello", env=api(g4f))
    assert (code, out, err) == (0, "Hello! How can I help?\n", "")
    assert g4f.chat_requests()[0].json["stream"] is True


async def test_ask_without_streaming_and_options(g4f: FakeG4F) -> None:
    code, out, _ = await run_cli(
        "ask",
        "hi",
        "--no-stream",
        "--model",
        "gpt-4o-mini",
        "--system",
        "Be brief.",
        env=api(g4f),
    )
    assert (code, out) == (0, "You said: hi\n")
    body = g4f.chat_requests()[0].json
    assert body["model"] == "gpt-4o-mini" and body["stream"] is False
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_unreachable_server_prints_one_line_telling_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    code, out, err = await run_cli("ask", "hello", env={"G4F_BASE_URL": url, "G4F_RETRIES": "0"})
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"g4f-bridge: Cannot reach the AI server at {url}.")
    assert "G4F_BASE_URL" in err


async def test_failure_mid_answer_keeps_text_and_says_why(g4f: FakeG4F) -> None:
    g4f.answers["hello"] = "one two three four five six"
    code, out, err = await run_cli("ask", "hello", "--model", "midstream-error", env=api(g4f))
    assert code == 1
    assert out.startswith("one two") and out.endswith("\n")
    assert err == "g4f-bridge: The AI provider failed while answering.\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"G4F_TIMEOUT_TOTAL": "soon"},
            "invalid setting G4F_TIMEOUT_TOTAL: Input should be a valid number",
        ),
        (
            {"G4F_BASE_URL": "localhost:1337"},
            "invalid setting G4F_BASE_URL: must be an http:// or https:// URL",
        ),
        ({"BRIDGE_USER_RATE": "lots"}, "invalid setting BRIDGE_USER_RATE:"),
        ({"TELEGRAM_STREAM_MODE": "fast"}, "invalid setting TELEGRAM_STREAM_MODE:"),
        (
            {"BRIDGE_STORE_URL": "mysql://bridge:pw@db/bridge"},
            "invalid setting BRIDGE_STORE_URL: MySQL (mysql://) is not supported yet",
        ),
        (
            {"BRIDGE_LIMITS_URL": "redis//localhost:6379"},
            "invalid setting BRIDGE_LIMITS_URL: must be memory://",
        ),
        (
            {"DISCORD_GUILD_IDS": "1234567890,general"},
            "invalid setting DISCORD_GUILD_IDS: guild ids are numbers",
        ),
    ],
)
async def test_invalid_setting_is_one_line_naming_the_variable(
    env: dict[str, str], expected: str
) -> None:
    code, out, err = await run_cli("ask", "hello", env=env)
    assert code == 2 and out == ""
    assert err.startswith("g4f-bridge: " + expected)
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "chat"])
async def test_store_that_cannot_be_opened_is_one_line(
    g4f: FakeG4F, tmp_path: Path, command: str
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    url = f"sqlite:///{tmp_path}/not-a-folder/store.sqlite3"
    code, out, err = await run_cli(command, env=api(g4f, BRIDGE_STORE_URL=url))
    assert code == 2 and out == ""
    assert err.startswith("g4f-bridge: The conversation store ") and "BRIDGE_STORE_URL" in err
    assert err.count("\n") == 1 and "Traceback" not in err


async def test_postgres_store_out_of_reach_is_one_line_without_the_password(g4f: FakeG4F) -> None:
    url = f"postgresql://bridge:hunter2-pg-secret@127.0.0.1:{free_port()}/bridge"
    code, out, err = await run_cli("chat", env=api(g4f, BRIDGE_STORE_URL=url))
    assert code == 2 and out == ""
    assert err.startswith("g4f-bridge: The conversation store postgresql://bridge@127.0.0.1:")
    assert "cannot be reached" in err and "BRIDGE_STORE_URL" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "hunter2" not in err


async def test_settings_come_from_dotenv_in_the_working_directory(
    g4f: FakeG4F, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"G4F_BASE_URL={g4f.base_url}\nG4F_DEFAULT_MODEL=llama-3.3-70b\n"
    )
    code, _, _ = await run_cli("ask", "hello", cwd=tmp_path)
    assert code == 0
    assert g4f.chat_requests()[0].json["model"] == "llama-3.3-70b"


async def test_usage_error_exits_2() -> None:
    code, _, err = await run_cli("ask")
    assert code == 2 and "usage:" in err


async def test_models_json(g4f: FakeG4F) -> None:
    code, out, _ = await run_cli("models", "--json", env=api(g4f))
    rows = {row["id"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["flux"] == {"id": "flux", "provider": False, "image": True}
    assert rows["PollinationsAI"]["provider"] is True
    assert rows["gpt-4o"]["image"] is False


async def test_models_listing_groups(g4f: FakeG4F) -> None:
    code, out, _ = await run_cli("models", env=api(g4f))
    assert code == 0
    chat, image, providers = (
        out.split("Chat models:\n")[1].split("Image models:\n")[0],
        out.split("Image models:\n")[1].split("Providers")[0],
        out.split("Providers")[1],
    )
    assert "  gpt-4o (default)\n" in chat and "flux" not in chat
    assert "  flux (default)\n" in image and "gpt-4o\n" not in image
    assert "PollinationsAI" in providers


async def test_imagine_writes_the_file(g4f: FakeG4F, tmp_path: Path) -> None:
    target = tmp_path / "out" / "fox.png"
    code, out, _ = await run_cli("imagine", "a fox", "--out", str(target), env=api(g4f))
    assert (code, out) == (0, f"{target}\n")
    assert target.read_bytes() == g4f.image_bytes


async def test_check_passes_and_reports_platforms(g4f: FakeG4F) -> None:
    code, out, _ = await run_cli("check", env=api(g4f, TELEGRAM_TOKEN="123:fake-token"))
    assert code == 0
    assert "ok   default chat model 'gpt-4o' is offered" in out
    assert "ok   image model 'flux' is offered" in out
    assert "ok   a one-token answer from 'gpt-4o' came back via FakeProvider" in out
    assert g4f.chat_requests()[0].json["max_tokens"] == 1
    assert "info Telegram: token is set" in out
    assert "info Discord: token not set" in out
    assert "fake-token" not in out


async def test_check_fails_on_missing_model_and_bad_key() -> None:
    async with FakeG4F(api_key="right-key-000") as server:
        code, out, _ = await run_cli(
            "check", env=api(server, G4F_API_KEY="wrong-key-111", G4F_DEFAULT_MODEL="gpt-9")
        )
        assert code == 1
        assert "FAIL API at" in out and "refused the API key" in out
        assert "wrong-key-111" not in out
        code, out, _ = await run_cli(
            "check", env=api(server, G4F_API_KEY="right-key-000", G4F_DEFAULT_MODEL="gpt-9")
        )
        assert code == 1
        assert "FAIL default chat model 'gpt-9' is not in the server's model list" in out


async def test_check_tells_a_failed_provider_from_an_unknown_model(g4f: FakeG4F) -> None:
    g4f.down_models.add("gpt-4o")
    code, out, _ = await run_cli("check", env=api(g4f))
    assert code == 1
    assert "ok   API at" in out and "ok   default chat model 'gpt-4o' is offered" in out
    assert (
        "FAIL the API answers, but its provider failed for 'gpt-4o': the server is fine, the "
        "provider behind it is down or needs credentials." in out
    )
    code, out, _ = await run_cli("check", env=api(g4f, G4F_DEFAULT_MODEL="gpt-9"))
    assert code == 1
    assert "FAIL the model 'gpt-9' is unknown to the server: set G4F_DEFAULT_MODEL" in out
    assert "provider failed" not in out


async def test_ask_when_the_provider_is_down_says_what_to_do(g4f: FakeG4F) -> None:
    g4f.down_models.add("gpt-4o")
    code, out, err = await run_cli("ask", "hello", env=api(g4f))
    assert (code, out) == (1, "")
    assert err == (
        "g4f-bridge: The AI server is up, but the provider behind 'gpt-4o' failed to answer "
        "(often for a while). Try again in a minute, or pick another model (/models): another "
        "model may use a working provider.\n"
    )
