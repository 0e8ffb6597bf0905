from __future__ import annotations

import orjson
import pytest

from services.common.contracts import (
    Action,
    ContractError,
    Credential,
    CredentialStatus,
    Decision,
    DecisionRecord,
    EnrichedEvent,
    InterceptedRequest,
    Observation,
    Subjects,
    Verdict,
    decode,
    encode,
    new_decision_id,
)


def _request() -> InterceptedRequest:
    return InterceptedRequest(
        id=new_decision_id(),
        time=1.5,
        interceptor="interceptor@test",
        method="POST",
        host="emea.ng.msg.teams.microsoft.com",
        path="/v1/users/ME/conversations/19%3Ax%40thread.v2/messages",
        headers={"authentication": "skypetoken=abc"},
        body=b'{"content": "\xff not utf-8"}',
        body_size=27,
    )


@pytest.mark.parametrize(
    "message",
    [
        _request(),
        EnrichedEvent(
            id="01",
            time=1.0,
            interceptor="i",
            method="POST",
            host="h",
            path="/p",
            action=Action.MESSAGE_SEND,
            credential=Credential(status=CredentialStatus.OK, kinds=["bearer"]),
        ),
        Verdict(decision_id="01", decision=Decision.BLOCK, status=403, body=b'{"x":1}'),
        Observation(id="01", time=1.0, interceptor="i", kind="lookup", response_body=b"\x00\x01"),
        DecisionRecord(decision_id="01", time=1.0, action=Action.OTHER, decision=Decision.ALLOW),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_contract_survives_a_round_trip(message) -> None:
    data = encode(message)
    assert b'"schema":1' in data
    assert decode(type(message), data) == message


def test_binary_bodies_round_trip_exactly() -> None:
    request = _request()
    assert decode(InterceptedRequest, encode(request)).body == request.body


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_shape"),
        (b'{"schema": 2, "id": "x"}', "bad_schema"),
        (b'{"schema": 1, "id": "x"}', "bad_field"),
        (b'{"schema": 1, "decision_id": "x", "decision": "maybe"}', "bad_field"),
        (b"", "bad_json"),
    ],
)
def test_bad_payloads_raise_a_typed_error_with_a_code(payload: bytes, code: str) -> None:
    model = Verdict if b"decision" in payload else InterceptedRequest
    with pytest.raises(ContractError) as caught:
        decode(model, payload)
    assert caught.value.code == code


def test_a_contract_error_never_echoes_the_payload() -> None:
    with pytest.raises(ContractError) as caught:
        decode(InterceptedRequest, b'{"schema": 1, "id": "skypetoken=SECRET"}')
    assert "SECRET" not in str(caught.value)


def test_subjects_follow_the_prefix() -> None:
    subjects = Subjects("acme")
    assert subjects.intercepted == "acme.v1.intercepted"
    assert subjects.decision(Decision.BLOCK) == "acme.v1.decisions.block"
    assert subjects.decision_stream == "ACME_DECISIONS"
    assert Subjects().decision_stream == "TFW_DECISIONS"
    assert Subjects().rules_bucket == "tfw_rules"


def test_decision_ids_sort_in_time_order() -> None:
    early, late = new_decision_id(1000.0), new_decision_id(2000.0)
    assert len(early) == 26
    assert early < late
    assert new_decision_id() != new_decision_id()


def test_a_decision_id_spells_its_time_as_the_ulid_specification_does() -> None:
    # The specification's example: 1469918176385 ms is 01ARYZ6S41.
    assert new_decision_id(1469918176.385)[:10] == "01ARYZ6S41"
    assert set(new_decision_id()) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_every_128_bit_value_is_spelled_five_bits_per_digit() -> None:
    import random

    from services.common.contracts import _crockford

    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def digit_by_digit(value: int) -> str:
        return "".join(alphabet[(value >> (5 * place)) & 31] for place in range(25, -1, -1))

    rnd = random.Random(7)
    values = [0, 1, 31, 32, 1023, 1024, (1 << 128) - 1]
    values += [rnd.getrandbits(rnd.randint(1, 128)) for _ in range(5000)]
    for value in values:
        assert _crockford(value) == digit_by_digit(value)


def test_a_decision_id_that_is_not_a_ulid_is_refused_at_the_first_hop() -> None:
    good = InterceptedRequest(
        id=new_decision_id(), time=1.0, interceptor="i", method="GET", host="h", path="/"
    )
    forged = good.to_bytes().replace(good.id.encode(), b"not-a-ulid")
    with pytest.raises(ContractError) as caught:
        decode(InterceptedRequest, forged)
    assert caught.value.code == "bad_field"
    assert "InterceptedRequest.id" in caught.value.detail


def test_the_decision_id_floor_sorts_between_the_ids_of_two_milliseconds() -> None:
    from services.common.contracts import decision_id_floor

    at = 1_796_000_000.1234
    floor = decision_id_floor(at)
    assert new_decision_id(at - 0.001) < floor <= new_decision_id(at)
    assert new_decision_id(at) < decision_id_floor(at + 0.001)
    assert decision_id_floor(-5) == "0" * 26


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ((b'"schema":1', b'"schema":"1"'), "bad_schema"),
        ((b'"schema":1', b'"schema":2'), "bad_schema"),
        ((b'"schema":1', b'"schema":true'), "bad_schema"),
        ((b'"age_s":null', b'"age_s":NaN'), "bad_json"),
        ((b'"age_s":null', b'"age_s":Infinity'), "bad_json"),
        ((b'"age_s":null', b'"age_s":1e400'), "bad_json"),
        ((b'"time":', b'"time":-Infinity,"x":'), "bad_json"),
        ((b'"host":"h"', b'"host":"\\ud800"'), "bad_json"),
        ((b'"schema":1', b'"schema":1,"ignored":NaN'), "bad_json"),
        ((b'"schema":1', b'"schema":1,"ignored":1e400'), "bad_json"),
        ((b'"schema":1', b'"schema_version":2'), "bad_schema"),
    ],
    ids=["schema-as-text", "schema-2", "schema-true", "nested-nan", "nested-infinity",
         "nested-overflow", "top-infinity", "lone-surrogate", "nan-in-an-ignored-field",
         "overflow-in-an-ignored-field", "version-under-the-field-name"],
)
def test_what_json_cannot_carry_is_refused_with_the_careful_code(
    change: tuple[bytes, bytes], code: str
) -> None:
    event = EnrichedEvent(
        id=new_decision_id(), time=1.0, interceptor="i", method="POST", host="h", path="/p",
        action=Action.MESSAGE_SEND, credential=Credential(status=CredentialStatus.OK),
    )
    data = encode(event)
    assert change[0] in data
    with pytest.raises(ContractError) as caught:
        decode(EnrichedEvent, data.replace(change[0], change[1], 1))
    assert caught.value.code == code


def test_a_decoded_message_equals_the_one_validated_field_by_field() -> None:
    event = EnrichedEvent(
        id=new_decision_id(), time=1.5, interceptor="i", method="POST", host="h", path="/p",
        action=Action.MESSAGE_SEND, credential=Credential(status=CredentialStatus.OK),
    )
    data = encode(event)
    assert decode(EnrichedEvent, data) == EnrichedEvent.model_validate(orjson.loads(data))
    assert orjson.loads(data) == orjson.loads(orjson.dumps(event.model_dump(mode="json",
                                                                            by_alias=True)))


def test_a_whole_number_mongodb_cannot_store_is_refused_on_the_bus() -> None:
    verdict = Verdict(decision_id=new_decision_id(), decision=Decision.BLOCK, status=403)
    wide = encode(verdict).replace(b'"status":403', b'"status":' + str(2**63).encode())
    with pytest.raises(ContractError) as caught:
        decode(Verdict, wide)
    assert caught.value.code == "bad_field"
    assert caught.value.detail.startswith("Verdict.status:")
