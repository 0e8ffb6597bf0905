"""Features of a request body: message type, text, files, mentions, importance.

New clients send ``properties.files``, ``mentions`` and ``links`` as JSON-encoded
strings; legacy clients sometimes as real arrays. Both are accepted. A body that is not
JSON, or is nested beyond reason, yields features with ``parse_error`` set and never
raises.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.common.contracts import BodyFeatures, FileRef

MAX_DEPTH = 64
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class BodyParse:
    data: Any = None
    features: BodyFeatures = field(default_factory=BodyFeatures)


def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """No value inside ``value`` sits deeper than ``limit`` (the top is depth 0)."""
    containers = [value] if isinstance(value, dict | list) else []
    depth = 0
    while containers:
        if depth == limit:
            # Anything inside one of these would sit at limit + 1.
            return not any(containers)
        inner: list[Any] = []
        for item in containers:
            children = item.values() if isinstance(item, dict) else item
            inner.extend(child for child in children if isinstance(child, dict | list))
        containers = inner
        depth += 1
    return True


def _shallow(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when ``body`` cannot nest deeper than ``limit``: it has too few brackets.
    A message has a handful; counting them is far cheaper than walking the parse."""
    return body.count(b"{") + body.count(b"[") <= limit


def _maybe_json(value: Any) -> Any:
    """A property that may be a JSON-encoded string or the value itself."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            try:
                return orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return None
        return None
    return value


def plain_text(content: str) -> str:
    """Message content with HTML tags removed and entities decoded."""
    text = _TAG.sub(" ", content)
    return _SPACE.sub(" ", html.unescape(text)).strip()


def _files(properties: dict[str, Any]) -> list[FileRef]:
    files = _maybe_json(properties.get("files"))
    refs: list[FileRef] = []
    if not isinstance(files, list):
        return refs
    for item in files:
        if not isinstance(item, dict):
            continue
        name = item.get("title") or item.get("fileName") or item.get("name") or ""
        if not isinstance(name, str):
            name = ""
        ext = item.get("type") or item.get("fileType") or ""
        if not isinstance(ext, str) or not ext:
            ext = name.rsplit(".", 1)[1] if "." in name else ""
        refs.append(FileRef(name=name, extension=ext.lower().lstrip(".")))
    return refs


def _mentions(properties: dict[str, Any]) -> list[str]:
    mentions = _maybe_json(properties.get("mentions"))
    if not isinstance(mentions, list):
        return []
    return [m["mri"] for m in mentions if isinstance(m, dict) and isinstance(m.get("mri"), str)]


def parse_body(body: bytes) -> BodyParse:
    """Parse a request body into :class:`BodyParse`. Never raises."""
    if not body or not body.strip():
        return BodyParse()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return BodyParse(features=BodyFeatures(parse_error="body is not JSON"))
    if not _shallow(body) and not _depth_ok(data):
        return BodyParse(features=BodyFeatures(parse_error="body nested too deeply"))
    features = BodyFeatures()
    if isinstance(data, dict):
        message_type = data.get("messagetype")
        if isinstance(message_type, str):
            features.message_type = message_type
        content = data.get("content")
        if isinstance(content, str) and content:
            features.text = plain_text(content)
        properties = data.get("properties")
        if isinstance(properties, dict):
            features.files = _files(properties)
            features.mentions = _mentions(properties)
            importance = properties.get("importance")
            if isinstance(importance, str) and importance:
                features.importance = importance.lower()
    return BodyParse(data=data, features=features)
