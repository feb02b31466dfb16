"""Fixtures of the runtime kit, shared by the integration tests (test_runtime_*.py, warm, security).

The kit itself (test tools, recipes, the plain helpers a test calls) is in runtime_helpers.py;
only the fixtures live here, so a module needs no `pytest_plugins` line to use them. The
session-wide kit is built on first use only: modules that never ask for it pay nothing.

The runtime fidelity suite (test_runtime_*.py) runs each test on the engines and in the modes
its entry in tests/runtime_matrix.py names, with the reason: `kit` is parametrized at session
scope, so pytest runs all of Docker's tests, then all of Podman's (one kit of each, built
once). Elsewhere `kit` is the Docker kit unless the test has an entry.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import runtime_matrix
from helpers import SeedPool, stop_reapers

# Rewritten asserts in the kit's checks (one_line_error...), as when it was a pytest plugin.
pytest.register_assert_rewrite("runtime_helpers")
from podman_helpers import ensure_bases, ensure_podman_user, ensure_tun  # noqa: E402
from runtime_helpers import (  # noqa: E402
    AGENT_PATH,
    Kit,
    build_kit,
    ensure_agent,
    remove_test_containers,
    warm_mains,
)

from sandman.names import LABEL_HOME  # noqa: E402


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`kit` over the engines and `mode` over the modes that test's entry in
    tests/runtime_matrix.py names (session scope for `kit`: pytest groups the items by engine,
    so each engine's kit is made once)."""
    module = Path(metafunc.module.__file__).name
    reach = runtime_matrix.entry(module, metafunc.function.__name__)
    runtime = module.startswith("test_runtime_")
    wants_kit = "kit" in metafunc.fixturenames and runtime
    if reach is None:
        if wants_kit or "mode" in metafunc.fixturenames:
            raise pytest.UsageError(f"{module}::{metafunc.function.__name__} has no entry in "
                                    "tests/runtime_matrix.py (which engines and modes, and why)")
        return
    if "kit" in metafunc.fixturenames:
        metafunc.parametrize("kit", reach.engines, indirect=True, scope="session")
    if "mode" in metafunc.fixturenames:
        metafunc.parametrize("mode", reach.modes, indirect=True)


@pytest.fixture(scope="session")
def kits(docker_client) -> Iterator[dict[str, Kit]]:
    """The kits made so far, by engine; each is made on first use and removed at the end."""
    made: dict[str, Kit] = {}
    yield made
    for k in made.values():
        remove_test_containers(k.home, kit=k)
        stop_reapers(k.home)
        shutil.rmtree(k.root, ignore_errors=True)


@pytest.fixture(scope="session")
def kit(request: pytest.FixtureRequest, kits: dict[str, Kit], seed_pool: SeedPool) -> Kit:
    """docker: root and the Docker daemon. podman: rootless Podman as the sandman-podman user
    (no docker group), the kit's folders its own, the bases loaded into its store first.
    The Docker kit's home starts with the session's image facts and agent (helpers.SeedPool;
    the Podman user's home is its own, and its store's image ids are other ones)."""
    engine = getattr(request, "param", "docker")
    if engine not in kits:
        root = Path(tempfile.mkdtemp(prefix=f"sandman-rt-{engine}-", dir="/tmp"))
        root.chmod(0o755)
        user = None
        if engine == "podman":
            user = ensure_podman_user()
            ensure_bases(user)
            ensure_tun()
        if user is None:
            seed_pool.seed(root / "home")
        try:
            kits[engine] = build_kit(root, engine, user)
            if user is None:
                seed_pool.harvest(kits[engine].home)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return kits[engine]


@pytest.fixture
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
    if kit.user is None:  # later homes start with it
        request.getfixturevalue("seed_pool").harvest(kit.home)
    yield request.param
    mains = warm_mains(kit.home, kit)
    assert all(m == AGENT_PATH for m in mains), (
        f"warm containers without the agent: {mains}\n"
        + kit.cli("ps", "--filter", f"label={LABEL_HOME}={kit.warm_label()}",
                  "--format", "{{.Names}} {{.CreatedAt}} {{.Command}}"))


@pytest.fixture
def work(kit: Kit, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The working directory of one test (the shim mounts the cwd).

    Cold: a fresh one, removed afterwards. Warm and agent: the cwd is part of a kept
    container's key, so a fresh folder per test would start a container per test (and leave it
    idling for minutes); instead each kit has one warm working folder, emptied and given back
    to the kit's user before each test, so the tests whose calls need no mount of their own
    share one kept container per (engine, image). A test that needs its own container makes
    its own folder (kit.scratch)."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("mode", "cold") == "cold":
        d = kit.scratch("work")
        yield d
        shutil.rmtree(d, ignore_errors=True)
        return
    d = kit.root / "work-warm"
    d.mkdir(exist_ok=True)
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    d.chmod(0o755)
    kit.own(d, user=False)
    yield d


@pytest.fixture
def user_home(kit: Kit) -> Iterator[Path]:
    """HOME for the test user, owned by it, outside any working directory."""
    d = kit.scratch("uhome")
    kit.own(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- the recording stand-in for mmdebstrap (bootstrap_helpers.py) ---------------------------------
from bootstrap_helpers import StandIn, make_standin, remove_standin  # noqa: E402


@pytest.fixture(scope="session")
def mmdebstrap_standin(docker_client) -> Iterator[StandIn]:
    """One per session, so each base is exported once for every bootstrap test that needs it."""
    s = make_standin()
    yield s
    remove_standin(s)
