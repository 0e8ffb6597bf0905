"""deploy/k8s/README.md: the walkthrough names files, Secrets and commands that exist."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from tests.deploy.conftest import DEPLOY, K8S, load_module

README = (K8S / "README.md").read_text()


def test_every_path_the_walkthrough_names_exists() -> None:
    named = set(
        re.findall(r"`((?:deploy|docs|tests|components|overlays|examples)/[\w./-]+)`", README)
    )
    named |= {f"deploy/k8s/{p}" for p in re.findall(r"^  ([\w-]+/[\w./-]*)", README, re.M)}
    assert named
    missing = []
    for path in named:
        candidates = [DEPLOY.parent / path, K8S / path]
        if not any(c.exists() for c in candidates):
            missing.append(path)
    assert missing == []


@pytest.fixture(scope="module")
def make_secrets() -> ModuleType:
    return load_module(K8S / "scripts" / "make_secrets.py", "tfw_make_secrets")


def test_the_secrets_table_lists_what_the_script_makes(make_secrets: ModuleType) -> None:
    args = make_secrets.parser().parse_args(
        ["--proxyauth", "a:b", "--mongodb-uri", "mongodb://x", "--nats-ca", __file__]
    )
    made = {secret["metadata"]["name"] for secret in make_secrets.build(args)}
    # The Secrets table is the one indented under step 3.
    table = set(re.findall(r"^   \| `(tfw-[\w-]+)` \|", README, re.M))
    assert made == table
