"""Pin files, the lock file, and the unversioned bash shim against the Python resolver.

The shim runs for real (bash in a subprocess) with stub versioned shims beside it, so these
tests need no daemon; they check that the shim and `sandman which` always agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sandman import shims
from sandman.commands import pins
from sandman.errors import NotFoundError, StateError
from sandman.paths import Paths, shim_templates_dir


@pytest.fixture
def paths(home: Path) -> Paths:
    return Paths.from_env()


def test_scan_reads_the_tools_table_only():
    text = """
# a comment
name = "not a pin"
[tools]
sqlite3 = "3.34"   # the prod one
  "py.thon" = '2.7'
[other]
sqlite3 = "9"
"""
    assert pins.scan(text) == {"sqlite3": "3.34", "py.thon": "2.7"}


# (file content, line, message): what both the shim and read_pins stop on
BROKEN = [
    ('tools = { sqlite3 = "3.34" }\n', 1, "pins go in a [tools] table"),
    ('tools.tt = "1"\n', 1, "pins go in a [tools] table"),
    ('# c\n[tools]\ntt = 1\n', 3, 'write each pin as tool = "version"'),
    ('[tools]\ntt = "1\n', 2, 'write each pin as tool = "version"'),
    ('[tools]\ntt "1"\n', 2, 'write each pin as tool = "version"'),
    ('[tools]\nt.t = "1"\n', 2, 'write each pin as tool = "version"'),  # a dotted key in TOML
    ('[tools\ntt = "1"\n', 1, "malformed table header"),
    ('[tools]]\ntt = "1"\n', 1, "malformed table header"),
    ('[tools]\ntt = "1"\n[tools.more]\n', 3, '[tools] holds only tool = "version" lines, not tables'),
    ('[[tools]]\ntt = "1"\n', 1, '[tools] holds only tool = "version" lines, not tables'),
    ('[tools]\nother = "1"\n\n[ "tools" ]\ntt = "1"\n', 4, "a second [tools] table"),
    ('[tools]\ntt = "1"\n"tt" = "2"\n', 3, "tt is pinned twice"),
    ('[tools]\ntt = "../x"\n', 2, "tt: not a version (letters, digits and . _ + - only)"),
    ('[tools]\nother = ""\ntt = "1"\n', 2, "other: not a version (letters, digits and . _ + - only)"),
]


@pytest.mark.parametrize(("text", "line", "message"), BROKEN)
def test_read_pins_names_the_file_and_line(tmp_path, text, line, message):
    f = tmp_path / ".sandman.toml"
    f.write_text(text)
    with pytest.raises(StateError) as e:
        pins.read_pins(f)
    assert e.value.message == f"{f}:{line}: {message}"
    assert e.value.exit_code == StateError.exit_code


def test_read_pins_also_checks_the_whole_file_as_toml(tmp_path):
    f = tmp_path / ".sandman.toml"
    f.write_text('[tools]\nsqlite3 = "3.34"\n[other]\nx = 1\n')  # other tables: ignored
    assert pins.read_pins(f) == {"sqlite3": "3.34"}
    f.write_text('[tools]\nsqlite3 = "3.34"\n\n[other]\nx = [1,\n')  # the shim does not read [other]
    with pytest.raises(StateError, match=f"^{f}:5: invalid TOML: Invalid value$"):
        pins.read_pins(f)
    f.write_bytes(b'[tools]\nsqlite3 = "3.34"\n# \xff\n')
    with pytest.raises(StateError, match=f"^{f}:3: invalid TOML: not UTF-8"):
        pins.read_pins(f)
    f.write_text('[tools]\ntt = """1"""\n')  # TOML reads "1", the shim a malformed line
    with pytest.raises(StateError, match=f"^{f}:2: write each pin"):
        pins.read_pins(f)
    f.write_text('[tools]\ntt = "1"\n[other]\nx = 1\nx = 2\n')
    with pytest.raises(StateError, match=f"^{f}:5: invalid TOML: "):
        pins.read_pins(f)


def test_set_pin_changes_one_line_and_keeps_the_rest(tmp_path):
    f = tmp_path / ".sandman.toml"
    pins.set_pin(f, "sqlite3", "3.34")
    assert f.read_text() == '[tools]\nsqlite3 = "3.34"\n'
    f.write_text('# project tools\n[tools]\nsqlite3 = "3.34"  # old\npython2 = "2.7"\n')
    pins.set_pin(f, "sqlite3", "3.46")
    pins.set_pin(f, "my.tool", "1")
    assert f.read_text() == ('# project tools\n[tools]\n"my.tool" = "1"\nsqlite3 = "3.46"\n'
                             'python2 = "2.7"\n')
    assert pins.read_pins(f) == {"my.tool": "1", "sqlite3": "3.46", "python2": "2.7"}


def test_choose_precedence(tmp_path, paths):
    top, inner = tmp_path / "top", tmp_path / "top" / "a" / "b"
    inner.mkdir(parents=True)
    (top / ".sandman.toml").write_text('[tools]\nsqlite3 = "3.34"\npython2 = "2.7"\n')
    (top / "a" / ".sandman.toml").write_text('[tools]\nsqlite3 = "3.46"\n')
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    pins.global_file(paths).write_text('[tools]\nopenssl = "3.0"\n')
    c = pins.choose(paths, "sqlite3", inner, {})
    assert (c.version, c.origin, c.where) == ("3.46", "project", str(top / "a" / ".sandman.toml"))
    c = pins.choose(paths, "python2", inner, {})  # the nearest file lacks it: keep walking up
    assert (c.version, c.where) == ("2.7", str(top / ".sandman.toml"))
    c = pins.choose(paths, "sqlite3", inner, {"SANDMAN_SQLITE3_VERSION": "3.40"})
    assert (c.version, c.origin, c.where) == ("3.40", "env", "SANDMAN_SQLITE3_VERSION")
    assert pins.choose(paths, "openssl", inner, {}).origin == "global"
    assert pins.choose(paths, "nope", inner, {}) == pins.Choice("nope", None, "none", None)
    assert pins.env_var("postgresql-client") == "SANDMAN_POSTGRESQL_CLIENT_VERSION"


def test_lock_round_trip(tmp_path):
    entries = {"sqlite3": pins.Locked("sqlite3", "3.34", "team", "a" * 40, "f" * 64,
                                      "sha256:" + "1" * 64,
                                      {"debian:bookworm-slim": "sha256:" + "2" * 64}),
               "my.tool": pins.Locked("my.tool", "1", "builtin", "", "e" * 64)}
    f = tmp_path / "sandman.lock"
    f.write_text(pins.render_lock(entries))
    assert pins.read_lock(f) == entries
    assert 'bases = { "debian:bookworm-slim" = "sha256:222' in f.read_text()
    f.write_text("schema = 3\n")
    with pytest.raises(StateError, match="lock schema 3"):
        pins.read_lock(f)
    # an older sandman's lock still reads, marked as such (install_project refuses its
    # fingerprints, which held local base ids, unless --update-lock)
    f.write_text('schema = 1\n[tools.x]\nversion = "1"\nsource = "team"\nfingerprint = "ab"\n')
    assert pins.read_lock(f)["x"].schema == 1 and pins.read_lock(f)["x"].image == ""


# -- the bash shim ---------------------------------------------------------------------------
def stub_bin(paths: Paths, tool: str, versions: list[str]) -> None:
    """Versioned 'shims' that print which one ran, and the real unversioned shim beside them."""
    paths.bin_dir.mkdir(parents=True, exist_ok=True)
    for v in versions:
        f = paths.bin_dir / f"{tool}-{v}"
        # the head of a versioned shim sandman wrote (a plain shim runs nothing else)
        f.write_text(f'#!/bin/bash\n{shims.MARKER}\n# for: {tool}@{v}\nprintf "%s\\n" "{tool}-{v}" "$@"\n')
        f.chmod(0o755)
    shim = paths.bin_dir / tool
    shim.write_text(pins.render_default(paths, tool, tool))
    shim.chmod(0o755)


def run_shim(paths: Paths, tool: str, cwd: Path, env: dict[str, str] | None = None,
             path: str = "/nonexistent") -> subprocess.CompletedProcess:
    # PATH points nowhere: the shim can only work if it uses builtins alone
    e = {"PATH": path, "PWD": str(cwd), "HOME": str(cwd), **(env or {})}
    return subprocess.run([str(paths.bin_dir / tool), "a b", ""], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=30)


LAYOUTS = [
    # (files relative to tmp, cwd, env) -> expected version or None
    ({"p/.sandman.toml": '[tools]\ntt = "1"\n'}, "p/x/y", {}),
    ({"p/.sandman.toml": '[tools]\ntt = "1"\n', "p/x/.sandman.toml": '[tools]\ntt = "2"\n'}, "p/x/y", {}),
    ({"p/.sandman.toml": '[tools]\ntt = "1"\n', "p/x/.sandman.toml": '[tools]\nother = "2"\n'}, "p/x", {}),
    ({"p/.sandman.toml": "# c\n[ tools ]\n  'tt' = '2'  # comment\n"}, "p", {}),
    ({"p/.sandman.toml": '[tools]\ntt = "1"\n'}, "p", {"SANDMAN_TT_VERSION": "2"}),
    ({"p/.sandman.toml": '[other]\ntt = "1"\n'}, "p", {}),
    ({"p/.sandman.toml": '[tools]\nttx = "1"\n'}, "p", {}),
    ({"global": '[tools]\ntt = "2"\n'}, "q", {}),
    ({"global": '[tools]\ntt = "2"\n', "q/.sandman.toml": '[tools]\ntt = "1"\n'}, "q", {}),
    ({}, "q", {}),
]


@pytest.mark.parametrize(("files", "cwd", "env"), LAYOUTS)
def test_shim_and_python_agree(tmp_path, paths, files, cwd, env):
    stub_bin(paths, "tt", ["1", "2"])
    root = tmp_path / "w"
    for rel, text in files.items():
        f = pins.global_file(paths) if rel == "global" else root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    where = root / cwd
    where.mkdir(parents=True, exist_ok=True)
    expected = pins.choose(paths, "tt", where, env)
    r = run_shim(paths, "tt", where, env)
    if expected.version is None:
        assert r.returncode == NotFoundError.exit_code and "sandman use tt VERSION" in r.stderr
    else:  # with no PATH, any external command would have failed loudly
        assert (r.returncode, r.stdout, r.stderr) == (0, f"tt-{expected.version}\na b\n\n", "")


def test_shim_steps_aside_for_a_host_tool_and_refuses_odd_versions(tmp_path, paths):
    stub_bin(paths, "tt", ["1"])
    host = tmp_path / "host"
    host.mkdir()
    (host / "tt").write_text('#!/bin/sh\necho "host $1"\n')
    (host / "tt").chmod(0o755)
    r = run_shim(paths, "tt", tmp_path, path=f"{paths.bin_dir}:{host}")
    assert (r.returncode, r.stdout) == (0, "host a b\n")
    r = run_shim(paths, "tt", tmp_path, {"SANDMAN_TT_VERSION": "../../x"})
    assert r.returncode == 2 and "is not a version" in r.stderr
    r = run_shim(paths, "tt", tmp_path, {"SANDMAN_TT_VERSION": "7"})
    assert r.returncode == NotFoundError.exit_code and "sandman install tt@7" in r.stderr


@pytest.mark.parametrize(("text", "line", "message"), BROKEN)
def test_shim_stops_on_a_broken_pin_file_as_python_does(tmp_path, paths, text, line, message):
    """The exact attack: a broken .sandman.toml must not let the host's tool run."""
    stub_bin(paths, "tt", ["1", "2"])
    host = tmp_path / "host"
    host.mkdir()
    (host / "tt").write_text('#!/bin/sh\necho "host tool"\n')
    (host / "tt").chmod(0o755)
    project = tmp_path / "p"
    (project / "sub").mkdir(parents=True)
    (project / ".sandman.toml").write_text(text)
    (project / "sub" / ".sandman.toml").write_text('[tools]\nunrelated = "1"\n')  # passed over
    with pytest.raises(StateError) as python:
        pins.choose(paths, "tt", project / "sub", {})
    r = run_shim(paths, "tt", project / "sub", path=f"{paths.bin_dir}:{host}")
    assert (r.returncode, r.stdout) == (StateError.exit_code, "")
    assert r.stderr == f"sandman: {python.value.message}\n"
    assert r.stderr == f"sandman: {project / '.sandman.toml'}:{line}: {message}\n"


def test_shim_stops_on_a_broken_global_file(tmp_path, paths):
    stub_bin(paths, "tt", ["1"])
    g = pins.global_file(paths)
    g.parent.mkdir(parents=True, exist_ok=True)
    g.write_text('[tools]\ntt = 1\n')
    r = run_shim(paths, "tt", tmp_path)
    assert (r.returncode, r.stderr) == (StateError.exit_code, f"sandman: {g}:2: write each pin as tool = \"version\"\n")
    r = run_shim(paths, "tt", tmp_path, {"SANDMAN_TT_VERSION": "1"})  # the variable wins: no file read
    assert (r.returncode, r.stdout) == (0, "tt-1\na b\n\n")


def test_set_pin_leaves_a_broken_file_alone(tmp_path):
    f = tmp_path / ".sandman.toml"
    f.write_text('[tools]\ntt = 1\n')
    with pytest.raises(StateError, match=f"^{f}:2: "):
        pins.set_pin(f, "tt", "2")
    assert f.read_text() == '[tools]\ntt = 1\n'


def test_shim_template_has_no_subshells():
    text = (shim_templates_dir() / "default.bash").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for fork in ("$(", "`", "<(", ">("):  # pipes: the strace test below counts forks
        assert fork not in code, fork


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_shim_forks_nothing_before_exec(tmp_path, paths):
    """Counted by the kernel: no clone/fork/vfork from the shim, one execve into the target."""
    stub_bin(paths, "tt", ["1"])
    (tmp_path / ".sandman.toml").write_text('[tools]\ntt = "1"\n')
    trace = tmp_path / "trace"
    r = subprocess.run([str(shutil.which("strace")), "-f", "-qq", "-e", "trace=process", "-o", str(trace),
                        str(paths.bin_dir / "tt")], cwd=tmp_path,
                       env={"PATH": "/nonexistent", "PWD": str(tmp_path)},
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "tt-1\n", "")
    calls = [line.split("(", 1)[0].split()[-1] for line in trace.read_text().splitlines()
             if "(" in line]
    assert not [c for c in calls if c in ("clone", "clone3", "fork", "vfork")], calls
    execs = [line for line in trace.read_text().splitlines() if "execve(" in line]
    assert len(execs) == 2 and "tt-1" in execs[1]  # the shim itself, then the versioned shim
