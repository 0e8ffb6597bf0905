"""The four services run end to end as they do in Kubernetes: each under its own user
of components/nats/accounts.conf, after the bootstrap Job's work, the interceptor
presenting the CA of the tfw-mitmproxy-ca Secret; real nats-server, SecantusDB and
mitmproxy."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from pymongo import MongoClient

from tests.deploy.conftest import DEPLOY, K8S, AccountsServer, load_module
from tests.support.tokens import skypetoken
from tests.support.upstream import RecordingUpstream
from tests.support.walls import ALICE, FIRM, SEND
from tfw.stack import Stack

pytestmark = pytest.mark.e2e

EDIT = f"{SEND}/1764493200123"
RULES = f"""
internal_tenants: [{FIRM}]
rules:
  - name: No edits
    when: {{actions: [message.edit]}}
    then: [block]
"""


@dataclass
class Deployment:
    stack: Stack
    upstream: RecordingUpstream
    database: str

    def client(self) -> httpx.Client:
        port = self.stack.find("interceptor").port
        # The certificate clients are given (the Secret's mitmproxy-ca-cert.pem).
        ca = self.stack.data_dir / "client-trust.pem"
        trust = ssl.create_default_context(cafile=str(ca))
        return httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=trust, timeout=10)

    def archived(self, decision_id: str, timeout: float = 15.0) -> list[dict]:
        assert self.stack.mongodb_uri
        mongo: MongoClient[dict[str, Any]]
        with MongoClient(self.stack.mongodb_uri) as mongo:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found: list[dict[str, Any]] = list(
                    mongo[self.database].decisions.find({"decision_id": decision_id})
                )
                if found:
                    return found
                time.sleep(0.2)
        return []


@pytest.fixture(scope="module")
def deployment(accounts_server: AccountsServer) -> Iterator[Deployment]:
    bootstrap = load_module(DEPLOY / "nats" / "bootstrap.py", "tfw_bootstrap")
    asyncio.run(
        bootstrap.bootstrap(bootstrap.BootstrapSettings.load(env=accounts_server.env("admin")))
    )

    base = accounts_server.stack
    data = base.data_dir / "services"
    data.mkdir(exist_ok=True)
    rules = data / "rules.yaml"
    # As in a pod: the CA from the tfw-mitmproxy-ca Secret, read-only, in a writable
    # confdir.
    make_secrets = load_module(K8S / "scripts" / "make_secrets.py", "tfw_make_secrets")
    combined, certificate = make_secrets.mitmproxy_ca("Deploy test CA")
    confdir = data / "confdir"
    confdir.mkdir(mode=0o700)
    (confdir / "mitmproxy-ca.pem").write_bytes(combined)
    (confdir / "mitmproxy-ca.pem").chmod(0o440)
    (data / "client-trust.pem").write_bytes(certificate)
    rules.write_text(RULES)
    database = "tfw_deploy_" + secrets.token_hex(4)
    stack = Stack(data, log=base.log, nats_url=accounts_server.url, mongodb_uri=base.mongodb_uri)
    with RecordingUpstream() as upstream, stack:
        common = {"TFW_DATABASE": database}
        stack.start_service("resolver", {**common, **accounts_server.env("resolver")})
        stack.start_service(
            "decider",
            {**common, **accounts_server.env("decider"), "TFW_RULES_FILE": str(rules)},
        )
        stack.start_service("audit", {**common, **accounts_server.env("audit")})
        stack.start_service(
            "interceptor",
            {
                **common,
                **accounts_server.env("interceptor"),
                "TFW_CONFDIR": str(confdir),
                "TFW_MAP_REMOTE": (
                    f"|https://[^/]*teams\\.microsoft\\.com|http://127.0.0.1:{upstream.port}"
                ),
            },
        )
        yield Deployment(stack, upstream, database)


def _call(deployment: Deployment, method: str, url: str) -> httpx.Response:
    headers = {"Authentication": f"skypetoken={skypetoken(ALICE, FIRM)}"}
    body = {"content": "hi", "messagetype": "Text"}
    with deployment.client() as client:
        return client.request(method, url, json=body, headers=headers)


def test_an_allowed_send_reaches_teams_through_the_permitted_subjects(
    deployment: Deployment,
) -> None:
    before = len(deployment.upstream.received)
    response = _call(deployment, "POST", SEND)
    assert response.status_code == 201, response.text
    assert len(deployment.upstream.received) == before + 1


def test_a_blocked_edit_is_answered_by_the_rule_and_archived_by_audit(
    deployment: Deployment,
) -> None:
    before = len(deployment.upstream.received)
    response = _call(deployment, "PUT", EDIT)
    assert response.status_code == 403
    body = orjson.loads(response.content)
    assert "No edits" in body["message"]
    assert len(deployment.upstream.received) == before
    records = deployment.archived(body["decisionId"])
    assert [record["decision"] for record in records] == ["block"]


def test_a_rule_set_pushed_as_admin_reaches_the_decider_through_the_bucket(
    deployment: Deployment, accounts_server: AccountsServer
) -> None:
    rules = deployment.stack.data_dir / "pushed.yaml"
    rules.write_text(RULES.replace("No edits", "No sends").replace("message.edit", "message.send"))
    address = accounts_server.url.removeprefix("nats://")
    admin_url = f"nats://admin:{accounts_server.passwords['admin']}@{address}"
    pushed = subprocess.run(
        [sys.executable, "-m", "tfw", "rules", "push", str(rules), "--nats-url", admin_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pushed.returncode == 0, pushed.stderr

    body: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "No sends" not in body.get("message", ""):
        response = _call(deployment, "POST", SEND)
        body = orjson.loads(response.content) if response.status_code == 403 else {}
        time.sleep(0.2)
    assert "No sends" in body["message"]
