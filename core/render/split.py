"""Split a chat answer into messages that fit a platform's length limit, losing nothing.

`split_text(text, max_length)` cuts a markdown answer into parts with `length(part) <= max_length`
(platforms count characters or UTF-16 code units: pass the matching `length`).
`join_parts(parts)` gives back the original text exactly, with two exceptions, both whitespace
no platform would show: trailing whitespace is kept only as far as it fits in the last part (it
never makes a part of its own), and outside code blocks a whitespace run longer than half of
`max_length` is shortened to that (see `shorten_whitespace`). A blank text gives no parts, and no
part is ever blank.

Where a part ends
    Each part is cut as late as possible, at the best kind of boundary that is not "too early"
    (the position of its first whitespace character, relative to the window of text that fits):

    * a paragraph break (whitespace holding a blank line) in the last `PARAGRAPH_MIN_FRACTION`
      of the window, else
    * a line break in the last `LINE_MIN_FRACTION`, else
    * a word break (any whitespace) in the last `WORD_MIN_FRACTION`, else
    * a hard cut at the latest grapheme-cluster boundary (`regex`'s ``\\X``: a surrogate pair,
      a combining sequence, a ZWJ emoji or a flag is never broken).

    The whitespace of a break ends the earlier part, as far as it fits; the rest starts the next.
    Whitespace after the break's last line break is the next line's indentation and stays with it.
    A cut never leaves a part (or the remainder) without a non-space character (whitespace runs
    too long for that are shortened first, see above).

Code fences
    When a cut falls inside a fenced code block (``` or ~~~, indented by at most 3 spaces), the
    earlier part gets ``"\\n" + close`` appended (the opening fence's characters, e.g. "\\n```")
    and the next part starts with the opening line re-emitted (e.g. "```python\\n"), or, when
    that line leaves the next part no room to progress, the bare fence (e.g. "```\\n"). These
    added characters count against `max_length`. Cuts inside a fence line itself (an opening or
    closing line) are avoided, and so are cuts that would leave an empty code block. A cut inside
    a line never leaves a piece of it that reads, at the start of a line of its part, as a fence
    line the whole line is not (an inline "a ```py" cut before its backticks).

    When no acceptable cut fits, a forced cut still keeps every part closed: it accepts an empty
    code block, splits a grapheme cluster too long for the room beside the fence lines at code
    points, and cuts an opening fence line too long for a part after its fence (the piece opens
    the block and the added close ends it; the rest of the line follows the bare fence in the
    next part, as code). Only a fence that cannot appear twice in a part (about half of
    `max_length` of backticks) is beyond that.

The `join_parts` invariant
    The fence state at a position is the result of reading the complete lines before it (a line
    counts once its "\\n" has been read). `join_parts` rebuilds the original text part by part
    and, at each boundary, reads the earlier part's last line: the boundary carries added fence
    lines exactly when that last line equals the close of the block open at the last "\\n" of the
    part (outside a block, the line before that "\\n" is read as if complete: the piece of a cut
    opening line), and the next part starts with that block's opening line or bare fence plus
    "\\n". `split_text` adds fence lines exactly in that form, and it never makes a plain cut that
    matches the pattern (such a cut would lie inside a fence line, which it avoids, and a forced
    cut is checked explicitly). Hence ``join_parts(split_text(t, n))`` is `t`, but for the
    whitespace described at the top.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex

__all__ = [
    "LINE_MIN_FRACTION",
    "MIN_MAX_LENGTH",
    "PARAGRAPH_MIN_FRACTION",
    "WORD_MIN_FRACTION",
    "FenceState",
    "fence_state_at_end",
    "join_parts",
    "open_fence_at_end",
    "split_text",
    "unwrap_parts",
]

MIN_MAX_LENGTH = 16
"""The smallest `max_length` accepted: below it a reopened code fence leaves no room to progress."""

PARAGRAPH_MIN_FRACTION = 0.5
"""A paragraph break is used only if it starts at least this far into the window."""

LINE_MIN_FRACTION = 0.5
"""A line break is used only if it starts at least this far into the window."""

WORD_MIN_FRACTION = 2 / 3
"""A word break is used only if it starts at least this far into the window (its last third)."""

# (lowest position in the window, the core of such a break, searched from the right), best first
_BREAKS = (
    (PARAGRAPH_MIN_FRACTION, regex.compile(r"(?r)\n[^\S\n]*\n")),
    (LINE_MIN_FRACTION, regex.compile(r"(?r)\n")),
    (WORD_MIN_FRACTION, regex.compile(r"(?r)\s")),
)

_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_LINES = re.compile(r"^ {0,3}(?:`{3,}|~{3,}).*", re.MULTILINE)
_NON_SPACE = regex.compile(r"\S")
_LAST_NON_SPACE = regex.compile(r"(?r)\S")

_CLUSTER = regex.compile(r"\X")
_BREAK_BEFORE = r"[\p{Grapheme_Cluster_Break=Other}\p{Grapheme_Cluster_Break=Control}\n]"
_NO_JOIN_AFTER = (
    r"[^\p{Grapheme_Cluster_Break=Extend}\p{Grapheme_Cluster_Break=ZWJ}"
    r"\p{Grapheme_Cluster_Break=SpacingMark}]"
)
# A character after which a cluster always ends, unless the next one joins backwards. Such a pair
# is a grapheme boundary in every Unicode rule (GB3-GB13), so segmentation can restart there.
_SAFE_PAIR = regex.compile(f"{_BREAK_BEFORE}(?={_NO_JOIN_AFTER})")
_LAST_SAFE_PAIR = regex.compile(f"(?r){_BREAK_BEFORE}(?={_NO_JOIN_AFTER})")


@dataclass(frozen=True, slots=True)
class FenceState:
    """An open fenced code block.

    line: the opening line as written (e.g. "```python" or "  ~~~~ js"), re-emitted on reopening.
    char: the fence character, "`" or "~".
    size: how many fence characters opened it (at least 3); the close repeats `char` that often.
    info: the info string after the fence, stripped ("python"; "" when there is none).
    """

    line: str
    char: str
    size: int
    info: str

    @property
    def close(self) -> str:
        """The closing fence line this block gets when a part ends inside it."""
        return self.char * self.size

    @property
    def language(self) -> str:
        """The first word of the info string ("" when there is none)."""
        words = self.info.split(maxsplit=1)
        return words[0] if words else ""


def _step(state: FenceState | None, line: str) -> FenceState | None:
    """The fence state after reading one complete `line` (without its "\\n") in `state`."""
    match = _FENCE_LINE.match(line)
    if match is None:
        return state
    run, rest = match.group(1), match.group(2)
    if state is None:
        if run[0] == "`" and "`" in rest:
            return None  # a backtick fence's info string may not contain a backtick
        return FenceState(line=line, char=run[0], size=len(run), info=rest.strip())
    if run[0] == state.char and len(run) >= state.size and not rest.strip(" \t\r"):
        return None
    return state


def fence_state_at_end(text: str) -> FenceState | None:
    """The code block `text` ends inside, or None (the last line counts even without "\\n")."""
    state: FenceState | None = None
    for match in _FENCE_LINES.finditer(text):
        state = _step(state, match.group(0))
    return state


def open_fence_at_end(text: str) -> str | None:
    """If `text` ends inside an unclosed ``` or ~~~ fence, its opening line (e.g. "```python")."""
    state = fence_state_at_end(text)
    return None if state is None else state.line


def split_text(text: str, max_length: int, *, length: Callable[[str], int] = len) -> list[str]:
    """Split `text` into parts, each with length(part) <= max_length.

    An empty text gives [] (there is nothing to send); a text that fits gives [text]. See the
    module docstring for where parts end and how code fences are closed and reopened;
    `join_parts` undoes the split exactly. `length` must not shrink when a string grows
    (len, or UTF-16 code units: ``lambda s: len(s.encode("utf-16-le")) // 2``).

    Raises ValueError if `max_length` < MIN_MAX_LENGTH or a single character does not fit.
    """
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}, got {max_length}")
    if not text or text.isspace():
        return []
    if length(text) <= max_length:
        return [text]
    body = text.rstrip()
    trailing = text[len(body) :]
    body = shorten_whitespace(body, max_length)
    parts = [body] if length(body) <= max_length else _Splitter(body, max_length, length).run()
    if trailing:  # kept as far as it fits in the last part: it never makes a part of its own
        room = _prefix_that_fits(trailing, max_length, lambda t: length(parts[-1] + t))
        parts[-1] += trailing[:room]
    return parts


def shorten_whitespace(text: str, max_length: int) -> str:
    """`text` with each whitespace run longer than half of `max_length` cut to that length,
    outside code blocks.

    Such a run cannot share a part with text on both sides of it, so a part of only whitespace
    (which platforms refuse) would follow; no reader misses the whitespace. The run keeps its
    first and last characters (the end of one line, the indentation of the next); a run that
    begins the text keeps only the indentation of the first line.
    """
    keep = max_length // 2
    if len(text) <= keep:
        return text
    fences: _Fences | None = None

    def cut(match: re.Match[str]) -> str:
        nonlocal fences
        fences = fences or _Fences(text)
        run = match.group()
        if fences.state_at(match.end())[0]:
            return run  # code: every part of it shows its fence lines, never blank
        if match.start() == 0:  # before the first text nothing shows: keep its indentation
            return run[run.rfind("\n") + 1 :][-keep:]
        head = keep // 2
        return run[:head] + run[len(run) - (keep - head) :]

    return re.sub(rf"\s{{{keep + 1},}}", cut, text)


def _prefix_that_fits(text: str, max_length: int, length: Callable[[str], int]) -> int:
    """The longest n such that length(text[:n]) <= max_length (length grows with n)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if length(text[:middle]) <= max_length:
            low = middle
        else:
            high = middle - 1
    return low


def join_parts(parts: Sequence[str]) -> str:
    """Inverse of split_text: gives back the original text exactly.

    The fence lines split_text added are recognised by re-reading the fence state of the text
    rebuilt so far (see the module docstring); nothing is marked in the parts themselves.
    """
    return "".join(unwrap_parts(parts))


def unwrap_parts(parts: Sequence[str]) -> list[str]:
    """The original text of each part of a split: `parts` without the fence lines split_text added.

    A part is taken to reopen a code block only if the part before it ends with that block's
    close, so any list of strings is accepted (those not from split_text are simply joined).
    """
    scanner = _LineScanner()
    pieces: list[str] = []
    reopen: str | None = None
    for index, part in enumerate(parts):
        body = part if reopen is None else part[len(reopen) :]
        following = parts[index + 1] if index + 1 < len(parts) else None
        original, reopen = _strip_added_close(scanner, body, following)
        pieces.append(original)
    return pieces


def _strip_added_close(
    scanner: _LineScanner, body: str, following: str | None
) -> tuple[str, str | None]:
    """Split off the close split_text added to `body`: (original text, reopening prefix or None).

    `scanner` has read the original text before `body` and reads `body`'s original text.
    """
    if following is None:
        return body, None
    newline = body.rfind("\n")
    if newline < 0:
        scanner.feed(body)
        return body, None
    head = body[:newline]
    scanner.feed(head)
    state = scanner.state or scanner.state_at_line_end()
    if state is not None and body[newline + 1 :] == state.close:
        for line in (state.line, state.close):  # the opening line, or the bare fence
            if following.startswith(line + "\n"):
                return head, line + "\n"
    scanner.feed(body[newline:])
    return body, None


class _LineScanner:
    """Reads text in pieces and keeps the fence state after the last complete line."""

    def __init__(self) -> None:
        self.state: FenceState | None = None
        self._partial: list[str] = []

    def state_at_line_end(self) -> FenceState | None:
        """The fence state if the line read so far ended here (split_text cuts a fence line too
        long for a part after its opening fence, and closes the block there)."""
        if not self._partial:
            return self.state
        return _step(self.state, "".join(self._partial))

    def feed(self, chunk: str) -> None:
        """Read `chunk`; a line is only taken into account once its "\\n" is read."""
        lines = chunk.split("\n")
        if len(lines) == 1:
            if chunk:
                self._partial.append(chunk)
            return
        self._partial.append(lines[0])
        self.state = _step(self.state, "".join(self._partial))
        for line in lines[1:-1]:
            self.state = _step(self.state, line)
        self._partial = [lines[-1]] if lines[-1] else []


class _Fences:
    """The fence lines of a text and the fence state at every position, found in one pass."""

    def __init__(self, text: str) -> None:
        self._line_starts: list[int] = []
        self._line_ends: list[int] = []
        self._closes: list[bool] = []
        self._change_at: list[int] = []
        self._states: list[FenceState | None] = []
        state: FenceState | None = None
        for match in _FENCE_LINES.finditer(text):
            self._line_starts.append(match.start())
            self._line_ends.append(match.end())
            new = _step(state, match.group(0))
            self._closes.append(state is not None and new is None)
            if new is not state and match.end() < len(text):
                self._change_at.append(match.end() + 1)
                self._states.append(new)
            state = new

    def state_at(self, pos: int) -> tuple[FenceState | None, int]:
        """The fence state after the complete lines before `pos`, and where that state began."""
        index = bisect_right(self._change_at, pos) - 1
        if index < 0:
            return None, 0
        return self._states[index], self._change_at[index]

    def _line_index(self, pos: int) -> int:
        """Index of the last fence line starting at or before `pos` (-1 if none)."""
        return bisect_right(self._line_starts, pos) - 1

    def line_around(self, pos: int) -> int | None:
        """The start of the fence line `pos` lies strictly inside (or at the end of), else None."""
        index = self._line_index(pos)
        if index >= 0 and self._line_starts[index] < pos <= self._line_ends[index]:
            return self._line_starts[index]
        return None

    def closing_line_at(self, pos: int) -> bool:
        """Whether the line starting at `pos` closes the code block open there."""
        index = self._line_index(pos)
        return index >= 0 and self._line_starts[index] == pos and self._closes[index]


class _Graphemes:
    """Grapheme-cluster boundaries of a text, found locally around the positions asked about.

    `floor` is a known boundary (the start of the part being cut) that searches never go below.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self.floor = 0

    def floor_boundary(self, pos: int) -> int:
        """The last grapheme boundary at or before `pos` (and not below `floor`)."""
        text = self._text
        if pos <= self.floor or pos >= len(text) or _SAFE_PAIR.match(text, pos - 1):
            return pos
        safe = _LAST_SAFE_PAIR.search(text, self.floor, pos)
        anchor = safe.end() if safe is not None else self.floor
        last = anchor
        for cluster in _CLUSTER.finditer(text, anchor, pos + 1):
            if cluster.end() > pos:
                break
            last = cluster.end()
        return last

    def cluster_at(self, pos: int) -> str:
        """The grapheme cluster starting at boundary `pos`."""
        match = _CLUSTER.match(self._text, pos)
        return "" if match is None else str(match.group())


class _Splitter:
    """One split of one text: precomputed fence lines, then greedy cuts from left to right."""

    def __init__(self, text: str, max_length: int, length: Callable[[str], int]) -> None:
        self._text = text
        self._max = max_length
        self._length = length
        self._fences = _Fences(text)
        self._marks = _Graphemes(text)
        last = _LAST_NON_SPACE.search(text)
        self._last_non_space: int = -1 if last is None else last.start()
        self._start_state: FenceState | None = None  # the block the current part reopens

    def run(self) -> list[str]:
        """All parts, left to right."""
        text = self._text
        parts: list[str] = []
        start, reopen = 0, ""
        self._start_state = None
        while True:
            self._marks.floor = start
            limit = self._limit(start, reopen, "", len(text))
            if limit >= len(text):
                parts.append(reopen + text[start:])
                return parts
            cut = self._cut(start, reopen, limit)
            close = "" if cut.fence is None else "\n" + cut.fence.close
            parts.append(reopen + text[start : cut.at] + close)
            reopen = "" if cut.fence is None else cut.reopen + "\n"
            self._start_state = cut.fence
            start = cut.at

    def _fits(self, start: int, end: int, prefix: str, suffix: str) -> bool:
        """Whether prefix + text[start:end] + suffix fits in one message."""
        if self._length is len:
            return len(prefix) + (end - start) + len(suffix) <= self._max
        return self._length(prefix + self._text[start:end] + suffix) <= self._max

    def _limit(self, start: int, prefix: str, suffix: str, high: int) -> int:
        """The largest end <= `high` such that prefix + text[start:end] + suffix fits (or start).

        Gallops from `start` in steps of max_length, then bisects: O(max_length) per call for
        any `length` that counts each character at least once.
        """
        if self._length is len:
            room = self._max - len(prefix) - len(suffix)
            return max(start, min(high, start + room))
        low, step = start, self._max
        while True:
            probe = min(high, low + step)
            if not self._fits(start, probe, prefix, suffix):
                break
            low = probe
            if probe == high:
                return high
            step *= 2
        while probe - low > 1:
            middle = (low + probe) // 2
            if self._fits(start, middle, prefix, suffix):
                low = middle
            else:
                probe = middle
        return low

    def _cut(self, start: int, reopen: str, limit: int) -> _Cut:
        """Where the part starting at `start` ends, and the code block to close there if any."""
        while limit > start:
            at = self._pick(start, limit)
            if at is None:
                break
            cut = self._fence_for(at)
            suffix = "" if cut.fence is None else "\n" + cut.fence.close
            if not self._fits(start, at, reopen, suffix):
                limit = self._limit(start, reopen, suffix, at - 1)
            elif (cut.fence is None and self._ambiguous(start, at)) or self._misleading(start, cut):
                limit = at - 1
            else:
                return cut
        return self._forced_cut(start, reopen)

    def _pick(self, start: int, limit: int) -> int | None:
        """The best cut in (start, limit] by boundary kind and position (see the module doc).

        The window ends at the last non-space character at the latest: a cut after it would leave
        a whitespace-only remainder.
        """
        limit = min(limit, self._last_non_space)
        for fraction, pattern in _BREAKS:
            cut = self._break_cut(start, limit, start + (limit - start) * fraction, pattern)
            if cut is not None:
                return cut
        return self._hard_cut(start, limit)

    def _break_cut(
        self, start: int, limit: int, lowest: float, pattern: regex.Pattern[str]
    ) -> int | None:
        """The latest acceptable cut in whitespace that holds `pattern` and begins at `lowest`+.

        Searches from the right, so a window costs about the distance to the break found.
        """
        text = self._text
        end = min(limit + 1, len(text))
        while True:
            match = pattern.search(text, int(lowest), end)
            if match is None:
                return None
            before = _LAST_NON_SPACE.search(text, start, match.start())
            begin = start if before is None else int(before.end())
            if begin < lowest or begin <= start:
                return None
            after = _NON_SPACE.search(text, match.end(), end)
            cut = self._run_cut(start, begin, end if after is None else int(after.start()), limit)
            if cut is not None:
                return cut
            end = begin

    def _run_cut(self, start: int, begin: int, end: int, limit: int) -> int | None:
        """The cut after as much of the whitespace text[begin:end] as fits, if acceptable.

        If that whitespace holds a line break, the cut follows the line break, so that the next
        line keeps its indentation (code, nested lists).
        """
        stop = min(end, limit)
        newline = self._text.rfind("\n", begin, stop)
        cut = self._settle(start, self._marks.floor_boundary(stop if newline < 0 else newline + 1))
        if cut is None or cut < begin or cut > self._last_non_space:
            return None
        return cut if self._clean(start, cut) else None

    def _hard_cut(self, start: int, limit: int) -> int | None:
        """The latest acceptable grapheme boundary in (start, limit], or None."""
        first = _NON_SPACE.search(self._text, start, limit)
        if first is None:
            return None
        cut: int | None = self._marks.floor_boundary(min(limit, self._last_non_space))
        while cut is not None and cut > first.start():
            settled = self._settle(start, cut)
            if settled != cut:
                cut = settled
            elif self._clean(start, cut):
                return cut
            else:
                cut = self._marks.floor_boundary(cut - 1)
        return None

    def _settle(self, start: int, cut: int) -> int | None:
        """`cut`, or the start of the fence line it would split (None if not after `start`)."""
        line_start = self._fences.line_around(cut)
        if line_start is None:
            return cut
        return line_start if line_start > start else None

    def _clean(self, start: int, cut: int) -> bool:
        """Whether cutting at `cut` avoids an empty code block on either side of it."""
        state, opened = self._fences.state_at(cut)
        if state is None:
            return True
        if self._fences.closing_line_at(cut):
            return False  # the next part would reopen the block only to close it
        return _NON_SPACE.search(self._text, max(opened, start), cut) is not None

    def _fence_for(self, at: int) -> _Cut:
        """The cut at `at` with the code block open there closed and reopened, if that leaves
        room to progress: with its opening line, or, when that line is too long, its bare fence."""
        state, _ = self._fences.state_at(at)
        if state is None:
            return _Cut(at)
        return self._closing(at, state) or _Cut(at)

    def _closing(
        self, at: int, state: FenceState, lines: tuple[str, ...] | None = None
    ) -> _Cut | None:
        """A cut at `at` that closes `state`'s block and reopens it (with the first of `lines`
        that leaves room: the opening line, then the bare fence), or None if none fits."""
        # What the next part must hold first: text up to where it can be cut again (pieces of
        # a fence-like line may not), else a grapheme cluster, else (one too long) a code point.
        firsts = [self._first_unit(at, state), self._marks.cluster_at(at), self._text[at : at + 1]]
        for first in firsts:
            for line in lines or (state.line, state.close):
                if self._length(line + "\n" + first + "\n" + state.close) <= self._max:
                    return _Cut(at, state, line)
        return None

    def _misleading(self, start: int, cut: _Cut) -> bool:
        """Whether a cut inside a line leaves a piece of it that reads as a fence line on its own.

        Each part begins a line, so the piece of a line before or after a cut (`a ```py` cut
        before the backticks) starts a line there, where it could open or close a code block
        that the whole line does not.
        """
        return self._pieces_mislead(start, self._start_state, cut.at, cut.fence)

    def _pieces_mislead(
        self, start: int, start_state: FenceState | None, at: int, after_state: FenceState | None
    ) -> bool:
        """`_misleading` for a part from `start` (reopening `start_state`) cut at `at`, the next
        part reopening `after_state`."""
        text = self._text
        if at <= 0 or at >= len(text) or text[at - 1] == "\n":
            return False
        end = text.find("\n", at)
        after = text[at : len(text) if end < 0 else end]
        if _step(after_state, after) is not after_state:
            return True
        line_start = text.rfind("\n", 0, at) + 1
        if line_start <= start:
            line_start, before = start, start_state
        else:
            before, _ = self._fences.state_at(line_start)
        return _step(before, text[line_start:at]) is not before

    def _first_unit(self, at: int, state: FenceState) -> str:
        """What a part reopening `state` at `at` must hold at least: the text up to the first
        place it can be cut again without a piece of a line reading as a fence."""
        text = self._text
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        position = at
        while position < end:
            position = min(end, position + max(1, len(self._marks.cluster_at(position))))
            if not self._pieces_mislead(at, state, position, state):
                return text[at:position]
        return text[at : end + 1]

    def _ambiguous(self, start: int, cut: int) -> bool:
        """Whether a plain cut at `cut` would look to join_parts like one with added fences."""
        newline = self._text.rfind("\n", start, cut)
        if newline < 0:
            return False
        state, _ = self._fences.state_at(newline)  # read as join_parts reads it
        if state is None:
            state = _step(None, self._text[self._text.rfind("\n", 0, newline) + 1 : newline])
        return (
            state is not None
            and self._text[newline + 1 : cut] == state.close
            and (
                self._text.startswith(state.line + "\n", cut)
                or self._text.startswith(state.close + "\n", cut)
            )
        )

    def _forced_cut(self, start: int, reopen: str) -> _Cut:
        """The latest cut that fits when no acceptable one does (a pathological text).

        Keeps what matters most: every part fits, is not blank and closes the code block it
        ends in; then prefers grapheme boundaries, and splits an oversized grapheme cluster only
        as a last resort. Empty code blocks, cuts inside a fence line too long for a part and
        cuts at odd places are accepted here.
        """
        limit = self._limit(start, reopen, "", len(self._text))
        boundaries: list[int] = []
        at = self._marks.floor_boundary(limit)
        while at > start:
            boundaries.append(at)
            at = self._marks.floor_boundary(at - 1)
        seen = set(boundaries)
        candidates = boundaries + [c for c in range(limit, start, -1) if c not in seen]
        for at in candidates:
            found = self._forced_candidate(start, reopen, at)
            if found is not None:
                return found
        for at in candidates:  # nothing keeps the fences: at least fit and progress
            if not self._ambiguous(start, at):
                return _Cut(at)
        raise ValueError(f"max_length={self._max} cannot hold {self._text[start]!r}")

    def _forced_candidate(self, start: int, reopen: str, at: int) -> _Cut | None:
        """The cut at `at` if it fits, leaves no blank part and keeps code blocks closed."""
        line_start = self._fences.line_around(at)
        if line_start is not None and at < len(self._text) and self._text[at - 1] != "\n":
            cut = self._inside_fence_line(start, line_start, at)
            if cut is None:
                return None
        else:
            state, _ = self._fences.state_at(at)
            cut = self._fence_for(at)
            if state is not None and cut.fence is None:
                return None  # the block could not be closed here and reopened
            if (cut.fence is None and self._ambiguous(start, at)) or self._misleading(start, cut):
                return None
        suffix = "" if cut.fence is None else "\n" + cut.fence.close
        if not self._fits(start, at, reopen, suffix):
            return None
        if not (reopen + self._text[start:at] + suffix).strip():
            return None
        if _NON_SPACE.search(self._text, at) is None and cut.fence is None:
            return None  # the rest would be blank
        return cut

    def _inside_fence_line(self, start: int, line_start: int, at: int) -> _Cut | None:
        """A cut inside the fence-like line at `line_start` (one too long for a part), if sound.

        A line that opens a block is cut only where it begins the part (after whitespace at
        most), or began in an earlier part: the piece before the cut opens the block in its part
        and the added close ends it; the rest follows the bare fence (the info string shows as
        code). A line that does not change the fence state is cut where neither piece reads as
        one that does. A closing line is never cut.
        """
        text = self._text
        end = text.find("\n", line_start)
        line = text[line_start : len(text) if end < 0 else end]
        before, _ = self._fences.state_at(line_start)
        after = _step(before, line)
        if after is before:
            cut = self._fence_for(at)
            if before is not None and cut.fence is None:
                return None
            return None if self._misleading(start, cut) else cut
        if before is not None or after is None:
            return None  # a closing line
        if line_start > start and not text[start:line_start].isspace():
            return None  # the part can end before the line instead
        if line_start >= start:
            piece = _step(None, text[line_start:at])
            if piece is None or piece.close != after.close:
                return None  # the piece must open the block the line opens
        elif self._start_state is None or _step(self._start_state, text[start:at]) is not (
            self._start_state
        ):
            return None
        rest = text[at : len(text) if end < 0 else end]
        if _step(after, rest) is not after:
            return None
        return self._closing(at, after, lines=(after.close,))


@dataclass(frozen=True, slots=True)
class _Cut:
    """Where a part ends; the code block closed there, and the line that reopens it."""

    at: int
    fence: FenceState | None = None
    reopen: str = ""
