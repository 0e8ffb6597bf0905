"""Compiling rule sets: validation with line and column, indexing, versions."""

from __future__ import annotations

import textwrap

import pytest

from services.common.contracts import Action
from services.decider.rules import RuleError, RuleSet, compile_rules

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"


def _compile(text: str, now: float | None = None) -> RuleSet:
    return compile_rules(textwrap.dedent(text), now=now)


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("rules:\n  - name: x\n    then: [explode]\n", 3, 12, "explode"),
        (
            "rules:\n  - name: x\n    when: {actions: [message.shout]}\n    then: [block]\n",
            3,
            22,
            "message.shout",
        ),
        ("rules:\n  - name: x\n    when: {colour: red}\n    then: [block]\n", 3, 11, "colour"),
        ("rules:\n  - name: x\n    when: {location: abroad}\n    then: [block]\n", 3, 22, "abroad"),
        (
            "rules:\n  - name: x\n    when:\n      text: {regex: ['(unclosed']}\n"
            "    then: [block]\n",
            4,
            22,
            "regular expression",
        ),
        (
            "rules:\n  - name: x\n    when:\n      text: {regex: [a, '(?i)b']}\n"
            "    then: [block]\n",
            4,
            25,
            "global flags",
        ),
        (
            "rules:\n  - name: x\n    when:\n      text: {regex: ['a(?i)b']}\n    then: [block]\n",
            4,
            22,
            "regular expression",
        ),
        (
            "rules:\n  - name: x\n    when: {actors: ['group:nobody']}\n    then: [block]\n",
            3,
            21,
            "unknown group",
        ),
        (
            "rules:\n  - name: x\n    when: {time: {tz: Mars/Olympus}}\n    then: [block]\n",
            3,
            23,
            "time zone",
        ),
        ("internal_tenants: ['%INSERT TENANT ID HERE%']\n", 1, 20, "not a tenant id"),
        (
            "rules:\n  - {name: a, then: [block]}\n  - {name: a, then: [allow]}\n",
            3,
            12,
            "duplicate",
        ),
        ("rules: [{name: a, then: [block, allow]}]\n", 1, 25, "both block and allow"),
        ("rules:\n  - name: a\n    then: [{add_header: {'Bad Header': x}}]\n", 3, 12, "Bad Header"),
        ("rules: [\n", 2, 1, "not YAML"),
    ],
)
def test_a_bad_rule_file_is_refused_naming_the_line_and_column(
    text: str, line: int, column: int, words: str
) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rules(text)
    assert (caught.value.line, caught.value.column) == (line, column), str(caught.value)
    assert words in str(caught.value)


def test_every_schema_problem_is_listed_not_just_the_first() -> None:
    with pytest.raises(RuleError) as caught:
        compile_rules("default: maybe\nrules:\n  - name: x\n    then: [explode]\n")
    assert len(caught.value.problems) == 2
    assert "and 1 more" in str(caught.value)


def test_an_exception_naming_a_missing_rule_is_refused() -> None:
    with pytest.raises(RuleError, match="no rule or wall named 'Ghost'"):
        _compile("""
            rules: [{name: Real, then: [block]}]
            exceptions: [{name: e, rules: [Ghost], until: "2030-01-01T00:00:00Z"}]
        """)


def test_an_exception_without_a_utc_offset_is_refused() -> None:
    with pytest.raises(RuleError, match="UTC offset"):
        _compile("""
            rules: [{name: Real, then: [block]}]
            exceptions: [{name: e, rules: [Real], until: "2030-01-01T00:00:00"}]
        """)


def test_an_expired_exception_compiles_with_a_warning() -> None:
    rules = _compile(
        """
        rules: [{name: Real, then: [block]}]
        exceptions: [{name: old, rules: [Real], until: 2020-01-01T00:00:00Z}]
        """,
        now=1.7e9,
    )
    assert len(rules.exceptions) == 1
    assert "has expired" in str(rules.warnings[0])


def test_the_version_is_a_hash_of_the_source() -> None:
    a = compile_rules("rules: []\n")
    b = compile_rules("rules: []\n")
    c = compile_rules("rules: []  # changed\n")
    assert a.version == b.version != c.version
    assert len(a.version) == 12


def test_rules_are_indexed_by_action_keeping_their_order() -> None:
    rules = _compile("""
        rules:
          - {name: sends, when: {actions: [message.send]}, then: [block]}
          - {name: everything, then: [{log: all}]}
          - {name: edits, when: {actions: [message.edit]}, then: [block]}
    """)
    assert [r.name for r in rules.candidates(Action.MESSAGE_SEND)] == ["sends", "everything"]
    assert [r.name for r in rules.candidates(Action.MESSAGE_EDIT)] == ["everything", "edits"]
    assert [r.name for r in rules.candidates(Action.TYPING)] == ["everything"]


def test_settings_of_the_rule_set_are_read() -> None:
    rules = _compile(f"""
        internal_tenants: ['{FIRM.upper()}']
        default: block
        unidentified_actor: evaluate
        x_forwarded_for: true
        lifetimes: {{conversation_map_s: 600, user_s: 18000}}
    """)
    assert rules.internal_tenants == (FIRM,)
    assert rules.default_block and not rules.unidentified_block and rules.x_forwarded_for
    assert rules.lifetimes == {"conversation_map_s": 600, "user_s": 18000}


def test_an_empty_file_is_a_valid_empty_rule_set_that_allows() -> None:
    rules = compile_rules("")
    assert rules.rules == () and not rules.default_block


def test_walls_come_before_rules_and_default_to_message_actions() -> None:
    rules = _compile("""
        groups:
          research: {people: [alice@firm.example]}
          trading: {domains: [trading.firm.example]}
        rules: [{name: r, then: [{log: x}]}]
        walls: [{name: W, between: [research, trading]}]
    """)
    assert [r.name for r in rules.rules] == ["W", "r"]
    assert rules.rules[0].kind == "wall"
    assert rules.rules[0].actions is not None and Action.MESSAGE_SEND in rules.rules[0].actions
    assert Action.RECEIPT_READ not in rules.rules[0].actions
