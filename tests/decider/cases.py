"""Enriched events for the shared acceptance scenario, built from the fixture
organisation as a correct resolver would build them (so the decider's semantics can
be checked case by case without the rest of the stack)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from services.common.contracts import (
    Action,
    Actor,
    BodyFeatures,
    ContextSource,
    Conversation,
    ConversationType,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    FileRef,
    Location,
    Participant,
    Provenance,
)

KIND_TYPES = {
    "direct-legacy": ConversationType.DIRECT,
    "direct": ConversationType.DIRECT,
    "group": ConversationType.GROUP,
    "meeting": ConversationType.MEETING,
    "team": ConversationType.CHANNEL,
    "channel": ConversationType.CHANNEL,
    "private-channel": ConversationType.PRIVATE_CHANNEL,
}


class Org:
    def __init__(self, cases: Path) -> None:
        org = yaml.safe_load((cases / "org.yaml").read_text())
        self.tenants = {name: spec["id"] for name, spec in org["tenants"].items()}
        self.accounts = org["accounts"]
        self.conversations = org["conversations"]
        self.internal = {self.tenants["firm"], self.tenants["firm-eu"]}

    def participant(self, key: str) -> Participant:
        account = self.accounts[key]
        tenant = self.tenants[account["tenant"]]
        return Participant(
            mri=account.get("mri") or f"8:orgid:{account['oid']}",
            email=account.get("email"),
            tenant_id=tenant,
            user_type=account.get("type"),
            external=tenant not in self.internal,
        )

    def members(self, conversation: dict[str, Any]) -> list[Participant]:
        if conversation["kind"] == "channel":
            conversation = self.conversations[conversation["team"]]
        keys = [key for key in conversation["members"] if self.accounts[key].get("type") != "Bot"]
        return [self.participant(key) for key in keys]

    def conversation_for(self, url: str) -> dict[str, Any] | None:
        for spec in self.conversations.values():
            if spec["id"].replace(":", "%3A").replace("@", "%40") in url:
                return spec
        return None


def scenario_events(cases: Path) -> list[tuple[EnrichedEvent, dict[str, Any]]]:
    """Each scenario request as an enriched event, with its expected outcome."""
    org = Org(cases)
    expected = {
        row["id"]: row
        for row in map(orjson.loads, (cases / "expected.jsonl").read_text().splitlines())
    }
    events = []
    for line in (cases / "scenario.jsonl").read_text().splitlines():
        request = orjson.loads(line)
        want = expected[request["id"]]
        account = org.accounts[request["as"]]
        tenant = org.tenants[account["tenant"]]
        actor = Actor(
            mri=f"8:orgid:{account['oid']}",
            oid=account["oid"],
            tenant_id=tenant,
            email=account["email"],
            user_type=account["type"],
        )
        spec = org.conversation_for(request["url"])
        conversation = participants = None
        if spec is not None and want.get("conversation_type"):
            conversation = Conversation(id=spec["id"], type=KIND_TYPES[spec["kind"]])
            participants = org.members(spec)
        body = request["body"]
        features = BodyFeatures()
        if isinstance(body, str):
            features = BodyFeatures(parse_error="body is not JSON")
        elif isinstance(body, dict) and "files" in (body.get("properties") or {}):
            features = BodyFeatures(files=[FileRef(name="positions.xlsx", extension="xlsx")])
        federated = None
        if participants is not None:
            federated = any(p.tenant_id != tenant for p in participants)
        credential = Credential(status=CredentialStatus.OK)
        if request["auth"] in ("none", "garbage-token"):
            credential = Credential(status=CredentialStatus.UNREADABLE, reason="not a token")
            actor = Actor()
        event = EnrichedEvent(
            id=request["id"],
            time=1764493200.0,
            interceptor="test",
            method=request["method"],
            host="emea.ng.msg.teams.microsoft.com",
            path="/v1/users/ME/conversations",
            action=Action(want["action"]),
            conversation=conversation,
            actor=actor,
            credential=credential,
            location=(
                Location.UNKNOWN
                if actor.tenant_id is None
                else Location.INTERNAL
                if tenant in org.internal
                else Location.EXTERNAL
            ),
            federated=federated,
            participants=participants or [],
            body=features,
            context=Provenance(
                source=ContextSource.CACHE if conversation else ContextSource.NOT_NEEDED
            ),
        )
        events.append((event, want))
    return events
