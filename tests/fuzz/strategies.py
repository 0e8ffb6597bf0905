"""Hypothesis strategies for hostile Teams requests: real path grammar mixed with
encoding tricks, junk headers, tokens and bodies."""

from __future__ import annotations

import base64
import os
import time

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from services.common.contracts import InterceptedRequest, new_decision_id
from tests.support.tokens import skypetoken

# Examples per property: enough for CI in seconds; TFW_FUZZ_EXAMPLES=5000 for a deep run.
EXAMPLES = int(os.environ.get("TFW_FUZZ_EXAMPLES", "250"))


def fuzz(scale: float = 1.0) -> settings:
    """Hypothesis settings for one property (``scale`` times the examples)."""
    return settings(
        max_examples=max(10, int(EXAMPLES * scale)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


HOSTS = (
    "emea.ng.msg.teams.microsoft.com",
    "teams.microsoft.com",
    "teams.cloud.microsoft",
    "teams.live.com",
    "EMEA.NG.MSG.TEAMS.MICROSOFT.COM",
    "teams.microsoft.com.evil.test",
    "",
)
SEGMENTS = (
    "api", "chatsvc", "emea", "amer", "v1", "users", "ME", "me", "Me", "conversations",
    "messages", "properties", "threads", "members", "mt", "part", "beta", "authsvc",
    "19:a11ce000-0000-4000-8000-000000000001_b0b00000-0000-4000-8000-000000000002@unq.gbl.spaces",
    "19%3A4e5f6a7b8c9d4e0f1a2b3c4d5e6f7a8b%40thread.v2", "19%253Aabc%2540thread.tacv2",
    "19:8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c@thread.tacv2;messageid=1764493200123",
    "19%3Aabc%40thread.tacv2%3Bmessageid%3D17", "19:abc@thread.tacv2;MessageId=1;messageid=",
    ";messageid=", "%3bmessageid%3d", "48:notes", "8:orgid:a11ce000-0000-4000-8000-000000000001",
    "1764493200123", "..", ".", "%2e%2e", "%252e%252e", "%2F", "%252F", "%00", "%ff", "%",
    "%%", "%E2%80%AE", "\u202e", "é", "", "emotions", "consumptionhorizon", "topic",
)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "post", "Put", "X-CUSTOM")
QUERIES = (
    "", "?name=emotions", "?name=consumptionhorizon", "?name=topic", "?behavior=softDelete",
    "?name=emotions&name=topic", "?name=%65motions", "?=&&=", "?name", "?" + "a=" * 50,
)


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(SEGMENTS), st.text(max_size=12))


paths = st.builds(
    lambda segments, query, slashes: slashes + "/".join(segments) + query,
    st.lists(_segment(), max_size=10),
    st.sampled_from(QUERIES),
    st.sampled_from(("/", "//", "", "/./", "/../")),
)


def _jwt(claims: object) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(orjson.dumps(claims))}.{b64(b'sig')}"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

tokens = st.one_of(
    st.builds(skypetoken, st.uuids().map(str), st.uuids().map(str)),
    st.builds(_jwt, json_values),
    st.builds(
        _jwt,
        st.fixed_dictionaries(
            {},
            optional={
                "skypeid": st.one_of(st.text(max_size=30), json_values),
                "tid": json_values,
                "oid": json_values,
                "exp": st.one_of(
                    st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=5)
                ),
                "aud": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10))),
                "upn": json_values,
            },
        ),
    ),
    st.text(max_size=64),
    st.just("a.b.c"),
    st.just("x" * 20000),
)

headers = st.dictionaries(
    st.sampled_from(
        ("authentication", "x-skypetoken", "authorization", "x-ms-session-id", "content-type",
         "content-encoding", "x-ms-client-version", "referer")
    ),
    st.one_of(
        tokens.map(lambda token: f"skypetoken={token}"),
        tokens.map(lambda token: f"Bearer {token}"),
        tokens,
        st.text(max_size=40),
    ),
    max_size=5,
)

message_bodies = st.one_of(
    st.builds(
        lambda content, kind, props: orjson.dumps(
            {"content": content, "messagetype": kind, "properties": props}
        ),
        st.text(max_size=60),
        st.sampled_from(("Text", "RichText/Html", "Control/Typing", "Control/", "", "x")),
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "files": st.one_of(st.text(max_size=30), json_values),
                    "mentions": st.one_of(st.text(max_size=30), json_values),
                    "importance": json_values,
                },
            ),
        ),
    ),
    json_values.map(orjson.dumps),
    st.binary(max_size=200),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"a":' * 3000 + b"1" + b"}" * 3000),
    st.just(b'{"emotions": "{\\"key\\": \\"like\\"}", "deletetime": null}'),
    st.just(b"\xff\xfe\xfd not utf-8"),
)

requests = st.builds(
    lambda method, host, path, head, body, truncated: InterceptedRequest(
        id=new_decision_id(), time=time.time(), interceptor="fuzz", method=method, host=host,
        path=path, headers=head, body=body, body_size=len(body), body_truncated=truncated,
    ),
    st.sampled_from(METHODS),
    st.sampled_from(HOSTS),
    paths,
    headers,
    message_bodies,
    st.booleans(),
)
