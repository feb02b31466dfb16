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
from helpers import warm_dir

# Rewritten asserts in the kit's checks (one_line_error...), as when it was a pytest plugin.
pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    AGENT_PATH,
    TEST_GID,
    TEST_UID,
    Kit,
    build_kit,
    docker,
    ensure_agent,
    remove_test_containers,
    stop_reaper,
    warm_mains,
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


@pytest.fixture(params=["cold", "warm", "agent"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """cold: `docker run`; warm: `docker exec` into a warm container; agent: the warm agent.

    Warm containers run the agent whenever its binary is there, and both warm modes share
    them, so the binary is made before either runs (a container started without it would
    take the agent's calls through `docker exec`, silently: checked after an agent test).
    """
    if request.param == "cold":
        yield request.param
        return
    kit = request.getfixturevalue("kit")
    ensure_agent(kit.home)
    yield request.param
    mains = warm_mains(kit.home)
    assert all(m == AGENT_PATH for m in mains), (
        f"warm containers without the agent: {mains}\n"
        + docker("ps", "--filter", f"label=io.sandman.home={warm_dir(kit.home)}",
                 "--format", "{{.Names}} {{.CreatedAt}} {{.Command}}"))


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
