"""Property tests of token claim decoding: any credential header, well-formed or
hostile, is read or refused with a reason; no exception escapes, no token text leaks
into what the resolver forwards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.contracts import CredentialStatus
from services.resolver.credentials import TokenProblem, decode_claims, read_credentials
from tests.fuzz.strategies import fuzz, headers, tokens

FUZZ = fuzz(2)


@FUZZ
@given(st.one_of(tokens, st.text(), st.text(alphabet="ABCDEFabcdef0123456789-_.=", max_size=80)))
def test_decoding_claims_returns_a_mapping_or_refuses_with_a_reason(token: str) -> None:
    try:
        claims = decode_claims(token)
    except TokenProblem as problem:
        assert problem.reason
    else:
        assert isinstance(claims, dict)


@FUZZ
@given(headers)
def test_reading_credentials_never_raises_and_never_echoes_a_token(head: dict[str, str]) -> None:
    actor, credential, found = read_credentials(head)
    assert isinstance(credential.status, CredentialStatus)
    shown = actor.model_dump_json() + credential.model_dump_json()
    for token in found:
        if len(token.raw) >= 16:
            assert token.raw not in shown
    if credential.status is CredentialStatus.OK:
        assert found


def test_claims_of_the_wrong_type_make_the_credential_unreadable_not_an_error() -> None:
    # Found by the property above: an ``oid`` that is a list raised TypeError.
    from tests.fuzz.strategies import _jwt

    head = {
        "authentication": "skypetoken="
        + _jwt({"skypeid": "orgid:a11ce000-0000-4000-8000-000000000001", "tid": "t"}),
        "authorization": "Bearer " + _jwt({"oid": ["x"], "tid": {"a": 1}, "upn": 5}),
    }
    actor, credential, _ = read_credentials(head)
    assert actor.oid == "a11ce000-0000-4000-8000-000000000001"
    assert credential.status is CredentialStatus.OK


def test_a_bare_credential_in_authorization_is_not_echoed_into_the_reason() -> None:
    # Found by the classification property: "Authorization: <token>" without a scheme
    # put the start of the token into the credential's reason (and so the record).
    from tests.fuzz.strategies import _jwt

    for bare in ("e30.e30.c2ln", "opaque0123456789abcdef", _jwt({"oid": "x", "tid": "y"})):
        _, credential, _ = read_credentials({"authorization": bare})
        assert credential.reason and bare[:8] not in credential.reason
    _, credential, _ = read_credentials({"authorization": "Basic dXNlcjpwYXNz"})
    assert credential.reason and "'Basic' is not Bearer" in credential.reason
    assert "dXNlcjpwYXNz" not in credential.reason
