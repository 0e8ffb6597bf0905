"""Reading rendered manifests: pod specs, containers and the environment a pod gets."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]
SERVICES = ("interceptor", "resolver", "decider", "audit")
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of that kind and name."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    """Every object with a pod template."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj


def pod_spec(obj: Obj) -> Obj:
    return dict(obj["spec"]["template"]["spec"])


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def service_deployment(objects: list[Obj], service: str) -> Obj:
    return named(objects, "Deployment", f"tfw-{service}")


def generated(objects: list[Obj], kind: str, name: str) -> Obj | None:
    """A ConfigMap or Secret by its full (hashed) name, or None."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    return None


def secret_value(secret: Obj, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def pod_environment(objects: list[Obj], container: Obj, secrets: list[Obj]) -> dict[str, str]:
    """The variables a container starts with: envFrom ConfigMaps, then env, with Secret
    values taken from the rendered objects or, for the operator's Secrets, from
    ``secrets`` (what scripts/make_secrets.py printed). A missing optional key is left
    out, as the kubelet does."""
    pool = objects + secrets
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        config_map = generated(pool, "ConfigMap", ref)
        assert config_map is not None, f"ConfigMap {ref} is not rendered"
        env.update(config_map.get("data", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"].get("secretKeyRef")
        if ref is None:
            continue  # fieldRef and the like: filled in by the kubelet
        secret = generated(pool, "Secret", ref["name"])
        if secret is None or ref["key"] not in secret.get("data", {}):
            assert ref.get("optional"), f"Secret {ref['name']}/{ref['key']} is missing"
            continue
        env[variable["name"]] = secret_value(secret, ref["key"])
    return env
