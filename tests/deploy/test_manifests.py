"""deploy/k8s rendered offline: every object valid for Kubernetes and held to the
rules a platform team reviews (non-root, read-only, probes, budgets, autoscaling)."""

from __future__ import annotations

import functools
import json

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.conftest import KUSTOMIZATIONS
from tests.deploy.support import (
    SERVICES,
    Obj,
    containers,
    named,
    pod_spec,
    service_deployment,
    workloads,
)

# The oldest Kubernetes these manifests support (the preStop "sleep" action is on by
# default from 1.30) and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace"}

# KEDA's ScaledObject has no schema in kubernetes-validate: the fields used here.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"enum": ["cpu", "memory", "prometheus", "nats-jetstream"]},
                            "metricType": {"enum": ["Utilization", "AverageValue"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_matches_the_kubernetes_schema(
    rendered: dict[str, list[Obj]], kustomization: str, version: str
) -> None:
    problems = []
    for obj in rendered[kustomization]:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "ScaledObject":
            try:
                jsonschema.validate(obj, SCALED_OBJECT)
            except jsonschema.ValidationError as exc:
                problems.append(f"{label}: {exc.message}")
            continue
        problem = _schema_problem(json.dumps(obj, sort_keys=True), version)
        if problem:
            problems.append(f"{label}: {problem}")
    assert problems == []


@functools.lru_cache(maxsize=512)
def _schema_problem(document: str, version: str) -> str | None:
    """Validate once per distinct object: the overlays share most of the base's."""
    try:
        kubernetes_validate.validate(json.loads(document), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc)
    return None


def test_a_misspelt_field_is_caught_by_the_schema_check(rendered: dict[str, list[Obj]]) -> None:
    deployment = dict(service_deployment(rendered["base"], "resolver"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    problem = _schema_problem(json.dumps(deployment, sort_keys=True), KUBERNETES_VERSIONS[0])
    assert problem is not None and "replica" in problem


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_lands_in_the_teamsfirewall_namespace(
    rendered: dict[str, list[Obj]], kustomization: str
) -> None:
    stray = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in rendered[kustomization]
        if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != "teamsfirewall"
    ]
    assert stray == []


@pytest.mark.parametrize(
    "kustomization", ["overlays/dev", "overlays/prod", "examples/nats-cluster"]
)
def test_every_container_runs_unprivileged_on_a_read_only_root(
    rendered: dict[str, list[Obj]], kustomization: str
) -> None:
    for workload in workloads(rendered[kustomization]):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        # Service links would put TFW_*_PORT variables, named after the tfw-* Services,
        # among the settings.
        assert spec["enableServiceLinks"] is False
        for container in containers(workload):
            context = container["securityContext"]
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            assert ":" in container["image"] and not container["image"].endswith(":latest")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_own_module_with_health_probes(
    rendered: dict[str, list[Obj]], service: str
) -> None:
    deployment = service_deployment(rendered["overlays/prod"], service)
    (container,) = pod_spec(deployment)["containers"]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert container["image"] == "registry.example.com/teamsfirewall:0.1.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http-health"] == 9090
    assert pod_spec(deployment)["serviceAccountName"] == f"tfw-{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_disruption_budget_and_spreads_over_zones_and_nodes(
    rendered: dict[str, list[Obj]], service: str
) -> None:
    objects = rendered["overlays/prod"]
    deployment = service_deployment(objects, service)
    selector = deployment["spec"]["selector"]["matchLabels"]
    budget = named(objects, "PodDisruptionBudget", f"tfw-{service}")
    assert budget["spec"]["selector"]["matchLabels"] == selector
    assert budget["spec"]["maxUnavailable"] == 1
    spread = pod_spec(deployment)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def _autoscalers(objects: list[Obj], deployment: str) -> list[Obj]:
    found = []
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            if obj["spec"]["scaleTargetRef"]["name"] == deployment:
                found.append(obj)
        elif obj["kind"] == "ScaledObject" and obj["spec"]["scaleTargetRef"]["name"] == deployment:
            found.append(obj)
    return found


@pytest.mark.parametrize("kustomization", ["overlays/dev", "overlays/prod", "examples/keda"])
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_exactly_one_autoscaler_and_it_scales_on_cpu(
    rendered: dict[str, list[Obj]], kustomization: str, service: str
) -> None:
    (scaler,) = _autoscalers(rendered[kustomization], f"tfw-{service}")
    if scaler["kind"] == "HorizontalPodAutoscaler":
        metrics = scaler["spec"]["metrics"]
        assert [m["resource"]["name"] for m in metrics] == ["cpu"]
        assert scaler["spec"]["minReplicas"] <= scaler["spec"]["maxReplicas"]
    else:
        assert "cpu" in [trigger["type"] for trigger in scaler["spec"]["triggers"]]


@pytest.mark.parametrize("service", ["resolver", "decider"])
def test_with_keda_the_resolver_and_decider_also_scale_on_their_pending_nats_messages(
    rendered: dict[str, list[Obj]], service: str
) -> None:
    (scaler,) = _autoscalers(rendered["examples/keda"], f"tfw-{service}")
    queries = [
        t["metadata"]["query"] for t in scaler["spec"]["triggers"] if "query" in t["metadata"]
    ]
    # Connection names are "<service>@<host>:<pid>" (services.common.contracts).
    assert queries == [f'sum(gnatsd_connz_pending_bytes{{name=~"{service}@.*"}})']


def test_with_keda_the_audit_scales_on_its_consumer_backlog(
    rendered: dict[str, list[Obj]],
) -> None:
    (scaler,) = _autoscalers(rendered["examples/keda"], "tfw-audit")
    (jetstream,) = [t for t in scaler["spec"]["triggers"] if t["type"] == "nats-jetstream"]
    assert jetstream["metadata"]["stream"] == "TFW_DECISIONS"
    assert jetstream["metadata"]["consumer"] == "audit"


@pytest.mark.parametrize(
    ("kustomization", "service_type"),
    [("overlays/dev", "NodePort"), ("overlays/prod", "LoadBalancer")],
)
def test_clients_reach_the_proxy_port_of_every_interceptor(
    rendered: dict[str, list[Obj]], kustomization: str, service_type: str
) -> None:
    objects = rendered[kustomization]
    service = named(objects, "Service", "tfw-interceptor")
    deployment = service_deployment(objects, "interceptor")
    assert service["spec"]["type"] == service_type
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == 8080


def test_every_interceptor_presents_the_ca_from_one_secret_in_a_writable_confdir(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["overlays/prod"]
    deployment = service_deployment(objects, "interceptor")
    (container,) = pod_spec(deployment)["containers"]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    confdir = "/var/lib/teamsfirewall/mitmproxy"
    ca = mounts[f"{confdir}/mitmproxy-ca.pem"]
    assert ca["subPath"] == "mitmproxy-ca.pem" and ca["readOnly"] is True
    assert volumes[ca["name"]]["secret"]["secretName"] == "tfw-mitmproxy-ca"
    # mitmproxy writes its dhparam file beside the CA: the directory must be writable.
    assert "emptyDir" in volumes[mounts[confdir]["name"]]


@pytest.mark.parametrize(
    ("kustomization", "minimums"),
    [
        ("overlays/dev", {"interceptor": 1, "resolver": 1, "decider": 1, "audit": 1}),
        ("overlays/prod", {"interceptor": 3, "resolver": 3, "decider": 3, "audit": 2}),
        ("examples/keda", {"interceptor": 3, "resolver": 3, "decider": 3, "audit": 2}),
    ],
)
def test_the_autoscaler_alone_sets_how_many_replicas_run(
    rendered: dict[str, list[Obj]], kustomization: str, minimums: dict[str, int]
) -> None:
    objects = rendered[kustomization]
    for service, minimum in minimums.items():
        # A replicas field would reset the autoscaler's choice on every apply.
        assert "replicas" not in service_deployment(objects, service)["spec"]
        (scaler,) = _autoscalers(objects, f"tfw-{service}")
        spec = scaler["spec"]
        assert spec.get("minReplicas", spec.get("minReplicaCount")) == minimum


# Production's overlay uses a NATS cluster of its own (TFW_NATS_URL), not this server.
@pytest.mark.parametrize("kustomization", ["overlays/dev", "examples/nats-cluster"])
def test_nats_server_runs_as_many_go_threads_as_its_cpu_limit(
    rendered: dict[str, list[Obj]], kustomization: str
) -> None:
    servers = [
        container
        for workload in workloads(rendered[kustomization])
        for container in containers(workload)
        if container["image"].startswith("nats:")
    ]
    assert servers
    for container in servers:
        env = {item["name"]: item for item in container["env"]}
        field = env["GOMAXPROCS"]["valueFrom"]["resourceFieldRef"]
        assert field == {
            "containerName": container["name"],
            "resource": "limits.cpu",
            "divisor": "1",
        }
