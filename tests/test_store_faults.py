"""The SQLite store when its database cannot be used: read-only, locked, failing disk, damaged.

Each fault is real: files made unwritable (`chattr +i` when running as root, where chmod does not
stop writes; chmod otherwise), another connection holding the write lock, the kernel refusing a
write to an open file, a file overwritten under the store. Each ends in a typed
`StoreUnavailable` with a user message, and the bridge's commands answer with it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from core.bridge import Bridge
from core.client import G4FClient
from core.clock import SystemClock
from core.conversations import Origin
from core.errors import (
    StoreBusy,
    StoreDiskError,
    StoreOpenFailed,
    StoreUnavailable,
)
from core.results import ModelPage, Refusal, RefusalReason, Status
from core.store.base import ChatKey
from core.store.sqlite import SqliteConversationStore
from tests.conftest import MakeSettings
from tests.fakes.surface import ChatServer, RecordingSurface

APOLOGY = "I can't reach my conversation store right now; please try again in a minute."
ADMIN = Origin("test", "dm-1", "boss", is_private=True)
PROJECT = Path(__file__).resolve().parent.parent

Unwritable = Callable[[Path], None]


def _chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root, where chmod does not stop writes, and chattr is missing")
    return subprocess.run([chattr, flag, str(path)], capture_output=True, text=True, check=False)


@pytest.fixture
def unwritable() -> Iterator[Unwritable]:
    """Make a file or directory unwritable for this process; undone after the test."""
    undo: list[Callable[[], object]] = []

    def make(path: Path) -> None:
        if os.geteuid() == 0:
            done = _chattr("+i", path)
            if done.returncode != 0:
                pytest.skip(f"running as root and chattr +i fails here: {done.stderr.strip()}")
            undo.append(lambda: _chattr("-i", path))
        else:
            mode = path.stat().st_mode
            path.chmod(0o555 if path.is_dir() else 0o444)
            undo.append(lambda: path.chmod(mode))
        if os.access(path, os.W_OK):
            pytest.skip(f"cannot make {path} unwritable here")

    yield make
    for step in reversed(undo):
        step()


@pytest.fixture
def immutable() -> Iterator[Unwritable]:
    """`chattr +i`: even writes through a file descriptor opened before fail (EPERM)."""
    undo: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("chattr +i needs root")
        done = _chattr("+i", path)
        if done.returncode != 0:
            pytest.skip(f"chattr +i fails here: {done.stderr.strip()}")
        undo.append(path)

    yield make
    for path in reversed(undo):
        _chattr("-i", path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.sqlite3"


async def filled(path: Path, *, busy_timeout: float = 10.0) -> SqliteConversationStore:
    store = SqliteConversationStore(path, busy_timeout=busy_timeout)
    await store.open()
    await store.add_turn(parent_id=None, role="user", content="hi", model=None, created_at=1.0)
    return store


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteConversationStore]:
    s = await filled(db_path, busy_timeout=0.2)
    yield s
    await s.close()


@pytest.fixture
def other_writer(db_path: Path, store: SqliteConversationStore) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock (it wrote and has not committed)."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO preferences VALUES ('other', 'writer', 'holding the lock')")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def crashed_writer_leaves_wal_and_shm(path: Path) -> None:
    """A process that wrote in WAL mode and was killed: its -wal and -shm stay behind."""
    script = (
        "import os, signal, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=WAL')\n"
        "c.execute(\"INSERT INTO preferences VALUES ('s', 'n', 'v')\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert done.returncode == -signal.SIGKILL
    assert Path(f"{path}-shm").exists() and Path(f"{path}-wal").exists()


# --- at open ------------------------------------------------------------------------------


def assert_one_line_naming_the_setting(exc: StoreOpenFailed, *needles: str) -> None:
    message = exc.user_message
    assert "\n" not in message and "BRIDGE_STORE_URL" in message
    for needle in needles:
        assert needle in message


async def test_open_a_read_only_database_file_fails_with_one_line(
    db_path: Path, unwritable: Unwritable
) -> None:
    await (await filled(db_path)).close()
    unwritable(db_path)
    with pytest.raises(StoreOpenFailed) as caught:
        await SqliteConversationStore(db_path).open()
    assert_one_line_naming_the_setting(caught.value, str(db_path), "store.sqlite3 is read-only")
    assert isinstance(caught.value, StoreUnavailable)


async def test_open_in_a_read_only_directory_fails_with_one_line(
    db_path: Path, unwritable: Unwritable
) -> None:
    db_path.parent.mkdir()
    unwritable(db_path.parent)
    with pytest.raises(StoreOpenFailed) as caught:
        await SqliteConversationStore(db_path).open()
    assert_one_line_naming_the_setting(caught.value, "directory that cannot be written")


async def test_open_where_the_directory_cannot_be_created_fails_with_one_line(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "sub" / "store.sqlite3"
    with pytest.raises(StoreOpenFailed) as caught:
        await SqliteConversationStore(path).open()
    assert_one_line_naming_the_setting(caught.value, "cannot be created")


def test_a_read_only_shm_left_by_a_crash_stops_the_start_with_one_line(
    db_path: Path, tmp_path: Path, unwritable: Unwritable
) -> None:
    """The whole program, in its own process: no SIGBUS, no traceback, one line, exit 1."""
    asyncio.run(_create(db_path))
    crashed_writer_leaves_wal_and_shm(db_path)
    unwritable(Path(f"{db_path}-shm"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G4F_", "BRIDGE_"))}
    env |= {
        "BRIDGE_STORE_URL": f"sqlite:///{db_path}",
        "PYTHONPATH": str(PROJECT),
        "BRIDGE_EMBEDDED_G4F": "never",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bots.cli", "chat"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)  # a settings error
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "store.sqlite3-shm is read-only" in lines[0] and "BRIDGE_STORE_URL" in lines[0]


async def _create(path: Path) -> None:
    await (await filled(path)).close()


# --- while running ------------------------------------------------------------------------


async def test_locked_by_another_writer_past_the_busy_timeout_is_store_busy(
    store: SqliteConversationStore, other_writer: sqlite3.Connection
) -> None:
    with pytest.raises(StoreBusy) as caught:
        await store.set_preference("user:test:u1", "model", "m")
    assert caught.value.user_message == APOLOGY
    assert "database is locked" in caught.value.detail
    assert await store.get_preference("other", "writer") is None  # readers are not blocked
    other_writer.execute("COMMIT")
    await store.set_preference("user:test:u1", "model", "m")
    assert await store.get_preference("user:test:u1", "model") == "m"


async def test_ordinary_contention_waits_for_the_other_writer(
    db_path: Path, other_writer: sqlite3.Connection
) -> None:
    store = await _open_plain(db_path)
    try:
        write = asyncio.create_task(store.set_preference("user:test:u1", "model", "m"))
        done, _ = await asyncio.wait({write}, timeout=0.5)
        assert not done, "the write waits for the lock instead of failing at once"
        other_writer.execute("COMMIT")
        await asyncio.wait_for(write, 10)
        assert await store.get_preference("other", "writer") == "holding the lock"
    finally:
        await store.close()


async def _open_plain(path: Path) -> SqliteConversationStore:
    store = SqliteConversationStore(path)  # the default busy timeout
    await store.open()
    return store


async def test_a_write_the_disk_refuses_is_a_store_disk_error_and_passes(
    store: SqliteConversationStore, db_path: Path, immutable: Unwritable
) -> None:
    immutable(Path(f"{db_path}-wal"))
    with pytest.raises(StoreDiskError) as caught:
        await store.set_preference("chat:test:c", "system_prompt", "x")
    assert caught.value.user_message == APOLOGY and "disk I/O error" in caught.value.detail
    _chattr("-i", Path(f"{db_path}-wal"))
    await store.set_preference("chat:test:c", "system_prompt", "x")  # no reopen needed
    assert await store.get_preference("chat:test:c", "system_prompt") == "x"


async def test_a_database_overwritten_under_the_store_is_a_store_disk_error(
    store: SqliteConversationStore, db_path: Path
) -> None:
    damage(db_path)
    with pytest.raises(StoreDiskError) as caught:
        await store.get_head(ChatKey("test", "dm-1"))
    assert caught.value.user_message == APOLOGY


def damage(db_path: Path) -> None:
    for part in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        with part.open("r+b") as file:
            file.write(b"\0" * part.stat().st_size)


# --- the bridge's commands ----------------------------------------------------------------


@pytest.fixture
async def bridge(
    make_settings: MakeSettings, store: SqliteConversationStore
) -> AsyncIterator[Bridge]:
    settings = make_settings(admin_user_ids="boss")
    b = Bridge(settings, client=G4FClient(settings), store=store)
    yield b
    await b.client.aclose()


def assert_apology(result: object) -> None:
    assert result == Refusal(RefusalReason.UNAVAILABLE, f"⚠️ {APOLOGY}")


async def test_commands_that_write_answer_with_the_apology_while_another_writer_holds_the_lock(
    bridge: Bridge, other_writer: sqlite3.Connection
) -> None:
    assert_apology(await bridge.set_model(ADMIN, "gpt-4o-mini"))
    assert_apology(await bridge.reset(ADMIN))
    assert_apology(await bridge.set_system_prompt(ADMIN, "Be brief."))
    status = await bridge.status(ADMIN)  # only reads: WAL readers are not blocked
    assert isinstance(status, Status)
    other_writer.execute("COMMIT")
    assert not isinstance(await bridge.set_model(ADMIN, "gpt-4o-mini"), Refusal)


async def test_commands_that_read_answer_with_the_apology_when_the_file_is_damaged(
    bridge: Bridge, db_path: Path
) -> None:
    assert isinstance(await bridge.models(ADMIN), ModelPage)
    damage(db_path)
    assert_apology(await bridge.status(ADMIN))
    assert_apology(await bridge.models(ADMIN))
    chat = ChatServer(clock=SystemClock())
    assert_apology(await bridge.regenerate(ADMIN, "42", RecordingSurface(chat, chat="dm-1")))
    assert not chat.writes  # it failed at the store lookup, before writing anything
