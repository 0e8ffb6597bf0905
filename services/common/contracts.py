"""Every message that crosses the bus, in one place.

Each contract is a typed model with a ``schema`` version field. Encoding and decoding
go through :func:`encode` and :func:`decode` only (orjson underneath), so no service
builds a payload dict by hand and every malformed message becomes a typed
:class:`ContractError` instead of a crash.

Subjects and stream names are built by :class:`Subjects` from a configurable prefix
(default ``tfw``) so that several deployments can share one NATS cluster.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
# Every whole number on the bus fits MongoDB's 8-byte integer: a larger one would be
# decoded, then refused by the archive's insert over and over.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# A ULID in Crockford base32 (see new_decision_id).
DECISION_ID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"


class ContractError(Exception):
    """A payload that is not a valid contract message.

    ``code`` is stable and safe to send to a remote caller; ``detail`` is a short,
    safe description (never the payload itself, which may carry tokens).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Part(BaseModel):
    """Base of the models inside a contract: like orjson, they refuse NaN and infinite
    numbers, which JSON has no way to write."""

    model_config = ConfigDict(allow_inf_nan=False)


class Contract(BaseModel):
    """Base of every bus message: strict about unknown versions, lenient about extras."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="ignore",
        ser_json_bytes="base64",
        val_json_bytes="base64",
        allow_inf_nan=False,
    )

    # Strict: a version written as "1" or 1.0 is not version 1.
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema", strict=True)

    def to_bytes(self) -> bytes:
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return decode(cls, data)


# --- vocabulary ---------------------------------------------------------------------


class Action(StrEnum):
    """What a request does, in the product's vocabulary (2021 event codes on import)."""

    MESSAGE_SEND = "message.send"
    MESSAGE_EDIT = "message.edit"
    MESSAGE_DELETE = "message.delete"
    MESSAGE_UNDELETE = "message.undelete"
    REACTION_ADD = "reaction.add"
    REACTION_REMOVE = "reaction.remove"
    TYPING = "typing"
    CONTROL = "control"
    RECEIPT_READ = "receipt.read"
    CHAT_CREATE = "chat.create"
    MEMBER_ADD = "member.add"
    MEMBER_REMOVE = "member.remove"
    CHAT_RENAME = "chat.rename"
    USER_SEARCH_EXTERNAL = "user.search_external"
    OTHER = "other"


class ConversationType(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"
    PRIVATE_CHANNEL = "private_channel"
    MEETING = "meeting"
    SELF = "self"
    UNKNOWN = "unknown"


class Location(StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"
    UNKNOWN = "unknown"


class ParticipantKind(StrEnum):
    """The kind of identity behind an MRI."""

    USER = "user"  # 8:orgid: member
    GUEST = "guest"  # 8:orgid: guest account
    CONSUMER = "consumer"  # 8:live: and other consumer 8: identities
    ANONYMOUS = "anonymous"  # 8:teamsvisitor:
    BOT = "bot"  # 28:
    SYSTEM = "system"  # 48:
    SKYPE_FOR_BUSINESS = "sfb"  # 2:
    PHONE = "phone"  # 4:
    UNKNOWN = "unknown"


class ContextSource(StrEnum):
    """Where the conversation context of an event came from."""

    CACHE = "cache"
    LOOKUP = "lookup"
    OBSERVED = "observed"
    NOT_NEEDED = "not_needed"
    UNRESOLVED = "unresolved"


class CredentialStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    UNREADABLE = "unreadable"


class RuleMode(StrEnum):
    ENFORCE = "enforce"
    MONITOR = "monitor"


class Decision(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


# --- interceptor -> resolver ---------------------------------------------------------


class InterceptedRequest(Contract):
    """A controlled request as the interceptor saw it, asked on ``<prefix>.v1.intercepted``.

    ``headers`` holds only the headers that matter (credentials included), with
    lower-case names. ``body`` is at most the configured cap; ``body_truncated`` says
    when it was cut and ``body_size`` gives the full length.
    """

    # The decision id: a ULID made by the interceptor (new_decision_id) moments before
    # ``time``. The archive relies on it to order and bound records by time.
    id: str = Field(pattern=DECISION_ID_PATTERN)
    time: float
    interceptor: str
    client_ip: str = ""
    method: str
    scheme: str = "https"
    host: str
    port: Int64 = 443
    path: str
    http_version: str = "HTTP/1.1"
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""
    body_size: Int64 = 0
    body_truncated: bool = False
    # The interceptor takes the decision record's JetStream acknowledgement itself: the
    # decider sends the record with the interceptor's reply subject, so the
    # acknowledgement travels beside the verdict instead of after it (RECORD_ACK_HEADER).
    record_ack: bool = False


# --- resolver -> decider --------------------------------------------------------------


class Actor(Part):
    """Who acts, from the credential's claims and the user cache."""

    mri: str | None = None
    oid: str | None = None
    tenant_id: str | None = None
    email: str | None = None
    upn: str | None = None
    display_name: str | None = None
    user_type: str | None = None
    region: str | None = None


class Credential(Part):
    """What the request's credentials said, without the tokens themselves."""

    status: CredentialStatus
    kinds: list[str] = Field(default_factory=list)
    reason: str | None = None
    expires_at: float | None = None


class Participant(Part):
    # Frozen: the resolver and the decider share the participants of a large
    # conversation between events (their memos), so none may be changed once built.
    # (A comment, not a docstring: the record's published schema would carry it.)
    model_config = ConfigDict(allow_inf_nan=False, frozen=True)

    mri: str
    kind: ParticipantKind = ParticipantKind.UNKNOWN
    email: str | None = None
    upn: str | None = None
    tenant_id: str | None = None
    display_name: str | None = None
    user_type: str | None = None
    external: bool = False  # outside every internal tenant


class Conversation(Part):
    id: str
    type: ConversationType = ConversationType.UNKNOWN
    topic: str | None = None
    team_id: str | None = None
    reply_to: str | None = None  # root message id of a channel reply thread
    tenant_id: str | None = None


class FileRef(Part):
    name: str
    extension: str = ""


class BodyFeatures(Part):
    message_type: str | None = None
    text: str | None = None
    files: list[FileRef] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list)
    importance: str | None = None
    is_reply: bool = False
    parse_error: str | None = None

    @property
    def has_files(self) -> bool:
        return bool(self.files)


class Provenance(Part):
    """How fresh and how trustworthy the context is."""

    source: ContextSource
    age_s: float | None = None
    reason: str | None = None  # why it is unresolved, when it is


class EnrichedEvent(Contract):
    """The request understood: published on ``<prefix>.v1.enriched`` with the original
    reply subject kept, so the decider answers the interceptor directly. Never carries
    a token."""

    id: str
    time: float
    interceptor: str
    client_ip: str = ""
    method: str
    host: str
    path: str
    front_door: str = "unknown"
    action: Action
    conversation: Conversation | None = None
    message_id: str | None = None
    actor: Actor = Field(default_factory=Actor)
    credential: Credential
    location: Location = Location.UNKNOWN
    federated: bool | None = None
    participants: list[Participant] = Field(default_factory=list)
    bots: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)  # MRIs added/removed/invited
    # Profiles of the targets where cheap (chat.create, member.add): who is being added.
    target_participants: list[Participant] = Field(default_factory=list)
    body: BodyFeatures = Field(default_factory=BodyFeatures)
    body_size: Int64 = 0
    body_truncated: bool = False
    context: Provenance = Field(default_factory=lambda: Provenance(source=ContextSource.NOT_NEEDED))
    resolve_ms: float = 0.0
    record_ack: bool = False  # copied from the InterceptedRequest


# --- decider -> interceptor -----------------------------------------------------------


class MatchedRule(Part):
    name: str
    mode: RuleMode = RuleMode.ENFORCE
    actions: list[str] = Field(default_factory=list)  # block, log, add_header, allow
    message: str | None = None
    # Facts that were unknown when the rule matched (context unresolved): the rule
    # counted as matching because it blocks, or because it says so.
    assumed: list[str] = Field(default_factory=list)


class Verdict(Contract):
    """The answer to one intercepted request."""

    decision_id: str
    decision: Decision
    status: Int64 = 200
    body: bytes = b""  # the block response body (Teams-shaped JSON)
    headers: dict[str, str] = Field(default_factory=dict)  # to add upstream when allowed
    rules: list[MatchedRule] = Field(default_factory=list)
    ruleset_version: str = ""
    reason: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


# --- interceptor -> resolver (passive learning) ---------------------------------------


class Observation(Contract):
    """Something the interceptor saw on the wire that teaches the resolver.

    ``kind`` is ``token`` (a credential seen on a request) or ``lookup`` (a response
    the client itself received: authz, thread, members, consumption horizons,
    profiles). Carries tokens: only the resolver may subscribe to it.
    """

    id: str
    time: float
    interceptor: str
    kind: Literal["token", "lookup"]
    method: str = "GET"
    host: str = ""
    path: str = ""
    request_headers: dict[str, str] = Field(default_factory=dict)
    status: Int64 | None = None
    response_body: bytes = b""
    response_truncated: bool = False


# --- decider -> JetStream -> audit / SIEM --------------------------------------------


class RecordTimings(Part):
    resolve_ms: float = 0.0
    decide_ms: float = 0.0
    total_ms: float = 0.0


class DecisionRecord(Contract):
    """One decision, as archived and shipped to SIEMs. Stable once released: add
    fields, never rename or remove them without a new schema version.

    ``prev_hash`` and ``hash`` are filled in by the audit service when it chains the
    record into the archive.
    """

    decision_id: str
    time: float
    ruleset_version: str = ""
    interceptor: str = ""
    client_ip: str = ""
    front_door: str = "unknown"
    method: str = ""
    host: str = ""
    path: str = ""
    action: Action
    conversation: Conversation | None = None
    message_id: str | None = None
    actor: Actor = Field(default_factory=Actor)
    credential_status: CredentialStatus = CredentialStatus.OK
    location: Location = Location.UNKNOWN
    federated: bool | None = None
    participant_count: Int64 = 0
    participants: list[Participant] = Field(default_factory=list)
    participants_truncated: bool = False
    external_participants: list[Participant] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)
    has_files: bool = False
    file_names: list[str] = Field(default_factory=list)
    message_type: str | None = None
    text: str | None = None  # only when configured
    context: Provenance = Field(default_factory=lambda: Provenance(source=ContextSource.NOT_NEEDED))
    rules: list[MatchedRule] = Field(default_factory=list)
    decision: Decision
    would_block: bool = False  # a monitor-mode rule would have blocked
    status: Int64 = 200
    headers_added: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    timings: RecordTimings = Field(default_factory=RecordTimings)
    # Filled in by the audit service: the actor's MRI, e-mail and UPN in one list (the
    # e-mail and UPN lower-cased), so one index finds the actor by any of them.
    actor_keys: list[str] = Field(default_factory=list)
    chain: str | None = None  # the audit hash chain (partition) holding the record
    chain_seq: Int64 | None = None  # its position in that chain, from 1
    prev_hash: str | None = None
    hash: str | None = None


# --- rules distribution (NATS KV) -----------------------------------------------------


class RuleSetDocument(Contract):
    """The active rule set as stored under KV ``<prefix>_rules``/``active``.

    ``source`` is the validated YAML text; ``version`` a hash of it that every verdict
    and record carries. ``internal_tenants`` is repeated here so the resolver can
    compute locations without understanding rules.
    """

    version: str
    source: str
    internal_tenants: list[str] = Field(default_factory=list)
    pushed_at: float = 0.0
    pushed_by: str = ""


# --- errors as data ---------------------------------------------------------------------

ERROR_CODE_HEADER = "Tfw-Error-Code"
ERROR_TEXT_HEADER = "Tfw-Error"
# On a verdict: its decision record was published with the same reply subject, and
# the value names the stream whose acknowledgement the interceptor must also receive
# before it applies the verdict.
RECORD_ACK_HEADER = "Tfw-Record-Ack"


def error_headers(code: str, detail: str) -> dict[str, str]:
    """NATS headers carrying a typed error (code + safe text) back to a requester."""
    return {ERROR_CODE_HEADER: code, ERROR_TEXT_HEADER: detail[:200]}


def block_body(decision_id: str, reason: str, status: int) -> bytes:
    """The body of a block response, shaped like Teams' own errors and naming the
    reason and the decision id, so the user and the help desk can find the record."""
    return orjson.dumps(
        {
            "errorCode": status,
            "message": f"Blocked by TeamsFirewall: {reason}",
            "subCode": "TeamsFirewallBlocked",
            "decisionId": decision_id,
        }
    )


# --- building contracts on the hot path ---------------------------------------------------

_new = BaseModel.__new__
# The setters of a pydantic model's four slots, looked up once: calling them directly
# skips the attribute lookup object.__setattr__ makes per call.
_SLOTS = BaseModel.__dict__
_set_dict = _SLOTS["__dict__"].__set__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def assemble[M: BaseModel](model: type[M], fields: dict[str, Any]) -> M:
    """A model from a dict holding every one of its fields, each already of its field's
    type (parts of a message validated on arrival, or built by this code), without
    validating them again.

    For the hot paths only: validating what is already valid cost the resolver and the
    decider more than their own work on a warm request (pydantic's ``model_construct``
    is slower still). Nothing is checked here: the receiving service validates every
    message it decodes, and the tests check each hot-path result equals a validated
    copy and lacks no field. The dict becomes the model's own: pass a fresh one.
    """
    made = _new(model)
    _set_dict(made, fields)
    _set_fields_set(made, set(fields))
    _set_extra(made, None)
    _set_private(made, None)
    return made


# --- the one JSON boundary ---------------------------------------------------------------


def encode(message: BaseModel) -> bytes:
    """Serialise a contract to JSON bytes (pydantic's own serialiser: the same JSON as
    ``orjson.dumps(message.model_dump(mode="json", by_alias=True))``, in one step)."""
    return message.__pydantic_serializer__.to_json(message, by_alias=True)


_MAX_WHERE = 80


def decode[T: Contract](model: type[T], data: bytes) -> T:
    """Parse JSON bytes into ``model``; any problem is a :class:`ContractError`.

    orjson parses (it refuses NaN, infinities and numbers no JSON peer can read back,
    even in fields the model ignores), then pydantic validates. pydantic's own JSON
    parser would save a few microseconds but accepts all of those.
    """
    return validate(model, parse(data))


def parse(data: bytes) -> dict[str, Any]:
    """The JSON object of a message (the first half of :func:`decode`)."""
    try:
        raw: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ContractError("bad_json", f"not JSON at byte {exc.pos}") from None
    if not isinstance(raw, dict):
        raise ContractError("bad_shape", f"expected an object, got {type(raw).__name__}")
    return raw


def validate[T: Contract](model: type[T], raw: dict[str, Any]) -> T:
    """A parsed message as ``model`` (the second half of :func:`decode`)."""
    version = raw.get("schema", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or type(version) is not int:
        raise ContractError("bad_schema", _schema_problem(model, version))
    try:
        message = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Field paths can hold the sender's own keys (headers): keep them short.
        where = (".".join(str(part) for part in first["loc"]) or "(root)")[:_MAX_WHERE]
        raise ContractError("bad_field", f"{model.__name__}.{where}: {first['msg']}") from None
    if message.schema_version != SCHEMA_VERSION:  # sent under the field's own name
        raise ContractError("bad_schema", _schema_problem(model, message.schema_version))
    return message


def _schema_problem(model: type[Contract], version: Any) -> str:
    # The sender's value is shown only when it is a version number: anything else
    # could be the payload itself (a token) and would reach logs and the reply.
    shown = version if type(version) is int else f"a {type(version).__name__}"
    return f"{model.__name__} schema {shown} is not {SCHEMA_VERSION}"


# --- subjects and names -------------------------------------------------------------------


class Subjects:
    """Subject, stream, consumer and bucket names for one deployment prefix."""

    def __init__(self, prefix: str = "tfw") -> None:
        self.prefix = prefix
        self.intercepted = f"{prefix}.v1.intercepted"
        self.enriched = f"{prefix}.v1.enriched"
        self.observed = f"{prefix}.v1.observed"
        self.decisions = f"{prefix}.v1.decisions"
        self.decisions_all = f"{prefix}.v1.decisions.>"
        upper = prefix.upper().replace(".", "_").replace("-", "_")
        self.decision_stream = f"{upper}_DECISIONS"
        self.rules_bucket = f"{prefix.replace('.', '_')}_rules"
        self.rules_key = "active"

    def decision(self, decision: Decision) -> str:
        return f"{self.decisions}.{decision.value}"


QUEUE_RESOLVER = "resolver"
QUEUE_DECIDER = "decider"

# --- decision ids ---------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_decision_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32.

    Lexicographic order is time order, so ids sort and paginate naturally.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return _crockford((millis << 80) | int.from_bytes(secrets.token_bytes(10), "big"))


# The first Unix time a decision id (48 bits of milliseconds) cannot hold.
DECISION_ID_END_S = (1 << 48) / 1000


def decision_id_floor(at: float) -> str:
    """The smallest decision id of the millisecond that contains Unix time ``at``:
    every id made at ``at`` or later sorts at or after it."""
    millis = min(max(0, math.floor(at * 1000)), (1 << 48) - 1)
    return _crockford(millis << 80)


# Two base32 digits per entry, indexed by their 10 bits: 13 lookups make an id.
_CROCKFORD_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]


def _crockford(value: int) -> str:
    """``value`` (below 2**130) as 26 Crockford base32 digits, most significant first."""
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def instance_name(service: str) -> str:
    """A name for this process in records and logs: service@host:pid."""
    host = os.environ.get("HOSTNAME") or os.uname().nodename
    return f"{service}@{host}:{os.getpid()}"
