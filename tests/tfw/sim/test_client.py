"""The client simulator's own behaviour (replay through the real proxy is covered by
tests/e2e/test_acceptance.py and tests/tfw/commands/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from tfw.sim.client import Replayer, Session, credentials
from tfw.sim.org import load_org
from tfw.sim.scenario import ScenarioRequest
from tfw.sim.tokens import AUDIENCE_CHAT, AUDIENCE_SPACES, mint_bearer, read_claims

DEMO_ORG = Path(__file__).resolve().parents[3] / "tfw" / "demo_data" / "org.yaml"
CHAT = "https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/x/messages"
MT = "https://teams.microsoft.com/api/mt/emea/beta/users/a%40b.example/externalsearchv3"


@pytest.fixture
def session() -> Session:
    org = load_org(DEMO_ORG)
    nora = org.accounts["nora"]
    assert nora.oid and nora.email
    tid = nora.tenant.id
    return Session(
        account=nora, session_id="s", skypetoken="sk.y.pe",
        spaces_token=mint_bearer(nora.oid, tid, nora.email, AUDIENCE_SPACES),
        chat_bearer=mint_bearer(nora.oid, tid, nora.email, AUDIENCE_CHAT),
        middle_tier="https://teams.microsoft.com/api/mt/part/emea-02",
    )


@pytest.mark.parametrize(
    ("auth", "names"),
    [
        ("skypetoken", {"authentication"}),
        ("x-skypetoken", {"x-skypetoken"}),
        ("bearer", {"authorization"}),
        ("both", {"authentication", "authorization"}),
        ("none", set()),
        ("garbage-token", {"authentication"}),
    ],
)
def test_each_auth_kind_sends_its_headers(session: Session, auth: str, names: set) -> None:
    assert set(credentials(session, auth, CHAT)) == names


def test_a_garbage_token_is_not_a_token(session: Session) -> None:
    value = credentials(session, "garbage-token", CHAT)["authentication"]
    assert session.skypetoken not in value
    assert value.count(".") != 2


def test_the_chat_service_gets_the_ic3_bearer_and_the_middle_tier_the_spaces_one(
    session: Session,
) -> None:
    chat = credentials(session, "bearer", CHAT)["authorization"].removeprefix("Bearer ")
    middle = credentials(session, "bearer", MT)["authorization"].removeprefix("Bearer ")
    assert read_claims(chat)["aud"] == AUDIENCE_CHAT
    assert read_claims(middle)["aud"] == AUDIENCE_SPACES
    assert read_claims(middle)["upn"] == "nora@meridian.example"


def test_a_host_the_simulator_does_not_serve_is_skipped_and_never_sent() -> None:
    org = load_org(DEMO_ORG)
    # The proxy address is closed: a request that were sent would fail with an error.
    replayer = Replayer(org, "http://127.0.0.1:9", certifi.where())
    with replayer:
        result = replayer.send(
            ScenarioRequest("x", "PUT", "https://meridian-my.sharepoint.com/upload", None)
        )
    assert result.skipped
    assert result.status is None
    assert "not served by the Teams simulator" in (result.error or "")
    assert replayer.sessions == {}
