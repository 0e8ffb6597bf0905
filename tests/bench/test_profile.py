"""Summing up py-spy's raw collapsed stacks of the interceptor."""

from __future__ import annotations

from pathlib import Path

from tfw.bench.profile import group_of, summarise

# ruff: noqa: E501 (py-spy output, quoted as written)

STACKS = """\
<module> (services/interceptor/__main__.py:5);run (asyncio/runners.py:118);Interceptor.request (/w/services/interceptor/addon.py:190);request_packet (/w/services/interceptor/ask.py:88) 30
<module> (services/interceptor/__main__.py:5);run (asyncio/runners.py:118);Layer.handle_event (/v/site-packages/mitmproxy/proxy/layer.py:140) 50
<module> (services/interceptor/__main__.py:5);run (asyncio/runners.py:118);Client.publish (/v/site-packages/nats/aio/client.py:900) 20
not a stack line
"""


def test_own_time_packages_and_inclusive_shares_come_from_the_samples(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(STACKS)
    profile = summarise(raw)
    assert profile.samples == 100
    assert profile.own["Layer.handle_event (proxy/layer.py)"] == 50
    assert profile.groups["mitmproxy proxy core (layers, server)"] == 50
    assert profile.groups["firewall addon (services.interceptor)"] == 30
    assert profile.groups["nats-py"] == 20
    assert profile.share(profile.inclusive["Interceptor.request (interceptor/addon.py)"]) == 0.3
    assert profile.share(profile.inclusive["<module> (interceptor/__main__.py)"]) == 1.0


def test_files_outside_known_packages_are_other() -> None:
    assert group_of("/usr/lib/python3.12/json/encoder.py").startswith("other")
    assert group_of("/v/site-packages/mitmproxy/http.py").startswith("mitmproxy other")
