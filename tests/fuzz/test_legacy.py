"""Property tests of the 2021 XML importer: any text is imported to a valid rule set
or refused with a LegacyError; document type declarations (entity bombs) never
expand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.decider.legacy import LegacyError, import_xml
from services.decider.rules import RuleError, compile_rules
from tests.fuzz.strategies import fuzz

FUZZ = fuzz(1)
TYPES = ("EVENT", "CONVERSATIONTYPE", "LOCATION", "FEDERATED", "ACTORS", "PARTICIPANTS",
         "BOGUS", "")
VALUES = ("MSGSND,MSGEDIT", "DIRECTCHAT", "EXTERNAL", "TRUE", "false", "*@firm.example",
          "a@b,,", "*", "", "<", "&amp;", "]]>")
ACTIONS = ("BLOCK", "LOG", "ADDHEADER", "DROP", "")


def _condition(kind: str, value: str) -> str:
    return f"<Condition><Type>{kind}</Type><Value>{value}</Value></Condition>"


def _rule(name: str, conditions: list[str], actions: list[str], param: str) -> str:
    acts = "".join(
        f"<Action><Type>{a}</Type><Param1>{param}</Param1></Action>" for a in actions
    )
    return (
        f"<Rule><RuleName>{name}</RuleName><Conditions>{''.join(conditions)}</Conditions>"
        f"<Actions>{acts}</Actions></Rule>"
    )


rule = st.builds(
    _rule,
    st.text(alphabet=st.characters(blacklist_characters="<&"), max_size=15),
    st.lists(st.builds(_condition, st.sampled_from(TYPES), st.sampled_from(VALUES)), max_size=4),
    st.lists(st.sampled_from(ACTIONS), max_size=3),
    st.sampled_from(("", "X-Tag: 1", "Wall", "&lt;b&gt;")),
)
documents = st.builds(
    lambda tenants, rules: (
        "<Settings><GeneralSettings><InternalTenantIds>"
        + "".join(f"<TenantId>{t}</TenantId>" for t in tenants)
        + "</InternalTenantIds></GeneralSettings><Rules>" + "".join(rules) + "</Rules></Settings>"
    ),
    st.lists(st.one_of(st.uuids().map(str), st.sampled_from(("", "x", "00000000-0000-0000"))),
             max_size=2),
    st.lists(rule, max_size=4),
)
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    "<Settings><Rules><Rule><RuleName>&lol2;</RuleName></Rule></Rules></Settings>"
)


@FUZZ
@given(st.one_of(documents, st.text(max_size=200), st.just(BOMB),
                 st.just("<Settings>" * 5000), st.just("<?xml version='1.0'?><Settings/>")))
def test_any_xml_imports_to_a_valid_rule_set_or_is_refused(text: str) -> None:
    try:
        output, report = import_xml(text, "fuzz.xml")
    except LegacyError as exc:
        assert str(exc)
        return
    try:
        compile_rules(output)
    except RuleError as exc:  # pragma: no cover - a failure here is the bug
        raise AssertionError(f"the importer produced an invalid rule set: {exc}") from exc
    assert report.render() is not None


def test_an_entity_bomb_is_refused_before_expansion() -> None:
    try:
        import_xml(BOMB)
    except LegacyError as exc:
        assert "document type" in str(exc)
    else:
        raise AssertionError("a document type declaration was accepted")


def test_text_that_is_not_valid_unicode_is_refused() -> None:
    # Found by the property above: a lone surrogate raised UnicodeEncodeError in expat.
    try:
        import_xml("<Settings><Rules><Rule><RuleName>\ud800</RuleName></Rule></Rules></Settings>")
    except LegacyError as exc:
        assert "not valid Unicode" in str(exc)
    else:
        raise AssertionError("a lone surrogate was accepted")
