"""The simulated Teams service without sockets: a request in, an endpoint name and a
response out. :mod:`tfw.sim.teams` puts it behind an HTTP server.

Front doors (protocol notes §1): ``{region}.ng.msg.teams.microsoft.com/v1/…``,
``teams.microsoft.com/api/chatsvc/{region}/v1/…`` and the same on
``teams.cloud.microsoft``; the middle tier ``/api/mt/{region}/beta/…`` and
``/api/mt/part/{region}-0N/beta/…``; authz at ``/api/authsvc/v1.0/authz`` (and
``authsvc.teams.microsoft.com/v1.0/authz``).
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from tfw.sim import views
from tfw.sim.org import Account, Conversation, Org
from tfw.sim.tokens import AUDIENCE_CHAT, AUDIENCE_SPACES, TokenError, is_expired, mint_skypetoken
from tfw.sim.tokens import read_claims as claims_of

SKYPETOKEN_LIFETIME_S = 86399
_LEGACY_HOST = re.compile(r"^([a-z0-9-]+)\.ng\.msg\.teams\.microsoft\.com$")
_WEB_HOSTS = ("teams.microsoft.com", "teams.cloud.microsoft")
_CHATSVC = re.compile(r"^/api/chatsvc/([^/]+)(/v1/.*)$", re.IGNORECASE)
_MT = re.compile(r"^/api/mt/(?:part/)?([a-z0-9-]+)/beta/(.*)$", re.IGNORECASE)
_SYSTEM_THREAD = re.compile(r"^48:[a-z]+$")


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    host: str
    path: str  # path and query, as sent (still URL-encoded)
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(slots=True)
class SimResponse:
    status: int
    body: Any = None  # JSON-able, or bytes as they are
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None and self.status == 204 else orjson.dumps(self.body)


@dataclass(frozen=True, slots=True)
class Caller:
    oid: str
    tenant_id: str
    account: Account | None

    @property
    def mri(self) -> str:
        return f"8:orgid:{self.oid}"


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        body = {"errorCode": status, "message": message}
        self.response = SimResponse(status, body, headers or {})


@dataclass
class Switches:
    """Behaviours tests turn on: rate limiting, the bare-array quirk, hidden threads."""

    rate_limited: int = 0  # how many more requests get 429
    rate_limit_endpoint: str | None = None  # only this endpoint (prefix), or any
    retry_after_s: int = 1
    federated_bare_array: bool = False
    federation_blocked: bool = False
    hidden_threads: set[str] = field(default_factory=set)


class TeamsService:
    """Routes one request. Thread-safe: changes to the organisation take a lock."""

    def __init__(self, org: Org, switches: Switches | None = None) -> None:
        self.org = org
        self.switches = switches or Switches()
        self.lock = threading.Lock()

    def handle(self, request: SimRequest) -> tuple[str, SimResponse]:
        host = request.host.lower().split(":", 1)[0].rstrip(".")
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = self._route(request.method, host, url.path)
        if route is None:
            return "unknown", SimResponse(404, {"errorCode": 404, "message": "Not found"})
        endpoint, base, rest = route
        limited = self._rate_limited(endpoint)
        if limited is not None:
            return endpoint, limited
        try:
            with self.lock:
                return endpoint, self._dispatch(endpoint, request, base, rest, query)
        except Refused as refused:
            return endpoint, refused.response

    # --- routing ----------------------------------------------------------------------------

    def _route(self, method: str, host: str, path: str) -> tuple[str, str, list[str]] | None:
        legacy = _LEGACY_HOST.match(host)
        if legacy:
            return self._chatsvc_route(method, f"https://{host}", path)
        if host == "authsvc.teams.microsoft.com" and path.rstrip("/") == "/v1.0/authz":
            return "authz", "", []
        if host not in _WEB_HOSTS:
            return None
        if path.rstrip("/").lower() == "/api/authsvc/v1.0/authz":
            return "authz", "", []
        chatsvc = _CHATSVC.match(path)
        if chatsvc:
            base = f"https://{host}/api/chatsvc/{chatsvc.group(1)}"
            return self._chatsvc_route(method, base, chatsvc.group(2))
        mt = _MT.match(path)
        if mt:
            return self._mt_route(method, mt.group(2))
        return None

    def _chatsvc_route(
        self, method: str, base: str, path: str
    ) -> tuple[str, str, list[str]] | None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if not parts or parts[0] != "v1":
            return None
        parts = parts[1:]
        shape = [p.lower() for p in parts]
        name = None
        if shape[:3] == ["users", "me", "conversations"] and len(parts) >= 4:
            tail = shape[4:]
            if tail == ["messages"]:
                name = {"POST": "send", "GET": "messages"}.get(method)
            elif len(tail) == 2 and tail[0] == "messages":
                name = {"PUT": "edit", "DELETE": "delete"}.get(method)
            elif len(tail) == 3 and tail[0] == "messages" and tail[2] == "properties":
                name = "message_properties" if method in ("PUT", "DELETE") else None
            elif tail == ["properties"]:
                name = "conversation_properties" if method == "PUT" else None
            elif not tail:
                name = "conversation" if method == "GET" else None
            rest = [parts[3], *parts[4:]]
        elif shape == ["threads"]:
            name, rest = ("create" if method == "POST" else None), []
        elif shape[:1] == ["threads"] and len(parts) >= 2:
            tail = [p for p in shape[2:] if p]
            rest = [parts[1], *parts[2:]]
            if not tail:
                name = "thread" if method == "GET" else None
            elif tail == ["members"]:
                name = "members" if method == "GET" else None
            elif len(tail) == 2 and tail[0] == "members":
                name = "member" if method in ("PUT", "DELETE") else None
            elif tail == ["properties"]:
                name = "thread_properties" if method == "PUT" else None
            elif tail == ["consumptionhorizons"]:
                name = "consumptionhorizons" if method == "GET" else None
        if name is None:
            return None
        return f"chatsvc.{name}", base, rest

    def _mt_route(self, method: str, path: str) -> tuple[str, str, list[str]] | None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        shape = [p.lower() for p in parts]
        if method == "POST" and shape == ["users", "fetchshortprofile"]:
            return "mt.fetchShortProfile", "", []
        if method == "POST" and shape == ["users", "fetchfederated"]:
            return "mt.fetchFederated", "", []
        if method == "GET" and shape == ["users", "tenants"]:
            return "mt.tenants", "", []
        search = len(parts) == 3 and shape[0] == "users" and shape[2] == "externalsearchv3"
        if method == "GET" and search:
            return "mt.externalsearchv3", "", [parts[1]]
        return None

    def _rate_limited(self, endpoint: str) -> SimResponse | None:
        with self.lock:
            wanted = self.switches.rate_limit_endpoint
            if self.switches.rate_limited <= 0 or (wanted and not endpoint.startswith(wanted)):
                return None
            self.switches.rate_limited -= 1
            retry = str(self.switches.retry_after_s)
        return SimResponse(
            429, {"errorCode": 429, "message": "Too many requests"}, {"Retry-After": retry}
        )

    # --- identity -------------------------------------------------------------------------

    def _caller(self, request: SimRequest, service: str) -> Caller:
        headers = request.headers
        skypetoken = headers.get("x-skypetoken", "")
        authentication = headers.get("authentication", "")
        if authentication.lower().startswith("skypetoken="):
            skypetoken = authentication.split("=", 1)[1]
        authorization = headers.get("authorization", "")
        bearer = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        if service == "chatsvc" and skypetoken:
            claims = self._claims(skypetoken)
            oid = str(claims.get("skypeid", "")).removeprefix("orgid:")
            return self._identify(oid, claims)
        if not bearer:
            raise Refused(401, "Authentication failed: no credentials")
        claims = self._claims(bearer)
        audience = AUDIENCE_CHAT if service == "chatsvc" else AUDIENCE_SPACES
        if claims.get("aud") != audience:
            raise Refused(401, f"Authentication failed: token audience is not {audience}")
        return self._identify(str(claims.get("oid", "")), claims)

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            claims = claims_of(token)
        except TokenError:
            raise Refused(401, "Authentication failed: unreadable token") from None
        if is_expired(claims):
            raise Refused(401, "Authentication failed: token expired")
        return claims

    def _identify(self, oid: str, claims: dict[str, Any]) -> Caller:
        tenant_id = str(claims.get("tid", "")).lower()
        if not oid or not tenant_id:
            raise Refused(401, "Authentication failed: token names no user")
        account = self.org.account_by_oid(oid)
        if account is not None and account.tenant.id != tenant_id:
            raise Refused(401, "Authentication failed: user not in the token's tenant")
        return Caller(oid.lower(), tenant_id, account)

    # --- dispatch --------------------------------------------------------------------------

    def _dispatch(
        self, endpoint: str, request: SimRequest, base: str, rest: list[str], query: dict[str, str]
    ) -> SimResponse:
        service, _, name = endpoint.partition(".")
        caller = self._caller(request, "chatsvc" if service == "chatsvc" else "mt")
        if endpoint == "authz":
            return self._authz(caller)
        if service == "mt":
            handler = getattr(self, f"_mt_{name.lower()}")
            return handler(caller, request, rest)
        if name == "create":
            return self._create(caller, request, base)
        conversation = self._conversation(rest[0], caller, request)
        return getattr(self, f"_chat_{name}")(caller, conversation, request, base, rest, query)

    def _conversation(self, raw_id: str, caller: Caller, request: SimRequest) -> Conversation:
        thread_id = raw_id.split(";", 1)[0]  # a channel reply thread is its channel's
        conversation = self.org.conversation(thread_id)
        hidden = thread_id.lower() in {t.lower() for t in self.switches.hidden_threads}
        if conversation is None or hidden:
            if _SYSTEM_THREAD.match(thread_id) and request.method == "POST":
                return _self_conversation(self.org, thread_id, caller)
            raise Refused(404, f"Thread {thread_id} not found")
        if not self.org.is_member(conversation, caller.mri):
            if request.headers.get("behavioroverride", "").lower() == "redirectas404":
                raise Refused(404, f"Thread {thread_id} not found")
            raise Refused(403, "User is not a member of the thread")
        return conversation

    def _body(self, request: SimRequest) -> Any:
        if not request.body:
            return None
        try:
            return orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise Refused(400, "Malformed JSON in the request body") from None

    # --- chat service -----------------------------------------------------------------------

    def _chat_send(self, caller, conversation, request, base, rest, query) -> SimResponse:
        self._body(request)
        arrival = views.now_ms()
        location = f"{base}/v1/users/ME/conversations/{rest[0]}/messages/{arrival}"
        return SimResponse(201, {"OriginalArrivalTime": arrival}, {"Location": location})

    def _chat_messages(self, caller, conversation, request, base, rest, query) -> SimResponse:
        return SimResponse(
            200, {"messages": [], "_metadata": {"backwardLink": "", "syncState": ""}}
        )

    def _chat_edit(self, caller, conversation, request, base, rest, query) -> SimResponse:
        self._body(request)
        return SimResponse(200, {"edittime": views.now_ms()})

    def _chat_delete(self, caller, conversation, request, base, rest, query) -> SimResponse:
        return SimResponse(200, None)

    def _chat_message_properties(self, caller, conversation, request, base, rest, query):
        self._body(request)
        return SimResponse(200, {})

    def _chat_conversation_properties(self, caller, conversation, request, base, rest, query):
        self._body(request)
        return SimResponse(200, {})

    def _chat_conversation(self, caller, conversation, request, base, rest, query):
        return SimResponse(200, views.conversation_view(self.org, conversation, caller.account))

    def _chat_thread(self, caller, conversation, request, base, rest, query) -> SimResponse:
        return SimResponse(200, views.thread(self.org, conversation, base))

    def _chat_members(self, caller, conversation, request, base, rest, query) -> SimResponse:
        try:
            page_size = int(query.get("pageSize") or 100)
            offset = int(query.get("skipToken") or 0)
        except ValueError:
            raise Refused(400, "pageSize and skipToken must be numbers") from None
        if not 1 <= page_size <= 1000 or offset < 0:
            raise Refused(400, "pageSize must be 1..1000")
        return SimResponse(200, views.members_page(self.org, conversation, base, offset, page_size))

    def _chat_consumptionhorizons(self, caller, conversation, request, base, rest, query):
        return SimResponse(200, views.consumption_horizons(self.org, conversation))

    def _chat_member(self, caller, conversation, request, base, rest, query) -> SimResponse:
        account = self.org.account_by_mri(rest[-1])
        if account is None:
            raise Refused(404, "User not found")
        if request.method == "PUT":
            self._body(request)
            self.org.add_member(conversation, account)
        else:
            self.org.remove_member(conversation, account)
        return SimResponse(200, {})

    def _chat_thread_properties(self, caller, conversation, request, base, rest, query):
        body = self._body(request)
        if query.get("name") == "topic" and isinstance(body, dict):
            conversation.topic = str(body.get("topic") or "")
        return SimResponse(200, {})

    def _create(self, caller: Caller, request: SimRequest, base: str) -> SimResponse:
        body = self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("members"), list):
            raise Refused(400, "A thread needs a members list")
        properties = body.get("properties") or {}
        one_to_one = str(properties.get("uniquerosterthread", "")).lower() == "true"
        suffix = "uni01_" + secrets.token_hex(20) if one_to_one else secrets.token_hex(16)
        keys = []
        for member in body["members"]:
            account = self.org.account_by_mri(str((member or {}).get("id", "")))
            if account is not None:
                keys.append(account.key)
        tenant = caller.account.tenant if caller.account else next(iter(self.org.tenants.values()))
        conversation = Conversation(
            key=f"created-{suffix[-8:]}",
            id=f"19:{suffix}@thread.v2",
            kind="direct" if one_to_one else "group",
            tenant=tenant,
            topic=properties.get("topic"),
            members=keys,
            created_by=caller.mri,
        )
        self.org.add_conversation(conversation)
        location = f"{base}/v1/threads/{conversation.id}"
        return SimResponse(201, {}, {"Location": location})

    # --- middle tier and authz ------------------------------------------------------------

    def _mris(self, request: SimRequest) -> list[str]:
        body = self._body(request)
        if not isinstance(body, list) or not all(isinstance(m, str) for m in body):
            raise Refused(400, "Expected a JSON array of MRIs")
        return body

    def _mt_fetchshortprofile(self, caller, request, rest) -> SimResponse:
        found = [self.org.account_by_mri(m) for m in self._mris(request)]
        profiles = [views.short_profile(a) for a in found if a is not None]
        return SimResponse(200, {"type": views.SHORT_PROFILE_TYPE, "value": profiles})

    def _mt_fetchfederated(self, caller, request, rest) -> SimResponse:
        mris = self._mris(request)
        if any("@" in m for m in mris):
            raise Refused(400, "fetchFederated takes MRIs, not email addresses")
        found = [self.org.account_by_mri(m) for m in mris]
        profiles = [views.federated_profile(a) for a in found if a is not None]
        if self.switches.federated_bare_array:
            return SimResponse(200, profiles)
        return SimResponse(200, {"type": views.FEDERATED_TYPE, "value": profiles})

    def _mt_externalsearchv3(self, caller, request, rest) -> SimResponse:
        if self.switches.federation_blocked:
            raise Refused(403, "Federation is blocked for this tenant")
        found = [a for a in self.org.accounts_by_email(rest[0]) if a.tenant.id != caller.tenant_id]
        return SimResponse(200, [views.external_search_entry(a) for a in found])

    def _mt_tenants(self, caller, request, rest) -> SimResponse:
        accounts = [caller.account] if caller.account else []
        if caller.account and caller.account.email:
            accounts = self.org.accounts_by_email(caller.account.email)
        return SimResponse(200, views.tenants_of(accounts))

    def _authz(self, caller: Caller) -> SimResponse:
        tenant = self.org.tenant_by_id(caller.tenant_id)
        if tenant is None:
            raise Refused(401, "Authentication failed: unknown tenant")
        token = mint_skypetoken(caller.oid, tenant.id, tenant.region, SKYPETOKEN_LIFETIME_S)
        return SimResponse(200, views.authz(tenant, token, SKYPETOKEN_LIFETIME_S))


def _self_conversation(org: Org, thread_id: str, caller: Caller) -> Conversation:
    """``48:notes`` and other system threads exist for everyone, with only the caller."""
    tenant = caller.account.tenant if caller.account else next(iter(org.tenants.values()))
    members = [caller.account.key] if caller.account else []
    return Conversation(key=thread_id, id=thread_id, kind="group", tenant=tenant, members=members)
