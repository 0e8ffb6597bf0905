"""Hostile requests through the real proxy (mitmproxy, NATS, SecantusDB, the four
services): oversized headers and bodies, invalid UTF-8, JSON bombs, deep nesting and
path tricks. Each is classified correctly or failed closed; an edit from abroad
(blocked by the rules) never reaches Teams however its path is written; every service
is still alive and serving afterwards."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import orjson
import pytest

from tests.reliability.harness import Firewall, running_firewall
from tests.support.tokens import skypetoken
from tests.support.walls import ALICE, CONV, PARTNER
from tfw.stack import Stack

pytestmark = pytest.mark.e2e

HOST = "emea.ng.msg.teams.microsoft.com"
RAW_CONV = (
    "19:a11ce000-0000-4000-8000-000000000001_"
    "b0b00000-0000-4000-8000-000000000002@unq.gbl.spaces"
)
FRONT_DOOR = "teams.microsoft.com"
CHANNEL = "19%3A8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c%40thread.tacv2"
EDIT_BODY = orjson.dumps({"content": "edited", "messagetype": "Text"})


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    with running_firewall(infra, tmp_path_factory, "hostile") as firewall:
        firewall.wait_until_allowed()
        yield firewall
        for service in ("resolver", "decider", "audit", "interceptor"):
            assert firewall.stack.find(service).popen.poll() is None, f"{service} died"


def raw_request(firewall: Firewall, head: bytes, body: bytes = b"", host: str = HOST) -> bytes:
    """Send bytes exactly as given, inside a CONNECT tunnel to ``host`` that the proxy
    decrypts; returns the status line (or b"" when the proxy closed the connection)."""
    ca = firewall.stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", firewall.proxy_port), timeout=15) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        answer = sock.recv(4096)
        assert b" 200" in answer.split(b"\r\n", 1)[0], answer
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.sendall(head + b"\r\n\r\n" + body)
            received = b""
            while b"\r\n" not in received:
                try:
                    chunk = tls.recv(4096)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                received += chunk
    return received.split(b"\r\n", 1)[0]


def _auth(tenant: str = PARTNER) -> bytes:
    return f"Authentication: skypetoken={skypetoken(ALICE, tenant)}".encode()


def _received_puts(firewall: Firewall) -> list[str]:
    return [r.path for r in firewall.upstream.received if r.method == "PUT"]


# --- path tricks: an edit from abroad, written many ways ---------------------------------

EDIT_PATHS = {
    "plain": f"/v1/users/ME/conversations/{CONV}/messages/1764493200123",
    "double-encoded id": f"/v1/users/ME/conversations/{CONV.replace('%', '%25')}/messages/17",
    "raw id": f"/v1/users/ME/conversations/{RAW_CONV}/messages/17",
    "mixed case": f"/V1/Users/me/Conversations/{CONV}/MESSAGES/17",
    "double slashes": f"//v1//users/ME//conversations/{CONV}//messages//17",
    "dot segments": f"/v1/users/ME/./conversations/{CONV}/messages/./17",
    "dot-dot segments": f"/v1/users/ME/conversations/{CONV}/messages/1/../17",
    "encoded dot-dot": f"/v1/users/ME/conversations/{CONV}/messages/1/%2e%2e/17",
    "trailing slash": f"/v1/users/ME/conversations/{CONV}/messages/17/",
    "query": f"/v1/users/ME/conversations/{CONV}/messages/17?name=emotions",
    "channel reply": f"/v1/users/ME/conversations/{CHANNEL};messageid=1/messages/17",
    "encoded reply": f"/v1/users/ME/conversations/{CHANNEL}%3Bmessageid%3D1/messages/17",
    "lower-case encoded reply": f"/v1/users/ME/conversations/{CHANNEL}%3bMessageId%3d1/messages/17",
    "empty reply id": f"/v1/users/ME/conversations/{CHANNEL};messageid=/messages/17",
    "doubled reply": f"/v1/users/ME/conversations/{CHANNEL};messageid=1;messageid=2/messages/17",
    "front door": f"/api/chatsvc/emea/v1/users/ME/conversations/{CONV}/messages/17",
    "front door mixed case": f"/API/ChatSvc/EMEA/v1/users/ME/conversations/{CONV}/messages/17",
    "fragment": f"/v1/users/ME/conversations/{CONV}/messages/17#x",
}


# The same edit through the teams.microsoft.com front door, whose path prefix says
# whether it is the chat service at all.
FRONT_DOOR_PATHS = {
    "front door through another prefix": "/api/mt/../chatsvc/emea/v1/users/ME/conversations/"
    f"{CONV}/messages/17",
    "front door with an encoded prefix": f"/api/%63hatsvc/emea/v1/users/ME/conversations/{CONV}"
    "/messages/17",
    "front door with a doubled slash": f"/api//chatsvc/emea/v1/users/ME/conversations/{CONV}"
    "/messages/17",
    "front door with a dot segment": f"/api/./chatsvc/emea/v1/users/ME/conversations/{CONV}"
    "/messages/17",
}
CASES = [(HOST, path) for path in EDIT_PATHS.values()]
CASES += [(FRONT_DOOR, path) for path in FRONT_DOOR_PATHS.values()]


def _edit_head(path: str, host: str, extra: list[bytes] | None = None) -> bytes:
    """The head of Alice's edit (``EDIT_BODY``) at ``path`` on ``host``, with any
    ``extra`` header lines."""
    return b"\r\n".join(
        [
            f"PUT {path} HTTP/1.1".encode(),
            f"Host: {host}".encode(),
            _auth(),
            b"Content-Type: application/json",
            f"Content-Length: {len(EDIT_BODY)}".encode(),
            *(extra or []),
        ]
    )


@pytest.mark.parametrize(("host", "path"), CASES, ids=[*EDIT_PATHS, *FRONT_DOOR_PATHS])
def test_an_edit_from_abroad_is_blocked_however_its_path_is_written(
    firewall: Firewall, host: str, path: str
) -> None:
    before = _received_puts(firewall)
    head = _edit_head(path, host)
    status = raw_request(firewall, head, EDIT_BODY, host=host)
    assert _received_puts(firewall) == before, f"{path} reached Teams"
    assert status == b"" or status.split()[1].startswith(b"4"), status


# --- oversized, malformed and nested input ---------------------------------------------------

SEND_PATH = f"/v1/users/ME/conversations/{CONV}/messages"


def _send(firewall: Firewall, body: bytes, extra: list[bytes] | None = None,
          path: str = SEND_PATH, tenant: str = PARTNER) -> bytes:
    head = b"\r\n".join(
        [
            f"POST {path} HTTP/1.1".encode(),
            f"Host: {HOST}".encode(),
            _auth(tenant),
            b"Content-Type: application/json",
            f"Content-Length: {len(body)}".encode(),
            *(extra or []),
        ]
    )
    return raw_request(firewall, head, body)


HOSTILE_SENDS = {
    "body of 3 MiB": orjson.dumps({"content": "x" * 3 * 1024 * 1024, "messagetype": "Text"}),
    "deep JSON nesting": b"[" * 200_000 + b"]" * 200_000,
    "deep object nesting": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "JSON bomb of repeated keys": b"{" + b",".join(b'"k%d": "%s"' % (n, b"v" * 64)
                                                  for n in range(50_000)) + b"}",
    "invalid UTF-8 body": b'{"content": "\xff\xfe\xc3\x28", "messagetype": "Text"}',
    "not JSON": b"\x00\x01\x02 <html>",
    "typing hidden in a string": orjson.dumps({"content": '"messagetype": "Control/Typing"'}),
    "properties as deep strings": orjson.dumps(
        {"content": "x", "messagetype": "Text",
         "properties": {"files": "[" * 5000 + "]" * 5000, "mentions": "{" * 5000}}
    ),
}


@pytest.mark.parametrize("body", list(HOSTILE_SENDS.values()), ids=list(HOSTILE_SENDS))
def test_a_hostile_body_is_decided_or_failed_closed(firewall: Firewall, body: bytes) -> None:
    status = _send(firewall, body, tenant=PARTNER)
    assert status.startswith(b"HTTP/1.1 "), status
    code = int(status.split()[1])
    # A send is allowed by these rules when understood, and blocked when not.
    assert code in (201, 403), status
    assert firewall.request("send").forwarded


HOSTILE_HEADERS = {
    "huge junk header": [b"X-Junk: " + b"a" * 60_000],
    "huge credential": [b"X-Skypetoken: " + b"A" * 60_000],
    "many headers": [f"X-H{n}: v".encode() for n in range(2000)],
    "invalid UTF-8 session id": [b"X-Ms-Session-Id: \xff\xfe\x80"],
    "latin-1 client version": [b"X-Ms-Client-Version: caf\xe9"],
    "second credential for another user": [
        b"Authorization: Bearer " + skypetoken("b0b00000-0000-4000-8000-000000000002",
                                               PARTNER).encode()
    ],
}


@pytest.mark.parametrize("extra", list(HOSTILE_HEADERS.values()), ids=list(HOSTILE_HEADERS))
def test_hostile_headers_are_decided_refused_or_failed_closed(
    firewall: Firewall, extra: list[bytes]
) -> None:
    before = _received_puts(firewall)
    head = _edit_head(EDIT_PATHS["plain"], HOST, extra)
    status = raw_request(firewall, head, EDIT_BODY)
    assert _received_puts(firewall) == before
    assert status == b"" or status.split()[1].startswith(b"4"), status
    assert firewall.request("send").forwarded


def test_a_request_naming_another_host_inside_a_teams_tunnel_is_not_waved_through(
    firewall: Firewall,
) -> None:
    before = _received_puts(firewall)
    head = b"\r\n".join(
        [
            f"PUT {EDIT_PATHS['plain']} HTTP/1.1".encode(),
            b"Host: example.org",
            _auth(),
            f"Content-Length: {len(EDIT_BODY)}".encode(),
        ]
    )
    status = raw_request(firewall, head, EDIT_BODY)
    assert _received_puts(firewall) == before
    assert status == b"" or status.split()[1].startswith(b"4"), status


def test_invalid_utf8_in_the_request_line_is_refused_or_failed_closed(firewall: Firewall) -> None:
    before = _received_puts(firewall)
    path = EDIT_PATHS["plain"].encode().replace(b"/messages/", b"/messages\xff\xfe/")
    head = b"\r\n".join([b"PUT " + path + b" HTTP/1.1", f"Host: {HOST}".encode(), _auth(),
                         f"Content-Length: {len(EDIT_BODY)}".encode()])
    status = raw_request(firewall, head, EDIT_BODY)
    assert _received_puts(firewall) == before
    assert status == b"" or status.split()[1].startswith(b"4"), status
