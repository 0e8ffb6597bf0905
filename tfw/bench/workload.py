"""The benchmark's traffic: controlled message sends of the demo organisation.

Every request is a realistic send as the new Teams client makes it (the full message
envelope, the client's headers, a valid skypetoken of a real account) to a real
conversation of ``tfw/demo_data/org.yaml``, on the legacy chat-service host. The
tokens come from each account's sign-in through the proxy (authz and a profile
lookup, answered by the Teams simulator), exactly as ``tfw demo`` does it.

Two mixes: ``allowed`` (every send passes the demo rules: the whole path, upstream
included, on every request) and ``mixed`` (one in five is stopped by an ethical wall
or a rule, as a policy at work would).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import orjson

from tfw.bench.loadgen import build_request
from tfw.sim.client import CLIENT_HEADERS, Replayer
from tfw.sim.org import Org

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
CHAT_HOST = "emea.ng.msg.teams.microsoft.com"


@dataclass(frozen=True)
class Send:
    """One send of the mix: who sends, into which conversation, and what the demo
    rules answer (``allow`` or ``block``)."""

    account: str
    conversation: str
    verdict: str


# Sends the demo rules allow: same-side chats, a federated direct chat (a header is
# added), a private channel, a guest in a group chat.
ALLOWED = (
    Send("nora", "dm-nora-ravi", "allow"),
    Send("nora", "pch-ops-risk", "allow"),
    Send("omar", "grp-guests", "allow"),
    Send("nora", "dm-nora-pia", "allow"),
    Send("sofia", "grp-guests", "allow"),
    Send("ravi", "dm-nora-ravi", "allow"),
    Send("pia", "dm-nora-pia", "allow"),
    Send("ravi", "pch-ops-risk", "allow"),
)
# Sends the demo rules stop: the Research/Sales wall, and "Nothing to Quarry".
BLOCKED = (
    Send("nora", "grp-ops", "block"),
    Send("omar", "grp-quarry", "block"),
)
MIXES = {
    "allowed": ALLOWED,
    "mixed": ALLOWED + BLOCKED,  # 8 allowed, 2 blocked
}


def message_body(org: Org, send: Send, number: int) -> bytes:
    """The new client's send envelope (teams-protocol.md §5.1), about 1.2 KB."""
    account = org.accounts[send.account]
    conversation = org.conversations[send.conversation]
    link = f"https://{CHAT_HOST}/v1/users/ME/conversations/{conversation.id}"
    stamp = "2026-12-01T08:30:00.000Z"
    return orjson.dumps(
        {
            "id": "-1",
            "type": "Message",
            "conversationid": conversation.id,
            "conversationLink": link,
            "from": account.mri,
            "fromUserId": account.mri,
            "composetime": stamp,
            "originalarrivaltime": stamp,
            "content": f"<p>morning, the numbers for today are in the usual place ({number})</p>",
            "messagetype": "RichText/Html",
            "contenttype": "Text",
            "imdisplayname": account.name or "",
            "clientmessageid": str(6611029384756102938 + number),
            "properties": {
                "importance": "",
                "subject": "",
                "title": "",
                "cards": "[]",
                "links": "[]",
                "mentions": "[]",
                "files": "[]",
                "onbehalfof": None,
            },
            "amsreferences": [],
            "callId": "",
            "crossPostChannels": [],
            "state": 0,
            "version": "0",
        }
    )


def sign_in(org: Org, proxy_port: int, ca_file: Path, accounts: set[str]) -> dict[str, str]:
    """Sign every account in through the proxy; their skypetokens by account key."""
    tokens: dict[str, str] = {}
    with Replayer(org, f"http://127.0.0.1:{proxy_port}", ca_file) as replayer:
        for key in sorted(accounts):
            session = replayer.session(key)
            tokens[key] = session.skypetoken
    return tokens


def build_requests(
    org: Org, mix: str, tokens: dict[str, str], copies: int = 4
) -> list[bytes]:
    """The raw HTTP/1.1 requests a load worker cycles through (``copies`` of each send,
    each with its own message body)."""
    sends = MIXES[mix]
    requests = []
    number = int(time.time())
    for copy in range(copies):
        for send in sends:
            conversation = org.conversations[send.conversation]
            path = f"/v1/users/ME/conversations/{quote(conversation.id, safe='')}/messages"
            headers = {
                **CLIENT_HEADERS,
                "x-ms-session-id": f"bench-{send.account}",
                "content-type": "application/json",
                "authentication": f"skypetoken={tokens[send.account]}",
            }
            body = message_body(org, send, number + copy)
            requests.append(build_request("POST", CHAT_HOST, path, headers, body))
    return requests


def expected_verdicts(mix: str) -> dict[str, int]:
    """How many sends of one cycle of the mix each verdict should get."""
    counts: dict[str, int] = {}
    for send in MIXES[mix]:
        counts[send.verdict] = counts.get(send.verdict, 0) + 1
    return counts


def accounts_of(mix: str) -> set[str]:
    return {send.account for send in MIXES[mix]}
