"""Promise 1, the other half: sandman's own failures are one line with a reserved exit code.

Each case also checks that nothing was lost: the install that worked before still works.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, remove_images

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    Kit,
    one_line_error,
    token,
    user_env,
)

from sandman.errors import (  # noqa: E402
    EXIT_CODES,
    BuildError,
    DaemonPermissionError,
    DaemonUnavailableError,
    EngineNotInstalledError,
    ImageMissingError,
    KitError,
    MountError,
    NotFoundError,
    RecipeError,
    StateError,
)
from sandman.names import LABEL_TOOL  # noqa: E402

pytestmark = pytest.mark.docker


def quiet(kit: Kit, *args: str, **kw) -> subprocess.CompletedProcess:
    """The CLI with -q: no progress lines, so stderr holds only what went wrong."""
    return kit.sandman("-q", *args, **kw)


def still_works(kit: Kit, work: Path) -> None:
    p = kit.run([kit.shim("rtprobe-1"), "echo", "ok"], env=kit.env(), cwd=work)
    assert (p.returncode, p.stdout) == (0, b"ok\n"), p.stderr


def test_shim_daemon_unreachable_is_115(kit: Kit, mode: str, work: Path) -> None:
    """Docker: DOCKER_HOST names a socket that is not there. Podman needs no daemon for a
    run, but CONTAINER_HOST makes it a client of that socket: the same promise holds."""
    gone = kit.root / "no-such.sock"
    var = "CONTAINER_HOST" if kit.podman else "DOCKER_HOST"
    p = kit.run([kit.shim("rtprobe-1"), "true"], env=kit.env(mode, **{var: f"unix://{gone}"}), cwd=work)
    assert p.returncode == DaemonUnavailableError.exit_code, p.stderr
    assert str(gone) in one_line_error(p.stderr)


def test_cli_daemon_unreachable_is_115(kit: Kit, work: Path) -> None:
    """Docker: no daemon at DOCKER_HOST (115). Podman's service is started on demand, so its
    counterpart is an engine that is not there at all: no podman on PATH (93)."""
    if kit.podman:
        bare = kit.scratch("no-podman")  # setpriv for the run as the user, and no podman
        (bare / "setpriv").symlink_to(shutil.which("setpriv") or "/usr/bin/setpriv")
        env, code, text = kit.env(PATH=str(bare)), EngineNotInstalledError.exit_code, "engine \"podman\""
    else:
        env, code, text = kit.env(DOCKER_HOST=f"unix://{kit.root / 'no-such.sock'}"), \
            DaemonUnavailableError.exit_code, "Docker daemon"
    for args in (["run", "rtprobe@1", "--", "true"], ["install", "rtprobe@1"], ["build", "rtprobe@1"]):
        p = quiet(kit, *args, env=env, cwd=work)
        assert p.returncode == code, (args, p.stderr)
        one_line_error(p.stderr, text)


def test_socket_permission_denied_is_116(kit: Kit, mode: str, work: Path, user_home: Path) -> None:
    """A user without the docker group asks Docker: 116, one line. Rootless Podman is the way
    such a user runs (no group at all): a Podman shim runs for them, and SANDMAN_ENGINE at call
    time changes nothing (the engine was chosen when the shim was written)."""
    env = user_env(kit, mode, user_home)
    if kit.podman:
        ok = kit.run([kit.shim("rtprobe-1"), "echo", "ok"], env={**env, "SANDMAN_ENGINE": "docker"},
                     cwd=work, user=True, docker_group=False)
        assert (ok.returncode, ok.stdout) == (0, b"ok\n"), ok.stderr
        return
    p = kit.run([kit.shim("rtprobe-1"), "true"], env=env, cwd=work, user=True, docker_group=False)
    assert p.returncode == DaemonPermissionError.exit_code
    assert "/var/run/docker.sock" in one_line_error(p.stderr, "permission denied")


def test_missing_image(kit: Kit, work: Path, remove_images_after: ImageRemover) -> None:
    """A shim cannot ask the daemon before `exec docker` (no forks on the hot path): docker
    says which image is gone (125); sandman's own commands say so with 117, or rebuild."""
    home = kit.scratch("img-home")
    tool = f"rtimg{token()}"
    remove_images_after(tool, engine=kit.engine_cli)
    rdir = kit.scratch("img-recipes") / tool
    rdir.mkdir()
    (rdir / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "x"\n[versions."1"]\n'
        f'base = "debian:bookworm-slim"\nrun = ["echo {tool}"]\n')
    env = kit.env(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(rdir.parent))
    env["PATH"] = f"{paths_of(home).bin_dir}:{env['PATH']}"
    try:
        assert quiet(kit, "install", f"{tool}@1", env=env).returncode == 0
        # the image with every tag it has (its own, this home's root): gone behind sandman's back
        image_id = kit.cli("images", "-q", "--no-trunc", "--filter",
                           f"label={LABEL_TOOL}={tool}").split()[0]
        record = record_file(home, tool, "1")
        tag = json.loads(record.read_text())["image_tag"]
        kit.cli("rmi", "-f", image_id)
        shim = kit.run([str(paths_of(home).bin_dir / f"{tool}-1"), "true"], env=env, cwd=work)
        assert shim.returncode == 125
        assert tag.encode() in shim.stderr
        reshim = quiet(kit, "reshim", f"{tool}@1", env=env)
        assert reshim.returncode == ImageMissingError.exit_code
        one_line_error(reshim.stderr, tag)
        again = quiet(kit, "run", f"{tool}@1", "--", "echo", "rebuilt", env=env, cwd=work)
        assert (again.returncode, again.stdout) == (0, b"rebuilt\n"), again.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


BAD_RECIPES = {
    "toml": ('schema = 1\ntool = "{t}"\ndescription = "x"\n[versions."1"\n', ":4: invalid TOML"),
    "type": ('schema = 1\ntool = "{t}"\ndescription = "x"\n[versions."1"]\nbase = "debian:bookworm-slim"\n'
             'packages = "sqlite3"\n', ":6: versions.1.packages: expected a list"),
    "unknown-key": ('schema = 1\ntool = "{t}"\ndescription = "x"\nnetwrok = true\n'
                    '[versions."1"]\nbase = "debian:bookworm-slim"\n', "netwrok"),
    "mount-mode": ('schema = 1\ntool = "{t}"\ndescription = "x"\n[[mounts]]\nname = "d"\nsource = "/tmp"\n'
                   'target = "/d"\nmode = "rwx"\n[versions."1"]\nbase = "debian:bookworm-slim"\n', "mode"),
    "not-utf8": (b'schema = 1\ntool = "\xff"\n', "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_malformed_recipes_are_112_with_file_and_line(kit: Kit, work: Path, case: str) -> None:
    tool = f"rtbad{token()}"
    rdir = kit.scratch("bad") / tool
    rdir.mkdir()
    text, expect = BAD_RECIPES[case]
    data = text.replace(b"{t}", tool.encode()) if isinstance(text, bytes) else text.format(t=tool).encode()
    (rdir / "recipe.toml").write_bytes(data)
    env = kit.env(SANDMAN_RECIPE_PATH=f"{rdir.parent}:{kit.recipes}")
    for args in (["run", f"{tool}@1", "--", "true"], ["install", f"{tool}@1"]):
        p = quiet(kit, *args, env=env, cwd=work)
        assert p.returncode == RecipeError.exit_code, (args, p.stderr)
        line = one_line_error(p.stderr, expect) if case != "toml" else one_line_error(p.stderr)
        assert str(rdir / "recipe.toml") in line
    dbg = quiet(kit, "--debug", "install", f"{tool}@1", env=env, cwd=work)
    assert dbg.returncode == RecipeError.exit_code and b"Traceback" in dbg.stderr
    still_works(kit, work)


@pytest.mark.parametrize(("spec", "code", "text"), [
    ("rtprobe@9.9", NotFoundError.exit_code, "unknown version '9.9' of rtprobe; versions: 1, net"),
    ("no-such-tool@1", NotFoundError.exit_code, "unknown tool 'no-such-tool'"),
    ("rtprobe", 2, "is not TOOL@VERSION"),
    ("rtprobe@", 2, "is not TOOL@VERSION"),
    ("RTPROBE@1", 2, "is not TOOL@VERSION"),
    ("rtprobe@1@2", 2, "is not TOOL@VERSION"),
    ("../rtprobe@1", 2, "is not TOOL@VERSION"),
    ("rtprobe@1;rm -rf /", 2, "is not TOOL@VERSION"),
])
def test_bad_names_and_specs(kit: Kit, work: Path, spec: str, code: int, text: str) -> None:
    for args in (["run", spec, "--", "true"], ["install", spec]):
        p = quiet(kit, *args, env=kit.env(), cwd=work)
        assert p.returncode == code, (args, p.stderr)
        one_line_error(p.stderr, text)
    still_works(kit, work)


def test_build_failure_is_114_and_unreadable_kits_113(kit: Kit, work: Path) -> None:
    tool = f"rtkit{token()}"
    rdir = kit.scratch("kit-recipes") / tool
    rdir.mkdir()
    kits = kit.scratch("kits")
    (rdir / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "x"\n'
        f'[versions."1"]\nbase = "debian:bookworm-slim"\nrun = ["echo {tool} >&2; exit 3"]\n'
        f'[versions."2"]\nbase = "debian:bookworm-slim"\n'
        f'kits = [{{ file = "kit.tar", sha256 = "{"0" * 64}" }}]\n')
    env = kit.env(SANDMAN_RECIPE_PATH=f"{rdir.parent}:{kit.recipes}", SANDMAN_KITS_DIR=str(kits))
    try:
        p = quiet(kit, "install", f"{tool}@1", env=env, cwd=work)
        assert p.returncode == BuildError.exit_code
        err = p.stderr.decode()
        ours = [ln for ln in err.splitlines() if ln.startswith("sandman: ")]
        assert len(ours) == 1 and "Traceback" not in err  # one line, then the build log tail
        # the step and its status, in each builder's words (Docker's; Podman's is Buildah's)
        if kit.podman:
            assert ours[0].startswith(f"sandman: building {tool}@1 failed at "), ours[0]
            assert "exit status 3" in ours[0] and f"echo {tool}" in ours[0], ours[0]
        else:
            assert ours[0].startswith(f"sandman: building {tool}@1 failed at Step")
            assert "non-zero code: 3" in ours[0] and f"echo {tool}" in ours[0]
        missing = quiet(kit, "install", f"{tool}@2", env=env, cwd=work)
        assert missing.returncode == KitError.exit_code
        one_line_error(missing.stderr, str(kits / "kit.tar"))
        (kits / "kit.tar").mkdir()  # a directory where the kit file should be
        as_dir = quiet(kit, "install", f"{tool}@2", env=env, cwd=work)
        assert as_dir.returncode == KitError.exit_code
        one_line_error(as_dir.stderr, "kit.tar")
        (kits / "kit.tar").rmdir()
        (kits / "kit.tar").write_bytes(b"not the kit")
        wrong = quiet(kit, "install", f"{tool}@2", env=env, cwd=work)
        assert wrong.returncode == KitError.exit_code
        one_line_error(wrong.stderr, "sha256")
    finally:
        remove_images(tool, engine=kit.engine_cli)
    still_works(kit, work)


def test_exit_code_table_is_printed_and_distinct(kit: Kit) -> None:
    p = quiet(kit, "exit-codes", env=kit.env())
    assert p.returncode == 0
    rows = [line for line in p.stdout.decode().splitlines() if line[:1].isspace() or line[:1].isdigit()]
    printed = [int(line.split()[0]) for line in rows]  # the group titles between them are not rows
    assert len(printed) == len(set(printed)) and set(printed) == set(EXIT_CODES)
    for error in (NotFoundError, RecipeError, KitError, BuildError, DaemonUnavailableError,
                  DaemonPermissionError, ImageMissingError, MountError, StateError):
        assert error.exit_code in EXIT_CODES
    doc = (Path(__file__).resolve().parents[2] / "docs" / "runtime.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in doc, f"exit code {code} missing from docs/runtime.md"
