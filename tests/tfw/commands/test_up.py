"""``tfw up --teams-sim``: the whole stack in front of the Teams simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tfw.sim.org import load_org
from tfw.sim.tokens import mint_skypetoken
from tfw.stack import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.e2e

ORG = ROOT / "tfw" / "demo_data" / "org.yaml"


def test_up_with_the_simulator_decides_and_forwards_to_it(tmp_path: Path) -> None:
    org = load_org(ORG)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "format: 1\nrules:\n  - name: No typing\n    when: {actions: [typing]}\n"
        "    then: [block]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tfw", "up", "--teams-sim", str(ORG), "--rules", str(rules),
         "--proxy-port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        # A generous budget: this test is about routing, and the machine is shared.
        env={**os.environ, "TFW_DECIDE_TIMEOUT_S": "10"},
    )
    output: list[str] = []
    up = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            output.append(line)
            if "TeamsFirewall is up" in line:
                up.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        # Wait for the command to say so: another program may hold the port meanwhile.
        assert up.wait(120), "".join(output)[-2000:]
        wait_for_port(port, 5, process)
        nora = org.accounts["nora"]
        assert nora.oid
        token = mint_skypetoken(nora.oid, nora.tenant.id, "emea")
        conversation = quote(org.conversations["grp-ops"].id, safe="")
        url = (f"https://emea.ng.msg.teams.microsoft.com/v1/users/ME/conversations/"
               f"{conversation}/messages")
        ca = tmp_path / "data" / "mitmproxy" / "mitmproxy-ca-cert.pem"
        headers = {"Authentication": f"skypetoken={token}"}
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=str(ca), timeout=15) as client:
            sent = client.post(url, json={"content": "hi", "messagetype": "Text"}, headers=headers)
            typing = client.post(url, headers=headers, json={
                "content": "", "messagetype": "Control/Typing", "contenttype": "Application/Message"
            })
        assert sent.status_code == 201, sent.text  # answered by the simulator
        assert "OriginalArrivalTime" in sent.json()
        assert typing.status_code == 403, typing.text
        assert "No typing" in typing.json()["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, "".join(output)[-2000:]
