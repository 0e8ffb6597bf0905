"""The fixture organisation the simulators serve: tenants, accounts, conversations.

The YAML format (see ``tfw/demo_data/org.yaml``)::

    tenants:
      <key>: {id: <tenant guid>, domains: [<domain>, ...], region: emea}
    accounts:
      <key>: {oid: <guid>, tenant: <tenant key>, email: ..., name: ..., type: Member|Guest,
              department: ...}
      <bot>: {mri: "28:<app id>", tenant: <tenant key>, name: ..., type: Bot}
    conversations:
      <key>: {id: "19:...", kind: <kind>, tenant: <tenant key>, topic: ...,
              members: [<account key>, ...], team: <team key>,
              generated_members: {count: N, tenant: <tenant key>, domain: ...}}

``kind`` is what Teams reports for the thread: ``direct-legacy`` (``…@unq.gbl.spaces``),
``direct`` (``uni01`` with ``uniquerosterthread``), ``group``, ``meeting``, ``team``
(the team root doubles as General), ``channel`` (members are the team's, named by
``team``) and ``private-channel`` (its own members, under ``team``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("direct-legacy", "direct", "group", "meeting", "team", "channel", "private-channel")
_GENERATED_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-4e68-9d7c-0b1a2f3e4d5c")


class OrgError(ValueError):
    """An organisation file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Tenant:
    key: str
    id: str
    domains: tuple[str, ...]
    region: str
    name: str


@dataclass(frozen=True, slots=True)
class Account:
    """One identity inside one tenant (a person with a guest account elsewhere has two)."""

    key: str
    mri: str
    tenant: Tenant
    name: str
    type: str = "Member"
    oid: str | None = None
    email: str | None = None
    department: str | None = None

    @property
    def is_bot(self) -> bool:
        return self.mri.startswith("28:")


@dataclass(slots=True)
class Conversation:
    key: str
    id: str
    kind: str
    tenant: Tenant
    topic: str | None = None
    team: str | None = None
    members: list[str] = field(default_factory=list)  # account keys
    generated: list[Account] = field(default_factory=list)
    created_by: str | None = None


@dataclass
class Org:
    """An organisation loaded from YAML, with the lookups the Teams simulator needs."""

    tenants: dict[str, Tenant]
    accounts: dict[str, Account]
    conversations: dict[str, Conversation]

    def __post_init__(self) -> None:
        self._by_mri = {a.mri.lower(): a for a in self.accounts.values()}
        self._by_id = {c.id.lower(): c for c in self.conversations.values()}
        for conversation in self.conversations.values():
            for account in conversation.generated:
                self._by_mri[account.mri.lower()] = account

    # --- lookups ------------------------------------------------------------------------

    def account_by_mri(self, mri: str) -> Account | None:
        return self._by_mri.get(mri.lower())

    def account_by_oid(self, oid: str) -> Account | None:
        return self._by_mri.get(f"8:orgid:{oid}".lower())

    def accounts_by_email(self, email: str) -> list[Account]:
        """Every account (in any tenant) whose email is ``email``, case-insensitively."""
        wanted = email.strip().lower()
        return [a for a in self._by_mri.values() if a.email and a.email.lower() == wanted]

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        for tenant in self.tenants.values():
            if tenant.id.lower() == tenant_id.lower():
                return tenant
        return None

    def conversation(self, conversation_id: str) -> Conversation | None:
        return self._by_id.get(conversation_id.lower())

    def members(self, conversation: Conversation) -> list[Account]:
        """The roster Teams reports: a channel's is its team's."""
        if conversation.kind == "channel" and conversation.team:
            team = self.conversations.get(conversation.team)
            if team is not None and team is not conversation:
                return self.members(team)
        named = [self.accounts[key] for key in conversation.members if key in self.accounts]
        return named + conversation.generated

    def is_member(self, conversation: Conversation, mri: str) -> bool:
        wanted = mri.lower()
        return any(a.mri.lower() == wanted for a in self.members(conversation))

    # --- changes made through the simulated API ------------------------------------------

    def add_conversation(self, conversation: Conversation) -> None:
        self.conversations[conversation.key] = conversation
        self._by_id[conversation.id.lower()] = conversation

    def add_member(self, conversation: Conversation, account: Account) -> None:
        if account.key not in conversation.members:
            conversation.members.append(account.key)

    def remove_member(self, conversation: Conversation, account: Account) -> None:
        if account.key in conversation.members:
            conversation.members.remove(account.key)


def load_org(path: str | Path) -> Org:
    """Read and validate an organisation file."""
    source = Path(path)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OrgError(f"{source}: {exc.strerror or 'cannot read'}") from None
    except yaml.YAMLError as exc:
        raise OrgError(f"{source}: not YAML: {exc}") from None
    return parse_org(document, str(source))


def parse_org(document: Any, where: str = "org") -> Org:
    """Build an :class:`Org` from an already parsed YAML document."""
    if not isinstance(document, dict):
        raise OrgError(f"{where}: expected a mapping with tenants, accounts, conversations")
    tenants = {
        str(key): _tenant(str(key), raw, where)
        for key, raw in _mapping(document, "tenants", where).items()
    }
    accounts = {
        str(key): _account(str(key), raw, tenants, where)
        for key, raw in _mapping(document, "accounts", where).items()
    }
    conversations = {
        str(key): _conversation(str(key), raw, tenants, accounts, where)
        for key, raw in (document.get("conversations") or {}).items()
    }
    for conversation in conversations.values():
        if conversation.kind in ("channel", "private-channel"):
            team = conversations.get(conversation.team or "")
            if team is None or team.kind != "team":
                raise OrgError(
                    f"{where}: conversations.{conversation.key}.team: "
                    f"{conversation.team!r} is not a conversation of kind team"
                )
    return Org(tenants, accounts, conversations)


def _mapping(document: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict) or not value:
        raise OrgError(f"{where}: {key}: expected a non-empty mapping")
    return value


def _need(raw: dict[str, Any], name: str, where: str) -> str:
    value = raw.get(name)
    if value is None or str(value).strip() == "":
        raise OrgError(f"{where}.{name}: missing")
    return str(value)


def _tenant(key: str, raw: Any, where: str) -> Tenant:
    here = f"{where}: tenants.{key}"
    if not isinstance(raw, dict):
        raise OrgError(f"{here}: expected a mapping")
    domains = raw.get("domains") or []
    if not isinstance(domains, list):
        raise OrgError(f"{here}.domains: expected a list")
    return Tenant(
        key=key,
        id=_need(raw, "id", here).lower(),
        domains=tuple(str(d).lower() for d in domains),
        region=str(raw.get("region") or "emea"),
        name=str(raw.get("name") or key),
    )


def _account(key: str, raw: Any, tenants: dict[str, Tenant], where: str) -> Account:
    here = f"{where}: accounts.{key}"
    if not isinstance(raw, dict):
        raise OrgError(f"{here}: expected a mapping")
    tenant_key = _need(raw, "tenant", here)
    if tenant_key not in tenants:
        raise OrgError(f"{here}.tenant: unknown tenant {tenant_key!r}")
    oid = str(raw["oid"]).lower() if raw.get("oid") else None
    mri = str(raw.get("mri") or (f"8:orgid:{oid}" if oid else ""))
    if not mri:
        raise OrgError(f"{here}: needs an oid (a user) or an mri (a bot)")
    return Account(
        key=key,
        mri=mri,
        tenant=tenants[tenant_key],
        name=str(raw.get("name") or key),
        type=str(raw.get("type") or "Member"),
        oid=oid,
        email=str(raw["email"]) if raw.get("email") else None,
        department=str(raw["department"]) if raw.get("department") else None,
    )


def _conversation(
    key: str, raw: Any, tenants: dict[str, Tenant], accounts: dict[str, Account], where: str
) -> Conversation:
    here = f"{where}: conversations.{key}"
    if not isinstance(raw, dict):
        raise OrgError(f"{here}: expected a mapping")
    kind = _need(raw, "kind", here)
    if kind not in KINDS:
        raise OrgError(f"{here}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    tenant_key = _need(raw, "tenant", here)
    if tenant_key not in tenants:
        raise OrgError(f"{here}.tenant: unknown tenant {tenant_key!r}")
    members = [str(m) for m in raw.get("members") or []]
    unknown = [m for m in members if m not in accounts]
    if unknown:
        raise OrgError(f"{here}.members: unknown accounts {', '.join(unknown)}")
    conversation = Conversation(
        key=key,
        id=_need(raw, "id", here),
        kind=kind,
        tenant=tenants[tenant_key],
        topic=str(raw["topic"]) if raw.get("topic") else None,
        team=str(raw["team"]) if raw.get("team") else None,
        members=members,
    )
    generated = raw.get("generated_members")
    if generated:
        conversation.generated = _generated(conversation, generated, tenants, here)
    return conversation


def _generated(
    conversation: Conversation, raw: Any, tenants: dict[str, Tenant], here: str
) -> list[Account]:
    """Deterministic extra members: the same file always gives the same roster."""
    if not isinstance(raw, dict):
        raise OrgError(f"{here}.generated_members: expected a mapping")
    try:
        count = int(raw.get("count", 0))
    except (TypeError, ValueError):
        raise OrgError(f"{here}.generated_members.count: not a number") from None
    if not 0 <= count <= 100_000:
        raise OrgError(f"{here}.generated_members.count: {count} is out of range 0..100000")
    tenant_key = str(raw.get("tenant") or conversation.tenant.key)
    if tenant_key not in tenants:
        raise OrgError(f"{here}.generated_members.tenant: unknown tenant {tenant_key!r}")
    tenant = tenants[tenant_key]
    domain = str(raw.get("domain") or (tenant.domains[0] if tenant.domains else "example.test"))
    members = []
    for number in range(1, count + 1):
        oid = str(uuid.uuid5(_GENERATED_NAMESPACE, f"{conversation.id}/{number}"))
        members.append(
            Account(
                key=f"{conversation.key}#{number}",
                mri=f"8:orgid:{oid}",
                tenant=tenant,
                name=f"Member {number:04d}",
                oid=oid,
                email=f"member{number:04d}.{conversation.key}@{domain}",
            )
        )
    return members
