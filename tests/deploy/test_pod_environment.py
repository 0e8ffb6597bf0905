"""What each pod of deploy/k8s starts with is what its service's code accepts: every
TFW_* variable is a setting of that service, the settings load in the overlay's
environment, references resolve, and each service is its own NATS user."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from pydantic import BaseModel

from services.audit.settings import AuditSettings
from services.decider.settings import DeciderSettings
from services.interceptor.settings import InterceptorSettings
from services.resolver.settings import ResolverSettings
from tests.deploy.conftest import DEPLOY, K8S, NATS_COMPONENT, NATS_USERS, load_module
from tests.deploy.support import (
    SERVICES,
    Obj,
    containers,
    named,
    pod_environment,
    pod_spec,
    service_deployment,
    workloads,
)

SETTINGS: dict[str, type[BaseModel]] = {
    "interceptor": InterceptorSettings,
    "resolver": ResolverSettings,
    "decider": DeciderSettings,
    "audit": AuditSettings,
}


@pytest.fixture(scope="module")
def make_secrets() -> ModuleType:
    return load_module(K8S / "scripts" / "make_secrets.py", "tfw_make_secrets")


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    return load_module(DEPLOY / "nats" / "bootstrap.py", "tfw_bootstrap")


@pytest.fixture(scope="module")
def operator_secrets(
    make_secrets: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> list[Obj]:
    """The Secrets an operator creates for prod with scripts/make_secrets.py."""
    ca = tmp_path_factory.mktemp("ca") / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    args = make_secrets.parser().parse_args(
        [
            "--proxyauth",
            "teams:s3cret",
            "--mongodb-uri",
            "mongodb://db.example.internal:27017/?tls=true",
            "--nats-ca",
            str(ca),
            "--mongodb-ca",
            str(ca),
        ]
    )
    return list(make_secrets.build(args))


def _settings_fields(model: type[BaseModel]) -> set[str]:
    return {"TFW_" + name.upper() for name in model.model_fields}


@pytest.mark.parametrize("kustomization", ["overlays/dev", "overlays/prod"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_tfw_variable_a_service_gets_is_one_of_its_settings(
    rendered: dict[str, list[Obj]], operator_secrets: list[Obj], kustomization: str, service: str
) -> None:
    # A misspelt TFW_ variable is silently ignored by the service: catch it here.
    (container,) = pod_spec(service_deployment(rendered[kustomization], service))["containers"]
    env = pod_environment(rendered[kustomization], container, operator_secrets)
    unknown = {key for key in env if key.startswith("TFW_")} - _settings_fields(SETTINGS[service])
    assert unknown == set()


@pytest.mark.parametrize(
    ("kustomization", "environment"),
    [("overlays/dev", "development"), ("overlays/prod", "production")],
)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_accepts_the_settings_its_pod_starts_with(
    rendered: dict[str, list[Obj]],
    operator_secrets: list[Obj],
    kustomization: str,
    environment: str,
    service: str,
) -> None:
    objects = rendered[kustomization]
    (container,) = pod_spec(service_deployment(objects, service))["containers"]
    env = pod_environment(objects, container, operator_secrets)
    settings = SETTINGS[service].load(env=env)  # type: ignore[attr-defined]
    assert settings.environment == environment
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == 9090
    assert settings.nats_user == service
    assert settings.nats_password
    if environment == "production":
        assert settings.nats_url.startswith("tls://")
        assert settings.nats_tls_ca == "/etc/teamsfirewall/tls/nats-ca.crt"


def test_the_resolver_gets_the_token_key_and_the_interceptor_the_proxy_password(
    rendered: dict[str, list[Obj]], operator_secrets: list[Obj]
) -> None:
    objects = rendered["overlays/prod"]
    (resolver,) = pod_spec(service_deployment(objects, "resolver"))["containers"]
    settings = ResolverSettings.load(env=pod_environment(objects, resolver, operator_secrets))
    key = settings.token_key_bytes()
    assert key is not None and len(key) == 32
    (interceptor,) = pod_spec(service_deployment(objects, "interceptor"))["containers"]
    env = pod_environment(objects, interceptor, operator_secrets)
    assert InterceptorSettings.load(env=env).proxyauth == "teams:s3cret"
    # Only the resolver holds the token key.
    for service in ("interceptor", "decider", "audit"):
        (container,) = pod_spec(service_deployment(objects, service))["containers"]
        assert "TFW_TOKEN_KEY" not in pod_environment(objects, container, operator_secrets)


@pytest.mark.parametrize("kustomization", ["overlays/dev", "overlays/prod"])
def test_the_bootstrap_job_runs_as_admin_with_settings_it_accepts(
    rendered: dict[str, list[Obj]],
    operator_secrets: list[Obj],
    bootstrap: ModuleType,
    kustomization: str,
) -> None:
    objects = rendered[kustomization]
    (container,) = containers(named(objects, "Job", "tfw-nats-bootstrap"))
    env = pod_environment(objects, container, operator_secrets)
    unknown = {k for k in env if k.startswith("TFW_")} - _settings_fields(
        bootstrap.BootstrapSettings
    )
    assert unknown == set()
    settings = bootstrap.BootstrapSettings.load(env=env)
    assert settings.nats_user == "admin"
    assert settings.stream_replicas == (3 if kustomization == "overlays/prod" else 1)
    assert container["command"][1] == "/opt/tfw/share/teamsfirewall/bootstrap.py"
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert "COPY deploy/nats/bootstrap.py /opt/tfw/share/teamsfirewall/bootstrap.py" in dockerfile


@pytest.mark.parametrize("kustomization", ["overlays/dev", "overlays/prod"])
def test_every_secret_a_pod_needs_is_rendered_or_made_by_the_script(
    rendered: dict[str, list[Obj]], operator_secrets: list[Obj], kustomization: str
) -> None:
    objects = rendered[kustomization]
    pool = {o["metadata"]["name"]: o for o in objects + operator_secrets if o["kind"] == "Secret"}
    missing = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for container in containers(workload):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    if ref["key"] not in pool.get(ref["name"], {}).get("data", {}):
                        missing.append(f"{ref['name']}/{ref['key']}")
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                secret = pool.get(volume["secret"]["secretName"])
                assert secret is not None, volume["secret"]["secretName"]
                for item in volume["secret"].get("items", []):
                    if item["key"] not in secret["data"]:
                        missing.append(f"{volume['secret']['secretName']}/{item['key']}")
    assert missing == []


def test_each_service_connects_as_a_nats_user_that_accounts_conf_defines() -> None:
    accounts = (NATS_COMPONENT / "accounts.conf").read_text()
    users = set(re.findall(r"\buser: (\w+)", accounts))
    assert users == set(NATS_USERS)
    assert set(SERVICES) < users


def test_the_nats_server_gets_every_password_accounts_conf_expands(
    rendered: dict[str, list[Obj]], operator_secrets: list[Obj]
) -> None:
    accounts = (NATS_COMPONENT / "accounts.conf").read_text()
    expanded = set(re.findall(r"\$(TFW_NATS_\w+)", accounts))
    objects = rendered["overlays/dev"]
    (nats, _exporter) = pod_spec(named(objects, "StatefulSet", "tfw-nats"))["containers"]
    env = pod_environment(objects, nats, operator_secrets)
    assert expanded <= set(env)
    users = {o["metadata"]["name"]: o for o in operator_secrets}["tfw-nats-users"]
    assert set(users["data"]) == set(NATS_USERS)


def test_a_configuration_typo_in_an_overlay_would_be_reported(
    rendered: dict[str, list[Obj]], operator_secrets: list[Obj]
) -> None:
    objects = [dict(o) for o in rendered["overlays/prod"]]
    (container,) = pod_spec(service_deployment(objects, "decider"))["containers"]
    env = pod_environment(objects, container, operator_secrets)
    env["TFW_STREAM_REPLICA"] = "3"
    unknown = {k for k in env if k.startswith("TFW_")} - _settings_fields(DeciderSettings)
    assert unknown == {"TFW_STREAM_REPLICA"}


@pytest.mark.parametrize(
    ("service", "needs"),
    [("resolver", "bucket"), ("decider", "stream,bucket"), ("audit", "stream")],
)
def test_each_service_waits_for_the_nats_objects_it_reads_as_its_own_user(
    rendered: dict[str, list[Obj]],
    operator_secrets: list[Obj],
    bootstrap: ModuleType,
    service: str,
    needs: str,
) -> None:
    objects = rendered["overlays/prod"]
    (init,) = pod_spec(service_deployment(objects, service))["initContainers"]
    assert init["command"][-2:] == ["--wait-for", needs]
    env = pod_environment(objects, init, operator_secrets)
    settings = bootstrap.BootstrapSettings.load(env=env)
    assert settings.nats_user == service
    assert settings.nats_tls_ca == "/etc/teamsfirewall/tls/nats-ca.crt"
