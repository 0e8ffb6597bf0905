"""Dot segments resolved as an HTTP server resolves them (RFC 3986, 5.2.4)."""

from __future__ import annotations

import pytest

from services.common.paths import remove_dot_segments


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/v1/users/ME/conversations/c/messages/17", "/v1/users/ME/conversations/c/messages/17"),
        ("/v1/c/messages/1/../17", "/v1/c/messages/17"),
        ("/v1/./c/messages/./17", "/v1/c/messages/17"),
        ("/api/mt/../chatsvc/emea/v1", "/api/chatsvc/emea/v1"),
        ("/../../v1/x", "/v1/x"),
        ("/v1/x/..", "/v1/"),
        ("/v1/x/.", "/v1/x/"),
        ("/a.b/c..d/...", "/a.b/c..d/..."),
        ("", ""),
    ],
)
def test_dot_segments_resolve_as_a_server_resolves_them(path: str, resolved: str) -> None:
    assert remove_dot_segments(path) == resolved
