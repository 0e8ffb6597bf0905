"""Classification of every row of the request grammar, on every chat-service front door."""

from __future__ import annotations

import orjson
import pytest

from services.common.contracts import Action
from services.resolver.classify import classify, front_door, normalise, split_path

FRONT_DOORS = {
    "legacy": ("emea.ng.msg.teams.microsoft.com", ""),
    "afd": ("teams.microsoft.com", "/api/chatsvc/emea"),
    "cloud": ("teams.cloud.microsoft", "/api/chatsvc/emea"),
    "consumer": ("teams.live.com", "/api/chatsvc/consumer"),
}
CONV = "19:8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c@thread.tacv2"
ENC = "19%3A8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c%40thread.tacv2"
MSG = "1764493200123"
MEMBER = "8:orgid:f2a00000-0000-4000-8000-000000000006"
SEND = {"content": "<p>hi</p>", "messagetype": "RichText/Html", "contenttype": "text"}
FILES = orjson.dumps([{"@type": "http://schema.skype.com/File", "title": "a.xlsx", "type": "xlsx"}])

# (what, method, path after the prefix, body, action, expected reply_to)
GRAMMAR = [
    ("send", "POST", f"/v1/users/ME/conversations/{ENC}/messages", SEND, Action.MESSAGE_SEND),
    (
        "send, id not encoded",
        "POST",
        f"/v1/users/ME/conversations/{CONV}/messages",
        SEND,
        Action.MESSAGE_SEND,
    ),
    (
        "file share",
        "POST",
        f"/v1/users/ME/conversations/{ENC}/messages",
        {**SEND, "properties": {"files": FILES.decode()}},
        Action.MESSAGE_SEND,
    ),
    (
        "channel reply, encoded",
        "POST",
        f"/v1/users/ME/conversations/{ENC}%3Bmessageid%3D{MSG}/messages",
        SEND,
        Action.MESSAGE_SEND,
    ),
    (
        "channel reply, not encoded",
        "POST",
        f"/v1/users/ME/conversations/{CONV};messageid={MSG}/messages",
        SEND,
        Action.MESSAGE_SEND,
    ),
    (
        "typing",
        "POST",
        f"/v1/users/ME/conversations/{ENC}/messages",
        {"messagetype": "Control/Typing", "content": ""},
        Action.TYPING,
    ),
    (
        "clear typing",
        "POST",
        f"/v1/users/ME/conversations/{ENC}/messages",
        {"messagetype": "Control/ClearTyping"},
        Action.TYPING,
    ),
    (
        "other control",
        "POST",
        f"/v1/users/ME/conversations/{ENC}/messages",
        {"messagetype": "Control/LiveState"},
        Action.CONTROL,
    ),
    ("edit", "PUT", f"/v1/users/ME/conversations/{ENC}/messages/{MSG}", SEND, Action.MESSAGE_EDIT),
    (
        "delete, empty body",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}",
        None,
        Action.MESSAGE_DELETE,
    ),
    (
        "soft delete",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}?behavior=softDelete",
        None,
        Action.MESSAGE_DELETE,
    ),
    (
        "hard delete",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}?behavior=HardDelete",
        None,
        Action.MESSAGE_DELETE,
    ),
    (
        "undelete",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}",
        {"deletetime": None},
        Action.MESSAGE_UNDELETE,
    ),
    (
        "reaction, object body",
        "PUT",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}/properties?name=emotions",
        {"emotions": {"key": "like", "value": 1764493260000}},
        Action.REACTION_ADD,
    ),
    (
        "reaction, JSON-string body",
        "PUT",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}/properties?name=emotions&replace=true",
        {"emotions": '{"key":"heart","value":1764493260000}'},
        Action.REACTION_ADD,
    ),
    (
        "reaction removed",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}/properties?name=emotions",
        {"emotions": {"key": "like"}},
        Action.REACTION_REMOVE,
    ),
    (
        "reaction removed, JSON-string body",
        "DELETE",
        f"/v1/users/ME/conversations/{ENC}/messages/{MSG}/properties?name=emotions",
        {"emotions": '{"key":"like"}'},
        Action.REACTION_REMOVE,
    ),
    (
        "read receipt",
        "PUT",
        f"/v1/users/ME/conversations/{ENC}/properties?name=consumptionhorizon",
        {"consumptionhorizon": "1;2;3"},
        Action.RECEIPT_READ,
    ),
    (
        "chat create",
        "POST",
        "/v1/threads",
        {"members": [{"id": MEMBER, "role": "Admin"}], "properties": {"threadType": "chat"}},
        Action.CHAT_CREATE,
    ),
    (
        "member add",
        "PUT",
        f"/v1/threads/{ENC}/members/8%3Aorgid%3A{MEMBER[8:]}",
        {"role": "User"},
        Action.MEMBER_ADD,
    ),
    ("member remove", "DELETE", f"/v1/threads/{ENC}/members/{MEMBER}", None, Action.MEMBER_REMOVE),
    (
        "rename",
        "PUT",
        f"/v1/threads/{ENC}/properties?name=topic",
        {"topic": "New"},
        Action.CHAT_RENAME,
    ),
    (
        "history read",
        "GET",
        f"/v1/users/ME/conversations/{ENC}/messages?startTime=0&view=msnp24Equivalent",
        None,
        Action.OTHER,
    ),
    ("thread lookup", "GET", f"/v1/threads/{ENC}?view=msnp24Equivalent", None, Action.OTHER),
    (
        "bookmark",
        "PUT",
        f"/v1/users/ME/conversations/{ENC}/rcmetadata/{MSG}",
        {"s": 1},
        Action.OTHER,
    ),
    ("long poll", "POST", "/v1/users/ME/endpoints/SELF/subscriptions/0/poll", None, Action.OTHER),
]


@pytest.mark.parametrize("door", sorted(FRONT_DOORS))
@pytest.mark.parametrize(
    ("what", "method", "path", "body", "action"), GRAMMAR, ids=[row[0] for row in GRAMMAR]
)
def test_every_request_shape_gets_its_action_on_every_front_door(
    door: str, what: str, method: str, path: str, body: object, action: Action
) -> None:
    host, prefix = FRONT_DOORS[door]
    raw = b"" if body is None else orjson.dumps(body)
    parsed = classify(method, host, prefix + path, raw)
    assert parsed.action is action, what
    assert parsed.front_door == door
    if "/conversations/" in path or "/threads/" in path:
        assert parsed.conversation_id == CONV


@pytest.mark.parametrize("door", sorted(FRONT_DOORS))
def test_a_channel_reply_names_its_channel_and_root_message(door: str) -> None:
    host, prefix = FRONT_DOORS[door]
    path = f"{prefix}/v1/users/ME/conversations/{ENC}%3Bmessageid%3D{MSG}/messages"
    parsed = classify("POST", host, path, orjson.dumps(SEND))
    assert parsed.conversation_id == CONV
    assert parsed.reply_to == MSG
    assert parsed.body.features.is_reply


def test_a_file_share_is_a_send_with_the_file_named() -> None:
    body = {**SEND, "properties": {"files": FILES.decode()}}
    parsed = classify(
        "POST",
        "emea.ng.msg.teams.microsoft.com",
        f"/v1/users/ME/conversations/{ENC}/messages",
        orjson.dumps(body),
    )
    assert [(f.name, f.extension) for f in parsed.body.features.files] == [("a.xlsx", "xlsx")]


def test_chat_create_and_member_add_list_their_targets() -> None:
    body = {"members": [{"id": "8:orgid:A"}, {"id": MEMBER}], "properties": {}}
    created = classify(
        "POST", "teams.microsoft.com", "/api/chatsvc/emea/v1/threads", orjson.dumps(body)
    )
    assert created.targets == ["8:orgid:A", MEMBER]
    assert created.conversation_id is None
    added = classify(
        "PUT",
        "teams.microsoft.com",
        f"/api/chatsvc/emea/v1/threads/{ENC}/members/8%3Aorgid%3A{MEMBER[8:]}",
        b'{"role":"User"}',
    )
    assert added.targets == [MEMBER]


@pytest.mark.parametrize(
    "path",
    [
        "/api/mt/emea/beta/users/Frank@Client-Co.example/externalsearchv3?includeTFLUsers=true",
        "/api/mt/part/amer-02/beta/users/frank%40client-co.example/externalsearchv3",
    ],
)
@pytest.mark.parametrize("host", ["teams.microsoft.com", "teams.cloud.microsoft"])
def test_external_user_search_is_recognised_with_the_address_lower_cased(
    host: str, path: str
) -> None:
    parsed = classify("GET", host, path, b"")
    assert parsed.action is Action.USER_SEARCH_EXTERNAL
    assert parsed.targets == ["frank@client-co.example"]
    assert parsed.front_door == "middle_tier"


def test_paths_are_decoded_even_when_double_encoded_and_prefixes_stripped() -> None:
    path, query = split_path(
        "/api/chatsvc/emea/v1/users/ME/conversations/19%253Ax%2540thread.v2/messages?x=1"
    )
    assert normalise(path) == "/v1/users/ME/conversations/19:x@thread.v2/messages"
    assert query == {"x": ["1"]}


def test_unknown_hosts_and_shapes_are_other_and_never_raise() -> None:
    assert front_door("example.org", "/v1/users/ME") == "unknown"
    for method, path, body in [
        ("GET", "/", b""),
        ("POST", "/v1/users/ME/conversations//messages", b"\xff\xfe"),
        ("PUT", "/v1/users/ME/conversations/x/messages/y", b"[" * 10_000),
    ]:
        parsed = classify(method, "emea.ng.msg.teams.microsoft.com", path, body)
        assert parsed.action in (Action.OTHER, Action.MESSAGE_EDIT)


def test_a_body_that_is_not_json_still_classifies_by_path() -> None:
    parsed = classify(
        "POST",
        "emea.ng.msg.teams.microsoft.com",
        f"/v1/users/ME/conversations/{ENC}/messages",
        b"{not json",
    )
    assert parsed.action is Action.MESSAGE_SEND
    assert parsed.body.features.parse_error == "body is not JSON"


def test_a_path_seen_again_is_classified_afresh_for_each_request() -> None:
    """Path facts are kept between requests; what a request carries is not."""
    host, path = "emea.ng.msg.teams.microsoft.com", f"/v1/threads/{ENC}/members/8:orgid:b0b"
    first = classify("PUT", host, path, b"")
    first.targets.append("8:orgid:eve")
    first.body.features.text = "changed"
    again = classify("DELETE", host, path, b"")
    assert (first.action, again.action) == (Action.MEMBER_ADD, Action.MEMBER_REMOVE)
    assert again.targets == ["8:orgid:b0b"]
    assert again.body.features.text is None


def test_a_very_long_path_is_classified_like_a_short_one() -> None:
    host = "emea.ng.msg.teams.microsoft.com"
    conversation = "19:" + "a" * 5000 + "@thread.v2"
    parsed = classify("POST", host, f"/v1/users/ME/conversations/{conversation}/messages", b"")
    assert parsed.action is Action.MESSAGE_SEND
    assert parsed.conversation_id == conversation
