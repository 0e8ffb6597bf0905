"""Property tests of rule loading: any text pushed as a rule set compiles or is
refused whole with a RuleError naming the problem; nothing else escapes."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services.decider.rules import RuleError, compile_rules
from tests.fuzz.strategies import fuzz, json_values

FUZZ = fuzz(1)
ACTIONS = ("message.send", "message.edit", "typing", "MSGSND", "nonsense", "", "*")
KEYS = ("actions", "actors", "participants", "conversation_types", "location", "federated",
        "text", "files", "time", "groups", "mode", "unresolved", "between", "name", "when",
        "then", "message")

values = st.one_of(json_values, st.lists(st.sampled_from(ACTIONS), max_size=3),
                   st.sampled_from(("block", "allow", "monitor", "group:x", "*@x.example",
                                    "re:(a+)+$", "internal", "external")))
conditions = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
rule = st.fixed_dictionaries(
    {"name": st.text(max_size=20), "when": conditions},
    optional={"then": st.one_of(st.lists(values, max_size=3), values), "mode": values,
              "unresolved": values},
)
documents = st.fixed_dictionaries(
    {"rules": st.lists(rule, max_size=4)},
    optional={
        "internal_tenants": st.lists(st.one_of(st.uuids().map(str), st.text(max_size=10)),
                                     max_size=2),
        "groups": st.dictionaries(st.text(max_size=8), json_values, max_size=2),
        "walls": st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
                          max_size=2),
        "format": st.one_of(st.just(1), json_values),
        "exceptions": st.lists(json_values, max_size=2),
    },
)


@FUZZ
@given(st.one_of(documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                 st.text(max_size=300),
                 st.just("a: &a [*a]"), st.just("- " * 200), st.just("{" * 500)))
def test_any_rule_text_compiles_or_is_refused_whole_with_a_reason(source: str) -> None:
    try:
        rules = compile_rules(source)
    except RuleError as exc:
        assert str(exc)
    else:
        assert rules.version


BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    + ["rules: []"]
)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        pytest.param(BOMB, "past", id="alias-bomb"),
        pytest.param("rules: &r [*r]", "recursive alias", id="recursive-alias"),
        pytest.param("rules: " + "[" * 3000 + "]" * 3000, "nest", id="deep-flow"),
        pytest.param("rules:\n" + "".join("  " * n + "- \n" for n in range(200)), "nested",
                     id="deep-block"),
    ],
)
def test_yaml_that_would_exhaust_the_decider_is_refused_whole(source: str, reason: str) -> None:
    with pytest.raises(RuleError) as refused:
        compile_rules(source)
    assert reason in str(refused.value)
