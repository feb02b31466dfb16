"""Security rules of the shim runtime, each fed its cases (issues 19 and 23).

- Podman's runtime folder: the shim runtime's `sm_rundir_ok` (shims/shim.bash, the Podman folder
  rule; sandman.engine_choice.podman_paths runs that one copy) accepts and refuses folders.
- A pin's target: the plain shim (shims/default.bash; sandman/commands/pins.py `pin_target` runs its
  target part, the rule's one copy) runs only a versioned shim sandman wrote for that tool; the
  attack of issue 23.4 is replayed on a real plain shim.
- A recipe source is http(s): file:// is refused when the recipe loads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandman import engine_choice, runtime_rules, shims
from sandman.commands import pins
from sandman.errors import NotFoundError, RecipeError
from sandman.paths import Paths
from sandman.recipe_check import load_recipe

ROOT = Path(__file__).resolve().parents[2]
OTHER_UID = 4242


# -- Podman's runtime folder ----------------------------------------------------------------------
def _bash_rule() -> str:
    """The shim runtime's rule, cut out of shims/shim.bash between its markers."""
    text = (ROOT / "shims" / "shim.bash").read_text()
    return runtime_rules.block(text, "the Podman folder rule")


def _bash_problem(path: Path) -> str:
    script = _bash_rule() + 'sm_rundir_ok "$1" && echo OK || printf "%s\\n" "$sm_why"\n'
    p = subprocess.run(["bash", "-c", script, "rule", str(path)], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = p.stdout.rstrip("\n")
    return "" if out == "OK" else out


def _case(tmp_path: Path, name: str) -> Path:
    """A runtime folder as someone left it (the caller is the user: uid os.geteuid())."""
    d = tmp_path / name
    if name.startswith("mode-"):
        d.mkdir()
        os.chmod(d, int(name[len("mode-"):], 8))
    elif name == "other-user":
        d.mkdir(mode=0o700)
        os.chown(d, OTHER_UID, OTHER_UID)
    elif name == "other-user-open":
        d.mkdir()
        os.chmod(d, 0o777)
        os.chown(d, OTHER_UID, OTHER_UID)
    elif name == "link-to-own":
        good = tmp_path / "own-target"
        good.mkdir(mode=0o700)
        d.symlink_to(good)
    elif name == "file":
        d.write_text("")
    elif name == "missing":
        pass
    return d


CASES = {
    "mode-700": "",
    "mode-755": "",
    "mode-1700": "",
    "mode-775": "is writable by others (mode 775)",
    "mode-777": "is writable by others (mode 777)",
    "mode-1777": "is writable by others (mode 1777)",
    "mode-722": "is writable by others (mode 722)",
    "other-user": f"belongs to uid {OTHER_UID}, not to you",
    "other-user-open": f"belongs to uid {OTHER_UID}, not to you",
    "link-to-own": "is a symbolic link",
    "file": "is not a folder",
    "missing": "cannot be read",
}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
@pytest.mark.parametrize(("name", "want"), CASES.items())
def test_the_shim_judges_a_runtime_folder(tmp_path: Path, name: str, want: str) -> None:
    d = _case(tmp_path, name)
    assert _bash_problem(d) == want


def test_the_shims_mark_spares_the_fork_only_in_a_folder_that_passed(tmp_path: Path) -> None:
    """The mark a passed folder gets stands for its mode bits, which only its owner can change;
    a mark that is a link (or another user's) stands for nothing."""
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    assert _bash_problem(good) == ""
    assert (good / ".sandman-runtime-ok").is_file()
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    (loose / ".sandman-runtime-ok").symlink_to(good / ".sandman-runtime-ok")
    assert _bash_problem(loose) == "is writable by others (mode 777)"


def test_a_refused_runtime_folder_is_one_line_with_its_fix(tmp_path: Path) -> None:
    """The line a shim dies with and sandman raises (engine_choice.podman_paths) is the rule's."""
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    script = _bash_rule() + 'sm_prun=$1; sm_podman_folder look || printf "%s\\n" "$sm_why"\n'
    p = subprocess.run(["bash", "-c", script, "rule", str(d)], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.stdout == (f"Podman's runtime folder {d} is writable by others (mode 777); sandman "
                        "does not use it: remove it (an admin, if it is not yours) or set "
                        "XDG_RUNTIME_DIR to a folder of your own (mode 0700)\n"), p.stderr
    missing = tmp_path / "missing"  # look: not made; make: made, 0700, and it passes
    for how, made in (("look", False), ("make", True)):
        script = _bash_rule() + f'sm_prun=$1; sm_podman_folder {how} && echo ok\n'
        p = subprocess.run(["bash", "-c", script, "rule", str(missing)], capture_output=True,
                           text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
        assert (p.stdout, missing.exists()) == ("ok\n", made)
    assert missing.stat().st_mode & 0o777 == 0o700


def test_the_api_socket_must_be_the_users(tmp_path: Path) -> None:
    sock = tmp_path / "podman.sock"
    assert engine_choice.socket_problem(str(sock), os.geteuid()) == ""  # absent: sandman starts it
    sock.write_text("")
    assert engine_choice.socket_problem(str(sock), os.geteuid()) == ""
    assert engine_choice.socket_problem(str(sock), OTHER_UID).startswith(
        f"Podman's API socket {sock} belongs to uid {os.geteuid()}, not to you")


# -- a pin's target (issue 23.4) ------------------------------------------------------------------
@pytest.fixture
def plain(tmp_path: Path) -> tuple[Paths, Path]:
    """The plain `sqlite3` shim of a home, in a project folder that pins nothing yet."""
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    paths.bin_dir.mkdir(parents=True)
    shim = paths.bin_dir / "sqlite3"
    shim.write_text(pins.render_default(paths, "sqlite3", "sqlite3"))
    shim.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    return paths, project


def _planted(paths: Paths, name: str, head: str) -> Path:
    """An executable in the bin folder that leaves a mark when it runs (on the host)."""
    f = paths.bin_dir / name
    f.write_text(f"{head}\ntouch \"$PWD/ran-{name}\"\necho ran {name}\n")
    f.chmod(0o755)
    return f


def _run_plain(paths: Paths, project: Path, version: str) -> subprocess.CompletedProcess:
    (project / ".sandman.toml").write_text(f'[tools]\nsqlite3 = "{version}"\n')
    env = {"PATH": f"{paths.bin_dir}:/usr/bin:/bin", "HOME": str(project)}
    return subprocess.run([str(paths.bin_dir / "sqlite3")], cwd=project, env=env,
                          capture_output=True, text=True, timeout=30)


PIN_CASES = [
    # (file name, its first lines, version pinned, runs?)
    ("sqlite3-legacy-3.7", "#!/bin/bash", "legacy-3.7", False),  # any program: the reported attack
    ("sqlite3-legacy-3.7", f"#!/bin/bash\n{shims.MARKER}\n# for: sqlite3-legacy@3.7", "legacy-3.7",
     False),  # another tool's shim: sandman's, but not sqlite3's
    ("sqlite3-config", "#!/bin/sh", "config", False),  # a host program named like a version
    ("sqlite3-3.9", f"#!/bin/bash\n{shims.MARKER}", "3.9", False),  # marker, no owner line
    ("sqlite3-3.9", f"#!/bin/bash\n{shims.MARKER}\n# for: sqlite3@", "3.9", False),
    ("sqlite3-3.46", f"#!/bin/bash\n{shims.MARKER}\n# for: sqlite3@3.46", "3.46", True),
    ("sqlite3-3.46.1", f"#!/bin/bash\n{shims.MARKER}\n# for: sqlite3@3.46", "3.46.1", True),  # alias
]


@pytest.mark.parametrize(("name", "head", "version", "runs"), PIN_CASES)
def test_a_pin_runs_only_a_shim_sandman_wrote_for_that_tool(plain, name: str, head: str,
                                                            version: str, runs: bool) -> None:
    paths, project = plain
    target = _planted(paths, name, head)
    assert pins.pin_target(paths, "sqlite3", "sqlite3", version) == (target if runs else None)
    p = _run_plain(paths, project, version)
    assert (project / f"ran-{name}").exists() == runs, p.stderr
    if runs:
        assert (p.returncode, p.stdout) == (0, f"ran {name}\n"), p.stderr
    else:
        assert p.returncode == NotFoundError.exit_code
        assert p.stderr == (f"sandman: sqlite3@{version} (chosen by {project}/.sandman.toml) is not "
                            f"installed: {target} is not a shim of sqlite3; run: sandman install "
                            f"sqlite3@{version}\n")


def test_a_binary_named_like_a_version_is_refused_without_reading_it_all(plain) -> None:
    paths, project = plain
    blob = paths.bin_dir / "sqlite3-9"
    blob.write_bytes(b"\x7fELF" + b"\0" * (8 << 20))  # no newline in 8 MiB
    blob.chmod(0o755)
    assert pins.pin_target(paths, "sqlite3", "sqlite3", "9") is None
    p = _run_plain(paths, project, "9")
    assert p.returncode == NotFoundError.exit_code and "is not a shim of sqlite3" in p.stderr


# -- recipe sources (issue 19.9) ------------------------------------------------------------------
@pytest.mark.parametrize("url", ["file:///etc/shadow", "file://localhost/etc/shadow",
                                 "FILE:///etc/shadow", "ftp://example.org/t.tar.gz"])
def test_a_recipe_source_is_http_or_https_only(tmp_path: Path, url: str) -> None:
    f = tmp_path / "t" / "recipe.toml"
    f.parent.mkdir()
    f.write_text(f'schema = 1\ntool = "t"\ndescription = "d"\n\n[versions."1"]\n'
                 f'base = "debian:bookworm-slim"\nsources = [{{ url = "{url}", sha256 = "{"0" * 64}" }}]\n')
    with pytest.raises(RecipeError) as exc:
        load_recipe(f)
    assert "is not an http:// or https:// URL" in exc.value.message
