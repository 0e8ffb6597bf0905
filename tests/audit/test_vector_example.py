"""The Vector example reads the stream and consumer the services actually use."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.common.contracts import Subjects

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vector" / "vector.yaml"


def test_the_vector_source_binds_the_decision_stream_with_its_own_consumer() -> None:
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    subjects = Subjects()
    source = config["sources"]["tfw_decisions"]
    assert source["type"] == "nats"
    assert source["subject"] == subjects.decisions_all
    assert source["jetstream"]["stream"] == subjects.decision_stream
    assert source["jetstream"]["consumer"] not in ("audit", "audit-syslog")
    assert source["decoding"]["codec"] == "json"


def test_every_vector_sink_acknowledges_end_to_end() -> None:
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert config["sinks"]
    for name, sink in config["sinks"].items():
        assert sink["acknowledgements"]["enabled"] is True, name
