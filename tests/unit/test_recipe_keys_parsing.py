"""The recipe keys real tools need (issue 13, section 4): aliases, commands that differ in the
image, home_files, network modes, devices and cap_add. Parsing, config.toml overrides, consent
and the shim's own handling (dry runs, no daemon needed)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest
from shim_helpers import tool_argv

from sandman import consent, errors
from sandman.config import ToolSettings, load_config
from sandman.errors import ConsentError, DeviceError, RecipeError, StateError
from sandman.recipe_check import load_recipe
from sandman.recipes import Runtime
from sandman.shims import made_from, render, shim_names, stale_reasons, write_runtime
from tests.unit.test_shims import argv_of, ctx, dry_run

HEAD = """\
schema = 1
tool = "demo"
description = "A demo tool"
"""


def write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "recipes" / "demo"
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(text)
    return d / "recipe.toml"


def load(tmp_path: Path, body: str, versions: str = '[versions."1.0"]\nbase = "debian:bookworm-slim"\n'):
    return load_recipe(write(tmp_path, HEAD + body + versions))


def error_of(tmp_path: Path, body: str, versions: str = '[versions."1.0"]\nbase = "debian:bookworm-slim"\n') -> str:
    with pytest.raises(RecipeError) as exc:
        load(tmp_path, body, versions)
    assert exc.value.exit_code == RecipeError.exit_code
    return exc.value.message


# -- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "mode"), [('"none"', "none"), ('"bridge"', "bridge"),
                                             ('"host"', "host"), ("true", "bridge"), ("false", "none")])
def test_network_modes_and_the_old_boolean(tmp_path: Path, value: str, mode: str) -> None:
    r = load(tmp_path, f"network = {value}\n")
    assert r.versions[0].runtime.network == mode


def test_network_default_is_none(tmp_path: Path) -> None:
    assert load(tmp_path, "").versions[0].runtime.network == "none"


def test_commands_with_a_different_name_in_the_image(tmp_path: Path) -> None:
    r = load(tmp_path, 'commands = ["db_load", { shim = "db_dump", run = "db5.3_dump" }]\n')
    rt = r.versions[0].runtime
    assert rt.commands == ("db_load", "db_dump")
    assert rt.command_run == {"db_dump": "db5.3_dump"}
    assert rt.run_name("db_dump") == "db5.3_dump" and rt.run_name("db_load") == "db_load"
    assert shim_names("demo", "1.0", rt) == ["demo-1.0", "db_load-1.0", "db_dump-1.0"]


def test_build_checks_the_run_names(tmp_path: Path) -> None:
    from sandman.build import declared_commands

    r = load(tmp_path, 'commands = ["db_load", { shim = "db_dump", run = "db5.3_dump" }]\n')
    assert declared_commands(r.versions[0]) == ("db_load", "db5.3_dump")


def test_home_files_devices_and_capabilities(tmp_path: Path) -> None:
    r = load(tmp_path, 'home_files = [".my.cnf", ".symapi/", ".my.cnf"]\n'
             'devices = ["/dev/sg0", "/dev/sg1:/dev/sg0:rw"]\ncap_add = ["sys_rawio", "CAP_SYS_RAWIO"]\n')
    rt = r.versions[0].runtime
    assert rt.home_files == (".my.cnf", ".symapi")
    assert rt.devices == ("/dev/sg0", "/dev/sg1:/dev/sg0:rw")
    assert rt.cap_add == ("SYS_RAWIO",)


def test_aliases_resolve_to_their_version(tmp_path: Path) -> None:
    r = load(tmp_path, "", '[versions."1.7"]\nbase = "debian:trixie-slim"\naliases = ["1.7.1"]\n'
             '[versions."1.6"]\nbase = "debian:bookworm-slim"\n')
    v = r.version("1.7.1")
    assert v is not None and v.version == "1.7"
    assert r.version("1.7") is v and r.version("1.6").version == "1.6"
    assert r.version("1.7.2") is None
    assert shim_names("demo", "1.7", v.runtime) == ["demo-1.7"]  # no alias shim unless asked


def test_alias_shims_when_asked(tmp_path: Path) -> None:
    r = load(tmp_path, 'commands = ["demo", "demoadm"]\nalias_shims = true\n',
             '[versions."1.7"]\nbase = "debian:trixie-slim"\naliases = ["1.7.1"]\n')
    rt = r.versions[0].runtime
    assert shim_names("demo", "1.7", rt) == ["demo-1.7", "demoadm-1.7", "demo-1.7.1", "demoadm-1.7.1"]


def test_a_record_of_old_shape_reads_back_equal() -> None:
    """Install records store asdict(Runtime) as JSON: lists come back, and old records hold
    `network = true`. Both must equal today's model, or consent would see a change."""
    import json

    from sandman.commands.install import runtime_from_dict

    rt = Runtime(commands=("a",), home_files=(".x",), devices=("/dev/null",), cap_add=("CHOWN",),
                 network="bridge", aliases=("1.0.1",), command_run={"a": "b"})
    assert runtime_from_dict(json.loads(json.dumps(asdict(rt)))) == rt
    old = {k: v for k, v in asdict(Runtime()).items() if k not in
           ("home_files", "devices", "cap_add", "aliases", "alias_shims", "command_run")}
    assert runtime_from_dict(json.loads(json.dumps({**old, "network": True}))) == Runtime(network="bridge")
    assert Runtime(network=True) == Runtime(network="bridge")
    assert Runtime(network=False) == Runtime()


# -- bad input: one line each, file:line first -----------------------------------------------
@pytest.mark.parametrize(("body", "line", "want"), [
    ('home_files = [".ok", "../.ssh/id_rsa"]\n', 4,
     "home_files: '../.ssh/id_rsa' must name a file or folder inside your home, without . or .. or //"),
    ('home_files = ["/etc/shadow"]\n', 4,
     "home_files: '/etc/shadow' must be a path relative to your home (like \".my.cnf\"), not absolute"),
    ('home_files = ["~/.pgpass"]\n', 4, "home_files: '~/.pgpass' must be a path relative to your home"),
    ('home_files = ["."]\n', 4, "home_files: '.' must name a file or folder inside your home"),
    ('network = "wifi"\n', 4, "network: expected \"none\", \"bridge\", \"host\", true or false, got 'wifi'"),
    ('network = 1\n', 4, "network: expected \"none\", \"bridge\", \"host\", true or false, got 1"),
    ('devices = ["/etc/passwd"]\n', 4, "devices: '/etc/passwd' is not a device"),
    ('devices = ["/dev/../etc/passwd"]\n', 4, "devices: '/dev/../etc/passwd' is not a device"),
    ('cap_add = ["SYS_RAWI"]\n', 4, "cap_add: 'SYS_RAWI' is not a Linux capability (did you mean SYS_RAWIO?)"),
    ('cap_add = ["ALL"]\n', 4, "cap_add: 'ALL' is not a Linux capability"),
    ('commands = [{ shim = "db_dump" }]\n', 4, "commands[0]: missing required key 'run'"),
    ('commands = [{ shim = "db_dump", run = "a b" }]\n', 4, "commands[0].run: 'a b' is not a command name"),
    ('commands = [{ shim = "x", run = "y", as = "z" }]\n', 4, "commands[0].as: unknown key"),
    ('commands = ["x", "x"]\n', 4, "commands: 'x' is listed twice"),
    ('commands = [3]\n', 4, "commands[0]: expected a name or a { shim, run } table, got integer"),
    ('aliases = ["1.1"]\n', 4, "aliases: unknown key"),
])
def test_bad_keys_name_file_line_and_key(tmp_path: Path, body: str, line: int, want: str) -> None:
    msg = error_of(tmp_path, body)
    assert msg.startswith(f"{tmp_path}/recipes/demo/recipe.toml:{line}: "), msg
    assert want in msg, msg
    assert "\n" not in msg


def test_alias_clashes(tmp_path: Path) -> None:
    versions = ('[versions."1.7"]\nbase = "debian:trixie-slim"\naliases = ["1.6"]\n'
                '[versions."1.6"]\nbase = "debian:bookworm-slim"\n')
    msg = error_of(tmp_path, "", versions)
    assert msg == f"{tmp_path}/recipes/demo/recipe.toml:6: versions.\"1.7\".aliases: '1.6' is already a version"
    versions = ('[versions."1.7"]\nbase = "debian:trixie-slim"\naliases = ["x"]\n'
                '[versions."1.8"]\nbase = "debian:bookworm-slim"\naliases = ["x"]\n')
    assert "'x' is already an alias of '1.7'" in error_of(tmp_path, "", versions)


# -- config.toml -------------------------------------------------------------------------------
def test_config_overrides_network_devices_and_caps(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text('[tools.demo]\nnetwork = "host"\ndevices = []\n[tools."demo@2.0"]\n'
                 'network = false\ncap_add = ["net_raw"]\n')
    c = load_config(f)
    rt = Runtime(network="bridge", devices=("/dev/sg0",), cap_add=("SYS_RAWIO",))
    one = c.for_tool("demo", "1.0").apply(rt)
    assert (one.network, one.devices, one.cap_add) == ("host", (), ("SYS_RAWIO",))
    two = c.for_tool("demo", "2.0").apply(rt)
    assert (two.network, two.devices, two.cap_add) == ("none", (), ("NET_RAW",))
    assert ToolSettings().apply(rt) == rt


@pytest.mark.parametrize(("text", "want"), [
    ('[tools.demo]\nnetwork = "lan"\n', ':2: tools.demo.network: expected "none", "bridge", "host", true or false'),
    ('[tools.demo]\ndevices = ["sg0"]\n', ":2: tools.demo.devices: 'sg0' is not a device"),
    ('[tools.demo]\ncap_add = ["GODMODE"]\n', ":2: tools.demo.cap_add: 'GODMODE' is not a Linux capability"),
    ('[tools.demo]\ndevices = "/dev/sg0"\n', ":2: tools.demo.devices: expected a list of strings"),
])
def test_config_bad_values(tmp_path: Path, text: str, want: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(text)
    with pytest.raises(StateError) as exc:
        load_config(f)
    assert exc.value.message.startswith(str(f) + want), exc.value.message


# -- consent -------------------------------------------------------------------------------------
def test_disclose_names_every_new_permission() -> None:
    rt = Runtime(network="host", home_files=(".my.cnf",), devices=("/dev/sg0",), cap_add=("SYS_RAWIO",))
    lines = consent.disclose(rt)
    assert "home files (read-only, when they exist): ~/.my.cnf" in lines
    assert "network: the host's (its 127.0.0.1 and every interface)" in lines
    assert "devices: /dev/sg0" in lines
    assert "capabilities: all dropped except SYS_RAWIO; no new privileges" in lines
    plain = consent.disclose(Runtime())
    assert "network: none" in plain and "devices: none" in plain
    assert "capabilities: all dropped; no new privileges" in plain
    with_config = consent.disclose(rt, ToolSettings(network="none", devices=()))
    assert "network: none (config.toml; the recipe says the host's (its 127.0.0.1 and every interface))" in with_config
    assert "devices: none (config.toml; the recipe says /dev/sg0)" in with_config


def test_changes_count_network_devices_caps_and_home_files() -> None:
    old = Runtime(network="bridge")
    new = Runtime(network="host", home_files=(".pgpass",), devices=("/dev/sg0",), cap_add=("SYS_RAWIO",))
    assert consent.changes(old, new) == [
        "- network: yes (bridge: the internet, not the host's 127.0.0.1)",
        "+ network: the host's (its 127.0.0.1 and every interface)",
        "+ home file ~/.pgpass", "+ device /dev/sg0", "+ capability SYS_RAWIO"]
    assert consent.changes(Runtime(network=True), Runtime(network="bridge")) == []
    with pytest.raises(ConsentError):
        consent.check("demo@1.0", old, new, None)


def test_config_grants_are_recorded_and_need_consent() -> None:
    rt = Runtime()
    before = made_from(ToolSettings(), 10)
    assert consent.granted(rt, before) == rt
    assert consent.granted(rt, {}) == rt  # a record from before the key existed
    host = ToolSettings(network="host")
    after = made_from(host, 10)
    assert after["config"] != before["config"]
    assert consent.granted(rt, after) == Runtime(network="host")
    with pytest.raises(ConsentError) as exc:
        consent.check("demo@1.0", consent.granted(rt, before), host.apply(rt), None,
                      cause="/home/u/.config/sandman/config.toml")
    assert exc.value.message.startswith("demo@1.0: /home/u/.config/sandman/config.toml changes what")
    assert "sandman install demo@1.0 --yes" in exc.value.message
    assert "+ network: the host's" in (exc.value.detail or "")


def test_check_devices_names_the_recipe_line(tmp_path: Path) -> None:
    f = write(tmp_path, HEAD + 'devices = ["/dev/null"]\n[versions."1.0"]\nbase = "b"\n'
              'devices = ["/dev/sandman-no-such"]\n')
    r = load_recipe(f)
    with pytest.raises(DeviceError) as exc:
        consent.check_devices(f, "1.0", r.versions[0].runtime, ToolSettings(), None)
    assert exc.value.exit_code == DeviceError.exit_code
    assert exc.value.message.startswith(f"{f}:7: devices: /dev/sandman-no-such does not exist on this host")
    consent.check_devices(f, "1.0", Runtime(devices=("/dev/null",)), ToolSettings(), None)
    with pytest.raises(DeviceError) as exc:  # a regular file is not a device
        consent.check_devices(f, "1.0", Runtime(devices=("/dev/null",)),
                              ToolSettings(devices=("/dev/shm",)), tmp_path / "c.toml")
    assert exc.value.message.startswith(f"{tmp_path}/c.toml: tools: devices: /dev/shm does not exist")


def test_stale_reasons_read_old_records(tmp_path: Path) -> None:
    paths = ctx(tmp_path, Runtime()).paths
    write_runtime(paths)
    st = ToolSettings()
    old_record = {"entrypoint": [], "commands": ["demo"], "env": {}, "pass_env": [], "path_env": {},
                  "path_args": "ro", "network": True, "smoke": [], "mounts": []}
    now = Runtime(commands=("demo",), network="bridge")
    assert stale_reasons(made_from(st, 10), old_record, paths, made_from(st, 10), now, "demo", "1.0", {}) == []
    more = Runtime(commands=("demo",), network="host", devices=("/dev/null",))
    assert stale_reasons(made_from(st, 10), old_record, paths, made_from(st, 10), more, "demo", "1.0",
                         {}) == ["network", "devices"]


# -- the shim ------------------------------------------------------------------------------------
@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "user" / "work"
    d.mkdir(parents=True)
    return d


def opts_of(script: str, args: list[str], work: Path, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    p = dry_run(script, args, work, env)
    assert p.returncode == 0, p.stderr
    argv = argv_of(p.stdout)
    return argv, p.stderr


def test_shim_network_devices_and_caps(tmp_path: Path, work: Path) -> None:
    rt = Runtime(entrypoint=("demo",), network="host", devices=("/dev/null:/dev/sm0",), cap_add=("SYS_RAWIO",))
    argv, summary = opts_of(render(ctx(tmp_path, rt), "demo-1.0"), [], work)
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--device") + 1] == "/dev/null:/dev/sm0"
    assert argv[argv.index("--cap-add") + 1] == "SYS_RAWIO"
    assert argv.index("--cap-drop") < argv.index("--cap-add")  # drop all, then add back
    assert "  network:  host" in summary and "  device:   /dev/null:/dev/sm0" in summary
    assert "capability added: SYS_RAWIO" in summary and "no devices" not in summary
    # config.toml on this host turns them off
    argv, summary = opts_of(render(ctx(tmp_path, rt, ToolSettings(network="none", devices=(), cap_add=())),
                                   "demo-1.0"), [], work)
    assert argv[argv.index("--network") + 1] == "none"
    assert "--device" not in argv and "--cap-add" not in argv and "no devices" in summary


def test_shim_refuses_a_missing_device_with_exit_98(tmp_path: Path, work: Path) -> None:
    rt = Runtime(entrypoint=("demo",), devices=("/dev/sandman-no-such",))
    p = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), [], work)
    assert p.returncode == errors.RUNTIME_CODES["DEVICE"] == DeviceError.exit_code
    assert p.stderr == ("sandman: demo@1.0: device /dev/sandman-no-such does not exist on this host (it is "
                        "in the recipe's devices; set [tools.demo] devices in config.toml to use another)\n")
    assert p.stdout == ""


def test_shim_home_files_mounted_read_only_when_they_exist(tmp_path: Path, work: Path) -> None:
    home = work.parent  # dry_run sets HOME to the work dir's parent
    (home / ".my.cnf").write_text("[client]\n")
    (home / ".symapi").mkdir()
    real = tmp_path / "elsewhere.pgpass"
    real.write_text("x")
    os.symlink(real, home / ".pgpass")
    rt = Runtime(entrypoint=("demo",), home_files=(".my.cnf", ".pgpass", ".symapi", ".psqlrc"))
    argv, summary = opts_of(render(ctx(tmp_path, rt), "demo-1.0"), [], work)
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
    assert f'type=bind,"source={home}/.my.cnf","target=/tmp/.my.cnf",readonly' in mounts
    assert f'type=bind,"source={real}","target=/tmp/.pgpass",readonly' in mounts  # its real path
    assert f'type=bind,"source={home}/.symapi","target=/tmp/.symapi",readonly' in mounts
    assert not any(".psqlrc" in m for m in mounts)  # missing: skipped
    assert not any(f'"source={home}",' in m for m in mounts)  # never the home itself
    assert f"  mount ro: {home}/.my.cnf -> /tmp/.my.cnf" in summary


def test_shim_home_file_that_is_the_home_is_refused(tmp_path: Path, work: Path) -> None:
    home = work.parent
    os.symlink(home, home / ".cfg")
    rt = Runtime(entrypoint=("demo",), home_files=(".cfg",))
    p = dry_run(render(ctx(tmp_path, rt), "demo-1.0"), [], work)
    assert p.returncode == errors.RUNTIME_CODES["MOUNT"]
    assert p.stderr == (f"sandman: demo@1.0: will not mount home file ~/.cfg (really {home}): it is your home "
                        "directory (set SANDMAN_ALLOW_HOME=1 to allow)\n")


def test_shim_runs_the_image_name_of_a_command(tmp_path: Path, work: Path) -> None:
    rt = Runtime(commands=("db_load", "db_dump"), command_run={"db_dump": "db5.3_dump"})
    c = ctx(tmp_path, rt)
    argv, _ = opts_of(render(c, "db_dump-1.0"), ["-p", "x.db"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["db5.3_dump", "-p", "x.db"]
    argv, _ = opts_of(render(c, "db_load-1.0"), ["x"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["db_load", "x"]
    # the tool's own shim (no entrypoint) takes the command name the user knows
    argv, _ = opts_of(render(c, "demo-1.0"), ["db_dump", "y"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["db5.3_dump", "y"]
    argv, _ = opts_of(render(c, "demo-1.0"), ["ls", "db_dump"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["ls", "db_dump"]


def test_alias_shim_runs_the_same_version(tmp_path: Path, work: Path) -> None:
    rt = Runtime(entrypoint=("demo",), commands=("demo", "demoadm"), aliases=("1.0.3",), alias_shims=True)
    c = ctx(tmp_path, rt)
    argv, _ = opts_of(render(c, "demo-1.0.3"), ["a"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["demo", "a"]
    argv, _ = opts_of(render(c, "demoadm-1.0.3"), ["a"], work)
    assert tool_argv(argv, "sandman/demo:1.0-abc") == ["demoadm", "a"]


def test_the_consent_names_the_platform_only_when_a_recipe_sets_one() -> None:
    from sandman.consent import disclose
    from sandman.recipes import Runtime

    assert not [line for line in disclose(Runtime()) if line.startswith("platform:")]
    [line] = [line for line in disclose(Runtime(platform="linux/arm64")) if line.startswith("platform:")]
    assert line.startswith("platform: linux/arm64 (another CPU's image runs under QEMU")
