"""Reading the actor from a request's credentials: strict, safe, never an exception."""

from __future__ import annotations

import base64
import math

import orjson
import pytest

from services.common.contracts import CredentialStatus
from services.resolver import credentials
from services.resolver.credentials import TokenProblem, decode_claims, read_credentials
from tests.support.tokens import bearer, jwt, skypetoken

OID = "A11CE000-0000-4000-8000-000000000001"
TID = "0B9B5A1C-3C1E-4F7A-9D2E-6A1F0C7E2B11"


def _raw_jwt(payload: bytes) -> str:
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{encoded}.c2ln"


def test_a_skypetoken_names_the_user_from_skypeid_and_the_tenant_from_tid() -> None:
    actor, credential, tokens = read_credentials(
        {"authentication": f"skypetoken={skypetoken(OID, TID)}"}
    )
    assert credential.status is CredentialStatus.OK
    assert actor.mri == f"8:orgid:{OID.lower()}"
    assert actor.oid == OID.lower()
    assert actor.tenant_id == TID.lower()
    assert actor.region == "emea"
    assert [t.kind for t in tokens] == ["skypetoken"]


def test_a_bearer_token_names_the_user_by_oid_tenant_and_lower_cased_upn() -> None:
    actor, credential, _ = read_credentials(
        {"authorization": f"Bearer {bearer(OID, TID, 'Alice@Firm.Example')}"}
    )
    assert credential.status is CredentialStatus.OK
    assert actor.oid == OID.lower()
    assert actor.upn == "alice@firm.example"
    assert credential.kinds == ["bearer"]


def test_x_skypetoken_header_is_read_like_authentication() -> None:
    actor, credential, _ = read_credentials({"x-skypetoken": skypetoken(OID, TID)})
    assert credential.status is CredentialStatus.OK
    assert actor.tenant_id == TID.lower()


def test_both_tokens_of_one_user_are_accepted_together() -> None:
    _, credential, tokens = read_credentials(
        {
            "authentication": f"skypetoken={skypetoken(OID, TID)}",
            "authorization": f"Bearer {bearer(OID, TID, 'a@firm.example')}",
        }
    )
    assert credential.status is CredentialStatus.OK
    assert credential.kinds == ["bearer", "skypetoken"]
    assert len(tokens) == 2


def test_tokens_of_two_different_users_are_unreadable() -> None:
    _, credential, _ = read_credentials(
        {
            "authentication": f"skypetoken={skypetoken(OID, TID)}",
            "authorization": f"Bearer {bearer('b0b00000-0000-4000-8000-000000000002', TID, 'b@x')}",
        }
    )
    assert credential.status is CredentialStatus.UNREADABLE
    assert credential.reason == "tokens name different users"


def test_no_credentials_is_missing() -> None:
    actor, credential, tokens = read_credentials({"accept": "json"})
    assert credential.status is CredentialStatus.MISSING
    assert actor.mri is None and tokens == []


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("opaque-session-cookie", "opaque token: not a JWT"),
        ("a.b+/c.d", "JWT payload is not base64url"),
        ("a.abcde.c", "impossible base64 length"),
        (_raw_jwt(b"\xff\xfe\x00"), "JWT payload is not UTF-8"),
        (_raw_jwt(b"not json"), "JWT payload is not JSON"),
        (_raw_jwt(b"[1, 2]"), "JWT payload is not a JSON object"),
        ("x." + "A" * 20_000 + ".y", "token longer than"),
    ],
)
def test_every_unreadable_token_has_a_clear_reason_and_no_exception(
    token: str, reason: str
) -> None:
    with pytest.raises(TokenProblem) as problem:
        decode_claims(token)
    assert reason in problem.value.reason
    _, credential, tokens = read_credentials({"authentication": f"skypetoken={token}"})
    assert credential.status is CredentialStatus.UNREADABLE
    assert reason in (credential.reason or "")
    assert tokens == []


def test_a_padded_payload_is_not_base64url_without_padding() -> None:
    padded = jwt({"skypeid": "orgid:x", "tid": "t", "pad": "ab"}).split(".")
    payload = padded[1] + "=" * (-len(padded[1]) % 4 or 4)
    _, credential, _ = read_credentials({"x-skypetoken": f"{padded[0]}.{payload}.{padded[2]}"})
    assert credential.status is CredentialStatus.UNREADABLE


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"authentication": "Bearer abc"}, "Authentication header does not carry a skypetoken"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "is not Bearer"),
        ({"authentication": "skypetoken="}, "Authentication header is empty"),
        ({"authorization": f"Bearer {skypetoken(OID, TID)}"}, "skypetoken in the Authorization"),
        (
            {"authentication": f"skypetoken={bearer(OID, TID, 'a@b')}"},
            "bearer token in the Authentication",
        ),
    ],
)
def test_a_token_in_an_unexpected_header_is_unreadable_with_the_reason(
    headers: dict[str, str], reason: str
) -> None:
    _, credential, _ = read_credentials(headers)
    assert credential.status is CredentialStatus.UNREADABLE
    assert reason in (credential.reason or "")


def test_claims_without_a_user_or_tenant_are_unreadable() -> None:
    token = jwt({"tid": TID, "exp": 1})
    _, credential, _ = read_credentials({"x-skypetoken": token})
    assert credential.status is CredentialStatus.UNREADABLE
    assert credential.reason == "token claims name no user or no tenant"


def test_the_credential_summary_never_contains_the_token() -> None:
    token = skypetoken(OID, TID)
    _, credential, tokens = read_credentials({"authentication": f"skypetoken={token}"})
    assert token not in orjson.dumps(credential.model_dump()).decode()
    assert token not in repr(tokens)


def test_the_same_credentials_again_give_the_same_reading_in_models_of_their_own() -> None:
    headers = {"authentication": f"skypetoken={skypetoken(OID, TID)}"}
    first_actor, first_credential, first_tokens = read_credentials(headers)
    first_actor.email = "changed@firm.example"  # the resolver fills the actor in
    actor, credential, tokens = read_credentials(dict(headers))
    assert actor.email is None
    assert actor.mri == f"8:orgid:{OID.lower()}"
    assert credential == first_credential and credential is not first_credential
    first_credential.kinds.append("bearer")
    assert credential.kinds == ["skypetoken"]
    assert [(t.kind, t.raw) for t in tokens] == [(t.kind, t.raw) for t in first_tokens]
    # Assembled from the kept reading: what validation would have made, every field set.
    for made in (actor, credential):
        assert type(made).model_validate(made.model_dump()) == made
        assert set(vars(made)) == set(type(made).model_fields)


def test_a_header_without_a_credential_changes_the_reading_of_the_same_token() -> None:
    token = skypetoken(OID, TID)
    _, alone, _ = read_credentials({"x-skypetoken": token})
    _, beside, _ = read_credentials({"x-skypetoken": token, "authorization": "Basic abc"})
    _, again, _ = read_credentials({"x-skypetoken": token})
    assert alone.reason is None and again.reason is None
    assert beside.reason == "Authorization scheme 'Basic' is not Bearer"


def test_the_readings_kept_hold_no_token() -> None:
    token = skypetoken(OID, TID)
    read_credentials({"authentication": f"skypetoken={token}"})
    kept = repr(credentials._readings.items())
    assert token not in kept and token.split(".")[1] not in kept


def test_problems_are_given_in_header_order_whether_or_not_the_reading_was_kept() -> None:
    headers = {"authentication": "skypetoken=notajwt", "authorization": "Basic xyz"}
    expected = (
        "Authentication: opaque token: not a JWT (expected three dot-separated parts); "
        "Authorization scheme 'Basic' is not Bearer"
    )
    for _ in range(2):
        _, credential, _ = read_credentials(dict(headers))
        assert credential.reason == expected


def test_no_header_value_makes_two_different_sets_of_credentials_read_the_same() -> None:
    """The kept readings are keyed so that a value holding the key's own separators
    cannot stand for another set of headers (NUL passes through HTTP/1 header values)."""
    token, bearer_token = skypetoken(OID, TID), bearer(OID, TID, "a@firm.example")
    plain = {"authentication": f"skypetoken={token}", "authorization": f"Bearer {bearer_token}"}
    folded = {"authentication": f"skypetoken={token}\0bearer\1Authorization\1{bearer_token}"}
    for first, second in ((plain, folded), (folded, plain)):
        credentials._readings.purge(math.inf)
        read_credentials(first)
        _, credential, tokens = read_credentials(second)
        fresh_credential = (credentials._readings.purge(math.inf), read_credentials(second))[1][1]
        assert credential == fresh_credential
        assert len(tokens) == (2 if second is plain else 0)


def test_long_or_oddly_shaped_credentials_are_read_each_time_and_not_kept() -> None:
    credentials._readings.purge(math.inf)
    long_token = jwt({"skypeid": f"orgid:{OID}", "tid": TID, "pad": "x" * 9000})
    nested = jwt({"skypeid": f"orgid:{OID}", "tid": TID, "aud": [[]] * 20})
    for token in (long_token, nested):
        actor, credential, _ = read_credentials({"x-skypetoken": token})
        assert credential.status is CredentialStatus.OK and actor.tenant_id == TID.lower()
    assert len(credentials._readings) == 0
    read_credentials({"x-skypetoken": skypetoken(OID, TID)})
    assert len(credentials._readings) == 1


def test_a_requests_tokens_carry_the_claims_the_resolver_reads() -> None:
    token = jwt({"skypeid": f"orgid:{OID}", "tid": TID, "exp": 2_000_000_000, "extra": "x"})
    for _ in range(2):  # read, then kept
        _, _, tokens = read_credentials({"x-skypetoken": token})
        assert tokens[0].claims == {"skypeid": f"orgid:{OID}", "tid": TID, "exp": 2_000_000_000}
        assert tokens[0].raw == token
        tokens[0].claims["tid"] = "changed"  # a caller's copy
