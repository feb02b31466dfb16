"""Shim rendering and the shim's own logic, run in dry-run mode (no daemon needed)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from shim_helpers import argv_of, ctx, dry_run, tool_argv

from sandman import engine_choice, names
from sandman.config import ToolSettings
from sandman.errors import (
    ConflictError,
    DaemonPermissionError,
    DaemonUnavailableError,
    MountError,
    StateError,
)
from sandman.paths import shim_templates_dir
from sandman.recipes import Mount, Runtime
from sandman.shims import (
    MARKER,
    env_file,
    made_from,
    owner_of,
    parse_mount_spec,
    render,
    runtime_digest,
    runtime_path,
    runtime_text,
    shim_names,
    stale_reasons,
    write_env_file,
    write_runtime,
    write_shims,
)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "user" / "work dir"
    d.mkdir(parents=True)
    return d


def test_names() -> None:
    rt = Runtime(commands=("demo", "demoadm"))
    assert shim_names("demo", "1.0", rt) == ["demo-1.0", "demoadm-1.0"]


def test_dry_run_command_has_isolation_and_args_verbatim(tmp_path: Path, work: Path) -> None:
    script = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    weird = ["", "a b", "$(touch /tmp/pwned)", "`id`", "*", "-x", "line\nbreak", "é"]
    p = dry_run(script, weird, work)
    assert p.returncode == 0, p.stderr
    argv = argv_of(p.stdout)
    i = argv.index("sandman/demo:1.0-abc")
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["demo", *weird]
    opts = argv[:i]
    for flag in ("--rm", "-i", "--init", "--cap-drop", "ALL", "no-new-privileges", "--network", "none"):
        assert flag in opts
    assert f"--workdir={work}" in " ".join(opts).replace("--workdir ", "--workdir=")
    assert "-t" not in opts  # not a terminal
    # run by hand there is no shim behind it: no pid label for the reaper to judge it by
    assert not any(a.startswith((f"{names.LABEL_PID}=", f"{names.LABEL_REAPER}=")) for a in opts)
    assert f"{names.LABEL_ROLE}=run" in opts
    assert opts[opts.index("--user") + 1] == f"{os.geteuid()}:{os.getegid()}"
    assert not Path("/tmp/pwned").exists()


def test_tool_shim_without_entrypoint_needs_command(tmp_path: Path, work: Path) -> None:
    script = render(ctx(tmp_path, Runtime(commands=("symcfg",))), "demo-1.0")
    p = dry_run(script, [], work)
    assert p.returncode == 2
    assert "needs a command" in p.stderr and "symcfg" in p.stderr
    cmd_script = render(ctx(tmp_path, Runtime(commands=("symcfg",))), "symcfg-1.0")
    p = dry_run(cmd_script, ["list"], work)
    assert argv_of(p.stdout)[-2:] == ["symcfg", "list"]


def test_refuses_home_and_root(tmp_path: Path, work: Path) -> None:
    script = render(ctx(tmp_path, Runtime()), "demo-1.0")
    p = dry_run(script, ["ls"], work, {"HOME": str(work)})
    assert p.returncode == MountError.exit_code
    assert "home directory" in p.stderr and str(work) in p.stderr
    p = dry_run(script, ["ls"], work, {"HOME": str(work), "SANDMAN_ALLOW_HOME": "1"})
    assert p.returncode == 0
    p = dry_run(script, ["ls"], Path("/"))
    assert p.returncode == MountError.exit_code and "it is /" in p.stderr
    p = dry_run(script, ["ls", "/var/run"], work)
    assert p.returncode == MountError.exit_code and "Docker socket" in p.stderr


def test_missing_data_mount_fails_and_creates_nothing(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "data" / "db"
    rt = Runtime(mounts=(Mount("db", str(src), "/var/db", "rw"),))
    p = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), ["ls"], work)
    assert p.returncode == MountError.exit_code
    assert "'db' is missing" in p.stderr and "SANDMAN_DEMO_DB" in p.stderr
    assert not src.exists() and not src.parent.exists()
    # optional: skipped
    rt = Runtime(mounts=(Mount("db", str(src), "/var/db", "rw", optional=True),))
    assert dry_run(render(ctx(tmp_path, rt), "demo-1.0"), ["ls"], work).returncode == 0


def test_data_mount_overrides(tmp_path: Path, work: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rt = Runtime(mounts=(Mount("db", "~/nope", "/var/db", "ro"),))
    script = render(ctx(tmp_path, rt, ToolSettings(mounts={"db": str(a)})), "demo-1.0")
    out = dry_run(script, ["ls"], work).stdout
    assert f'source={a}",' in out.replace("\\", "") and "target=/var/db" in out.replace("\\", "")
    out = dry_run(script, ["ls"], work, {"SANDMAN_DEMO_DB": str(b)}).stdout
    assert f'source={b}",' in out.replace("\\", "")


def test_absolute_path_args_mounted_read_only(tmp_path: Path, work: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x.db").write_text("")
    script = render(ctx(tmp_path, Runtime()), "demo-1.0")
    out = dry_run(script, ["cat", str(other / "x.db"), "/not/a/path/here"], work).stdout.replace("\\", "")
    assert f'"source={other}","target={other}",readonly' in out
    assert "/not/a/path" not in out.split("sandman/demo")[0]
    rw = render(ctx(tmp_path, Runtime(path_args="rw")), "demo-1.0")
    out = dry_run(rw, ["cat", f"--db={other}/x.db"], work).stdout.replace("\\", "")
    assert f'"source={other}","target={other}" ' in out


def test_env_policy(tmp_path: Path, work: Path) -> None:
    rt = Runtime(env={"FIXED": "1"}, pass_env=("PGHOST",))
    script = render(ctx(tmp_path, rt, ToolSettings(env={"FROMCONFIG": "2"})), "demo-1.0")
    out = dry_run(script, ["env"], work, {"PGHOST": "db", "SECRET": "x", "LANG": "de_DE.UTF-8",
                                          "TERM": "xterm"}).stdout
    argv = argv_of(out)
    envs = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert "FIXED=1" in envs and "FROMCONFIG=2" in envs and "PGHOST" in envs and "TERM" in envs
    assert "LANG=C.UTF-8" in envs  # the image lacks de_DE: fall back, never crash the tool
    assert not any(e.startswith("SECRET") for e in envs)


def test_write_shims_never_overwrites_foreign(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "demo-1.0").write_text("#!/bin/sh\necho mine\n")
    script = render(ctx(tmp_path, Runtime()), "demo-1.0")
    with pytest.raises(ConflictError, match="not written by sandman"):
        write_shims(bin_dir, {"demo-1.0": script, "demo2-1.0": script}, "demo@1.0")
    assert (bin_dir / "demo-1.0").read_text() == "#!/bin/sh\necho mine\n"
    assert not (bin_dir / "demo2-1.0").exists()  # all or nothing
    assert sorted(p.name for p in bin_dir.iterdir()) == ["demo-1.0"]
    (bin_dir / "demo-1.0").unlink()
    write_shims(bin_dir, {"demo-1.0": script}, "demo@1.0")
    assert owner_of(bin_dir / "demo-1.0") == "demo@1.0"
    assert os.access(bin_dir / "demo-1.0", os.X_OK)
    with pytest.raises(ConflictError, match=r"shim of demo@1\.0"):
        write_shims(bin_dir, {"demo-1.0": script}, "other@1.0")


def test_parse_mount_spec() -> None:
    assert parse_mount_spec("/a:/b:ro") == ("/a", "/b", "ro")
    assert parse_mount_spec("/a:/b") == ("/a", "/b", "rw")
    with pytest.raises(MountError):
        parse_mount_spec("/a")
    with pytest.raises(MountError):
        parse_mount_spec("/a:relative")


# -- one shared, content-addressed runtime ------------------------------------------------------
def test_shim_is_values_and_sources_one_shared_runtime(tmp_path: Path, work: Path) -> None:
    one = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    other = render(ctx(tmp_path, Runtime(commands=("x",), env={"A": "1"})), "x-1.0")
    runtime = runtime_path(ctx(tmp_path, Runtime()).paths, runtime_digest())
    assert runtime.is_file() and (runtime.stat().st_mode & 0o777) == 0o644
    assert runtime.name == f"shim-{runtime_digest(runtime.read_text())}.bash"
    for script in (one, other):
        assert f"SM_RUNTIME={runtime}" in script and 'source "$SM_RUNTIME"' in script
        assert "sm_map_path" not in script and "@@" not in script  # the logic lives in the runtime
        assert len(script.splitlines()) < 80  # values, the front (sh), `source`
    assert owner_of_text(one) == "demo@1.0"
    assert "@@" not in runtime.read_text()
    p = dry_run(one, ["x"], work)
    assert p.returncode == 0, p.stderr


def owner_of_text(script: str) -> str | None:
    lines = script.splitlines()
    return lines[2][len("# for: "):] if lines[1] == MARKER else None


def test_missing_runtime_is_one_line_with_the_fix(tmp_path: Path, work: Path) -> None:
    script = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    runtime = runtime_path(ctx(tmp_path, Runtime()).paths, runtime_digest())
    runtime.unlink()
    p = dry_run(script, ["x"], work)
    assert p.returncode == StateError.exit_code
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "sandman reshim --all" in lines[0] and str(runtime) in lines[0]


def test_runtime_takes_label_names_and_exit_codes_from_python() -> None:
    template = (shim_templates_dir() / "shim.bash").read_text()
    body = template.split("@@NAMES@@", 1)[1]
    assert names.LABEL not in body
    for code in (MountError.exit_code, StateError.exit_code, DaemonUnavailableError.exit_code,
                 DaemonPermissionError.exit_code):
        assert f'" {code}' not in body and f" {code}\n" not in body, code
    text = runtime_text()
    assert f"SM_EXIT_MOUNT={MountError.exit_code}\n" in text
    assert f"SM_LABEL_ROLE={names.LABEL_ROLE}\n" in text
    assert "sm_warm_exec" in text  # warm.bash is included at @@WARM@@


# -- paths are resolved before they are checked ------------------------------------------------
@pytest.mark.parametrize("target", ["/", "/run", "/var//run", "/var/run/"])
def test_symlinked_and_odd_spellings_are_resolved_then_refused(tmp_path: Path, work: Path,
                                                               target: str) -> None:
    link = tmp_path / "link"
    link.symlink_to(target)
    script = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    for arg in (str(link), target, f"--in={link}"):
        p = dry_run(script, [arg], work)
        assert p.returncode == MountError.exit_code, (arg, p.stdout)
        assert "really /" in p.stderr and p.stdout == ""
    rt = Runtime(mounts=(Mount("h", target, "/h", "rw"),))
    p = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), ["ls"], work)
    assert p.returncode == MountError.exit_code and "really /" in p.stderr
    p = dry_run(render(ctx(tmp_path, Runtime(mounts=(Mount("h", str(work), "/h", "rw"),))),
                       "demo-1.0"), ["ls"], work, {"SANDMAN_DEMO_H": str(link)})
    assert p.returncode == MountError.exit_code and "really /" in p.stderr


@pytest.mark.parametrize("source", ["~/..", "~/.", "~"])
def test_home_spellings_are_refused(tmp_path: Path, work: Path, source: str) -> None:
    rt = Runtime(mounts=(Mount("h", source, "/h", "ro"),))
    p = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), ["ls"], work, {"HOME": "/tmp"})
    assert p.returncode == MountError.exit_code
    assert ("it is /" in p.stderr) if source == "~/.." else ("home directory" in p.stderr)


def test_mounts_use_the_real_source_and_the_path_the_tool_sees(tmp_path: Path, work: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f.db").write_text("")
    (tmp_path / "alias").symlink_to(real)
    script = render(ctx(tmp_path, Runtime(entrypoint=("demo",))), "demo-1.0")
    out = dry_run(script, [f"{tmp_path}/alias/f.db"], work).stdout.replace("\\", "")
    assert f'"source={real}","target={tmp_path}/alias",readonly' in out
    # relative arguments leaving the cwd are mapped like absolute ones, argv unchanged
    (work.parent / "b").mkdir()
    (work.parent / "b" / "x.db").write_text("")
    argv = argv_of(dry_run(script, ["../b/x.db"], work).stdout)
    assert argv[-1] == "../b/x.db"
    assert f'"source={work.parent}/b","target={work.parent}/b",readonly' in " ".join(argv).replace(
        "type=bind,", "")


def test_parse_mount_spec_resolves_and_refuses(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert parse_mount_spec(f"{tmp_path}/alias/:/m:ro") == (str(real), "/m", "ro")
    for bad in ("/var//run:/h", "/:/h", f"{tmp_path}/../../../../../..:/h"):
        with pytest.raises(MountError, match="will not mount"):
            parse_mount_spec(bad)
    (tmp_path / "to-run").symlink_to("/run")
    with pytest.raises(MountError, match="really /run"):
        parse_mount_spec(f"{tmp_path}/to-run:/h")


# -- config.toml env values stay out of the 0755 shims -----------------------------------------
def test_config_env_values_live_in_a_private_file(tmp_path: Path, work: Path) -> None:
    rt = Runtime(entrypoint=("demo",), env={"PUBLIC": "recipe", "TOKEN": "recipe default"})
    c = ctx(tmp_path, rt, ToolSettings(env={"TOKEN": "hunter2-secret"}))
    script = render(c, "demo-1.0")
    assert "hunter2" not in script and "PUBLIC=recipe" in script
    f = env_file(c.paths, "demo", "1.0")
    assert (f.stat().st_mode & 0o777) == 0o600 and (f.parent.stat().st_mode & 0o777) == 0o700
    envs = [a for a in argv_of(dry_run(script, ["x"], work).stdout) if "=" in a]
    assert "TOKEN=hunter2-secret" in envs and "PUBLIC=recipe" in envs
    assert "TOKEN=recipe default" not in envs
    # without the file (another user cannot read it) the value simply is not there
    f.unlink()
    envs = argv_of(dry_run(script, ["x"], work).stdout)
    assert not any(a.startswith("TOKEN=") for a in envs)
    render(ctx(tmp_path, rt), "demo-1.0")  # no config env any more: no file
    assert not f.exists()


def test_stale_reasons_name_what_changed(tmp_path: Path) -> None:
    paths = ctx(tmp_path, Runtime()).paths
    write_runtime(paths)
    st = ToolSettings(env={"A": "1"})
    write_env_file(paths, "demo", "1.0", st.env)
    rt = Runtime(env={"X": "1"})
    then = made_from(st, 10)
    from dataclasses import asdict

    def reasons(now_rt: Runtime, now_st: ToolSettings, recorded: dict | None = None) -> list[str]:
        return stale_reasons(recorded or then, asdict(rt), paths, made_from(now_st, 10), now_rt,
                             "demo", "1.0", now_st.env)

    assert reasons(rt, st) == []
    assert reasons(Runtime(env={"X": "2"}, network=True), st) == ["env", "network"]
    assert reasons(rt, ToolSettings(env={"A": "2"})) == ["config"]  # a value: the private file
    assert reasons(rt, ToolSettings(env={"A": "1"}, mounts={"db": "/x"})) == ["config"]
    assert reasons(rt, st, {**then, "runtime": "0" * 12}) == ["runtime"]


@pytest.mark.parametrize(("engine", "shell", "wrapped"), [
    ("podman", True, True), ("podman", False, False), ("docker", True, False)])
def test_podman_runs_the_tool_through_the_images_shell(tmp_path: Path, work: Path, engine: str,
                                                       shell: bool, wrapped: bool) -> None:
    """Podman's catatonit exits 1 for a command it cannot exec; `sh -c 'exec "$@"'` gives the
    shell's 127/126 and then is the tool. Only where the image has /bin/sh, only on Podman."""
    if engine == "podman" and not shutil.which("podman"):  # a Podman shim checks its client
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("podman is not installed and CI=true (.ci/run installs it)")
        pytest.skip("podman is not installed")
    choice = engine_choice.make(engine, shutil.which(engine) or "", "unix:///nowhere.sock", False, "test")
    c = dataclasses.replace(ctx(tmp_path, Runtime(entrypoint=("demo",))), engine=choice,
                            shell=shell)
    p = dry_run(render(c, "demo-1.0"), ["a b", "-x"], work, env={"DOCKER_HOST": ""})
    assert p.returncode == 0, p.stderr
    argv = argv_of(p.stdout)
    tail = tool_argv(argv, "sandman/demo:1.0-abc")
    wrapper = ["/bin/sh", "-c", 'exec "$@"', "sh"] if wrapped else []
    assert tail == [*wrapper, "demo", "a b", "-x"]
    ran = subprocess.run(["sh", "-c", 'exec "$@"', "sh", "printf", "%s|", "a b", "-x"],
                         capture_output=True, text=True)
    assert ran.stdout == "a b|-x|"  # the wrapper hands the argv on untouched


def test_the_host_digest_does_not_depend_on_how_python_was_spelt(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m sandman` and `python3 -m sandman` of one venv wrote shims that the other one
    called stale (`shim-stale: host`): the same interpreter is the same host."""
    import sys

    from sandman.shims import made_from

    real = Path(sys.executable).resolve()
    spelt = tmp_path / "python"
    spelt.symlink_to(real)
    monkeypatch.setattr(sys, "executable", str(real))
    before = made_from(ToolSettings(), 10)
    monkeypatch.setattr(sys, "executable", str(spelt))
    assert made_from(ToolSettings(), 10)["host"] == before["host"]
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "another-venv"))  # another venv is another host
    assert made_from(ToolSettings(), 10)["host"] != before["host"]
