"""Reading scenarios: the JSON-lines format of the acceptance cases, or a HAR capture.

A JSON line is ``{"id", "as", "auth", "method", "url", "body"}`` (see
``tfw/demo_data/README.md``): ``as`` names the account whose tokens the request
carries; ``auth`` is ``skypetoken``, ``x-skypetoken``, ``bearer``, ``both``, ``none`` or
``garbage-token``; a JSON ``body`` is sent as JSON, a string as it is, ``null`` as
nothing. A HAR entry is replayed with its own headers (``auth`` ``as-captured``); its
id is the entry's ``comment`` when it has one, else its position (1-based).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

AUTH_KINDS = ("skypetoken", "x-skypetoken", "bearer", "both", "none", "garbage-token")
AS_CAPTURED = "as-captured"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
# Headers a replay must not copy from a capture: the transport sets them itself.
_TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding",
     "proxy-connection", "proxy-authorization", "te", "upgrade", "accept-encoding"}
)


class ScenarioError(ValueError):
    """A scenario file that cannot be replayed; the message names the line or entry."""


@dataclass(frozen=True, slots=True)
class ScenarioRequest:
    id: str
    method: str
    url: str
    account: str | None = None  # the account key in the organisation
    auth: str = AS_CAPTURED
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)  # extra, as captured

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    def body_bytes(self) -> bytes | None:
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)


def load_scenario(path: str | Path) -> list[ScenarioRequest]:
    """Read a ``.har`` capture or a JSON-lines scenario."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{source}: {exc.strerror or 'cannot read'}") from None
    if source.suffix.lower() == ".har":
        return parse_har(text, str(source))
    return parse_jsonl(text, str(source))


def parse_jsonl(text: str, where: str = "scenario") -> list[ScenarioRequest]:
    requests: list[ScenarioRequest] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        here = f"{where}:{number}"
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ScenarioError(f"{here}: not a JSON object") from None
        if not isinstance(raw, dict):
            raise ScenarioError(f"{here}: not a JSON object")
        for key in ("id", "as", "method", "url"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ScenarioError(f"{here}: {key!r} is missing or not a string")
        auth = str(raw.get("auth") or "skypetoken")
        if auth not in AUTH_KINDS:
            raise ScenarioError(f"{here}: auth {auth!r} is not one of {', '.join(AUTH_KINDS)}")
        method = raw["method"].upper()
        if method not in METHODS:
            raise ScenarioError(f"{here}: method {raw['method']!r} is not one of {METHODS}")
        if raw["id"] in seen:
            raise ScenarioError(f"{here}: id {raw['id']!r} is used twice")
        seen.add(raw["id"])
        _check_url(raw["url"], here)
        requests.append(
            ScenarioRequest(raw["id"], method, raw["url"], raw["as"], auth, raw.get("body"))
        )
    return requests


def parse_har(text: str, where: str = "capture") -> list[ScenarioRequest]:
    try:
        document = orjson.loads(text)
        entries = document["log"]["entries"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ScenarioError(f"{where}: not a HAR file (no log.entries)") from None
    if not isinstance(entries, list):
        raise ScenarioError(f"{where}: log.entries is not a list")
    requests = []
    for position, entry in enumerate(entries, 1):
        here = f"{where}: entry {position}"
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            raise ScenarioError(f"{here}: has no request")
        url, method = str(request.get("url") or ""), str(request.get("method") or "").upper()
        if method not in METHODS:
            raise ScenarioError(f"{here}: method {method!r} is not one of {METHODS}")
        _check_url(url, here)
        headers = {}
        for header in request.get("headers") or []:
            name = str(header.get("name", ""))
            if name and not name.startswith(":") and name.lower() not in _TRANSPORT_HEADERS:
                headers[name] = str(header.get("value", ""))
        post = request.get("postData") or {}
        body = post.get("text") if isinstance(post, dict) else None
        comment = str(entry.get("comment") or "").strip()
        requests.append(
            ScenarioRequest(
                comment or str(position), method, url, None, AS_CAPTURED,
                body if body else None, headers,
            )
        )
    return requests


def _check_url(url: str, here: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ScenarioError(f"{here}: url {url!r} is not an https URL")
