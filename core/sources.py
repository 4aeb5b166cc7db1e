"""Web search: the sources an answer cites, shown as links after it.

With ``web_search`` g4f streams the sources it used as quoted lines in the answer's content,
``> [0] [title](url)`` (see the API notes). `SourceCollector` takes those lines out of the text
as it streams (holding back only a line that may be one) and `sources_line` shows them after the
answer, at most `MAX_SOURCES` links with short titles, so they stay within a platform message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.text import clean_text

MAX_SOURCES = 5
MAX_TITLE = 60
SOURCE_LINE = re.compile(r"^>\s*\[(\d+)\]\s*\[(?P<title>.*)\]\((?P<url>https?://[^\s)]+)\)\s*$")
_PREFIX = "> ["


@dataclass(frozen=True, slots=True)
class Source:
    title: str
    url: str


class SourceCollector:
    """Feeds through an answer's text, keeping its source lines aside."""

    def __init__(self) -> None:
        self.sources: list[Source] = []
        self._pending = ""  # the start of a line that may turn out to be a source line
        self._blank = ""  # blank lines held back: before the sources, they are dropped

    def feed(self, text: str) -> str:
        """The part of `text` (after anything held back) that is not a source line."""
        buffer = self._pending + text
        self._pending = ""
        out: list[str] = []
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if self._take(line):
                self._blank = ""
            elif not line.strip():
                self._blank += line + "\n"
            else:  # its line break waits: the sources may come next
                out.append(self._blank + line)
                self._blank = "\n"
        if _may_be_source(buffer) or not buffer.strip():
            self._pending = buffer
        else:
            out.append(self._blank + buffer)
            self._blank = ""
        return "".join(out)

    def flush(self) -> str:
        """The end of the answer: what was held back, unless it was a source line (blank
        lines before the sources are dropped)."""
        rest, self._pending = self._pending, ""
        blank, self._blank = self._blank, ""
        if self._take(rest):
            return ""
        if self.sources and not rest.strip():
            return ""
        return blank + rest

    def _take(self, line: str) -> bool:
        match = SOURCE_LINE.match(line.strip())
        if match is None:
            return False
        url = match["url"]
        if all(s.url != url for s in self.sources):
            self.sources.append(Source(clean_text(match["title"]).strip(), url))
        return True


def _may_be_source(partial: str) -> bool:
    stripped = partial.lstrip()
    return bool(stripped) and (stripped.startswith(_PREFIX) or _PREFIX.startswith(stripped))


def sources_line(sources: list[Source]) -> str | None:
    """The links shown after an answer ("🔎 Sources: …"), or None without sources."""
    if not sources:
        return None
    links = []
    for source in sources[:MAX_SOURCES]:
        title = source.title or source.url.split("/")[2]
        if len(title) > MAX_TITLE:
            title = title[: MAX_TITLE - 1] + "…"
        title = title.replace("[", "(").replace("]", ")")
        links.append(f"[{title}]({source.url})")
    more = len(sources) - MAX_SOURCES
    tail = f" (+{more} more)" if more > 0 else ""
    return "🔎 Sources: " + " · ".join(links) + tail
