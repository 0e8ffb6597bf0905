"""The text screen's needles: what every match of a pattern must contain, and the
promise that skipping the search on their absence never hides a match."""

from __future__ import annotations

import re

import pytest

from services.decider.identity import fold_text, nfkc_text
from services.decider.screen import MAX_NEEDLES, Screen, needles_of


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        (r"ISIN\d+", ("isin",)),
        (r"front\s+run", ("front",)),
        (r"\bcusip\b", ("cusip",)),
        (r"(?<!no )deal", ("deal",)),
        (r"(?:buy|sell)\s+order", ("order",)),
        (r"(?:buyer|seller)\s+x", ("buyer", "seller")),
        (r"proj(ect)?\s*falcon", ("falcon",)),
        (r"(?:abc)?defg", ("defg",)),
        (r"(?:xyz)+q", ("xyz",)),
        (r"a{2,}bcd", ("bcd",)),
        (r"(?>atomic)ally", ("atomic",)),
    ],
)
def test_needles_are_the_runs_every_match_holds(pattern: str, needles: tuple[str, ...]) -> None:
    assert needles_of(re.compile(pattern, re.IGNORECASE)) == needles


@pytest.mark.parametrize(
    "pattern",
    [
        r"\d{16}",  # no letters at all
        r"(?:abc)?\d",  # the only run is optional
        r"(?:abc)*x",  # may repeat zero times
        r"abc|\d+",  # one alternative holds no run
        r"ab\d",  # too short to be worth a test
        "ſecret",  # the run is cut at a character that is not ASCII
        "[a-z]+",
    ],
)
def test_no_needles_when_nothing_certain_and_long_enough(pattern: str) -> None:
    found = needles_of(re.compile(pattern, re.IGNORECASE))
    assert found is None or all(len(n) >= 3 and n.isascii() for n in found)
    if pattern in (r"\d{16}", r"(?:abc)?\d", r"(?:abc)*x", r"abc|\d+", "[a-z]+"):
        assert found is None


WORDS = ("alpha", "bravo", "charlie", "delta", "echo")


def test_many_needles_are_cut_to_common_prefixes_that_still_find_every_match() -> None:
    """100 patterns give 100 needles ("alpha07"); cut to six characters they are 27
    ("alpha0", "echo07"), and every pattern's match still holds one."""
    names = [f"{word}{n:02d}" for word in WORDS for n in range(20)]
    pattern = re.compile("|".join(f"(?:{name}\\d)" for name in names), re.IGNORECASE)
    screen = Screen.of(pattern)
    assert screen.needles is not None
    assert len(screen.needles) == 27 <= MAX_NEEDLES
    assert {len(n) for n in screen.needles} == {6}
    for name in names:
        text = f"see {name.upper()}5 now"
        assert screen.finds(text, text.lower())
    assert not screen.finds("alpha bravo 05", "alpha bravo 05")


def test_too_many_distinct_needles_give_none() -> None:
    pattern = re.compile("|".join(f"(?:w{n:03d}x)" for n in range(100)), re.IGNORECASE)
    assert needles_of(pattern) is None


def test_long_needles_are_cut_to_their_first_characters() -> None:
    long_word = "abcdefghij" * 10
    assert needles_of(re.compile(long_word, re.IGNORECASE)) == (long_word[:32],)


@pytest.mark.parametrize(
    "text",
    [
        "nothing here",
        "see isin12345",
        "SEE ISIN12345",
        "top ſecret",  # long s: the text is not ASCII, so it is searched in full
        "ｓｅｃｒｅｔ",  # full width: ASCII once in NFKC form
        "İsin12",  # dotted capital I
        "\u212aey",  # Kelvin sign matches k when case is ignored
        "key",
    ],
)
def test_a_screen_finds_exactly_what_its_pattern_finds(text: str) -> None:
    pattern = re.compile(r"(?:ISIN\d+)|(?:secret)|(?:key)", re.IGNORECASE)
    screen = Screen.of(pattern)
    assert screen.needles is not None
    plain = nfkc_text(text)
    assert screen.finds(plain, fold_text(text)) is (pattern.search(plain) is not None)
