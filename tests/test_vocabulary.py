"""core/ knows nothing of any platform: no platform's name or word in its code, comments or docs.

Core speaks of rooms, spaces, previews, activities and uploads; each adapter (bots/) maps them to
its platform's guilds, drafts, chat actions and embeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# Substrings where no neutral word contains them; whole words where one does ("embedded",
# "backslash", a "count/period" split at the slash).
PLATFORM_WORDS = re.compile(
    r"discord|telegram|guild|upload_photo|chat[ _-]?action|sendmessagedraft|\bdrafts?\b"
    r"|\bembeds?\b|slash[ _-]?commands?|\binteractions?\b|\bbotfather\b|\bshards?\b",
    re.IGNORECASE,
)


def platform_words(root: Path, relative_to: Path = ROOT) -> list[str]:
    """Every `file:line: word` under `root` that names a platform or a word of one."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in (".py", ".md", ".txt", ".toml", ".sql"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in PLATFORM_WORDS.finditer(line):
                found.append(f"{path.relative_to(relative_to)}:{number}: {match.group()}")
    return found


def test_core_names_no_platform() -> None:
    assert platform_words(CORE) == []


@pytest.mark.parametrize(
    "line",
    [
        "guild_id: str | None = None",
        "# Telegram's draft timing",
        'await surface.activity("upload_photo")',
        "embed: Embed | None = None",
        "def draft(self, text: str) -> None:",
        "the slash commands",
        "send_chat_action(chat_id)",
    ],
)
def test_the_check_finds_platform_words(tmp_path: Path, line: str) -> None:
    (tmp_path / "module.py").write_text(f'"""A module."""\n{line}\n')
    found = platform_words(tmp_path, tmp_path)
    assert found and found[0].startswith("module.py:2: ")


@pytest.mark.parametrize(
    "line",
    [
        "from core.embedded import start_embedded_g4f",
        "count, slash, period = text.partition('/')",
        "# no backslash trick",
        "previews: bool = False",
        "space_id: str | None = None",
    ],
)
def test_neutral_words_pass(tmp_path: Path, line: str) -> None:
    (tmp_path / "module.py").write_text(f"{line}\n")
    assert platform_words(tmp_path, tmp_path) == []
