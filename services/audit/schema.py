"""The versioned JSON Schema of the decision record, generated from the model.

``docs/decision-record.schema.json`` and ``docs/decision-record.md`` are written from
here (``tfw audit schema``) and a test checks the committed files still match, so the
SIEM contract cannot drift from the code. Every field needs a line in
:data:`FIELD_DOCS`; a field added without one fails that test.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.common.contracts import SCHEMA_VERSION, DecisionRecord

SCHEMA_ID = f"urn:teamsfirewall:decision-record:v{SCHEMA_VERSION}"
NESTED = ("Actor", "Conversation", "Participant", "Provenance", "MatchedRule", "RecordTimings")

FIELD_DOCS: dict[str, str] = {
    "schema": "Version of this record format; a change that is not additive raises it.",
    "decision_id": "ULID of the decision (sortable by time); shown to users in block responses.",
    "time": "When the request was intercepted, Unix seconds (UTC) with fractions.",
    "ruleset_version": "Hash of the rule set that decided.",
    "interceptor": "Name of the interceptor instance that saw the request.",
    "client_ip": "Address of the Teams client that sent the request.",
    "front_door": "Which Teams entry point the request used (chat service, middle tier ...).",
    "method": "HTTP method of the request.",
    "host": "Teams host the request was sent to.",
    "path": "Request path (with the query string when there was one).",
    "action": "What the request does, in the product vocabulary (message.send ...).",
    "conversation": "The conversation acted on, when the action has one.",
    "message_id": "The message acted on (edit, delete, reaction), when known.",
    "actor": "Who acted, from the credential's claims and the user cache (never a token).",
    "credential_status": "ok, missing or unreadable: whether the actor could be identified.",
    "location": "internal when the actor's tenant is an internal tenant, else external.",
    "federated": "True when any participant's tenant differs from the actor's; null if unknown.",
    "participant_count": "How many participants the conversation has.",
    "participants": "The participants (cut to the first 50 in large conversations).",
    "participants_truncated": "True when the participants list was cut.",
    "external_participants": "The participants outside every internal tenant, always complete.",
    "targets": "MRIs added, removed or invited by a member action.",
    "has_files": "True when the message shares files.",
    "file_names": "Names of the shared files.",
    "message_type": "Teams message type (Text, RichText/Html ...).",
    "text": "Message text, HTML stripped; only present when the deployment enables it.",
    "context": "Where the conversation context came from and how old it was.",
    "rules": "Every rule that matched, in evaluation order, with its mode and actions.",
    "decision": "The verdict enforced: allow or block.",
    "would_block": "True when a monitor-mode rule would have blocked an allowed request.",
    "status": "HTTP status answered to the client (200 when allowed).",
    "headers_added": "Headers the firewall added upstream on an allowed request.",
    "reason": "Why a request was blocked (a rule, fail closed ...), in words.",
    "timings": "Time spent resolving, deciding and in total, in milliseconds.",
    "actor_keys": "Added by audit: the actor's MRI, e-mail and UPN (e-mail and UPN lower-cased), "
    "so a search by any of them uses one index.",
    "chain": "Added by audit: the hash chain (partition) holding the record.",
    "chain_seq": "Added by audit: position in that chain, from 1, without gaps.",
    "prev_hash": "Added by audit: hash of the previous record in the chain (64 zeros first).",
    "hash": "Added by audit: SHA-256 of the record's canonical encoding without this field.",
    "Actor.mri": "The actor's Teams identity (8:orgid:<object id>).",
    "Actor.oid": "Entra ID object id.",
    "Actor.tenant_id": "Tenant of the acting token.",
    "Actor.email": "E-mail address, lower case.",
    "Actor.upn": "User principal name.",
    "Actor.display_name": "Display name.",
    "Actor.user_type": "Member, Guest ... as the directory says.",
    "Actor.region": "Teams region of the session (emea, amer ...).",
    "Conversation.id": "Teams conversation (thread) id.",
    "Conversation.type": "direct, group, channel, private_channel, meeting, self or unknown.",
    "Conversation.topic": "Conversation title, when it has one.",
    "Conversation.team_id": "The team of a channel.",
    "Conversation.reply_to": "Root message id of a channel reply thread.",
    "Conversation.tenant_id": "Tenant that hosts the conversation.",
    "Participant.mri": "Participant's Teams identity.",
    "Participant.kind": "user, guest, consumer, anonymous, bot, system, sfb, phone or unknown.",
    "Participant.email": "E-mail address, when known.",
    "Participant.upn": "User principal name, when known.",
    "Participant.tenant_id": "Participant's tenant, when known.",
    "Participant.display_name": "Display name, when known.",
    "Participant.user_type": "Member, Guest ... when known.",
    "Participant.external": "True when outside every internal tenant.",
    "Provenance.source": "cache, lookup, observed, not_needed or unresolved.",
    "Provenance.age_s": "Age of the cached context in seconds.",
    "Provenance.reason": "Why the context is unresolved, when it is.",
    "MatchedRule.name": "Rule name.",
    "MatchedRule.mode": "enforce or monitor.",
    "MatchedRule.actions": "What the rule does: block, log, add_header, allow.",
    "MatchedRule.message": "The rule's message to the user, if any.",
    "MatchedRule.assumed": "Facts unknown when the rule matched (context unresolved).",
    "RecordTimings.resolve_ms": "Resolver time (parse, cache, lookups).",
    "RecordTimings.decide_ms": "Decider time (rule evaluation).",
    "RecordTimings.total_ms": "Resolve plus decide.",
}


def record_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of :class:`DecisionRecord`, with field descriptions."""
    schema = DecisionRecord.model_json_schema(by_alias=True, mode="serialization")
    for name, prop in schema["properties"].items():
        prop["description"] = FIELD_DOCS.get(name, "")
    for model in NESTED:
        for name, prop in schema["$defs"][model]["properties"].items():
            prop["description"] = FIELD_DOCS.get(f"{model}.{name}", "")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "x-schema-version": SCHEMA_VERSION,
        **schema,
    }


def undocumented() -> list[str]:
    """Fields that have no description yet."""
    schema = DecisionRecord.model_json_schema(by_alias=True, mode="serialization")
    missing = [name for name in schema["properties"] if name not in FIELD_DOCS]
    for model in NESTED:
        missing += [
            f"{model}.{name}"
            for name in schema["$defs"][model]["properties"]
            if f"{model}.{name}" not in FIELD_DOCS
        ]
    return missing


def schema_json() -> str:
    """The committed text of ``docs/decision-record.schema.json``."""
    return orjson.dumps(record_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type_of(option) for option in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    if prop.get("type") == "object":
        return "object"
    return str(prop.get("type", "any"))


def _table(properties: dict[str, Any], required: list[str]) -> list[str]:
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, prop in properties.items():
        needed = "yes" if name in required else "no"
        meaning = str(prop.get("description", "")).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_of(prop)} | {needed} | {meaning} |")
    return lines


def schema_markdown() -> str:
    """The committed text of ``docs/decision-record.md``."""
    schema = record_schema()
    lines = [
        f"# The decision record, schema version {SCHEMA_VERSION}",
        "",
        "<!-- Generated by `tfw audit schema --markdown`; a test keeps it in step. -->",
        "",
        "One JSON object per decision: published by the decider on "
        "`<prefix>.v1.decisions.allow|block` (stream `TFW_DECISIONS`), archived by "
        "audit, and shipped to SIEMs. The machine-readable form is "
        f"[`decision-record.schema.json`](decision-record.schema.json) (`$id` `{SCHEMA_ID}`).",
        "",
        "Stability: fields are only ever added. Renaming or removing one, or changing "
        "its meaning, raises `schema`. Consumers should ignore fields they do not know.",
        "Never in a record: a token or any other credential. `text` is present only "
        "when the deployment enables message text.",
        "",
        "## Fields",
        "",
        *_table(schema["properties"], schema.get("required", [])),
    ]
    for model in NESTED:
        definition = schema["$defs"][model]
        lines += ["", f"## {model}", ""]
        if definition.get("description"):
            lines += [definition["description"], ""]
        lines += _table(definition["properties"], definition.get("required", []))
    enums = [name for name, item in schema["$defs"].items() if "enum" in item]
    lines += ["", "## Enumerations", ""]
    for name in enums:
        values = ", ".join(f"`{value}`" for value in schema["$defs"][name]["enum"])
        lines.append(f"- **{name}**: {values}")
    return "\n".join(lines) + "\n"
