"""Shared fixtures: a private SANDMAN_HOME per test, the CLI in a subprocess, a real daemon.

Tests marked `docker` need a Docker daemon. Without one they are skipped on a developer's
machine, but with CI=true a missing daemon fails them: CI must never go green by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    DOCKER,
    EngineCLI,
    FileServer,
    ImageRemover,
    SeedPool,
    base_env,
    remove_images,
    run_sandman,
    stop_reapers,
)

from sandman.names import LABEL_HOME, LABEL_ROLE

ROOT = Path(__file__).resolve().parent.parent
BASES = ("debian:bullseye-slim", "debian:bookworm-slim", "debian:trixie-slim")
_daemon: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Tools are started as from a terminal, whatever started pytest: `nohup pytest ... &` leaves
    SIGHUP (nohup) and SIGQUIT (`&` without job control) ignored, every child inherits that, and
    a shim's bash cannot trap a signal ignored when it started (the warm path's HUP relay then
    sees nothing, exactly as a tool run under nohup should). SIGINT too, when it came ignored
    (Python keeps it so)."""
    for sig, handler in ((signal.SIGHUP, signal.SIG_DFL), (signal.SIGQUIT, signal.SIG_DFL),
                         (signal.SIGINT, signal.default_int_handler)):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, handler)


def daemon_problem() -> str | None:
    """None when a daemon answers, else why not (cached for the session)."""
    if "problem" not in _daemon:
        try:
            import docker

            docker.from_env().ping()
            _daemon["problem"] = None
        except Exception as e:
            _daemon["problem"] = f"{type(e).__name__}: {e}"
    return _daemon["problem"]  # type: ignore[return-value]


# The fast tier's daemon tests: one cold Docker check per area, chosen for what it covers per
# second. A test here runs in the fast tier only in its Docker, cold parametrization.
SMOKE = frozenset({
    "test_core.py::test_side_by_side_on_the_same_file",  # the README's main job
    "test_core.py::test_bad_input_one_line",
    "test_runtime_exit.py::test_tool_exit_status_passes_through",
    "test_runtime_bytes.py::test_stdout_and_stderr_stay_separate",
    "test_runtime_env.py::test_nothing_but_the_list_leaks_in",
    "test_runtime_paths.py::test_refusals_name_the_path_and_exit_118",
    "test_runtime_ownership.py::test_files_created_belong_to_the_invoking_user",
    "test_runtime_readonly.py::test_declared_read_only_mount_stays_untouched",
    "test_runtime_privileges.py::test_running_container_has_least_privilege",
    "test_runtime_signals.py::test_signal_reaches_the_tool",
    "test_runtime_errors.py::test_malformed_recipes_are_112_with_file_and_line",
    "test_dryrun.py::test_shim_dry_run_starts_nothing_and_prints_a_working_command",
    "test_matrix.py::test_report_shows_the_versions_disagree",
    "test_security_mounts.py::test_symlink_argument_is_resolved_and_refused",
    "test_security_inputs.py::test_files_through_a_symlinked_folder_never_reach_an_image",
    "test_state_errors.py::test_state_and_log_are_private_to_their_owner",
    "test_teams_repos.py::test_repo_errors_are_one_line",
    "test_teams_pins.py::test_pins_resolve_by_directory_and_env_wins",
    "test_teams_registry.py::test_import_refuses_what_is_not_a_bundle",
    "test_upgrade.py::test_shim_missing_is_listed_and_repaired",
    "test_sources.py::test_bad_sources_exit_112_with_file_and_line",
    "test_version_check.py::test_builtin_recipes_prove_their_versions",
})


def is_smoke(item: pytest.Item) -> bool:
    if item.get_closest_marker("smoke") is None and \
            f"{item.path.name}::{getattr(item, 'originalname', item.name)}" not in SMOKE:
        return False
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("kit", "docker") == "docker" and params.get("mode", "cold") == "cold"


# The suite runs on two pytest-xdist workers (`-n 2 --dist loadgroup`, README): most of a
# daemon test is waiting for the daemon, so two of them fill two cores. A worker takes a whole
# group at a time; every module is a group of its own (its module fixtures are made once), and
# what shares something outside a test's own folders is one group, run by one worker in order:
SHARED_GROUPS = {
    # the sandman-podman user, its subordinate ids and its Podman store (the bases loaded in
    # it), rootful Podman's store, and debian:bookworm, which test_bootstrap and
    # test_podman_images re-make; test_security_grants edits /etc/subuid
    "podman": ("test_podman_images.py", "test_podman_registry.py", "test_podman_revive.py",
               "test_podman_rootful.py", "test_engine_choice.py", "test_security_grants.py",
               "test_benchmark.py", "test_bootstrap.py", "test_bootstrap_archived.py"),
    # the second dockerd (teams_helpers.MACHINE_B_ROOT: one fixed place, so that a run that
    # died is found and cleaned by the next)
    "machine-b": ("test_two_machines.py", "test_security_provenance.py"),
}
_GROUP_OF = {module: group for group, modules in SHARED_GROUPS.items() for module in modules}


def xdist_group(item: pytest.Item) -> str:
    """The group an item runs in: a runtime test's Podman parametrizations join "podman" (the
    kit is the sandman-podman user's), the rest follow their module."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("kit") == "podman":
        return "podman"
    return _GROUP_OF.get(item.path.name, item.path.name)


# tryfirst: xdist's own hook (on each worker) turns the marks into the groups it schedules;
# marks added after it are silently ignored, and modules end up split over the workers
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier (`-m "not slow"`): unit tests and one cold Docker smoke per area. Every
    other integration test is slow, so a new one lands in the full suite unless it is chosen.
    Then the xdist groups, and the groups that share something first: they are the longest
    units of work, and a worker that takes one late would leave the other idle at the end."""
    integration = ROOT / "tests" / "integration"
    for item in items:
        if item.path.is_relative_to(integration) and not is_smoke(item):
            item.add_marker(pytest.mark.slow)
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    order = {group: i for i, group in enumerate(SHARED_GROUPS)}
    items.sort(key=lambda it: order.get(xdist_group(it), len(order)))  # stable: else as collected


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = daemon_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Docker daemon not reachable and CI=true (never skipped in CI): {problem}")
    pytest.skip(f"no Docker daemon: {problem}")


@pytest.fixture(scope="session")
def seed_pool(tmp_path_factory: pytest.TempPathFactory) -> SeedPool:
    """Image facts and the agent binary, gathered from the homes of this session."""
    return SeedPool(tmp_path_factory.mktemp("seed-pool"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_pool: SeedPool,
         request: pytest.FixtureRequest) -> Iterator[Path]:
    """A private SANDMAN_HOME, also set in this process's environment, seeded with what
    earlier homes learnt (helpers.SeedPool) unless the test is marked `fresh_home`."""
    h = tmp_path / "sandman-home"
    h.mkdir()
    for k in list(os.environ):
        if k.startswith("SANDMAN_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SANDMAN_HOME", str(h))
    fresh = request.node.get_closest_marker("fresh_home") is not None
    if not fresh:
        seed_pool.seed(h)
    yield h
    if not fresh:
        seed_pool.harvest(h)


Runner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def sandman(home: Path) -> Runner:
    """Run the sandman CLI in a subprocess: sandman("install", "sqlite3@3.34")."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: bytes | str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return run_sandman(*args, env={**base_env(home), **(env or {})}, cwd=cwd, input=input,
                           timeout=timeout, text=not isinstance(input, bytes))

    return run


@pytest.fixture
def shim_env(home: Path) -> dict[str, str]:
    """The environment a user's shell would give a shim: the bin dir on PATH."""
    return base_env(home)


def require_bases() -> None:
    import docker

    client = docker.from_env()
    missing = []
    for b in BASES:
        try:
            client.images.get(b)
        except docker.errors.ImageNotFound:
            missing.append(b)
    if missing:
        pytest.fail(f"base images missing: {', '.join(missing)}; run: sandman bootstrap {' '.join(missing)}")


@pytest.fixture(scope="session")
def docker_client():
    problem = daemon_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Docker daemon not reachable and CI=true: {problem}")
        pytest.skip(f"no Docker daemon: {problem}")
    import docker

    require_bases()
    return docker.from_env()


@pytest.fixture(scope="session")
def shared_home(request: pytest.FixtureRequest, docker_client, seed_pool: SeedPool) -> Path:
    """One SANDMAN_HOME for the session with sqlite3@3.34, sqlite3@3.46 and python2@2.7 installed.

    Tests that only *use* shims share it (installing is a cache hit after the first time, but
    even that is worth doing once); tests that change state make their own `home`.
    """
    # World-traversable (pytest's own tmp root is 0700) so tests can run shims as another uid.
    h = Path(tempfile.mkdtemp(prefix="sandman-shared-home-"))
    h.chmod(0o755)
    request.addfinalizer(lambda: (stop_reapers(h), shutil.rmtree(h, ignore_errors=True)))
    seed_pool.seed(h)
    proc = run_sandman("install", "sqlite3@3.34", "sqlite3@3.46", "python2@2.7", env=base_env(h),
                       timeout=1800)
    assert proc.returncode == 0, proc.stderr
    seed_pool.harvest(h)
    return h


@pytest.fixture
def public_tmp() -> Path:
    """A temp dir that other uids can enter (pytest's tmp_path is under a 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="sandman-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_env(shared_home: Path) -> dict[str, str]:
    return base_env(shared_home)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[FileServer]:
    """A local HTTP server serving tmp_path/www (empty: the test puts its files in `.root`),
    stopped afterwards if the test has not stopped it itself."""
    server = FileServer(tmp_path / "www")
    yield server
    server.stop()


def _image_remover() -> Iterator[ImageRemover]:
    """What both scopes of `remove_images_after` do: note what to remove, remove it all at
    teardown (after the fixtures that asked for it have stopped their containers)."""
    pending: list[tuple[tuple[str, ...], str | None, EngineCLI]] = []

    def after(*tools: str, label: str | None = None, engine: EngineCLI = DOCKER) -> None:
        pending.append((tools, label, engine))

    yield after
    for tools, label, engine in pending:
        remove_images(*tools, label=label, engine=engine)


@pytest.fixture
def remove_images_after() -> Iterator[ImageRemover]:
    """remove_images_after(*tools, label=None, engine=DOCKER): the images of these tools (or
    matching that label filter) in that store go when the test ends, pass or fail. Images
    outlive containers and homes: a test that builds leaves gigabytes on a CI disk otherwise."""
    yield from _image_remover()


@pytest.fixture(scope="module")
def remove_images_after_module() -> Iterator[ImageRemover]:
    """The same, when the module ends: for tools whose images the module's tests share (a
    later test finds the earlier one's build, as a user's second install would)."""
    yield from _image_remover()


def bash() -> str:
    return shutil.which("bash") or "/bin/bash"


def _ours(home: str, basetemp: Path) -> bool:
    """A test home this session is done with: under its own basetemp, or a /tmp/sandman-*
    one that is gone (each fixture removes its folder first). Another session running at the
    same time keeps its reaper and warm containers: its homes are still there."""
    if not home:
        return False
    if home.startswith(str(basetemp)):
        return True
    return home.startswith(str(Path(tempfile.gettempdir()) / "sandman-")) and not Path(home).exists()


@pytest.fixture(autouse=True)
def _reapers_end_with_their_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A reaper outlives its home's last container by minutes and polls the daemon every 2 s
    meanwhile: the reapers of the homes under a finished test's tmp_path are ended with it
    (left alone, a suite's finished homes kept dozens of them busy)."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    root = str(request.getfixturevalue("tmp_path")) + "/"
    yield
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sandman.reaper" in argv and argv.index(b"sandman.reaper") + 1 < len(argv) \
                and argv[argv.index(b"sandman.reaper") + 1].decode(errors="replace").startswith(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)


@pytest.fixture(scope="session", autouse=True)
def _stop_what_tests_started(tmp_path_factory: pytest.TempPathFactory):
    """At the end: stop reapers and warm containers that belong to test homes.

    Each test home has its own reaper (one per SANDMAN_HOME, as for a real user) and may have
    warm containers idling for minutes; neither should outlive the test session.
    """
    yield
    basetemp = tmp_path_factory.getbasetemp()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"sandman.reaper" not in (proc / "cmdline").read_bytes():
                continue
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if _ours(env.get(b"SANDMAN_HOME", b"").decode(errors="replace"), basetemp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)
    if daemon_problem() is None:
        import docker

        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_ROLE}=warm"},
                                           ignore_removed=True):
            if _ours(c.labels.get(LABEL_HOME, ""), basetemp):
                with contextlib.suppress(docker.errors.DockerException):
                    c.remove(force=True)
