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
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tfw.sim import chatsvc, middle_tier
from tfw.sim.org import Conversation, Org
from tfw.sim.tokens import AUDIENCE_CHAT, AUDIENCE_SPACES, TokenError, is_expired
from tfw.sim.tokens import read_claims as claims_of
from tfw.sim.wire import Call, Caller, Refused, SimRequest, SimResponse, Switches

__all__ = ["SimRequest", "SimResponse", "Switches", "TeamsService"]
_LEGACY_HOST = re.compile(r"^([a-z0-9-]+)\.ng\.msg\.teams\.microsoft\.com$")
_WEB_HOSTS = ("teams.microsoft.com", "teams.cloud.microsoft")
_CHATSVC = re.compile(r"^/api/chatsvc/([^/]+)(/v1/.*)$", re.IGNORECASE)
_MT = re.compile(r"^/api/mt/(?:part/)?([a-z0-9-]+)/beta/(.*)$", re.IGNORECASE)
_SYSTEM_THREAD = re.compile(r"^48:[a-z]+$")


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
        caller = self._caller(request, service)
        call = Call(caller, request, base, rest, query)
        if service != "chatsvc":
            return middle_tier.HANDLERS[endpoint](self.org, self.switches, call)
        if name == "create":
            return chatsvc.create(self.org, call)
        call.conversation = self._conversation(rest[0], caller, request)
        return chatsvc.HANDLERS[name](self.org, call)

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


def _self_conversation(org: Org, thread_id: str, caller: Caller) -> Conversation:
    """``48:notes`` and other system threads exist for everyone, with only the caller."""
    tenant = caller.account.tenant if caller.account else next(iter(org.tenants.values()))
    members = [caller.account.key] if caller.account else []
    return Conversation(key=thread_id, id=thread_id, kind="group", tenant=tenant, members=members)
