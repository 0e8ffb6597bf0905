"""NATS faults on a nats-server of the test's own: a message over ``max_payload`` never
drops a connection or another request; a stopped and restarted server makes requests
fail closed during the outage, and traffic, every reply inbox and the audit consumer
come back by themselves within seconds of its return."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from services.interceptor.ask import ENVELOPE_BYTES
from tests.reliability.harness import (
    CLIENT_TIMEOUT_S,
    Firewall,
    assert_every_request_ended,
    new_firewall,
)
from tests.support.upstream import RecordingUpstream
from tfw.stack import Stack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_PAYLOAD = 512 * 1024
# As large as the interceptor allows (it lowers the cap to fit max_payload itself).
BODY_CAP = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def firewall(infra: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    data = tmp_path_factory.mktemp("nats-faults")
    stack = Stack(data, log=infra.log, mongodb_uri=infra.mongodb_uri)
    with RecordingUpstream() as upstream, stack:
        _start_nats(stack, free_port())
        firewall = new_firewall(stack, upstream, "natsf")
        firewall.extra_env["TFW_BODY_CAP_BYTES"] = str(BODY_CAP)
        firewall.start_all()
        yield firewall


def _start_nats(stack: Stack, port: int) -> None:
    config = stack.data_dir / "nats-small.conf"
    config.write_text(
        f"max_payload: {MAX_PAYLOAD}\njetstream {{\n  max_file_store: 1TB\n}}\n", encoding="utf-8"
    )
    stack.start_nats(port, ["-c", str(config)])


def _nats_port(firewall: Firewall) -> int:
    assert firewall.stack.nats_url
    return int(firewall.stack.nats_url.rsplit(":", 1)[1])


def _disconnects(firewall: Firewall, service: str) -> float:
    text = firewall.metrics(service)
    match = re.search(r'^tfw_nats_events_total\{event="disconnected"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _side_traffic(firewall: Firewall, count: int = 8) -> list:
    return [firewall.request("send") for _ in range(count)]


# --- max_payload ------------------------------------------------------------------------


def test_a_body_over_max_payload_is_decided_on_its_capped_part_and_reaches_teams_whole(
    firewall: Firewall,
) -> None:
    before = _disconnects(firewall, "interceptor")
    content = orjson.dumps({"content": "x" * (2 * MAX_PAYLOAD), "messagetype": "Text"})
    with ThreadPoolExecutor(2) as pool:
        side = pool.submit(_side_traffic, firewall)
        outcome = firewall.request("send", content=content)
        others = side.result()
    assert outcome.forwarded, outcome
    assert any(len(r.body) == len(content) for r in firewall.upstream.received)
    assert all(other.forwarded for other in others)
    assert _disconnects(firewall, "interceptor") == before


def test_credentials_over_max_payload_fail_closed_at_once_without_dropping_the_bus(
    firewall: Firewall,
) -> None:
    before = {s: _disconnects(firewall, s) for s in ("interceptor", "resolver")}
    huge = "skypetoken=" + "A" * (MAX_PAYLOAD + 1024)
    with ThreadPoolExecutor(2) as pool:
        side = pool.submit(_side_traffic, firewall)
        outcome = firewall.request("send", headers={"Authentication": huge})
        others = side.result()
    assert outcome.status is not None and outcome.status >= 400, outcome
    assert not outcome.forwarded
    assert outcome.elapsed_s < CLIENT_TIMEOUT_S
    assert all(other.forwarded for other in others)
    assert {s: _disconnects(firewall, s) for s in before} == before


def test_a_body_at_the_cap_that_json_must_escape_still_fits_the_enriched_event(
    firewall: Firewall,
) -> None:
    # The resolver re-encodes the message text in the enriched event. Quotes,
    # backslashes and entities stay no larger than they were in the request (control
    # characters from entities are dropped), so an event never outgrows max_payload.
    cap = (MAX_PAYLOAD - ENVELOPE_BYTES) * 3 // 4
    unit = '"\\&amp;&#11;&#x1F600;é'
    repeat = (cap - 64) // (len(orjson.dumps(unit)) - 2)
    content = orjson.dumps({"content": unit * repeat, "messagetype": "Text"})
    assert cap - 256 <= len(content) <= cap
    before = _disconnects(firewall, "resolver")
    outcome = firewall.request("send", content=content)
    assert outcome.forwarded and outcome.decision_id, outcome
    assert _disconnects(firewall, "resolver") == before
    assert firewall.request("send").forwarded


def test_a_raw_client_over_max_payload_is_cut_off_alone(firewall: Firewall) -> None:
    before = {s: _disconnects(firewall, s) for s in ("interceptor", "resolver", "decider")}
    with socket.create_connection(("127.0.0.1", _nats_port(firewall)), timeout=5) as raw:
        raw.recv(4096)  # INFO
        size = MAX_PAYLOAD + 1
        prefix = firewall.prefix
        raw.sendall(b'CONNECT {"verbose":false}\r\n')
        # The server refuses on the size the PUB line announces and closes the
        # connection, possibly while the payload is still being sent.
        with contextlib.suppress(OSError):
            raw.sendall(f"PUB {prefix}.v1.intercepted {size}\r\n".encode())
            raw.sendall(b"x" * size + b"\r\n")
        answer, closed = b"", False
        deadline = time.monotonic() + 5
        while b"Maximum Payload" not in answer and time.monotonic() < deadline:
            try:
                chunk = raw.recv(4096)
            except OSError:  # reset: the server cut this client off
                chunk = b""
            if not chunk:
                closed = True
                break
            answer += chunk
    assert b"Maximum Payload" in answer or closed, answer
    assert firewall.request("send").forwarded
    assert {s: _disconnects(firewall, s) for s in before} == before


# --- NATS stopped and restarted -------------------------------------------------------------


def test_requests_fail_closed_while_nats_is_down_and_flow_again_when_it_returns(
    firewall: Firewall,
) -> None:
    firewall.wait_until_allowed()
    port = _nats_port(firewall)
    before = firewall.load(9)
    nats_process = firewall.stack.find("nats")
    in_flight = firewall.load(18, during=lambda: firewall.stack.stop_process(nats_process))
    assert_every_request_ended(in_flight)

    during = firewall.load(9)
    assert_every_request_ended(during)
    assert not [o for o in during if o.forwarded], "a request passed while NATS was down"
    assert all(o.failed_closed for o in during)
    assert max(o.elapsed_s for o in during) < CLIENT_TIMEOUT_S

    restarting = time.monotonic()
    _start_nats(firewall.stack, port)
    listening_s = time.monotonic() - restarting
    recovery_s = firewall.wait_until_allowed(timeout=30)

    # The known nats-py failure leaves the reply inbox dead after a reconnect, so that
    # every later request times out: many requests in a row must all get verdicts.
    after = [firewall.request(kind) for kind in ["send", "edit"] * 10]
    after += firewall.load(12)
    assert all(o.decided for o in after), [o for o in after if not o.decided]
    assert_every_request_ended(after)

    decided = [o.decision_id for o in before + in_flight + after if o.decided and o.decision_id]
    counts = firewall.wait_archived(decided, timeout=30)
    assert [d for d in decided if d not in counts] == [], "the audit consumer did not resume"
    assert [d for d, n in counts.items() if n != 1] == []
    print(
        f"\nNATS outage: {len(during)} requests during it, all failed closed in at most "
        f"{max(o.elapsed_s for o in during):.2f}s; nats-server listening again after "
        f"{listening_s:.2f}s, first forward {recovery_s:.2f}s later; {len(after)} requests "
        f"after it all decided; {len(counts)} records archived once each"
    )
