"""Issue 20: the refusal rule lives once, in the shim runtime (sm_refused); sandman's own check
(sandman.shims.refusal, used by `sandman run --mount` and install-time checks) runs that block
with this host's values. One table of paths goes to a shim and to that check: they must agree on
a declared mount, and the shim must class each path as documented for an argument too.

The shim sees each path through a symlink in a scratch folder (a path typed as /proc/... is
passed on untouched, as the container's own): the decision must be made on the resolved path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from shim_helpers import ctx, dry_run  # the unit tests' shim in dry-run mode (no daemon)

from sandman.errors import MountError
from sandman.recipes import Mount, Runtime
from sandman.shims import refusal, render


@pytest.fixture
def table(tmp_path: Path) -> dict[str, str]:
    """name -> real path: refused and allowed ones, in every class of the rule."""
    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    (home / "proj").mkdir(parents=True)
    (xdg / "bus").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    real = {
        "root": "/", "proc": "/proc", "proc-pid": f"/proc/{os.getpid()}", "sys": "/sys/kernel",
        "dev": "/dev", "dev-shm": "/dev/shm", "run": "/run", "run-lock": "/run/lock",
        "home": str(home), "home-proj": str(home / "proj"), "xdg": str(xdg),
        "xdg-bus": str(xdg / "bus"), "data": str(tmp_path / "data"), "usr": "/usr",
        "etc": "/etc", "tmp": "/tmp",
    }
    return {k: v for k, v in real.items() if os.path.isdir(v)}


def test_shim_and_python_refuse_the_same_paths(tmp_path: Path, table: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home, xdg = table["home"], table["xdg"]
    monkeypatch.setenv("HOME", home)
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    env = {"HOME": home, "XDG_RUNTIME_DIR": xdg}
    work = Path(table["home-proj"])
    links = tmp_path / "links"
    links.mkdir()
    script = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    answers = {}
    for name, real in table.items():
        link = links / name
        link.symlink_to(real)
        # as an argument (its own folder is mounted)
        p = dry_run(script, [str(link)], work, env)
        assert p.returncode in (0, MountError.exit_code), (name, p.stderr)
        shim_arg = p.returncode == MountError.exit_code
        # as a declared data mount (the narrower rule: a recipe may name /dev/bus/usb)
        rt = Runtime(entrypoint=("demo",), mounts=(Mount("h", str(link), "/h", "ro"),))
        q = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), [], work, env)
        assert q.returncode in (0, MountError.exit_code), (name, q.stderr)
        shim_mount = q.returncode == MountError.exit_code
        py_mount = refusal(os.path.realpath(link)) is not None
        answers[name] = (shim_arg, shim_mount, py_mount)
    disagree = {k: v for k, v in answers.items() if v[1] != v[2]}
    assert disagree == {}, disagree
    # and the table means something: each class answers as documented (docs/runtime.md)
    refused_arg = {k for k, v in answers.items() if v[0]}
    assert refused_arg >= {"root", "proc", "proc-pid", "dev", "run", "home", "xdg", "xdg-bus"} & set(table)
    assert not refused_arg & {"home-proj", "data", "usr", "etc"}
    refused_mount = {k for k, v in answers.items() if v[1]}
    assert refused_mount & {"proc", "dev", "xdg-bus", "data"} == set()
