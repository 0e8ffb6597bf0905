"""RFC 5424 rendering, parsed back by syslog-rfc5424-parser (a strict third-party parser)."""

from __future__ import annotations

import orjson
import pycef
from syslog_rfc5424_parser import SyslogMessage

from services.audit import rfc5424
from services.common.contracts import Decision
from tests.audit.support import record


def test_a_block_is_a_warning_with_its_ids_in_structured_data_and_cef_as_message() -> None:
    item = record(decision=Decision.BLOCK, rules=('say "no" ]',)).model_dump(mode="json")
    line = rfc5424.render(item, hostname="audit-0")
    message = SyslogMessage.parse(line).as_dict()
    assert message["severity"] == "warning" and message["facility"] == "local0"
    assert message["hostname"] == "audit-0" and message["appname"] == "teamsfirewall"
    assert message["msgid"] == "decision"
    params = message["sd"]["tfw@32473"]
    assert params["decision_id"] == item["decision_id"]
    assert params["verdict"] == "block"
    assert pycef.parse(message["msg"])["externalId"] == item["decision_id"]


def test_an_allow_is_informational_and_the_json_body_is_the_record() -> None:
    item = record().model_dump(mode="json")
    message = SyslogMessage.parse(rfc5424.render(item, body="json")).as_dict()
    assert message["severity"] == "info"
    assert orjson.loads(message["msg"]) == item


def test_the_timestamp_is_utc_with_milliseconds() -> None:
    assert rfc5424.timestamp(1764493200.1239) == "2025-11-30T09:00:00.123Z"


def test_octet_counting_frames_count_bytes_not_characters() -> None:
    assert rfc5424.frame("é") == b"2 \xc3\xa9"
