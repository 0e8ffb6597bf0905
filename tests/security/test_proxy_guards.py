"""The proxy's own guards, on the real interceptor (mitmproxy) with NATS, SecantusDB
and the services: it listens where configured only, demands proxy authentication when
configured, refuses to act as an open proxy for hosts that are not Teams, and keeps
its CA key readable by its own user only."""

from __future__ import annotations

import base64
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.harness import Firewall, running_firewall
from tests.support.upstream import RecordingUpstream
from tfw.stack import Stack

pytestmark = pytest.mark.e2e

USER, PASSWORD = "tfw-client", "s3cret-proxy-pass"
TEAMS = "emea.ng.msg.teams.microsoft.com"


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    with running_firewall(
        infra,
        tmp_path_factory,
        "guard",
        services=("resolver", "decider", "interceptor"),
        env={"TFW_PROXYAUTH": f"{USER}:{PASSWORD}"},
    ) as firewall:
        yield firewall


def _connect(firewall: Firewall, target: str, auth: str | None) -> bytes:
    """The status line the proxy answers a CONNECT with."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth is not None:
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(auth.encode()).decode())
    with socket.create_connection(("127.0.0.1", firewall.proxy_port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).split(b"\r\n", 1)[0]


def _client(firewall: Firewall, auth: str | None = f"{USER}:{PASSWORD}") -> httpx.Client:
    ca = firewall.stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    userinfo = f"{auth}@" if auth else ""
    return httpx.Client(
        proxy=f"http://{userinfo}127.0.0.1:{firewall.proxy_port}",
        verify=ssl.create_default_context(cafile=str(ca)),
        timeout=10,
    )


@pytest.mark.parametrize("auth", [None, f"{USER}:wrong", f"other:{PASSWORD}", ":", "x" * 5000])
def test_a_client_without_the_proxy_password_is_refused(firewall: Firewall, auth) -> None:
    assert b" 407" in _connect(firewall, f"{TEAMS}:443", auth)


def test_a_client_with_the_proxy_password_is_decided_and_served(firewall: Firewall) -> None:
    assert b" 200" in _connect(firewall, f"{TEAMS}:443", f"{USER}:{PASSWORD}")
    with _client(firewall) as client:
        outcome = firewall.request("send", client=client)
    assert outcome.forwarded and outcome.decision_id


# Only local targets: were the guard broken, the proxy would connect to them, and this
# test must never aim the proxy at another machine.
@pytest.mark.parametrize("target", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_it_is_not_an_open_proxy_for_other_hosts(firewall: Firewall, target: str) -> None:
    with RecordingUpstream() as bystander:
        status = _connect(firewall, target.format(port=bystander.port), f"{USER}:{PASSWORD}")
        assert b" 200" not in status
        assert b" 403" in status or status == b""
        assert bystander.received == []


def test_plain_http_to_another_host_is_refused_before_anything_is_sent(
    firewall: Firewall,
) -> None:
    with RecordingUpstream() as bystander, _client(firewall) as client:
        response = client.get(f"http://127.0.0.1:{bystander.port}/internal")
        assert response.status_code == 403
        assert "only forwards Microsoft Teams" in response.text
        assert bystander.received == []


def _listening(port: int) -> list[str]:
    """The local addresses with a listening TCP socket on ``port`` (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.append(address)
    return found


def test_the_proxy_and_its_health_endpoint_listen_on_the_configured_address_only(
    firewall: Firewall,
) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}
    interceptor = firewall.stack.find("interceptor")
    for port in (firewall.proxy_port, interceptor.http_port):
        assert port is not None
        addresses = _listening(port)
        assert addresses, f"nothing listens on {port}"
        assert set(addresses) <= loopback, f"port {port} listens on {addresses}"


def test_the_ca_key_is_readable_by_its_user_only(firewall: Firewall) -> None:
    confdir = firewall.stack.data_dir / "mitmproxy"
    assert stat.S_IMODE(confdir.stat().st_mode) & 0o077 == 0
    keys = [p for p in confdir.iterdir() if "PRIVATE KEY" in p.read_text(errors="replace")]
    assert keys, "no CA key found"
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path.name} is readable by others"
    public = confdir / "mitmproxy-ca-cert.pem"
    assert "PRIVATE KEY" not in public.read_text()
