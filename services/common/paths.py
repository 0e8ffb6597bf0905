"""Request paths as an HTTP server resolves them, shared by the interceptor (routing)
and the resolver (classification), so both see the path Teams will act on."""

from __future__ import annotations


def remove_dot_segments(path: str) -> str:
    """Resolve ``.`` and ``..`` segments as an HTTP server does (RFC 3986, 5.2.4):
    ``/a/b/../c`` is ``/a/c``, and ``..`` never climbs above the root."""
    if "." not in path:
        return path
    kept: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")
    return "/".join(kept)
