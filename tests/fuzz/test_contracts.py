"""Property tests of contract decoding: any bytes on the bus become a contract or a
typed ContractError with a safe code, never another exception, and what decodes
round-trips."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.contracts import (
    ContractError,
    DecisionRecord,
    EnrichedEvent,
    InterceptedRequest,
    Observation,
    RuleSetDocument,
    Verdict,
    decode,
    encode,
)
from tests.fuzz.strategies import fuzz, json_values, requests

FUZZ = fuzz(0.8)
CONTRACTS = (InterceptedRequest, EnrichedEvent, Verdict, Observation, DecisionRecord,
             RuleSetDocument)
FIELDS = ("id", "time", "interceptor", "method", "host", "path", "headers", "body", "schema",
          "decision_id", "decision", "action", "credential", "kind", "version", "source",
          "rules", "participants", "conversation", "status")

payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8).map(orjson.dumps),
    st.just(b"[" * 2000 + b"]" * 2000),
    st.just(b'{"schema": [1], "id": "x"}'),
    st.just(b'{"body": "not base64 !!", "id": "x", "time": 1, "interceptor": "i", '
            b'"method": "GET", "host": "h", "path": "/"}'),
)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__)
@FUZZ
@given(data=payloads)
def test_any_bytes_decode_to_the_contract_or_a_typed_error(contract, data: bytes) -> None:
    try:
        message = decode(contract, data)
    except ContractError as exc:
        assert exc.code in ("bad_json", "bad_shape", "bad_schema", "bad_field")
        assert len(exc.detail) < 500
    else:
        assert decode(contract, encode(message)) == message


@FUZZ
@given(requests)
def test_an_intercepted_request_survives_the_bus_unchanged(request: InterceptedRequest) -> None:
    assert decode(InterceptedRequest, encode(request)) == request


def test_a_bad_schema_value_is_not_echoed_into_the_error() -> None:
    # Found by the property above: the sender's "schema" value went into the error
    # detail, which is logged and sent back in a NATS header.
    secret = "eyJ" + "A" * 600
    with pytest.raises(ContractError) as refused:
        decode(Observation, orjson.dumps({"schema": secret, "id": "x"}))
    assert secret not in str(refused.value)
    assert refused.value.detail == "Observation schema a str is not 1"
