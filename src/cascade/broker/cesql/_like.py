"""The LIKE pattern matcher (spec §3.4.3), in time linear in pattern times text length.

``%`` matches any run of characters, ``_`` exactly one character, ``\\%`` and ``\\_`` the
literal characters. A backslash before anything else is an ordinary character, as in the
Java SDK the Kafka broker uses. Translating the pattern into one regular expression
(``.*`` per ``%``) can backtrack exponentially on patterns like ``%a%a%a%b``; instead the
pattern is split at ``%`` into fixed-width segments, and each segment is found greedily at
its leftmost position, which is exact for such patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Segment:
    """A run of pattern items between two ``%``: literal text or a regex using ``.``."""

    width: int
    literal: str | None
    regex: re.Pattern[str] | None

    def match_at(self, text: str, pos: int) -> bool:
        if self.literal is not None:
            return text.startswith(self.literal, pos)
        assert self.regex is not None
        return self.regex.match(text, pos) is not None

    def find(self, text: str, start: int, end: int) -> int:
        """Leftmost position >= start where the segment fits entirely before ``end``."""
        if self.literal is not None:
            return text.find(self.literal, start, end)
        assert self.regex is not None
        found = self.regex.search(text, start, end)
        return -1 if found is None else found.start()


def _segment(items: list[str | None]) -> _Segment:
    if None not in items:
        return _Segment(len(items), "".join(items), None)  # type: ignore[arg-type]
    source = "".join("." if item is None else re.escape(item) for item in items)
    return _Segment(len(items), None, re.compile(source, re.DOTALL))


@dataclass(frozen=True, slots=True)
class LikePattern:
    pattern: str
    _segments: tuple[_Segment, ...]

    @classmethod
    def compile(cls, pattern: str) -> LikePattern:
        runs: list[list[str | None]] = [[]]  # None stands for `_`; a new run starts at `%`
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
                runs[-1].append(pattern[i + 1])
                i += 2
                continue
            if char == "%":
                runs.append([])
            else:
                runs[-1].append(None if char == "_" else char)
            i += 1
        return cls(pattern, tuple(_segment(run) for run in runs))

    def matches(self, text: str) -> bool:
        segments = self._segments
        if len(segments) == 1:
            only = segments[0]
            return len(text) == only.width and only.match_at(text, 0)
        first, last = segments[0], segments[-1]
        tail_start = len(text) - last.width
        if tail_start < first.width or not first.match_at(text, 0):
            return False
        if not last.match_at(text, tail_start):
            return False
        pos = first.width
        for segment in segments[1:-1]:
            found = segment.find(text, pos, tail_start)
            if found < 0:
                return False
            pos = found + segment.width
        return True
