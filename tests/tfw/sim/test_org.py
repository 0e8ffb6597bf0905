"""Loading organisation files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tfw.sim.org import KINDS, OrgError, load_org, parse_org

DEMO_ORG = Path(__file__).resolve().parents[3] / "tfw" / "demo_data" / "org.yaml"


def document() -> dict:
    return yaml.safe_load(DEMO_ORG.read_text())


def test_the_demo_organisation_has_every_conversation_kind() -> None:
    org = load_org(DEMO_ORG)
    assert {c.kind for c in org.conversations.values()} == set(KINDS)


def test_a_channel_lists_its_team_members_and_a_private_channel_its_own() -> None:
    org = load_org(DEMO_ORG)
    team = org.members(org.conversations["team-ops"])
    assert org.members(org.conversations["ch-ops-rates"]) == team
    private = org.members(org.conversations["pch-ops-risk"])
    assert [a.key for a in private] == ["nora", "ravi"]


def test_accounts_are_found_by_email_case_insensitively_in_every_tenant() -> None:
    org = load_org(DEMO_ORG)
    found = {a.key for a in org.accounts_by_email("NORA@meridian.example")}
    assert found == {"nora", "nora-at-harbour"}


def test_generated_members_get_distinct_profiles_in_their_tenant() -> None:
    org = load_org(DEMO_ORG)
    generated = org.conversations["team-everyone"].generated
    assert len(generated) == 1100
    assert len({a.oid for a in generated}) == 1100
    assert org.account_by_mri(generated[10].mri) is generated[10]
    assert generated[0].email and generated[0].email.endswith("@meridian.example")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["accounts"]["nora"].update(tenant="nowhere"), "accounts.nora.tenant"),
        (lambda d: d["conversations"]["grp-ops"].update(kind="forum"), "grp-ops.kind"),
        (lambda d: d["conversations"]["grp-ops"]["members"].append("zed"), "unknown accounts zed"),
        (
            lambda d: d["conversations"]["ch-ops-rates"].update(team="grp-ops"),
            "not a conversation of kind team",
        ),
        (lambda d: d.pop("tenants"), "tenants"),
    ],
)
def test_a_bad_organisation_is_refused_naming_the_key(change, message: str) -> None:
    broken = document()
    change(broken)
    with pytest.raises(OrgError, match=message):
        parse_org(broken)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OrgError, match=r"missing\.yaml: (cannot read|No such file)"):
        load_org(tmp_path / "missing.yaml")
