"""Fixtures for the deployment tests: a nats-server running the shipped accounts."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfw.stack import Stack, find_nats_server, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NATS_COMPONENT = K8S / "components" / "nats"
KUSTOMIZATIONS = (
    "base",
    "overlays/dev",
    "overlays/prod",
    "examples/keda",
    "examples/nats-cluster",
)
NATS_USERS = ("interceptor", "resolver", "decider", "audit", "siem", "admin", "system")


@dataclass
class AccountsServer:
    """A nats-server on 127.0.0.1 that loads deploy/nats/accounts.conf unchanged."""

    stack: Stack
    url: str
    passwords: dict[str, str]

    def env(self, user: str) -> dict[str, str]:
        """The TFW_* variables a service running as ``user`` gets in a pod."""
        return {
            "TFW_NATS_URL": self.url,
            "TFW_NATS_USER": user,
            "TFW_NATS_PASSWORD": self.passwords[user],
        }


def load_module(path: Path, name: str) -> ModuleType:
    """Import a script under deploy/ (not a package) by its path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    if name in sys.modules:
        return sys.modules[name]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accounts_server(
    tmp_path_factory: pytest.TempPathFactory, infra: Stack
) -> Iterator[AccountsServer]:
    data = tmp_path_factory.mktemp("nats-accounts")
    shutil.copy(NATS_COMPONENT / "accounts.conf", data / "accounts.conf")
    port = free_port()
    (data / "server.conf").write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {data / 'js'} }}\n"
        "include ./accounts.conf\n"
    )
    make_secrets = load_module(K8S / "scripts" / "make_secrets.py", "tfw_make_secrets")
    passwords = {user: make_secrets.nats_password() for user in NATS_USERS}
    env = {f"TFW_NATS_{user.upper()}_PASSWORD": pw for user, pw in passwords.items()}
    stack = Stack(data, log=infra.log, mongodb_uri=infra.mongodb_uri)
    with stack:
        process = stack.spawn(
            "nats-acct", [find_nats_server(), "-c", str(data / "server.conf")], env=env, port=port
        )
        wait_for_port(port, 15, process.popen)
        yield AccountsServer(stack, f"nats://127.0.0.1:{port}", passwords)


@pytest.fixture(scope="session")
def renderer() -> ModuleType:
    """deploy/k8s/render.py."""
    return load_module(K8S / "render.py", "tfw_render")


@pytest.fixture(scope="session")
def rendered(renderer: ModuleType) -> dict[str, list[dict[str, Any]]]:
    """Every kustomization of deploy/k8s, rendered offline."""
    return {name: renderer.render(K8S / name) for name in KUSTOMIZATIONS}
