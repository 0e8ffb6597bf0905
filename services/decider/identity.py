"""Identity matching: one normal form for emails, UPNs, domains and MRIs, and patterns
compiled once into sets and one anchored regex.

Both sides of every comparison go through :func:`normal_identity`, so a rule written
as ``ALİCE@`` + full-width ``FIRM.example`` and an event carrying ``alice@firm.example`` meet in the
same form, and a domain written in Unicode meets its punycode form.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from encodings import idna
from functools import lru_cache

# A word of message text, as keywords are matched by set: the keyword side
# (conditions.TextMatches) and the event side (facts.Facts.words) must cut text the same way.
WORD = re.compile(r"\w+")
# The Turkish capital dotted İ casefolds to "i" plus a combining dot, and the dotless ı
# stays distinct; both are folded to a plain "i" so neither becomes a way around a rule.
_TURKISH = str.maketrans({"İ": "i", "ı": "i", "\u0307": None})
# Line breaks and other control characters never belong in a name; they become U+FFFD
# so that no name can span two lines of a joined list or hide a suffix after a break.
_CONTROL = str.maketrans({code: "\ufffd" for code in (*range(32), 127)})


def _ascii_label(label: str) -> str:
    if label.isascii() or "*" in label or not label:
        return label
    try:
        return idna.ToASCII(label).decode("ascii")
    except UnicodeError:
        return label


def _unicode_label(label: str) -> str:
    """A punycode label back to Unicode, so it can be folded like any other text."""
    if not label.startswith("xn--"):
        return label
    try:
        return idna.ToUnicode(label)
    except UnicodeError:
        return label


@lru_cache(maxsize=65536)
def normal_domain(domain: str) -> str:
    """A domain in its comparable form: NFKC, case folded, ASCII (punycode) labels."""
    text = unicodedata.normalize("NFKC", domain).translate(_TURKISH).casefold()
    text = text.translate(_CONTROL).replace("\u3002", ".").replace("\uff0e", ".").rstrip(".")
    labels = [_unicode_label(label) for label in text.split(".")]
    labels = [
        unicodedata.normalize("NFKC", label).translate(_TURKISH).casefold() for label in labels
    ]
    return ".".join(_ascii_label(label) for label in labels)


@lru_cache(maxsize=65536)
def normal_identity(value: str) -> str:
    """An email, UPN or MRI in its comparable form.

    NFKC (full-width letters become ASCII), Turkish i folded, case folded, then the
    domain after the last ``@`` converted to punycode label by label.
    """
    text = unicodedata.normalize("NFKC", value.strip()).translate(_TURKISH).casefold()
    text = unicodedata.normalize("NFKC", text).translate(_CONTROL)
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    return f"{local}@{normal_domain(domain)}"


@dataclass(frozen=True, slots=True)
class IdentityPatterns:
    """Exact identities in a set and wildcard patterns in one anchored regex.

    ``blob`` is the same alternation for a newline-joined list of identities (normal
    forms never contain a line break), so a whole conversation is searched at once.
    """

    exact: frozenset[str]
    wildcard: re.Pattern[str] | None
    blob: re.Pattern[str] | None
    source: tuple[str, ...]

    @classmethod
    def compile(
        cls, patterns: list[str] | tuple[str, ...], normalise: bool = True
    ) -> IdentityPatterns:
        """Compile patterns; ``normalise=False`` when they are already in normal form."""
        exact: set[str] = set()
        wildcards: list[str] = []
        for pattern in patterns:
            normal = normal_identity(pattern) if normalise else pattern
            if "*" in normal:
                wildcards.append(r"[^\n]*".join(re.escape(part) for part in normal.split("*")))
            else:
                exact.add(normal)
        if not wildcards:
            return cls(frozenset(exact), None, None, tuple(patterns))
        alternation = "(?:" + "|".join(wildcards) + ")"
        return cls(
            frozenset(exact),
            re.compile(alternation + r"\Z"),
            re.compile("^" + alternation + "$", re.M),
            tuple(patterns),
        )

    def __bool__(self) -> bool:
        return bool(self.exact) or self.wildcard is not None

    def matches(self, normal: str) -> bool:
        """Does one identity, already in normal form, match (whole string only)?"""
        if normal in self.exact:
            return True
        return self.wildcard is not None and self.wildcard.match(normal) is not None

    def matches_any(self, identities: tuple[str, ...] | frozenset[str], blob: str = "") -> bool:
        """Does any of several identities match? ``blob`` is them joined by newlines."""
        if self.exact and not self.exact.isdisjoint(identities):
            return True
        if self.wildcard is None:
            return False
        if blob:
            return self.blob is not None and self.blob.search(blob) is not None
        return any(self.wildcard.match(identity) for identity in identities)


def identities_of(*values: str | None) -> tuple[str, ...]:
    """The normal forms of the non-empty names an actor or participant carries."""
    return tuple(normal_identity(value) for value in values if value)


def domain_of(identity: str) -> str | None:
    """The (normal) domain of an email-like identity, if it has one."""
    _, at, domain = identity.rpartition("@")
    return domain if at else None


def fold_text(text: str) -> str:
    """Message text folded like identities (NFKC, Turkish i, case folded)."""
    if text.isascii():
        return text.lower()  # what the three steps make of ASCII, at a fraction of the cost
    return unicodedata.normalize("NFKC", text).translate(_TURKISH).casefold()


def nfkc_text(text: str) -> str:
    """Message text with compatibility forms (full-width letters) made plain."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)
