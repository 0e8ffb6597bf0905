"""``tfw up --secure`` (tfw/secure.py): NATS over TLS with one user per service and the
Kubernetes permissions, on real nats-server, SecantusDB, mitmproxy and services."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nats.errors
import orjson
import pytest
from pymongo import MongoClient

from tests.support.tokens import skypetoken
from tests.support.upstream import RecordingUpstream
from tests.support.walls import ALICE, EDIT, PARTNER, RULES
from tfw.commands.up import start_stack
from tfw.secure import SecureNats, accounts_for_prefix, make_tls_files
from tfw.stack import Stack, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Secured:
    stack: Stack
    secure: SecureNats
    database: str
    proxy_port: int


@pytest.fixture(scope="module")
def secured(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    data = tmp_path_factory.mktemp("secure")
    rules = data / "rules.yaml"
    rules.write_text(RULES)
    database = "tfw_secure_profile"
    proxy_port = free_port()
    args = argparse.Namespace(rules=str(rules), proxy_port=proxy_port, secure=True)
    stack = Stack(data, log=infra.log, mongodb_uri=infra.mongodb_uri)
    with RecordingUpstream() as upstream, stack:
        secure = start_stack(
            args,
            stack,
            {
                "TFW_DATABASE": database,
                "TFW_MAP_REMOTE": "|https://[^/]*teams\\.microsoft\\.com|"
                f"http://127.0.0.1:{upstream.port}",
            },
        )
        assert secure is not None
        yield Secured(stack, secure, database, proxy_port)


async def _connect(secure: SecureNats, user: str, password: str | None = None):
    """A TLS client connection as ``user``, and the errors the server sends it."""
    options: dict = {
        "servers": [secure.url],
        "user": user,
        "password": password if password is not None else secure.passwords[user],
        "connect_timeout": 3,
        "allow_reconnect": False,
        "max_reconnect_attempts": 0,
        "tls": ssl.create_default_context(cafile=str(secure.ca_file)),
    }
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    options["error_cb"] = on_error
    nc = await nats.connect(**options)
    return nc, errors


def test_a_request_is_decided_and_archived_with_every_service_under_its_own_user(
    secured: Secured,
) -> None:
    ca = secured.stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    token = skypetoken(ALICE, PARTNER)
    trust = ssl.create_default_context(cafile=str(ca))
    proxy = f"http://127.0.0.1:{secured.proxy_port}"
    with httpx.Client(proxy=proxy, verify=trust, timeout=10) as client:
        response = client.put(
            EDIT,
            json={"content": "edited", "messagetype": "Text"},
            headers={"Authentication": f"skypetoken={token}"},
        )
    assert response.status_code == 403
    body = orjson.loads(response.content)
    assert "No edits abroad" in body["message"]
    with MongoClient(secured.stack.mongodb_uri) as mongo:
        deadline = time.monotonic() + 15
        found: list = []
        while not found and time.monotonic() < deadline:
            decisions = mongo[secured.database].decisions
            found = list(decisions.find({"decision_id": body["decisionId"]}))
            time.sleep(0.2)
    assert len(found) == 1


def test_the_server_refuses_a_client_without_tls(secured: Secured) -> None:
    async def attempt() -> None:
        nc = await nats.connect(
            secured.secure.url.replace("tls://", "nats://"),
            user="resolver",
            password=secured.secure.passwords["resolver"],
            connect_timeout=3,
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
        await nc.close()

    with pytest.raises(Exception):  # noqa: B017 - nats-py raises different errors per version
        asyncio.run(attempt())


def test_the_server_refuses_a_wrong_password(secured: Secured) -> None:
    async def attempt() -> None:
        nc, _ = await _connect(secured.secure, "resolver", password="t" + "0" * 40)
        await nc.close()

    with pytest.raises(Exception):  # noqa: B017
        asyncio.run(attempt())


@pytest.mark.parametrize("user", ["interceptor", "decider", "audit", "siem", "admin"])
def test_only_the_resolver_may_read_the_token_bearing_subjects(secured: Secured, user: str) -> None:
    async def try_subscribe() -> list[Exception]:
        nc, errors = await _connect(secured.secure, user)
        try:
            await nc.subscribe("tfw.v1.intercepted")
            await nc.subscribe("tfw.v1.observed")
            await nc.flush(timeout=3)
            deadline = time.monotonic() + 5
            while len(errors) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        return errors

    errors = asyncio.run(try_subscribe())
    assert len(errors) == 2
    assert all("permissions violation" in str(error).lower() for error in errors)


def test_the_resolver_may_read_the_token_bearing_subjects(secured: Secured) -> None:
    async def try_subscribe() -> list[Exception]:
        nc, errors = await _connect(secured.secure, "resolver")
        try:
            await nc.subscribe("tfw.v1.observed")
            await nc.flush(timeout=3)
            await asyncio.sleep(0.3)
        finally:
            await nc.close()
        return errors

    assert asyncio.run(try_subscribe()) == []


def test_the_server_key_is_readable_by_its_user_only_and_no_password_is_on_disk(
    secured: Secured,
) -> None:
    directory = secured.secure.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "nats-server-key.pem").stat().st_mode) == 0o600
    for path in directory.iterdir():
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not any(password in text for password in secured.secure.passwords.values())


def test_accounts_follow_a_subject_prefix() -> None:
    text = (
        '# tfw.v1.intercepted stays in a comment\nallow: ["tfw.v1.intercepted", '
        '"$JS.API.STREAM.INFO.TFW_DECISIONS", "$KV.tfw_rules.>"]\n'
    )
    rewritten = accounts_for_prefix(text, "acme")
    assert '"acme.v1.intercepted"' in rewritten
    assert "ACME_DECISIONS" in rewritten
    assert "$KV.acme_rules.>" in rewritten
    assert rewritten.startswith("# tfw.v1.intercepted")


def test_the_secure_profile_without_a_rule_file_is_refused_before_starting_anything(
    tmp_path,
) -> None:
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "tfw", "up", "--secure", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--secure needs --rules FILE" in done.stderr
    assert not data.exists()


def test_the_local_certificates_pass_strict_x509_verification(tmp_path: Path) -> None:
    """Clients that verify strictly (Python 3.13's default context sets
    VERIFY_X509_STRICT) need key identifiers in the chain; without them every service
    of the secure profile was refused by its own NATS."""
    ca, cert, key = make_tls_files(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(ca))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    sides = {
        "client": client.wrap_bio(client_in, client_out, server_hostname="127.0.0.1"),
        "server": server.wrap_bio(server_in, server_out, server_side=True),
    }
    done: set[str] = set()
    for _ in range(10):  # a handshake takes a few flights
        for name, side in sides.items():
            if name not in done:
                try:
                    side.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            server_in.write(client_out.read())
            client_in.write(server_out.read())
        if done == set(sides):
            break
    assert done == {"client", "server"}
    subject = dict(field[0] for field in sides["client"].getpeercert()["subject"])
    assert subject["commonName"] == "127.0.0.1"
