"""The Teams simulator against the protocol notes, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tfw.sim.org import Org, load_org
from tfw.sim.teams import TeamsSimulator
from tfw.sim.tokens import AUDIENCE_SPACES, mint_bearer, mint_skypetoken

ORG_FILE = Path(__file__).resolve().parents[3] / "tfw" / "demo_data" / "org.yaml"


@pytest.fixture
def org() -> Org:
    return load_org(ORG_FILE)


@pytest.fixture
def sim(org: Org) -> Iterator[TeamsSimulator]:
    with TeamsSimulator(org) as simulator:
        yield simulator


def skype(org: Org, key: str, lifetime: int = 3600) -> dict[str, str]:
    account = org.accounts[key]
    assert account.oid
    token = mint_skypetoken(account.oid, account.tenant.id, account.tenant.region, lifetime)
    return {"Authentication": f"skypetoken={token}"}


def spaces(org: Org, key: str) -> dict[str, str]:
    account = org.accounts[key]
    assert account.oid and account.email
    token = mint_bearer(account.oid, account.tenant.id, account.email, AUDIENCE_SPACES)
    return {"Authorization": f"Bearer {token}"}


def via(sim: TeamsSimulator, url: str) -> str:
    """The resolver's redirect: https://{host}{path} -> {sim}/_host/{host}{path}."""
    return url.replace("https://", f"{sim.url}/_host/", 1)


def conv(org: Org, key: str) -> str:
    return quote(org.conversations[key].id, safe="")


LEGACY = "https://emea.ng.msg.teams.microsoft.com"
AFD = "https://teams.microsoft.com/api/chatsvc/emea"
CLOUD = "https://teams.cloud.microsoft/api/chatsvc/emea"


@pytest.mark.parametrize("front_door", [LEGACY, AFD, CLOUD])
def test_a_send_is_accepted_on_every_front_door(
    sim: TeamsSimulator, org: Org, front_door: str
) -> None:
    url = f"{front_door}/v1/users/ME/conversations/{conv(org, 'dm-nora-omar')}/messages"
    response = httpx.post(
        via(sim, url), json={"content": "hi", "messagetype": "Text"}, headers=skype(org, "nora")
    )
    assert response.status_code == 201
    assert "OriginalArrivalTime" in response.json()
    assert response.headers["Location"].startswith(f"{front_door}/v1/users/ME/conversations/")
    assert sim.calls["chatsvc.send"] == 1
    assert sim.received[-1].host.endswith(("teams.microsoft.com", "teams.cloud.microsoft"))


def test_a_plain_request_is_routed_by_its_host_header(sim: TeamsSimulator, org: Org) -> None:
    path = f"/v1/threads/{conv(org, 'grp-ops')}"
    headers = {"Host": "emea.ng.msg.teams.microsoft.com", **skype(org, "nora")}
    response = httpx.get(f"{sim.url}{path}", headers=headers)
    assert response.status_code == 200
    assert response.json()["properties"]["threadType"] == "chat"


def test_members_of_a_large_team_come_in_pages_with_an_absolute_next_link(
    sim: TeamsSimulator, org: Org
) -> None:
    url = f"{LEGACY}/v1/threads/{conv(org, 'team-everyone')}/members?view=msnp24Equivalent"
    seen: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = httpx.get(via(sim, next_url), headers=skype(org, "nora"))
        assert response.status_code == 200
        body = response.json()
        seen += [member["id"] for member in body["members"]]
        next_url = body.get("nextLink")
        if next_url:
            assert next_url.startswith(f"{LEGACY}/v1/threads/")
        pages += 1
    roster = org.members(org.conversations["team-everyone"])
    assert len(seen) == len(set(seen)) == len(roster) > 1000
    assert pages == -(-len(roster) // 100)  # default pageSize is 100
    thread = httpx.get(via(sim, f"{LEGACY}/v1/threads/{conv(org, 'team-everyone')}"),
                       headers=skype(org, "nora")).json()
    assert "members" not in thread  # too large: only the paged endpoint lists them


def test_generated_members_are_the_same_on_every_load(org: Org) -> None:
    again = load_org(ORG_FILE)
    first = [a.mri for a in org.members(org.conversations["team-everyone"])]
    second = [a.mri for a in again.members(again.conversations["team-everyone"])]
    assert first == second


def test_a_channel_reports_topic_and_its_team_and_lists_the_team_members(
    sim: TeamsSimulator, org: Org
) -> None:
    response = httpx.get(
        via(sim, f"{LEGACY}/v1/threads/{conv(org, 'ch-ops-rates')}"), headers=skype(org, "nora")
    )
    body = response.json()
    assert body["properties"]["threadType"] == "topic"
    assert body["properties"]["spaceId"] == org.conversations["team-ops"].id
    team = org.members(org.conversations["team-ops"])
    assert [m["id"] for m in body["members"]] == [a.mri for a in team]


def test_a_private_channel_has_its_own_members_and_parent_space(
    sim: TeamsSimulator, org: Org
) -> None:
    body = httpx.get(
        via(sim, f"{LEGACY}/v1/threads/{conv(org, 'pch-ops-risk')}"), headers=skype(org, "nora")
    ).json()
    assert body["properties"]["threadType"] == "space"
    assert body["properties"]["parentSpaces"] == org.conversations["team-ops"].id
    assert "spaceTypes" in body["properties"]
    wanted = {org.accounts[k].mri for k in org.conversations["pch-ops-risk"].members}
    assert {m["id"] for m in body["members"]} == wanted


def test_a_new_style_direct_chat_is_a_chat_with_a_unique_roster(
    sim: TeamsSimulator, org: Org
) -> None:
    body = httpx.get(
        via(sim, f"{AFD}/v1/threads/{conv(org, 'dm-nora-pia')}"), headers=skype(org, "nora")
    ).json()
    assert body["properties"]["threadType"] == "chat"
    assert body["properties"]["uniquerosterthread"] == "true"


def test_consumption_horizons_list_the_participants_of_a_legacy_direct_chat(
    sim: TeamsSimulator, org: Org
) -> None:
    url = f"{LEGACY}/v1/threads/{conv(org, 'dm-nora-omar')}/consumptionhorizons"
    body = httpx.get(via(sim, url), headers=skype(org, "nora")).json()
    ids = {entry["id"] for entry in body["consumptionhorizons"]}
    assert ids == {org.accounts["nora"].mri, org.accounts["omar"].mri}


def test_a_thread_lookup_by_a_non_member_is_refused(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'pch-ops-risk')}")
    assert httpx.get(url, headers=skype(org, "omar")).status_code == 403
    hidden = {**skype(org, "omar"), "behavioroverride": "redirectAs404"}
    assert httpx.get(url, headers=hidden).status_code == 404


def test_an_unknown_or_hidden_thread_is_404(sim: TeamsSimulator, org: Org) -> None:
    unknown = via(sim, f"{LEGACY}/v1/threads/19%3Adeadbeef%40thread.v2")
    assert httpx.get(unknown, headers=skype(org, "nora")).status_code == 404
    sim.hide_thread(org.conversations["grp-ops"].id)
    known = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(known, headers=skype(org, "nora")).status_code == 404


def test_a_held_thread_answers_only_once_released_and_others_meanwhile(
    sim: TeamsSimulator, org: Org
) -> None:
    released = sim.hold(org.conversations["grp-ops"].id)
    held_url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, held_url, headers=skype(org, "nora"), timeout=10)
        other = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'pch-ops-risk')}")
        assert httpx.get(other, headers=skype(org, "omar")).status_code == 403
        assert not held.done()
        released.set()
        assert held.result(timeout=10).status_code == 200


def test_an_expired_token_is_401(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    response = httpx.get(url, headers=skype(org, "nora", lifetime=-10))
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_no_credentials_is_401(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(url).status_code == 401


def test_rate_limiting_answers_429_with_retry_after_then_recovers(
    sim: TeamsSimulator, org: Org
) -> None:
    sim.rate_limit(1, retry_after_s=3, endpoint="chatsvc.thread")
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    first = httpx.get(url, headers=skype(org, "nora"))
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "3"
    assert httpx.get(url, headers=skype(org, "nora")).status_code == 200


def test_short_profiles_have_no_tenant_id_on_the_partitioned_middle_tier(
    sim: TeamsSimulator, org: Org
) -> None:
    url = ("https://teams.microsoft.com/api/mt/part/emea-02/beta/users/fetchShortProfile"
           "?isMailAddress=false&enableGuest=true&skypeTeamsInfo=true")
    mris = [org.accounts["nora"].mri, org.accounts["omar"].mri]
    response = httpx.post(via(sim, url), json=mris, headers=spaces(org, "nora"))
    body = response.json()
    assert body["type"].endswith("IUserIdentity")
    assert [p["mri"] for p in body["value"]] == mris
    assert all("tenantId" not in p for p in body["value"])
    assert body["value"][0]["email"] == org.accounts["nora"].email


def test_federated_profiles_carry_the_tenant_in_both_response_shapes(
    sim: TeamsSimulator, org: Org
) -> None:
    url = via(sim, "https://teams.microsoft.com/api/mt/emea/beta/users/fetchFederated")
    mri = org.accounts["pia"].mri
    wrapped = httpx.post(url, json=[mri], headers=spaces(org, "nora")).json()
    assert wrapped["value"][0]["tenantId"] == org.accounts["pia"].tenant.id
    sim.switches.federated_bare_array = True
    bare = httpx.post(url, json=[mri], headers=spaces(org, "nora")).json()
    assert isinstance(bare, list)
    assert bare[0]["tenantId"] == org.accounts["pia"].tenant.id


def test_fetch_federated_refuses_email_addresses(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, "https://teams.microsoft.com/api/mt/emea/beta/users/fetchFederated")
    response = httpx.post(url, json=["pia@harbour.example"], headers=spaces(org, "nora"))
    assert response.status_code == 400


def test_external_search_finds_people_in_other_tenants_only(
    sim: TeamsSimulator, org: Org
) -> None:
    email = org.accounts["pia"].email
    url = via(sim, f"https://teams.microsoft.com/api/mt/emea/beta/users/{email}/externalsearchv3")
    found = httpx.get(url, headers=spaces(org, "nora")).json()
    assert [entry["mri"] for entry in found] == [org.accounts["pia"].mri]
    sim.switches.federation_blocked = True
    assert httpx.get(url, headers=spaces(org, "nora")).status_code == 403


def test_tenants_lists_every_tenant_the_person_belongs_to(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, "https://teams.cloud.microsoft/api/mt/part/emea-02/beta/users/tenants")
    found = httpx.get(url, headers=spaces(org, "nora")).json()
    assert {entry["tenantId"] for entry in found} == {
        org.accounts["nora"].tenant.id, org.accounts["nora-at-harbour"].tenant.id
    }


def test_the_middle_tier_wants_a_spaces_bearer_token(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, "https://teams.microsoft.com/api/mt/emea/beta/users/tenants")
    assert httpx.get(url, headers=skype(org, "nora")).status_code == 401


def test_authz_mints_a_skypetoken_for_the_bearer_user_with_region_services(
    sim: TeamsSimulator, org: Org
) -> None:
    response = httpx.post(
        via(sim, "https://teams.microsoft.com/api/authsvc/v1.0/authz"), headers=spaces(org, "nora")
    )
    body = response.json()
    assert body["region"] == org.accounts["nora"].tenant.region
    gtms = body["regionGtms"]
    assert gtms["chatService"] == f"https://{body['region']}.ng.msg.teams.microsoft.com"
    assert gtms["chatServiceAfd"].endswith(f"/api/chatsvc/{body['region']}")
    assert "/api/mt/" in gtms["middleTier"]
    token = body["tokens"]["skypeToken"]
    thread = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(thread, headers={"X-Skypetoken": token}).status_code == 200


def test_creating_a_chat_answers_201_with_the_new_thread_location(
    sim: TeamsSimulator, org: Org
) -> None:
    members = [{"id": org.accounts["nora"].mri, "role": "Admin"},
               {"id": org.accounts["omar"].mri, "role": "Admin"}]
    response = httpx.post(via(sim, f"{LEGACY}/v1/threads"), headers=skype(org, "nora"),
                          json={"members": members, "properties": {"threadType": "chat"}})
    assert response.status_code == 201
    thread_id = response.headers["Location"].rsplit("/", 1)[1]
    created = httpx.get(via(sim, f"{LEGACY}/v1/threads/{quote(thread_id, safe='')}"),
                        headers=skype(org, "omar"))
    assert created.status_code == 200


def test_what_it_received_is_recorded_with_headers_and_body_size(
    sim: TeamsSimulator, org: Org
) -> None:
    url = f"{LEGACY}/v1/users/ME/conversations/{conv(org, 'grp-ops')}/messages"
    started = time.time()
    httpx.post(via(sim, url), content=b"{not json", headers={**skype(org, "nora"), "X-Tag": "1"})
    entry = sim.received[-1]
    assert (entry.method, entry.host, entry.endpoint, entry.status) == (
        "POST", "emea.ng.msg.teams.microsoft.com", "chatsvc.send", 400)
    assert entry.path.startswith("/v1/users/ME/conversations/")
    assert entry.headers["x-tag"] == "1"
    assert entry.body_size == len(b"{not json")
    assert entry.time >= started


def test_a_stranger_s_token_is_accepted_but_opens_no_thread(sim: TeamsSimulator, org: Org) -> None:
    stranger = "99999999-0000-4000-8000-000000000000"
    token = mint_skypetoken(stranger, org.tenants["quarry"].id, "amer")
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(url, headers={"Authentication": f"skypetoken={token}"}).status_code == 403


def test_a_token_whose_tenant_does_not_match_the_user_is_401(
    sim: TeamsSimulator, org: Org
) -> None:
    nora = org.accounts["nora"]
    assert nora.oid
    token = mint_skypetoken(nora.oid, org.tenants["harbour"].id, "amer")
    url = via(sim, f"{LEGACY}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(url, headers={"Authentication": f"skypetoken={token}"}).status_code == 401


def test_the_chat_service_refuses_a_bearer_token_for_another_audience(
    sim: TeamsSimulator, org: Org
) -> None:
    url = via(sim, f"{CLOUD}/v1/threads/{conv(org, 'grp-ops')}")
    assert httpx.get(url, headers=spaces(org, "nora")).status_code == 401


def test_a_channel_reply_is_a_send_in_its_channel(sim: TeamsSimulator, org: Org) -> None:
    reply = f"{conv(org, 'ch-ops-rates')}%3Bmessageid%3D1764577800400"
    url = via(sim, f"{LEGACY}/v1/users/ME/conversations/{reply}/messages")
    response = httpx.post(url, json={"content": "re", "messagetype": "Text"},
                          headers=skype(org, "ravi"))
    assert response.status_code == 201
    assert sim.received[-1].endpoint == "chatsvc.send"


def test_notes_to_self_are_accepted_for_anyone(sim: TeamsSimulator, org: Org) -> None:
    url = via(sim, f"{AFD}/v1/users/ME/conversations/48%3Anotes/messages")
    response = httpx.post(url, json={"content": "n", "messagetype": "Text"},
                          headers=skype(org, "omar"))
    assert response.status_code == 201


def test_the_command_line_serves_an_organisation_and_lists_what_it_received() -> None:
    import signal
    import subprocess
    import sys

    from tfw.stack import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tfw.sim.teams", "--org", str(ORG_FILE), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20, process)
        base = f"http://127.0.0.1:{port}"
        thread = f"{base}/_host/emea.ng.msg.teams.microsoft.com/v1/threads/19%3Aunknown%40thread.v2"
        assert httpx.get(thread).status_code == 401
        received = httpx.get(f"{base}/_sim/received").json()
        assert [(r["endpoint"], r["status"]) for r in received] == [("chatsvc.thread", 401)]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
