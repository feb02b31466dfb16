"""Fixtures of the runtime kit, shared by the integration tests (test_runtime_*.py, warm, security).

The kit itself (test tools, recipes, the plain helpers a test calls) is in runtime_helpers.py;
only the fixtures live here, so a module needs no `pytest_plugins` line to use them. The
session-wide kit is built on first use only: modules that never ask for it pay nothing.

The runtime fidelity suite (test_runtime_*.py) runs every test that takes `kit` once per
engine: `kit` is parametrized there, at session scope, so pytest runs all of Docker's tests,
then all of Podman's (one kit of each, built once). Elsewhere `kit` is the Docker kit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Rewritten asserts in the kit's checks (one_line_error...), as when it was a pytest plugin.
pytest.register_assert_rewrite("runtime_helpers")
from podman_helpers import ensure_bases, ensure_podman_user, ensure_tun  # noqa: E402
from runtime_helpers import (  # noqa: E402
    AGENT_PATH,
    Kit,
    build_kit,
    ensure_agent,
    remove_test_containers,
    stop_reaper,
    warm_mains,
)

ENGINES = ("docker", "podman")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`kit` over both engines in the runtime fidelity suite (session scope: grouped by kit)."""
    if "kit" in metafunc.fixturenames and metafunc.module.__name__.startswith("test_runtime_"):
        metafunc.parametrize("kit", ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def kits(docker_client) -> Iterator[dict[str, Kit]]:
    """The kits made so far, by engine; each is made on first use and removed at the end."""
    made: dict[str, Kit] = {}
    yield made
    for k in made.values():
        remove_test_containers(k.home, kit=k)
        stop_reaper(k.home)
        shutil.rmtree(k.root, ignore_errors=True)


@pytest.fixture(scope="session")
def kit(request: pytest.FixtureRequest, kits: dict[str, Kit]) -> Kit:
    """docker: root and the Docker daemon. podman: rootless Podman as the sandman-podman user
    (no docker group), the kit's folders its own, the bases loaded into its store first."""
    engine = getattr(request, "param", "docker")
    if engine not in kits:
        root = Path(tempfile.mkdtemp(prefix=f"sandman-rt-{engine}-", dir="/tmp"))
        root.chmod(0o755)
        user = None
        if engine == "podman":
            user = ensure_podman_user()
            ensure_bases(user)
            ensure_tun()
        try:
            kits[engine] = build_kit(root, engine, user)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return kits[engine]


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
    ensure_agent(kit.home, kit)
    yield request.param
    mains = warm_mains(kit.home, kit)
    assert all(m == AGENT_PATH for m in mains), (
        f"warm containers without the agent: {mains}\n"
        + kit.cli("ps", "--filter", f"label=io.sandman.home={kit.warm_label()}",
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
    kit.own(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)
