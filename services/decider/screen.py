"""The text screen: a rule set's regular expressions searched together, and the
needles that let most messages skip even that search.

Needles are short plain strings of which every match of a pattern contains one. Most
messages match none of a rule set's patterns, and Python's ``re`` searches a
case-insensitive alternation character by character. When every pattern holds a run
of plain letters (``ISIN\\d+`` holds ``isin``), a message that contains none of those
runs cannot match, and a substring test says so in a fraction of the time.

The needles are read from the pattern's parse tree, and only what is certain is used:
a run of literal characters outside any optional part. Only ASCII characters count,
and the needles are tested only on ASCII text, where ignoring case is exactly
lower-casing (elsewhere a pattern's ``s`` also matches the long s, U+017F). A pattern
the reading does not understand gives no needles, and its text is searched in full.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The parser behind re.compile. It is private, so its absence costs only speed.
_parser: Any
_ops: Any
try:
    _parser = importlib.import_module("re._parser")
    _ops = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - every supported Python has both
    _parser = _ops = None

MIN_NEEDLE = 3
# Needles are cut to this length (a needle's prefix is in every text the needle is in).
MAX_NEEDLE = 32
# A substring test costs about a tenth of a microsecond on a chat message; a
# case-insensitive search of one more pattern costs far more. Above this many, needles
# are cut to common prefixes.
MAX_NEEDLES = 64

Needles = frozenset[str]


@dataclass(frozen=True, slots=True, eq=False)
class Screen:
    """The alternation of a rule set's patterns (case ignored), with its needles.
    Compared by identity: a screen is a key of each event's memo."""

    pattern: re.Pattern[str]
    needles: tuple[str, ...] | None

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> Screen:
        return cls(pattern, needles_of(pattern))

    def finds(self, plain: str, folded: str) -> bool:
        """Does the pattern match ``plain`` (the NFKC text)? ``folded`` is the same
        text folded; when ``plain`` is ASCII that is ``plain.lower()``."""
        needles = self.needles
        if needles is not None and plain.isascii() and absent(needles, folded):
            return False
        return self.pattern.search(plain) is not None


def needles_of(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Lower-case ASCII strings of which every match of ``pattern`` contains one (as
    a substring of the match, compared without case), or None when there are none
    worth testing."""
    if _parser is None:
        return None
    try:
        tree = _parser.parse(pattern.pattern, pattern.flags)
        found = _required(tree)
    except Exception:  # a form this reading does not know: no needles, no risk
        return None
    found = _fewer(found) if found else None
    if not found or min(map(len, found)) < MIN_NEEDLE:
        return None
    return tuple(sorted(found))


def absent(needles: tuple[str, ...], folded: str) -> bool:
    """True when ``folded`` (ASCII text, lower-cased) contains none of the needles."""
    for needle in needles:
        if needle in folded:
            return False
    return True


def _required(items: Iterable[tuple[Any, Any]]) -> Needles | None:
    """Of a sequence of parsed items: a set of strings every match of the sequence
    contains one of, or None when nothing is certain."""
    candidates: list[Needles] = []
    run: list[str] = []

    def close() -> None:
        if run:
            candidates.append(frozenset(["".join(run)]))
            run.clear()

    for op, value in items:
        if op is _ops.LITERAL and value < 128:
            run.append(chr(value).lower())
            continue
        close()
        inner = _required_of(op, value)
        if inner:
            candidates.append(inner)
    close()
    if not candidates:
        return None
    return max(candidates, key=_strength)


def _required_of(op: Any, value: Any) -> Needles | None:
    """What every match of one parsed item contains, if anything."""
    if op is _ops.SUBPATTERN:  # (group, add flags, del flags, pattern)
        return _required(value[3])
    if op is _ops.ATOMIC_GROUP:
        return _required(value)
    if op is _ops.BRANCH:  # (None, [alternatives]): each alternative must give one
        union: set[str] = set()
        for alternative in value[1]:
            found = _required(alternative)
            if not found:
                return None
            union |= found
        return frozenset(union)
    if op in (_ops.MAX_REPEAT, _ops.MIN_REPEAT, _ops.POSSESSIVE_REPEAT):
        low, _, item = value
        return _required(item) if low >= 1 else None
    return None


def _strength(needles: Needles) -> tuple[int, int]:
    """Longer shortest needle first, then fewer needles."""
    return min(map(len, needles)), -len(needles)


def _fewer(needles: Needles) -> Needles:
    """At most MAX_NEEDLES needles of at most MAX_NEEDLE characters, cut to the longest
    common length that gives few enough (cutting keeps the promise: a needle's prefix
    is in every text the needle is in). Empty when even the shortest cut gives too
    many."""
    needles = frozenset(n[:MAX_NEEDLE] for n in needles)
    if len(needles) <= MAX_NEEDLES:
        return needles
    best: Needles = frozenset()
    # Longer cuts give at least as many distinct prefixes: walk up while few enough.
    for length in range(MIN_NEEDLE, MAX_NEEDLE + 1):
        cut = frozenset(n[:length] for n in needles)
        if len(cut) > MAX_NEEDLES:
            break
        best = cut
    return best
