"""One demo run, shared by ``tfw demo`` and the acceptance test: the rules prepared,
the services started behind the Teams simulator, the scenario replayed, and each
request paired with its decision record from the archive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient

from tfw.commands.up import simulator_env
from tfw.sim.client import Replayer, ReplayResult
from tfw.sim.org import Org
from tfw.sim.scenario import ScenarioRequest
from tfw.sim.teams import TeamsSimulator
from tfw.stack import Stack, free_port

ARCHIVE_WAIT_S = 20.0
MONGO_TIMEOUT_MS = 5000


class RulesError(ValueError):
    """A rule file that cannot be used; the message says why."""


@dataclass
class PreparedRules:
    """A rule file in the product's YAML language, ready for the decider."""

    path: Path
    internal_tenants: list[str]
    import_report: str | None = None  # what the 2021 XML import mapped, when it ran


@dataclass
class Outcome:
    """One scenario request: what the client saw and the decision record for it."""

    result: ReplayResult
    record: dict[str, Any] | None

    def line(self) -> dict[str, Any]:
        """The ``--out`` JSON line."""
        result = self.result
        return {
            "id": result.id,
            "client": {
                "method": result.method,
                "url": result.url,
                "account": result.account,
                "status": result.status,
                "decision_id": result.decision_id,
                "received": result.received,
                "received_headers": result.received_headers,
                "error": result.error,
                "skipped": result.skipped,
            },
            "decision": self.record,
        }


def prepare_rules(source: Path, work_dir: Path) -> PreparedRules:
    """Import a 2021 XML file into YAML (under ``work_dir``) or take a YAML file as is."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{source}: {exc.strerror or 'cannot read'}") from None
    report = None
    path = source
    if source.suffix.lower() == ".xml" or text.lstrip().startswith("<"):
        from services.decider.legacy import LegacyError, import_xml

        try:
            text, imported = import_xml(text, source.name)
        except (LegacyError, ValueError) as exc:
            raise RulesError(f"{source}: {exc}") from None
        report = imported.render()
        work_dir.mkdir(parents=True, exist_ok=True)
        path = work_dir / f"{source.stem}.imported.yaml"
        path.write_text(text, encoding="utf-8")
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise RulesError(f"{source}: a rule file is a mapping with a 'rules' list")
    tenants = [str(t).lower() for t in document.get("internal_tenants") or []]
    return PreparedRules(path.resolve(), tenants, report)


def service_env(simulator_port: int, rules: PreparedRules) -> dict[str, dict[str, str]]:
    """Per-service environment that points every Teams request at the simulator."""
    redirect = simulator_env(simulator_port)
    return {
        "resolver": {
            "TFW_TEAMS_REDIRECT": redirect["TFW_TEAMS_REDIRECT"],
            "TFW_INTERNAL_TENANTS": ",".join(rules.internal_tenants),
        },
        "decider": {"TFW_RULES_FILE": str(rules.path)},
        "audit": {},
        "interceptor": {
            # Decided before map_remote rewrites, so decisions name the real Teams host.
            "TFW_MAP_REMOTE": redirect["TFW_MAP_REMOTE"],
            "TFW_DECIDE_READS": "true",
            "TFW_DECISION_HEADER": "true",
            "TFW_LISTEN_PORT": str(free_port()),
        },
    }


def start_services(
    stack: Stack, simulator_port: int, rules: PreparedRules, common: dict[str, str]
) -> None:
    """Start resolver, decider, audit and the proxy (infrastructure must be up)."""
    env = service_env(simulator_port, rules)
    for service in ("resolver", "decider", "audit", "interceptor"):
        stack.start_service(service, {**common, **env[service]})


def replay(
    org: Org,
    requests: list[ScenarioRequest],
    stack: Stack,
    simulator: TeamsSimulator,
    progress: Callable[[int, int, ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay through the stack's proxy, trusting its CA."""
    proxy = stack.find("interceptor")
    ca_file = stack.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    with Replayer(org, f"http://127.0.0.1:{proxy.port}", ca_file, simulator) as replayer:
        return replayer.replay(requests, progress)


def decision_records(
    mongodb_uri: str, database: str, decision_ids: list[str], wait_s: float = ARCHIVE_WAIT_S
) -> dict[str, dict[str, Any]]:
    """The archived records for ``decision_ids``, waiting for audit to store them."""
    wanted = set(decision_ids)
    found: dict[str, dict[str, Any]] = {}
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_uri, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS, timeoutMS=MONGO_TIMEOUT_MS
    )
    try:
        deadline = time.monotonic() + wait_s
        while wanted - found.keys() and time.monotonic() < deadline:
            missing = list(wanted - found.keys())
            for document in client[database]["decisions"].find({"decision_id": {"$in": missing}}):
                document.pop("_id", None)
                found[str(document["decision_id"])] = document
            if wanted - found.keys():
                time.sleep(0.2)
    finally:
        client.close()
    return found


def outcomes(
    results: list[ReplayResult], mongodb_uri: str, database: str
) -> list[Outcome]:
    ids = [r.decision_id for r in results if r.decision_id]
    records = decision_records(mongodb_uri, database, ids) if ids else {}
    return [
        Outcome(r, records.get(r.decision_id) if r.decision_id else None) for r in results
    ]
