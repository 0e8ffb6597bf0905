"""deploy/k8s/render.py: kustomize's results for the subset the manifests use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy.conftest import K8S, KUSTOMIZATIONS

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: web:1.0
          envFrom: [{configMapRef: {name: settings}}]
          env:
            - name: KEY
              valueFrom: {secretKeyRef: {name: keys, key: k}}
            - name: OTHER
              valueFrom: {secretKeyRef: {name: operator-made, key: k}}
          volumeMounts: [{name: conf, mountPath: /conf}]
      volumes:
        - name: conf
          configMap: {name: files}
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "base/deployment.yaml": DEPLOYMENT,
            "base/files/app.conf": "listen 80\n",
            "base/kustomization.yaml": """
resources: [deployment.yaml]
namespace: shop
configMapGenerator:
  - name: settings
    literals: [A=1, B=two]
  - name: files
    files: [files/app.conf]
secretGenerator:
  - name: keys
    literals: [k=v]
""",
        },
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"kind": "ConfigMap", "metadata": {"name": "x"}}, "6ct58987ht"),
        ({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"one": ""}}, "9g67k2htb6"),
        (
            {"kind": "Secret", "type": "my-type", "metadata": {"name": "x"}, "data": {"one": ""}},
            "74bd68bm66",
        ),
    ],
)
def test_name_hashes_match_kustomizes_published_values(
    renderer: ModuleType, obj: dict, expected: str
) -> None:
    assert renderer.name_hash(obj) == expected


def test_generated_names_carry_a_hash_and_every_reference_follows(
    renderer: ModuleType, app: Path
) -> None:
    kinds = by_kind(renderer.render(app / "base"))
    names = {
        o["metadata"]["name"].rsplit("-", 1)[0]: o["metadata"]["name"]
        for o in kinds["ConfigMap"] + kinds["Secret"]
    }
    assert set(names) == {"settings", "files", "keys"}
    assert all(len(full.rsplit("-", 1)[1]) == 10 for full in names.values())
    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["envFrom"][0]["configMapRef"]["name"] == names["settings"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == names["keys"]
    assert container["env"][1]["valueFrom"]["secretKeyRef"]["name"] == "operator-made"
    assert spec["volumes"][0]["configMap"]["name"] == names["files"]
    assert all(o["metadata"]["namespace"] == "shop" for o in kinds["ConfigMap"])


def test_an_overlay_merge_changes_the_data_and_so_the_name(renderer: ModuleType, app: Path) -> None:
    write(
        app,
        {
            "prod/kustomization.yaml": """
resources: [../base]
configMapGenerator:
  - name: settings
    behavior: merge
    literals: [B=three, C=4]
replicas: [{name: web, count: 5}]
images: [{name: web, newName: registry.example.com/web, newTag: "2.0"}]
"""
        },
    )
    base = {o["kind"]: o for o in renderer.render(app / "base") if o["kind"] != "Secret"}
    prod = by_kind(renderer.render(app / "prod"))
    settings = [o for o in prod["ConfigMap"] if o["metadata"]["name"].startswith("settings-")]
    assert settings[0]["data"] == {"A": "1", "B": "three", "C": "4"}
    assert settings[0]["metadata"]["name"] != base["ConfigMap"]["metadata"]["name"]
    (deployment,) = prod["Deployment"]
    assert deployment["spec"]["replicas"] == 5
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/web:2.0"
    assert container["envFrom"][0]["configMapRef"]["name"] == settings[0]["metadata"]["name"]


def test_json_patches_and_deletions_reach_the_targets_their_name_pattern_matches(
    renderer: ModuleType, app: Path
) -> None:
    write(
        app,
        {
            "other.yaml": DEPLOYMENT.replace("name: web}", "name: api}"),
            "delete.yaml": (
                "$patch: delete\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
            ),
            "kustomization.yaml": """
resources: [base, other.yaml]
patches:
  - target: {kind: Deployment, name: "web|api"}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 7
      - op: add
        path: /spec/template/spec/volumes/-
        value: {name: tmp, emptyDir: {}}
      - op: remove
        path: /spec/template/spec/containers/0/env/1
  - target: {kind: Deployment, name: api}
    path: delete.yaml
""",
        },
    )
    (deployment,) = by_kind(renderer.render(app))["Deployment"]
    assert deployment["metadata"]["name"] == "web"
    assert deployment["spec"]["replicas"] == 7
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["conf", "tmp"]
    assert len(deployment["spec"]["template"]["spec"]["containers"][0]["env"]) == 1


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [d.yaml]\nnamePrefix: x-\n", "unsupported fields ['namePrefix']"),
        (
            "configMapGenerator:\n  - name: c\n    files: [../secret.txt]\n",
            "outside the kustomization",
        ),
        (
            "resources: [d.yaml]\npatches:\n  - target: {kind: Service}\n    patch: '[]'\n",
            "patch matches nothing",
        ),
        (
            "resources: [d.yaml]\nlabels:\n  - pairs: {a: b}\n    includeSelectors: true\n",
            "includeSelectors: false only",
        ),
    ],
)
def test_what_it_cannot_render_faithfully_is_refused_by_name(
    renderer: ModuleType, tmp_path: Path, kustomization: str, message: str
) -> None:
    (tmp_path / "secret.txt").write_text("x")
    write(tmp_path / "k", {"kustomization.yaml": kustomization, "d.yaml": DEPLOYMENT})
    with pytest.raises(renderer.RenderError, match=message.replace("[", r"\[").replace("]", r"\]")):
        renderer.render(tmp_path / "k")


def test_the_command_line_prints_a_yaml_stream(
    renderer: ModuleType, app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert renderer.main([str(app / "base")]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in documents] == ["ConfigMap", "ConfigMap", "Secret", "Deployment"]
    assert renderer.main([str(app / "missing")]) == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_kustomization_renders_as_kubectl_kustomize_renders_it(
    rendered: dict[str, list[dict]], kustomization: str
) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = [o for o in yaml.safe_load_all(result.stdout) if o]

    def key(obj: dict) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    assert sorted(rendered[kustomization], key=key) == sorted(theirs, key=key)
