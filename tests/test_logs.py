"""Logs that follow an answer: one answer id on every line logged while it runs, text and JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, SecretStr

from core.bridge import Bridge
from core.client import G4FClient
from core.conversations import Origin
from core.logs import ANSWER_ID, configure_logging, follows_answer, secrets_of
from core.results import Answered
from core.settings import Settings
from core.store.base import open_store
from tests.conftest import MakeSettings
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface

WHERE = Origin("test", "dm-1", "u1", is_private=True)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
async def test_every_line_of_an_answer_carries_its_id(
    make_settings: MakeSettings, g4f: FakeG4F, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(g4f_retries=2)
    configure_logging(settings)
    clock = ScaledClock(factor=20)
    store = open_store(settings.bridge_store_url)
    await store.open()
    bridge = Bridge(settings, client=G4FClient(settings, clock=clock), store=store, clock=clock)
    try:
        g4f.fail_times = 1
        chat = ChatServer(clock=clock, interval=1.0, forced_retry_after=[0.5])
        first = await bridge.ask(WHERE, "my private question", RecordingSurface(chat, chat="dm-1"))
        g4f.calls_by_model.clear()
        second = await bridge.ask(
            WHERE, "again", RecordingSurface(chat, chat="dm-1"), model="flaky-500"
        )
        logging.getLogger("core.elsewhere").info("not part of an answer")
    finally:
        await bridge.close()
    assert isinstance(first, Answered) and isinstance(second, Answered)
    lines = capsys.readouterr().err.splitlines()
    retried = next(line for line in lines if "attempt 1 with flaky-500 failed" in line)
    limited = next(line for line in lines if "rate limited, retrying" in line)
    ids = {
        match.group(1)
        for line in (retried, limited)
        if (match := re.search(r" core\.[\w.]+ \[([0-9a-f]{8})\]: ", line))
    }
    assert len(ids) == 2  # each answer has its own id; the client and the renderer both show it
    summaries = [line for line in lines if " core.answers [" in line]
    assert len(summaries) == 2
    assert "answer done on test: " in summaries[0] and "1 rate limited" in summaries[0]
    assert all(any(f"[{i}]" in line for line in summaries) for i in ids)
    outside = next(line for line in lines if "not part of an answer" in line)
    assert " core.elsewhere: not part of an answer" in outside
    assert not any("my private question" in line for line in lines)


@pytest.mark.usefixtures("restore_logging")
async def test_json_lines_carry_the_answer_id_and_child_tasks_inherit_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(Settings(_env_file=None, bridge_log_format="json"))  # type: ignore[call-arg]
    log = logging.getLogger("core.test")

    @follows_answer
    async def answer() -> str | None:
        log.info("in the use case")
        await asyncio.create_task(asyncio.to_thread(lambda: None))
        await asyncio.create_task(_log_from_a_task(log))
        return ANSWER_ID.get()

    answer_id = await answer()
    log.info("after it")
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert answer_id is not None and ANSWER_ID.get() is None
    assert [(e["message"], e.get("answer_id")) for e in entries] == [
        ("in the use case", answer_id),
        ("in a task it started", answer_id),
        ("after it", None),
    ]


async def _log_from_a_task(log: logging.Logger) -> None:
    log.info("in a task it started")


async def test_an_id_set_by_the_caller_is_kept() -> None:
    @follows_answer
    async def inner() -> str | None:
        return ANSWER_ID.get()

    token = ANSWER_ID.set("adapter1")
    try:
        assert await inner() == "adapter1"
    finally:
        ANSWER_ID.reset(token)


class _Token(BaseModel):
    token: SecretStr


class _PlatformSettings(BaseModel):
    """Settings of some adapter: secrets under any name, nested or in a list."""

    name: str = "visible-name"
    login: _Token
    spares: list[_Token] = []
    maybe: SecretStr | None = None


def test_every_secret_field_is_a_secret_whatever_its_name() -> None:
    settings = _PlatformSettings(
        login=_Token(token=SecretStr("nested-secret")),
        spares=[_Token(token=SecretStr("listed-secret"))],
    )
    assert secrets_of(settings) == ["listed-secret", "nested-secret"]
    assert secrets_of(_PlatformSettings(login=_Token(token=SecretStr("x")))) == ["x"]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_scrub_the_secrets_of_more_settings_and_keep_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    adapter = _PlatformSettings(login=_Token(token=SecretStr("adapter-secret")))
    settings = Settings(_env_file=None, bridge_log_format="json")  # type: ignore[call-arg]
    configure_logging(settings, more_settings=[adapter])
    log = logging.getLogger("bots.some")
    log.warning("connecting with %s", "adapter-secret")
    try:
        raise RuntimeError("failed with adapter-secret")
    except RuntimeError:
        log.exception("boom")
    configure_logging(settings)  # nothing to scrub: the traceback comes from the record itself
    try:
        raise ValueError("plain failure")
    except ValueError:
        log.exception("again")
    first, second, third = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (first["level"], first["logger"], first["message"]) == (
        "WARNING",
        "bots.some",
        "connecting with ***",
    )
    assert second["message"] == "boom" and "RuntimeError: failed with ***" in second["exception"]
    assert third["level"] == "ERROR" and "ValueError: plain failure" in third["exception"]
    assert "adapter-secret" not in json.dumps([first, second, third])
