"""A bad rule push is rejected whole and the running rules keep working: through
``tfw rules push`` (refused before anything is stored) and straight into the rule
bucket, bypassing the command (the resolver and the decider both keep the previous
rule set, internal tenants included). Real nats-server, SecantusDB and mitmproxy."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import nats
import pytest

from services.common.contracts import RuleSetDocument, Subjects, encode
from tests.reliability.harness import Firewall, running_firewall
from tests.support.walls import FIRM, PARTNER, RULES
from tfw.stack import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NO_SENDS = (
    RULES
    + """  - name: No sends
    when: {actions: [message.send]}
    then: [block]
"""
)
# The first rule is fine; the second names an action that does not exist.
HALF_BROKEN = f"""
internal_tenants: [{FIRM}]
rules:
  - name: Allow everything
    when: {{actions: [message.edit]}}
    then: [allow]
  - name: Broken
    when: {{actions: [message.teleport]}}
    then: [block]
"""


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    with running_firewall(
        infra, tmp_path_factory, "rpush", services=("resolver", "decider", "interceptor")
    ) as firewall:
        yield firewall


def _push(firewall: Firewall, text: str, name: str) -> subprocess.CompletedProcess[str]:
    path = firewall.stack.data_dir / name
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tfw",
            "rules",
            "push",
            str(path),
            "--nats-url",
            firewall.stack.nats_url or "",
            "--prefix",
            firewall.prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
        env={**os.environ},
    )


def _put_raw(firewall: Firewall, value: bytes) -> None:
    async def put() -> None:
        assert firewall.stack.nats_url
        nc = await nats.connect(firewall.stack.nats_url, connect_timeout=5)
        try:
            subjects = Subjects(firewall.prefix)
            kv = await nc.jetstream().key_value(subjects.rules_bucket)
            await kv.put(subjects.rules_key, value)
        finally:
            await nc.close()

    asyncio.run(put())


def _swaps(firewall: Firewall) -> float:
    text = firewall.metrics("decider")
    match = re.search(r"^tfw_decider_rule_swaps_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _sends_blocked(firewall: Firewall) -> bool:
    outcome = firewall.request("send")
    return outcome.status == 403 and "No sends" in outcome.message


def _edits_from_abroad_blocked(firewall: Firewall) -> bool:
    outcome = firewall.request("edit")
    return outcome.status == 403 and "No edits abroad" in outcome.message


def test_the_command_refuses_a_bad_file_whole_and_the_running_rules_keep_working(
    firewall: Firewall,
) -> None:
    assert firewall.request("send").forwarded
    refused = _push(firewall, HALF_BROKEN, "half-broken.yaml")
    assert refused.returncode == 1
    assert "nothing was pushed" in refused.stderr
    assert _edits_from_abroad_blocked(firewall)
    assert firewall.request("send").forwarded

    pushed = _push(firewall, NO_SENDS, "no-sends.yaml")
    assert pushed.returncode == 0, pushed.stderr
    assert _wait_for(lambda: _sends_blocked(firewall)), "the good push never took effect"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\xff\xfe not json", id="not-json"),
        pytest.param(b'{"schema": 1, "version": "x"}', id="no-source"),
        pytest.param(
            encode(RuleSetDocument(version="x", source="rules: [unclosed", internal_tenants=[])),
            id="not-yaml",
        ),
        pytest.param(
            encode(RuleSetDocument(version="x", source=HALF_BROKEN, internal_tenants=[FIRM])),
            id="one-bad-rule",
        ),
        pytest.param(
            # A broken rule set naming the partner's tenant internal: were the resolver
            # to take the tenants of a rule set the decider refused, an edit from
            # abroad would count as internal and pass.
            encode(
                RuleSetDocument(version="x", source=HALF_BROKEN, internal_tenants=[PARTNER, FIRM])
            ),
            id="bad-rules-with-other-tenants",
        ),
    ],
)
def test_a_bad_value_in_the_rule_bucket_is_rejected_whole_by_every_service(
    firewall: Firewall, value: bytes
) -> None:
    assert _wait_for(lambda: _sends_blocked(firewall))
    swaps = _swaps(firewall)
    _put_raw(firewall, value)
    # The watchers read values in order: once a good push after the bad one is active,
    # the bad one was seen and refused.
    for _ in range(3):
        assert _sends_blocked(firewall)
        assert _edits_from_abroad_blocked(firewall)
    _put_raw(
        firewall,
        encode(
            RuleSetDocument(
                version="restore", source=NO_SENDS + "\n# again\n", internal_tenants=[FIRM]
            )
        ),
    )
    assert _wait_for(lambda: _swaps(firewall) > swaps)
    assert _swaps(firewall) == swaps + 1, "the bad value was made active"
    assert _sends_blocked(firewall)
    assert _edits_from_abroad_blocked(firewall)
    for service in ("resolver", "decider", "interceptor"):
        assert firewall.stack.find(service).popen.poll() is None
