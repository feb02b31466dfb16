"""asdf's .tool-versions and mise's mise.toml pin sandman's tools (issue 21 item 9): the bash
shim (shims/default.bash) and sandman (sandman/pinfiles.py, pins.choose) read them alike."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandman import pinfiles, shims
from sandman.commands import pins
from sandman.errors import NotFoundError, StateError
from sandman.paths import Paths


@pytest.fixture
def paths(home: Path) -> Paths:
    return Paths.from_env()


def _stub_bin(paths: Paths, tool: str, versions: list[str]) -> None:
    paths.bin_dir.mkdir(parents=True, exist_ok=True)
    for v in versions:
        f = paths.bin_dir / f"{tool}-{v}"
        f.write_text(f'#!/bin/bash\n{shims.MARKER}\n# for: {tool}@{v}\nprintf "%s\\n" "{tool}-{v}"\n')
        f.chmod(0o755)
    (paths.bin_dir / tool).write_text(pins.render_default(paths, tool, tool))
    (paths.bin_dir / tool).chmod(0o755)


def _run(paths: Paths, tool: str, cwd: Path) -> subprocess.CompletedProcess:
    # no PATH: only builtins can work
    return subprocess.run([str(paths.bin_dir / tool)], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/nonexistent", "PWD": str(cwd)}, timeout=30)


LAYOUTS = [  # files under tmp/w, the cwd
    ({"p/.tool-versions": "# asdf\nnodejs 20.1.0\ntt 1 2  # fallback\n"}, "p/sub/deeper"),
    ({"p/.tool-versions": "tt 1\n", "p/.sandman.toml": '[tools]\ntt = "2"\n'}, "p"),  # sandman wins
    ({"p/.tool-versions": "tt 2\n", "p/x/.sandman.toml": '[tools]\nother = "1"\n'}, "p/x"),
    ({"p/.sandman.toml": '[tools]\ntt = "1"\n', "p/x/.tool-versions": "tt 2"}, "p/x"),  # nearer
    ({"p/.tool-versions": "tt system\n", "p/mise.toml": '[tools]\ntt = "1"\n'}, "p"),
    ({"p/mise.toml": '[env]\nX = "1"\n[tools]\nnode = "20"\ntt = "2"\n'}, "p/a"),
    ({"p/mise.toml": "[ tools ]\n'tt' = ['1', '2']\n"}, "p"),
    ({"p/.mise.toml": '[tools]\ntt = { version = "2", os = ["linux"] }\n'}, "p"),
    ({"p/mise.toml": '[tools.tt]\nversion = "2"\n[tools]\nnode = "1"\n'}, "p"),  # no tt pin
    ({"p/mise.toml": '[tools]\ntt = "system"\n'}, "p"),
    ({"p/.tool-versions": "ttx 1\n"}, "p"),
]


@pytest.mark.parametrize(("files", "cwd"), LAYOUTS)
def test_shim_and_python_agree(tmp_path, paths, files, cwd):
    _stub_bin(paths, "tt", ["1", "2"])
    root = tmp_path / "w"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    where = root / cwd
    where.mkdir(parents=True, exist_ok=True)
    expected = pins.choose(paths, "tt", where, {})
    r = _run(paths, "tt", where)
    if expected.version is None:
        assert r.returncode == NotFoundError.exit_code, r.stderr
    else:
        assert (r.returncode, r.stdout, r.stderr) == (0, f"tt-{expected.version}\n", "")


BROKEN = [
    (".tool-versions", "nodejs 20\ntt 1\ntt 2\n", 3, "tt is pinned twice"),
    (".tool-versions", "tt\n", 1, "tt: no version (write: tt VERSION)"),
    (".tool-versions", "# x\n  tt ../1\n", 2, "tt: not a version (letters, digits and . _ + - only)"),
    ("mise.toml", '[tools]\ntt = 1\n', 2, 'write the pin as tt = "version"'),
    ("mise.toml", '[tools]\ntt = "1"\n"tt" = "2"\n', 3, "tt is pinned twice"),
    ("mise.toml", '[tools]\ntt = { version = "$x" }\n', 2,
     "tt: not a version (letters, digits and . _ + - only)"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), BROKEN)
def test_a_broken_line_of_the_tool_stops_both_with_file_and_line(tmp_path, paths, name, text,
                                                                 line, message):
    _stub_bin(paths, "tt", ["1", "2"])
    (tmp_path / "p" / "sub").mkdir(parents=True)
    f = tmp_path / "p" / name
    f.write_text(text)
    with pytest.raises(StateError) as python:
        pins.choose(paths, "tt", tmp_path / "p" / "sub", {})
    assert python.value.message == f"{f}:{line}: {message}"
    r = _run(paths, "tt", tmp_path / "p" / "sub")
    assert (r.returncode, r.stdout, r.stderr) == (StateError.exit_code, "",
                                                  f"sandman: {python.value.message}\n")


def test_other_tools_lines_are_asdf_s_business(tmp_path, paths):
    f = tmp_path / ".tool-versions"
    f.write_text("nodejs ref:v20\npython\ntt 1\n")
    assert pinfiles.read_pin(f, "tt") == "1"


def test_set_tool_versions_changes_one_line(tmp_path):
    f = tmp_path / ".tool-versions"
    f.write_text("# team\nnodejs 20\ntt 1 # old\n")
    assert pinfiles.set_tool_versions(f, "tt", "2").decode() == "# team\nnodejs 20\ntt 2\n"
    assert pinfiles.set_tool_versions(tmp_path / "none", "tt", "2").decode() == "tt 2\n"
    f.write_text("tt\n")
    with pytest.raises(StateError, match=f"^{f}:1: "):
        pinfiles.set_tool_versions(f, "tt", "2")
