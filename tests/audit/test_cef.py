"""CEF rendering, parsed back by pycef (a third-party CEF parser)."""

from __future__ import annotations

import pycef

from services.audit import cef
from services.common.contracts import Action, Decision
from tests.audit.support import record


def unescape(value: str) -> str:
    return value.replace("\\=", "=").replace("\\n", "\n").replace("\\\\", "\\")


def parsed(**overrides: object) -> dict[str, str]:
    item = record(**overrides).model_dump(mode="json", by_alias=True)
    item["hash"] = "ab" * 32
    line = cef.render(item)
    assert "\n" not in line
    values = pycef.parse(line)
    assert values is not None, line
    return values


def test_a_block_parses_back_with_its_header_and_fields() -> None:
    values = parsed(
        action=Action.MESSAGE_EDIT, decision=Decision.BLOCK, rules=("No edits abroad", "Log")
    )
    assert values["DeviceVendor"] == "TeamsFirewall"
    assert values["DeviceEventClassID"] == "message.edit"
    assert values["Name"] == "message.edit blocked"
    assert values["Severity"] == "7"
    assert values["act"] == "block"
    assert values["suser"] == "alice@firm.example"
    assert values["src"] == "10.1.2.3"
    assert values["rules"] == "No edits abroad,Log"
    assert values["conversationId"] == "19:abc@thread.v2"
    assert values["recordHash"] == "ab" * 32
    assert len(values["externalId"]) == 26


def test_an_allow_that_a_monitor_rule_would_block_has_a_middle_severity() -> None:
    assert parsed(would_block=True)["Severity"] == "5"
    assert parsed()["Severity"] == "1"


def test_equals_signs_backslashes_and_line_breaks_survive_the_round_trip() -> None:
    reason = "rule 'a=b' matched C:\\path\nsecond line"
    values = parsed(decision=Decision.BLOCK, rules=("a=b",), reason=reason)
    assert unescape(values["reason"]) == reason
    assert unescape(values["rules"]) == "a=b"


def test_pipes_in_header_fields_are_escaped() -> None:
    assert cef.escape_header("a|b\\c") == "a\\|b\\\\c"
