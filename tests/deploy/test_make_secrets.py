"""deploy/k8s/scripts/make_secrets.py: the Secrets an operator creates."""

from __future__ import annotations

import base64
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from mitmproxy.certs import CertStore

from services.resolver.settings import ResolverSettings
from tests.deploy.conftest import K8S, NATS_USERS, load_module


@pytest.fixture(scope="module")
def make_secrets() -> ModuleType:
    return load_module(K8S / "scripts" / "make_secrets.py", "tfw_make_secrets")


def run(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str
) -> dict[str, dict]:
    assert make_secrets.main(list(argv)) == 0
    documents = yaml.safe_load_all(capsys.readouterr().out)
    return {d["metadata"]["name"]: d for d in documents}


def decoded(secret: dict, key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def test_a_fresh_installation_gets_passwords_a_token_key_and_a_proxy_ca(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    made = run(make_secrets, capsys)
    assert set(made) == {"tfw-nats-users", "tfw-token-key", "tfw-mitmproxy-ca"}
    assert all(s["metadata"]["namespace"] == "teamsfirewall" for s in made.values())

    users = made["tfw-nats-users"]
    assert set(users["data"]) == set(NATS_USERS)
    passwords = [decoded(users, user).decode() for user in NATS_USERS]
    assert len(set(passwords)) == len(passwords)
    assert all(p[0].isalpha() and p[1:].isalnum() and len(p) >= 32 for p in passwords)

    key = decoded(made["tfw-token-key"], "token-key").decode()
    settings = ResolverSettings.load(
        env={
            "TFW_TOKEN_KEY": key,
            "TFW_ENVIRONMENT": "production",
            "TFW_MONGODB_URI": "mongodb://db:27017",
        }
    )
    assert len(settings.token_key_bytes() or b"") == 32

    # mitmproxy loads the CA exactly as every interceptor replica will.
    ca = made["tfw-mitmproxy-ca"]
    (tmp_path / "mitmproxy-ca.pem").write_bytes(decoded(ca, "mitmproxy-ca.pem"))
    store = CertStore.from_store(tmp_path, "mitmproxy", 2048)
    assert store.default_ca.cn == "TeamsFirewall proxy CA"
    assert b"PRIVATE KEY" not in decoded(ca, "mitmproxy-ca-cert.pem")
    assert decoded(ca, "mitmproxy-ca-cert.pem") in decoded(ca, "mitmproxy-ca.pem")


def test_two_runs_never_share_a_secret(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(make_secrets, capsys, "--only", "tfw-token-key", "--only", "tfw-nats-users")
    second = run(make_secrets, capsys, "--only", "tfw-token-key", "--only", "tfw-nats-users")
    assert set(first) == {"tfw-token-key", "tfw-nats-users"}
    for name in first:
        assert first[name]["data"] != second[name]["data"]


def test_an_existing_ca_is_reused_so_clients_keep_trusting_the_proxy(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    CertStore.create_store(tmp_path, "mitmproxy", 2048)
    existing = (tmp_path / "mitmproxy-ca.pem").read_bytes()
    made = run(
        make_secrets,
        capsys,
        "--only",
        "tfw-mitmproxy-ca",
        "--ca-file",
        str(tmp_path / "mitmproxy-ca.pem"),
    )
    assert decoded(made["tfw-mitmproxy-ca"], "mitmproxy-ca.pem") == existing


def test_prod_options_add_the_proxy_password_the_database_and_the_server_cas(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    made = run(
        make_secrets,
        capsys,
        "--namespace",
        "tfw-prod",
        "--proxyauth",
        "teams:pw",
        "--mongodb-uri",
        "mongodb://db/?tls=true",
        "--nats-ca",
        str(ca),
        "--mongodb-ca",
        str(ca),
    )
    assert decoded(made["tfw-proxyauth"], "proxyauth") == b"teams:pw"
    assert decoded(made["tfw-mongodb"], "uri") == b"mongodb://db/?tls=true"
    assert set(made["tfw-tls-ca"]["data"]) == {"nats-ca.crt", "mongodb-ca.crt"}
    assert made["tfw-proxyauth"]["metadata"]["namespace"] == "tfw-prod"


def test_a_proxy_password_without_a_user_is_refused(
    make_secrets: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert make_secrets.main(["--proxyauth", "nouser"]) == 2
    assert "user:password" in capsys.readouterr().err
