"""deploy/k8s NetworkPolicies: deny by default, then exactly the paths the services
use. Evaluated here as Kubernetes would, for pod labels and ports."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import Obj, named, service_deployment

PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return labels.items() >= selector.get("matchLabels", {}).items()


def _pod_labels(objects: list[Obj], kind: str, name: str) -> dict[str, str]:
    return dict(named(objects, kind, name)["spec"]["template"]["metadata"]["labels"])


def egress_allowed(
    objects: list[Obj], source: dict[str, str], dest: dict[str, str], port: int
) -> bool:
    """Whether a pod with labels ``source`` may open ``port`` on a pod with ``dest``."""
    for policy in objects:
        if policy["kind"] != "NetworkPolicy" or not _selects(policy["spec"]["podSelector"], source):
            continue
        for rule in policy["spec"].get("egress", []):
            if port not in [p["port"] for p in rule.get("ports", [])]:
                continue
            for peer in rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    if _selects(peer["podSelector"], dest):
                        return True
    return False


def ingress_allowed(
    objects: list[Obj], source: dict[str, str], dest: dict[str, str], port: int
) -> bool:
    for policy in objects:
        if policy["kind"] != "NetworkPolicy" or not _selects(policy["spec"]["podSelector"], dest):
            continue
        for rule in policy["spec"].get("ingress", []):
            if port not in [p["port"] for p in rule.get("ports", [])]:
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    if _selects(peer["podSelector"], source):
                        return True
    return False


def internet_ports(objects: list[Obj], source: dict[str, str]) -> set[int]:
    """Ports a pod may reach on public addresses."""
    ports: set[int] = set()
    for policy in objects:
        if policy["kind"] != "NetworkPolicy" or not _selects(policy["spec"]["podSelector"], source):
            continue
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if block and block["cidr"] == "0.0.0.0/0":
                    ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


@pytest.fixture(scope="module")
def dev(rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered["overlays/dev"]


def labels_of(objects: list[Obj], service: str) -> dict[str, str]:
    return dict(service_deployment(objects, service)["spec"]["template"]["metadata"]["labels"])


def test_every_pod_starts_from_deny_all(dev: list[Obj]) -> None:
    deny = named(dev, "NetworkPolicy", "tfw-default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


@pytest.mark.parametrize("service", ["interceptor", "resolver", "decider", "audit"])
def test_every_service_reaches_nats_and_nats_lets_it_in(dev: list[Obj], service: str) -> None:
    nats = _pod_labels(dev, "StatefulSet", "tfw-nats")
    source = labels_of(dev, service)
    assert egress_allowed(dev, source, nats, 4222)
    assert ingress_allowed(dev, source, nats, 4222)


@pytest.mark.parametrize(
    ("service", "reaches"),
    [("interceptor", False), ("resolver", True), ("decider", False), ("audit", True)],
)
def test_only_the_resolver_and_audit_reach_mongodb(
    dev: list[Obj], service: str, reaches: bool
) -> None:
    mongodb = _pod_labels(dev, "StatefulSet", "tfw-mongodb")
    source = labels_of(dev, service)
    assert egress_allowed(dev, source, mongodb, 27017) is reaches
    assert ingress_allowed(dev, source, mongodb, 27017) is reaches


@pytest.mark.parametrize(
    ("service", "ports"),
    [("interceptor", {80, 443}), ("resolver", {80, 443}), ("decider", set()), ("audit", set())],
)
def test_only_the_proxy_and_the_resolver_talk_to_teams_on_the_internet(
    rendered: dict[str, list[Obj]], service: str, ports: set[int]
) -> None:
    objects = rendered["overlays/prod"]
    public = internet_ports(objects, labels_of(objects, service))
    assert public - {4222, 27017} == ports


def test_the_path_to_teams_excludes_private_and_metadata_addresses(dev: list[Obj]) -> None:
    policy = named(dev, "NetworkPolicy", "tfw-teams-egress")
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]
    assert set(PRIVATE) <= set(peer["ipBlock"]["except"])


def test_the_proxy_port_is_open_to_clients_and_nothing_else_is(dev: list[Obj]) -> None:
    interceptor = labels_of(dev, "interceptor")
    stranger = {"app": "something-else"}
    assert ingress_allowed(dev, stranger, interceptor, 8080)
    assert not ingress_allowed(dev, stranger, interceptor, 9090)
    for service in ("resolver", "decider", "audit"):
        assert not ingress_allowed(dev, stranger, labels_of(dev, service), 9090)
    assert not ingress_allowed(dev, stranger, labels_of(dev, "audit"), 8000)
    assert ingress_allowed(
        dev, {"teamsfirewall.io/audit-api-client": "true"}, labels_of(dev, "audit"), 8000
    )


def test_in_prod_nats_and_mongodb_are_reached_outside_the_cluster_on_their_ports_only(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["overlays/prod"]
    assert not any(o["kind"] == "StatefulSet" for o in objects)
    assert internet_ports(objects, labels_of(objects, "decider")) == {4222}
    assert internet_ports(objects, labels_of(objects, "audit")) == {4222, 27017}
