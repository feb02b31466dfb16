"""Fixtures of the runtime kit, shared by the integration tests (test_runtime_*.py, warm, security).

The kit itself (test tools, recipes, the plain helpers a test calls) is in runtime_helpers.py;
only the fixtures live here, so a module needs no `pytest_plugins` line to use them. The
session-wide kit is built on first use only: modules that never ask for it pay nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Rewritten asserts in the kit's checks (one_line_error...), as when it was a pytest plugin.
pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    TEST_GID,
    TEST_UID,
    Kit,
    build_kit,
    remove_test_containers,
    stop_reaper,
)


@pytest.fixture(scope="session")
def kit(docker_client) -> Iterator[Kit]:
    root = Path(tempfile.mkdtemp(prefix="sandman-rt-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield build_kit(root)
    finally:
        remove_test_containers(root / "home")
        stop_reaper(root / "home")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["cold", "warm"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def work(kit: Kit) -> Iterator[Path]:
    """A fresh working directory (the shim mounts the cwd), removed afterwards."""
    d = kit.scratch("work")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def user_home(kit: Kit) -> Iterator[Path]:
    """HOME for the test user, owned by it, outside any working directory."""
    d = kit.scratch("uhome")
    os.chown(d, TEST_UID, TEST_GID)
    yield d
    shutil.rmtree(d, ignore_errors=True)
