"""Render a kustomization of this directory offline, without kustomize or kubectl.

It implements the part of kustomize these manifests use, with kustomize's results:
``resources`` (files and directories), ``components``, ``namespace``, ``labels``
(``includeSelectors: false``), ``images``, ``replicas``, ``configMapGenerator`` and
``secretGenerator`` (``literals``, ``files``, ``behavior`` create/merge/replace, the
content-hash name suffix and the references to it), and ``patches`` made of JSON 6902
operations or a ``$patch: delete``. Anything else in a kustomization is refused by
name, so a manifest change that needs more fails loudly instead of rendering wrongly.
``kubectl kustomize`` gives the same objects (tests/deploy/test_render.py checks it
where kubectl is installed).

    python deploy/k8s/render.py deploy/k8s/overlays/prod > prod.yaml
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "images",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# kustomize's default ("legacy") output order; other kinds follow, by kind and name.
KIND_ORDER = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
BASE64_LINE = 70
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


class RenderError(Exception):
    """A kustomization this renderer cannot render faithfully, with where and why."""


@dataclass
class Resource:
    """One object, and for a generated one the name its references use."""

    obj: Obj
    generated: bool = False

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass
class Build:
    resources: list[Resource] = field(default_factory=list)

    def find(self, kind: str, name: str) -> Resource | None:
        for resource in self.resources:
            if resource.kind == kind and resource.name == name:
                return resource
        return None


def render(directory: str | Path) -> list[Obj]:
    """The objects a kustomization directory renders to, in kustomize's order."""
    build = Build()
    _build(Path(directory), build, component=False)
    _finalize_names(build)
    objects = [resource.obj for resource in build.resources]
    return sorted(objects, key=_order_key)


def render_yaml(directory: str | Path) -> str:
    """The rendered objects as one multi-document YAML stream."""
    return yaml.safe_dump_all(render(directory), sort_keys=True, default_flow_style=False)


def _order_key(obj: Obj) -> tuple[int, str, str]:
    kind = obj["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, kind if rank == len(KIND_ORDER) else "", obj["metadata"]["name"]


def _load_kustomization(directory: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            unknown = set(data) - SUPPORTED_KEYS
            if unknown:
                raise RenderError(f"{path}: unsupported fields {sorted(unknown)}")
            return dict(data)
    raise RenderError(f"{directory}: no kustomization.yaml")


def _build(directory: Path, build: Build, component: bool) -> None:
    spec = _load_kustomization(directory)
    expected = "Component" if component else "Kustomization"
    if spec.get("kind", "Kustomization") != expected:
        raise RenderError(f"{directory}: expected kind {expected}, found {spec.get('kind')}")

    own = build if component else Build()
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            _build(path, own, component=False)
        else:
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if document:
                    own.resources.append(Resource(document))
    for entry in spec.get("components", []):
        _build((directory / entry).resolve(), own, component=True)

    for generator in spec.get("configMapGenerator", []):
        _generate(directory, own, generator, "ConfigMap")
    for generator in spec.get("secretGenerator", []):
        _generate(directory, own, generator, "Secret")
    for patch in spec.get("patches", []):
        _patch(directory, own, patch)
    if "namespace" in spec:
        for resource in own.resources:
            if resource.kind not in CLUSTER_SCOPED:
                resource.obj["metadata"]["namespace"] = spec["namespace"]
    for label_set in spec.get("labels", []):
        if label_set.get("includeSelectors") or label_set.get("includeTemplates"):
            raise RenderError(f"{directory}: labels support includeSelectors: false only")
        for resource in own.resources:
            labels = resource.obj["metadata"].setdefault("labels", {})
            labels.update(label_set.get("pairs", {}))
    for replica in spec.get("replicas", []):
        _set_replicas(directory, own, replica)
    for image in spec.get("images", []):
        for resource in own.resources:
            _set_image(resource.obj, image)

    if not component:
        build.resources.extend(own.resources)


def _generate(directory: Path, build: Build, generator: Obj, kind: str) -> None:
    name = generator["name"]
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = (directory / source).resolve()
        if not path.is_relative_to(directory.resolve()):
            raise RenderError(f"{directory}: file {source} is outside the kustomization")
        data[key or path.name] = path.read_text(encoding="utf-8")
    unknown = set(generator) - {"name", "literals", "files", "behavior", "type"}
    if unknown:
        raise RenderError(f"{directory}: generator {name}: unsupported {sorted(unknown)}")

    behavior = generator.get("behavior", "create")
    existing = build.find(kind, name)
    if behavior == "create":
        if existing is not None:
            raise RenderError(f"{directory}: {kind} {name} already exists; use behavior")
        obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
        if kind == "Secret":
            obj["type"] = generator.get("type", "Opaque")
        build.resources.append(Resource(obj, generated=True))
        existing = build.resources[-1]
    elif existing is None or not existing.generated:
        raise RenderError(f"{directory}: {behavior} of {kind} {name}, which is not generated")
    elif behavior == "replace":
        existing.obj.pop("data", None)
    elif behavior != "merge":
        raise RenderError(f"{directory}: unknown behavior {behavior}")

    if kind == "Secret":
        encoded = {key: _base64_lines(value) for key, value in data.items()}
        existing.obj.setdefault("data", {}).update(encoded)
    else:
        existing.obj.setdefault("data", {}).update(data)


def _base64_lines(value: str) -> str:
    """Base64 as kustomize writes it: past 70 characters, in lines of 70, each ended
    by a newline (the API server ignores them; the name hash does not)."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) <= BASE64_LINE:
        return encoded
    return "".join(
        encoded[start : start + BASE64_LINE] + "\n" for start in range(0, len(encoded), BASE64_LINE)
    )


def _targets(build: Build, target: Obj) -> list[Resource]:
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise RenderError(f"patch target: unsupported {sorted(unknown)}")
    found = []
    for resource in build.resources:
        if "kind" in target and resource.kind != target["kind"]:
            continue
        if "name" in target and not re.fullmatch(target["name"], resource.name):
            continue
        found.append(resource)
    return found


def _patch(directory: Path, build: Build, patch: Obj) -> None:
    if "path" in patch:
        text = (directory / patch["path"]).read_text(encoding="utf-8")
    else:
        text = patch["patch"]
    body = yaml.safe_load(text)
    targets = _targets(build, patch.get("target", {}))
    if not targets:
        raise RenderError(f"{directory}: patch matches nothing: {patch.get('target')}")
    if isinstance(body, dict) and body.get("$patch") == "delete":
        doomed = {id(resource) for resource in targets}
        build.resources[:] = [r for r in build.resources if id(r) not in doomed]
        return
    if not isinstance(body, list):
        raise RenderError(f"{directory}: only JSON 6902 patches and $patch: delete")
    for resource in targets:
        for operation in body:
            _apply_operation(resource.obj, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _apply_operation(obj: Obj, operation: Obj) -> None:
    op = operation["op"]
    *parents, last = _pointer(operation["path"])
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if op == "add":
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value
    elif op == "replace":
        if isinstance(node, list):
            node[int(last)] = value
        elif last not in node:
            raise RenderError(f"replace of missing {operation['path']}")
        else:
            node[last] = value
    elif op == "remove":
        if isinstance(node, list):
            del node[int(last)]
        else:
            del node[last]
    else:
        raise RenderError(f"JSON 6902 operation {op!r} is not supported")


def _set_replicas(directory: Path, build: Build, replica: Obj) -> None:
    found = [
        r
        for r in build.resources
        if r.name == replica["name"] and "replicas" in r.obj.get("spec", {})
    ]
    if not found:
        raise RenderError(f"{directory}: replicas for unknown {replica['name']}")
    for resource in found:
        resource.obj["spec"]["replicas"] = int(replica["count"])


def _pod_specs(obj: Obj) -> list[Obj]:
    if obj["kind"] in WORKLOADS:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    return []


def _containers(obj: Obj) -> list[Obj]:
    found = []
    for spec in _pod_specs(obj):
        found += spec.get("initContainers", []) + spec.get("containers", [])
    return found


def _set_image(obj: Obj, image: Obj) -> None:
    for container in _containers(obj):
        current = container.get("image", "")
        match = re.fullmatch(r"([^@]+?)(?::([^:@/]+))?(@.+)?", current)
        if not match or match.group(1) != image["name"]:
            continue
        name = str(image.get("newName") or match.group(1))
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            container["image"] = name + (f":{match.group(2)}" if match.group(2) else "")


# --- generated names ---------------------------------------------------------------


def name_hash(obj: Obj) -> str:
    """kustomize's content hash of a generated ConfigMap or Secret (10 characters).

    kustomize means to hash kind, name and data, but looks the name up with the path
    "metadata/name" as one field name, finds nothing and hashes an empty name; so
    does this, or the names would differ from kustomize's.
    """
    encoded: Obj = {"kind": obj["kind"], "name": "", "data": obj.get("data", "")}
    if obj["kind"] == "Secret":
        encoded["type"] = obj.get("type", "Opaque")
    # Go's json.Marshal: sorted keys, no spaces, and &, <, > escaped.
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _finalize_names(build: Build) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for resource in build.resources:
        if resource.generated:
            new = f"{resource.name}-{name_hash(resource.obj)}"
            renamed[(resource.kind, resource.name)] = new
    for resource in build.resources:
        if resource.generated:
            resource.obj["metadata"]["name"] = renamed[(resource.kind, resource.name)]
        for spec in _pod_specs(resource.obj):
            _rename_references(spec, renamed)


def _rename_references(spec: Obj, renamed: dict[tuple[str, str], str]) -> None:
    def fix(holder: Obj | None, key: str, kind: str) -> None:
        if holder and (kind, holder.get(key)) in renamed:
            holder[key] = renamed[(kind, holder[key])]

    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for source in container.get("envFrom", []):
            fix(source.get("configMapRef"), "name", "ConfigMap")
            fix(source.get("secretRef"), "name", "Secret")
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            fix(value_from.get("configMapKeyRef"), "name", "ConfigMap")
            fix(value_from.get("secretKeyRef"), "name", "Secret")
    for volume in spec.get("volumes", []):
        fix(volume.get("configMap"), "name", "ConfigMap")
        fix(volume.get("secret"), "secretName", "Secret")
        for source in volume.get("projected", {}).get("sources", []):
            fix(source.get("configMap"), "name", "ConfigMap")
            fix(source.get("secret"), "name", "Secret")


def main(argv: list[str] | None = None) -> int:
    """Print the rendered kustomization named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: render.py KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(render_yaml(args[0]))
    except (RenderError, OSError, yaml.YAMLError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
