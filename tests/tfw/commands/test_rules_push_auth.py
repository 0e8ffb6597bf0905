"""``tfw rules push`` against a NATS server that requires a user and password."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from services.common.contracts import RuleSetDocument, Subjects, decode
from tfw.cli import main
from tfw.stack import Stack

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rules" / "firm.yaml"


@pytest.fixture
def secured_nats(tmp_path: Path):
    with Stack(tmp_path, quiet=True) as stack:
        yield stack.start_nats(extra=["--user", "rules-admin", "--pass", "s3cret-pass"])


def _active(url: str) -> RuleSetDocument:
    async def read() -> RuleSetDocument:
        nc = await nats.connect(url, user="rules-admin", password="s3cret-pass")
        try:
            kv = await nc.jetstream().key_value(Subjects().rules_bucket)
            entry = await kv.get(Subjects().rules_key)
            return decode(RuleSetDocument, entry.value or b"")
        finally:
            await nc.close()

    return asyncio.run(read())


def test_a_push_without_credentials_is_refused_and_says_nothing_changed(
    secured_nats: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFW_NATS_USER", raising=False)
    monkeypatch.delenv("TFW_NATS_PASSWORD", raising=False)
    assert main(["rules", "push", str(EXAMPLE), "--nats-url", secured_nats]) == 1
    assert "the active rule set is unchanged" in capsys.readouterr().err


def test_a_push_with_the_user_and_the_password_from_the_environment_lands(
    secured_nats: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFW_NATS_PASSWORD", "s3cret-pass")
    code = main(
        ["rules", "push", str(EXAMPLE), "--nats-url", secured_nats, "--nats-user", "rules-admin"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pushed rule set" in out.out
    assert "s3cret-pass" not in out.out + out.err
    assert _active(secured_nats).source == EXAMPLE.read_text(encoding="utf-8")
