"""Property: the screen's needle test never hides a match.

Patterns are built from literals, classes, optional and repeated groups, alternations
and lookarounds; texts from the same letters in any case, with the look-alikes that
case-insensitive matching equates, and from strings each pattern matches. The screen
must answer exactly as a full search would. Repeats are bounded: nested unbounded
ones make any backtracking engine, Python's included, run for ever on some texts."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from services.decider.identity import fold_text, nfkc_text
from services.decider.screen import Screen
from tests.fuzz.strategies import fuzz

LETTERS = "abcikKsS"
# Words may hold the look-alikes that case-insensitive matching equates with s and k.
words = st.text(alphabet=LETTERS + "ſ\u212a", min_size=1, max_size=5)
PLAIN_LOOKALIKES = str.maketrans({"ſ": "s", "\u212a": "K", "ı": "i", "İ": "I"})
atoms = st.one_of(
    words.map(re.escape),
    st.sampled_from([r"\d", r"\s", "[ab]", ".", r"\b", "^", "$", "ſ", "\u212a"]),
)


def _pieces(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda p: f"(?:{p})?"),
        inner.map(lambda p: f"(?:{p}){{0,2}}"),
        inner.map(lambda p: f"(?:{p}){{1,2}}"),
        st.tuples(inner, inner).map(lambda ab: f"(?:{ab[0]}|{ab[1]})"),
        inner.map(lambda p: f"(?={p})"),
        inner.map(lambda p: f"(?!{p})"),
        words.map(lambda w: f"(?<!{re.escape(w)})"),
        words.map(lambda w: f"(?<={re.escape(w)})"),
        inner.map(lambda p: f"(?-i:{p})"),
        inner.map(lambda p: f"(?x:{p})"),
        inner.map(lambda p: f"(?>{p})"),
        # Groups, a backreference and a conditional (the rule set's screen leaves
        # patterns with groups out, but the needles must hold for any pattern).
        inner.map(lambda p: f"({p})\\1"),
        st.tuples(inner, inner).map(lambda ab: f"(x)?(?(1){ab[0]}|{ab[1]})"),
    )


sequences = st.recursive(
    atoms,
    lambda inner: st.lists(st.one_of(inner, _pieces(inner)), min_size=1, max_size=4).map("".join),
    max_leaves=8,
)
# A few patterns, or many: many alternatives make needles be cut to common prefixes.
patterns = st.one_of(
    st.lists(sequences, min_size=1, max_size=4),
    st.lists(sequences, min_size=9, max_size=80),
).map(lambda ps: "|".join(f"(?:{p})" for p in ps))
texts = st.text(alphabet=LETTERS + "ABCIſ\u212aİı ｓ1x", max_size=20)


def _check(screen: Screen, pattern: re.Pattern[str], text: str) -> None:
    plain = nfkc_text(text)
    found = screen.finds(plain, fold_text(text))
    assert found is (pattern.search(plain) is not None), (pattern.pattern, text, screen.needles)


@fuzz(3)
@given(patterns, st.lists(texts, min_size=1, max_size=5), st.data())
def test_the_screen_answers_as_a_full_search(
    source: str, samples: list[str], data: st.DataObject
) -> None:
    try:
        pattern = re.compile(source, re.IGNORECASE)
    except re.error:
        return
    screen = Screen.of(pattern)
    for text in samples:
        _check(screen, pattern, text)
    # Texts the pattern matches, with their case changed: where a skipped search
    # would hide a match.
    try:
        matching = data.draw(st.from_regex(pattern, fullmatch=True))
    except Exception:  # a pattern hypothesis cannot invert
        return
    plain = matching.translate(PLAIN_LOOKALIKES)
    for text in (matching, matching.upper(), matching.lower(), matching.swapcase(), plain):
        _check(screen, pattern, text)
