"""Shared fixtures: real servers on free ports, stopped when the session ends."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tfw.stack import Stack

SHARED = Path(os.environ.get("TFW_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


class _StderrLog:
    def write(self, text: str) -> None:
        if os.environ.get("TFW_TEST_LOGS"):
            sys.stderr.write(text)

    def flush(self) -> None:
        pass


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nats-server with JetStream and SecantusDB, shared by the whole session."""
    stack = Stack(tmp_path_factory.mktemp("infra"), log=_StderrLog())  # type: ignore[arg-type]
    try:
        stack.start_nats()
        stack.start_mongo()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def nats_url(infra: Stack) -> str:
    assert infra.nats_url
    return infra.nats_url


@pytest.fixture(scope="session")
def mongodb_uri(infra: Stack) -> str:
    assert infra.mongodb_uri
    return infra.mongodb_uri


@pytest.fixture
async def mongo(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """An asyncio client of the session's MongoDB-wire server, closed after the test."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000
    )
    yield client
    await client.close()


@pytest.fixture(scope="session")
def shared_cases() -> Path:
    cases = SHARED / "cases"
    if not cases.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared acceptance cases are missing from {cases}")
        pytest.skip(f"the shared acceptance cases are not at {cases}")
    return cases
