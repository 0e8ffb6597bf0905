"""Identity matching: exact, anchored, case-insensitive after Unicode normalisation."""

from __future__ import annotations

import unicodedata

import pytest

from services.decider.identity import _TURKISH as TURKISH
from services.decider.identity import (
    IdentityPatterns,
    fold_text,
    nfkc_text,
    normal_identity,
)


@pytest.mark.parametrize(
    ("pattern", "identity", "matches"),
    [
        ("*@firm.example", "a@firm.example", True),
        ("*@firm.example", "x@firm.example.evil.test", False),
        ("*@firm.example", "x@evilfirm.example", False),
        ("*@firm.example", "x@sub.firm.example", False),
        ("*@*.firm.example", "x@sub.firm.example", True),
        ("*@client-co.example", "mallory@client-co.example.evil.test", False),
        ("bob@firm.example", "bob@firm.example.evil.test", False),
        ("bob@firm.example", "xbob@firm.example", False),
        ("bob@firm.example", "BOB@FIRM.EXAMPLE", True),
        ("dave.dealer@firm.example", "Dave.Dealer@Firm.Example", True),
        ("a.b@firm.example", "aXb@firm.example", False),
        # Full-width letters and the full-width at sign, on either side.
        ("alice@firm.example", "ａｌｉｃｅ＠ｆｉｒｍ.example", True),
        ("ａｌｉｃｅ@firm.example", "alice@firm.example", True),
        # The Turkish dotted capital I and the dotless i, on either side.
        ("alice@firm.example", "ALİCE@FIRM.EXAMPLE", True),
        ("ALİCE@firm.example", "alice@firm.example", True),
        ("alice@firm.example", "alıce@firm.example", True),
        # A domain written in Unicode matches its punycode form, both ways.
        ("*@bücher.example", "anna@xn--bcher-kva.example", True),
        ("*@XN--BCHER-KVA.example", "anna@BÜCHER.example", True),
        ("*@bücher.example", "anna@bucher.example", False),
        ("8:orgid:ABC", "8:orgid:abc", True),
    ],
)
def test_a_pattern_matches_only_the_whole_identity(
    pattern: str, identity: str, matches: bool
) -> None:
    compiled = IdentityPatterns.compile([pattern])
    assert compiled.matches(normal_identity(identity)) is matches


def test_a_newline_cannot_smuggle_a_suffix_past_the_anchor() -> None:
    compiled = IdentityPatterns.compile(["*@firm.example"])
    assert not compiled.matches(normal_identity("x@firm.example\n.evil.test"))
    assert not compiled.matches("x@firm.example\nx")


def test_regex_characters_in_a_pattern_are_literal() -> None:
    compiled = IdentityPatterns.compile(["a+b@firm.example", "(x)@firm.example"])
    assert compiled.matches(normal_identity("a+b@firm.example"))
    assert not compiled.matches(normal_identity("aab@firm.example"))
    assert compiled.matches(normal_identity("(x)@firm.example"))


def test_many_patterns_compile_into_one_set_and_one_regex() -> None:
    compiled = IdentityPatterns.compile([f"user{i}@firm.example" for i in range(500)] + ["*@x"])
    assert len(compiled.exact) == 500
    assert compiled.matches("user499@firm.example")
    assert compiled.matches("anyone@x")
    assert not compiled.matches("user500@firm.example")


def _full_fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(TURKISH).casefold()


@pytest.mark.parametrize(
    "text",
    [
        "".join(map(chr, range(128))),
        "Front RUN the ISIN12345 order",
        "ＦＲＯＮＴ run",
        "ALİCE and alıce",
        "Straße",
        "",
    ],
)
def test_message_text_folds_the_same_way_on_the_ascii_shortcut_and_the_full_path(
    text: str,
) -> None:
    assert fold_text(text) == _full_fold(text)
    assert nfkc_text(text) == unicodedata.normalize("NFKC", text)


def test_every_ascii_character_folds_as_the_full_path_folds_it() -> None:
    for code in range(128):
        char = chr(code)
        assert fold_text(f"a{char}Z") == _full_fold(f"a{char}Z"), code
