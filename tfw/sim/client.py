"""A Teams client for demos and tests: replays a scenario through the real proxy.

For each account it mints the tokens a signed-in client holds (a bearer token for the
middle tier and authz, one for the chat service) and, before the account's first
request, performs its sign-in traffic through the proxy as the real client does: the
token exchange (authz, which returns the skypetoken and the region's service map) and
a fetchShortProfile of the account itself on the middle tier authz named. Then every
scenario request goes through the proxy over HTTPS, trusting the proxy's CA, and the
result records what the client saw and what the Teams simulator received.

Only hosts the Teams simulator serves are ever contacted (through the proxy); any
other entry of a scenario or capture is skipped and reported, never sent.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from tfw.sim.org import Account, Org
from tfw.sim.scenario import ScenarioRequest
from tfw.sim.teams import MARKER_HEADER, Received
from tfw.sim.tokens import AUDIENCE_CHAT, AUDIENCE_SPACES, mint_bearer, mint_skypetoken

REQUEST_TIMEOUT_S = 15.0
DECISION_HEADER = "x-teamsfirewall-decision"
AUTHZ_URL = "https://teams.microsoft.com/api/authsvc/v1.0/authz"
SIMULATED_HOST = re.compile(
    r"^(?:[a-z0-9-]+\.ng\.msg\.teams\.microsoft\.com|teams\.microsoft\.com"
    r"|teams\.cloud\.microsoft|authsvc\.teams\.microsoft\.com)$"
)
CLIENT_HEADERS = {
    "x-ms-client-version": "1415/26010400925",
    "x-ms-migration": "True",
    "x-ms-request-priority": "0",
    "x-ms-test-user": "False",
    "behavioroverride": "redirectAs404",
    "clientinfo": "os=linux; osVer=6; proc=x86; lcid=en-us; deviceType=1; country=us; "
    "clientName=skypeteams; clientVer=1415/26010400925; utcOffset=+00:00; timezone=UTC",
    "referer": "https://teams.microsoft.com/v2/worker/precompiled-web-worker-5f2a9c.js",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36 Teams/26010400925",
}


class ReceivedLog(Protocol):
    def received_with_marker(self, marker: str) -> list[Received]: ...


@dataclass
class ReplayResult:
    """What the client saw for one scenario request."""

    id: str
    method: str
    url: str
    account: str | None
    status: int | None = None
    body: Any = None
    decision_id: str | None = None
    received: bool = False
    received_headers: dict[str, str] | None = None
    error: str | None = None
    skipped: bool = False


@dataclass
class Session:
    """One signed-in account: its tokens and the services authz named."""

    account: Account
    session_id: str
    spaces_token: str
    chat_bearer: str
    skypetoken: str
    middle_tier: str
    signed_in: bool = False
    sign_in_statuses: list[int] = field(default_factory=list)


class Replayer:
    """Sends scenario requests through the proxy at ``proxy_url`` (``http://host:port``)."""

    def __init__(
        self,
        org: Org,
        proxy_url: str,
        ca_file: str | Path,
        received: ReceivedLog | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.org = org
        self.received = received
        self.sessions: dict[str, Session] = {}
        trust = ssl.create_default_context(cafile=str(ca_file))  # the proxy's CA only
        self.http = httpx.Client(proxy=proxy_url, verify=trust, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replay(
        self,
        requests: list[ScenarioRequest],
        progress: Callable[[int, int, ReplayResult], None] | None = None,
    ) -> list[ReplayResult]:
        """Replay in order; ``progress(done, total, result)`` after each request."""
        results = []
        for done, request in enumerate(requests, 1):
            result = self.send(request)
            results.append(result)
            if progress is not None:
                progress(done, len(requests), result)
        return results

    def send(self, request: ScenarioRequest) -> ReplayResult:
        result = ReplayResult(request.id, request.method, request.url, request.account)
        if not SIMULATED_HOST.match(request.host):
            result.skipped = True
            result.error = f"host {request.host} is not served by the Teams simulator"
            return result
        headers = dict(request.headers)
        if request.account is not None:
            try:
                session = self.session(request.account)
            except KeyError:
                result.error = f"account {request.account!r} is not in the organisation"
                return result
            headers = {**CLIENT_HEADERS, "x-ms-session-id": session.session_id, **headers}
            headers.update(credentials(session, request.auth, request.url))
        body = request.body_bytes()
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["content-type"] = "application/json"
        marker = f"{request.id}:{uuid.uuid4().hex[:12]}"
        headers[MARKER_HEADER] = marker
        try:
            response = self.http.request(request.method, request.url, headers=headers,
                                         content=body)
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        result.status = response.status_code
        result.body = _json_or_text(response.content)
        result.decision_id = response.headers.get(DECISION_HEADER)
        if self.received is not None:
            seen = self.received.received_with_marker(marker)
            result.received = bool(seen)
            result.received_headers = dict(seen[0].headers) if seen else None
        return result

    # --- sign-in ----------------------------------------------------------------------------

    def session(self, key: str) -> Session:
        """The account's session, signing it in through the proxy the first time."""
        if key in self.sessions:
            return self.sessions[key]
        account = self.org.accounts[key]
        if account.oid is None or account.email is None:
            raise KeyError(key)
        tenant = account.tenant
        session = Session(
            account=account,
            session_id=str(uuid.uuid4()),
            spaces_token=mint_bearer(account.oid, tenant.id, account.email, AUDIENCE_SPACES),
            chat_bearer=mint_bearer(account.oid, tenant.id, account.email, AUDIENCE_CHAT),
            skypetoken=mint_skypetoken(account.oid, tenant.id, tenant.region),
            middle_tier=f"https://teams.microsoft.com/api/mt/part/{tenant.region}-02",
        )
        self.sessions[key] = session
        self.sign_in(session)
        return session

    def sign_in(self, session: Session) -> None:
        """authz, then the account's own short profile, as a client does at start."""
        headers = {
            **CLIENT_HEADERS,
            "x-ms-session-id": session.session_id,
            "authorization": f"Bearer {session.spaces_token}",
            "ms-teams-authz-type": "TokenRefresh",
        }
        try:
            answer = self.http.post(AUTHZ_URL, headers=headers, content=b"")
            session.sign_in_statuses.append(answer.status_code)
            body = _json_or_text(answer.content)
            if answer.status_code == 200 and isinstance(body, dict):
                session.skypetoken = body.get("tokens", {}).get("skypeToken") or session.skypetoken
                gtms = body.get("regionGtms") or {}
                session.middle_tier = gtms.get("middleTier") or session.middle_tier
            profile_url = (
                f"{session.middle_tier}/beta/users/fetchShortProfile"
                "?isMailAddress=false&enableGuest=true&includeIBBarredUsers=true"
                "&skypeTeamsInfo=true"
            )
            profile = self.http.post(
                profile_url,
                headers={**headers, "content-type": "application/json"},
                content=orjson.dumps([session.account.mri]),
            )
            session.sign_in_statuses.append(profile.status_code)
        except httpx.HTTPError:
            session.sign_in_statuses.append(0)
        session.signed_in = True


def credentials(session: Session, auth: str, url: str = "") -> dict[str, str]:
    """The credential headers a client sends for one ``auth`` kind. The middle tier
    and authz take the spaces bearer token; the chat service the IC3 one."""
    skypetoken = {"authentication": f"skypetoken={session.skypetoken}"}
    spaces = "/api/mt/" in url or "/authz" in url
    token = session.spaces_token if spaces else session.chat_bearer
    bearer = {"authorization": f"Bearer {token}"}
    if auth == "skypetoken":
        return skypetoken
    if auth == "x-skypetoken":
        return {"x-skypetoken": session.skypetoken}
    if auth == "bearer":
        return bearer
    if auth == "both":
        return {**skypetoken, **bearer}
    if auth == "garbage-token":
        return {"authentication": "skypetoken=not-a-token"}
    return {}


def _json_or_text(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")
