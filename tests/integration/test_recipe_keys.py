"""The recipe keys real tools need, on the real daemon: network modes (a database on the host's
127.0.0.1), commands named differently in the image, dotfiles from the home, devices and
capabilities, aliases; config.toml overrides with consent; each bad input's one line and code."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, stop_reapers

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import (  # noqa: E402
    one_line_error,
    remove_test_containers,
    sandman_cli,
)

from sandman.errors import DeviceError, MissingCommandError, MountError, RecipeError, StateError  # noqa: E402

pytestmark = pytest.mark.docker

TOOL = "rkeys"
# one small image for every version, holding a command whose name differs from its shim's
RUN = r"""run = ["echo '#!/bin/sh' > /usr/local/bin/rkeys-dump-5.3",
       "echo 'echo dump \"$@\"' >> /usr/local/bin/rkeys-dump-5.3",
       "chmod 755 /usr/local/bin/rkeys-dump-5.3"]"""
RECIPE = """\
schema = 1
tool = "rkeys"
description = "recipe keys probe for sandman's own tests"
home_files = [".rkeys.cnf", ".rkeysdir", ".rkeys-missing"]

[versions."1"]
base = "debian:bookworm-slim"
aliases = ["1.0.7"]
alias_shims = true
commands = ["sh", { shim = "rk_dump", run = "rkeys-dump-5.3" }]

[versions.host]
base = "debian:bookworm-slim"
network = "host"

[versions.bridge]
base = "debian:bookworm-slim"
network = true

[versions.dev]
base = "debian:bookworm-slim"
devices = ["/dev/zero:/dev/rkeys0"]
cap_add = ["SYS_RAWIO"]

[versions.nodev]
base = "debian:bookworm-slim"
devices = ["/dev/rkeys-no-such-device"]

[versions.badrun]
base = "debian:bookworm-slim"
commands = [{ shim = "rk_x", run = "rkeys-not-in-the-image" }]
""".replace('base = "debian:bookworm-slim"\n', 'base = "debian:bookworm-slim"\n' + RUN + "\n")
# the line of `devices` in [versions.nodev] above
NODEV_LINE = RECIPE.splitlines().index('devices = ["/dev/rkeys-no-such-device"]') + 1


@dataclass(frozen=True)
class Setup:
    root: Path
    home: Path  # SANDMAN_HOME
    user_home: Path  # HOME of the user running the shims
    recipes: Path
    work: Path

    @property
    def bin(self) -> Path:
        return paths_of(self.home).bin_dir

    def env(self, **extra: str) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("SANDMAN_", "DOCKER_", "LC_", "LANG"))}
        e.update(SANDMAN_HOME=str(self.home), SANDMAN_RECIPE_PATH=str(self.recipes),
                 HOME=str(self.user_home), PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        e.update(extra)
        return e

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return sandman_cli(*args, env=self.env(**extra), cwd=self.work)

    def shim(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / name), *args], env=self.env(), cwd=self.work,
                              capture_output=True, timeout=120)

    def config(self, text: str) -> None:
        cfg = paths_of(self.home).config_file
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(text)
        later = time.time() + 2  # newer than the shims, whatever the clock's granularity
        os.utime(cfg, (later, later))


@pytest.fixture(scope="module")
def rk(docker_client, remove_images_after_module: ImageRemover) -> Iterator[Setup]:
    remove_images_after_module(TOOL)
    root = Path(tempfile.mkdtemp(prefix="sandman-rkeys-", dir="/tmp"))
    s = Setup(root=root, home=root / "home", user_home=root / "user", recipes=root / "recipes",
              work=root / "work")
    for d in (s.recipes / TOOL, s.user_home, s.work):
        d.mkdir(parents=True)
    (s.recipes / TOOL / "recipe.toml").write_text(RECIPE)
    try:
        yield s
    finally:
        remove_test_containers(s.home, (TOOL,))
        stop_reapers(s.home)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def one_answer_server() -> Iterator[int]:
    """A tiny server on the host's 127.0.0.1 (like a local database): says one line, closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello from the host's 127.0.0.1\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


def read_port(port: int) -> list[str]:
    """A shell command that connects to 127.0.0.1:port and prints what it says (bash's /dev/tcp)."""
    return ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port} && cat <&3"]


def test_network_host_reaches_a_server_on_the_hosts_loopback(rk: Setup, one_answer_server: int) -> None:
    p = rk.cli("install", "--yes", "rkeys@host", "rkeys@bridge")
    assert p.returncode == 0, p.stderr
    shown = (p.stdout + p.stderr).decode()
    assert "network: the host's (its 127.0.0.1 and every interface)" in shown
    assert "network: yes (bridge: the internet, not the host's 127.0.0.1)" in shown
    got = rk.shim("rkeys-host", *read_port(one_answer_server))
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello from the host's 127.0.0.1\n"
    # a bridge (network = true) is a network, but not the host's loopback
    got = rk.shim("rkeys-bridge", *read_port(one_answer_server))
    assert got.returncode != 0 and b"hello" not in got.stdout
    # the dry run says which network
    p = rk.cli("run", "rkeys@host", "--dry-run", "--", "true")
    assert p.returncode == 0, p.stderr
    assert b"  network:  host\n" in p.stderr
    assert b" --network host " in p.stdout


def test_config_network_needs_consent_then_works(rk: Setup, one_answer_server: int) -> None:
    p = rk.cli("-q", "install", "--yes", "rkeys@bridge")
    assert p.returncode == 0, p.stderr
    rk.config('[tools."rkeys@bridge"]\nnetwork = "host"\n')
    try:
        # the shim sees the changed config.toml, and its refresh refuses the wider network
        got = rk.shim("rkeys-bridge", *read_port(one_answer_server))
        err = got.stderr.decode()
        assert got.returncode == StateError.exit_code, err
        assert "config.toml changes what the tool may access; nothing was changed" in err
        assert "sandman install rkeys@bridge --yes" in err
        assert "+ network: the host's (its 127.0.0.1 and every interface)" in err
        assert b"hello" not in got.stdout
        p = rk.cli("install", "--yes", "rkeys@bridge")
        assert p.returncode == 0, p.stderr
        got = rk.shim("rkeys-bridge", *read_port(one_answer_server))
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"hello from the host's 127.0.0.1\n"
        # taking it back is a change too; once accepted the loopback is out of reach again
        rk.config("")
        p = rk.cli("install", "--yes", "rkeys@bridge")
        assert p.returncode == 0, p.stderr
        got = rk.shim("rkeys-bridge", *read_port(one_answer_server))
        assert got.returncode != 0 and b"hello" not in got.stdout
    finally:
        rk.config("")


def test_commands_aliases_and_alias_shims(rk: Setup) -> None:
    p = rk.cli("install", "--yes", "rkeys@1.0.7")  # an alias installs its version
    assert p.returncode == 0, p.stderr
    names = {f.name for f in rk.bin.iterdir()}
    assert {"rkeys-1", "sh-1", "rk_dump-1", "rkeys-1.0.7", "sh-1.0.7", "rk_dump-1.0.7"} <= names
    assert paths_of(rk.home).installs_dir.joinpath("rkeys@1.json").is_file()
    # the shim is named after `shim`, and runs `run` in the image
    for name in ("rk_dump-1", "rk_dump-1.0.7"):
        got = rk.shim(name, "a b", "c")
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"dump a b c\n"
    got = rk.shim("rkeys-1", "rk_dump", "x")  # the tool's shim knows the name too
    assert got.stdout == b"dump x\n", got.stderr
    # tool@alias works wherever TOOL@VERSION does
    p = rk.cli("run", "rkeys@1.0.7", "--", "rk_dump", "via run")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"dump via run\n"
    p = rk.cli("reshim", "rkeys@1.0.7")
    assert p.returncode == 0, p.stderr
    p = rk.cli("uninstall", "rkeys@1.0.7")
    assert p.returncode == 0, p.stderr
    assert not (rk.bin / "rk_dump-1.0.7").exists() and not (rk.bin / "rkeys-1").exists()


def test_a_run_name_missing_in_the_image_stops_the_install(rk: Setup) -> None:
    p = rk.cli("install", "--yes", "rkeys@badrun")
    assert p.returncode == MissingCommandError.exit_code, p.stderr
    assert "rkeys-not-in-the-image" in p.stderr.decode()
    assert not (rk.bin / "rk_x-badrun").exists()


def test_home_files_read_only_when_they_exist(rk: Setup) -> None:
    p = rk.cli("-q", "install", "--yes", "rkeys@1")
    assert p.returncode == 0, p.stderr
    (rk.user_home / ".rkeys.cnf").write_text("[client]\npassword=s3cret\n")
    (rk.user_home / ".rkeysdir").mkdir(exist_ok=True)
    (rk.user_home / ".rkeysdir" / "conf").write_text("inside\n")
    (rk.user_home / "not-declared").write_text("private\n")
    script = ('cat "$HOME/.rkeys.cnf" "$HOME/.rkeysdir/conf"; ls -A "$HOME"; '
              'echo x >> "$HOME/.rkeys.cnf" 2>/dev/null || echo read-only')
    got = rk.shim("sh-1", "-c", script)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    assert lines[:3] == ["[client]", "password=s3cret", "inside"]
    assert lines[-1] == "read-only"
    listed = set(lines[3:-1])
    assert {".rkeys.cnf", ".rkeysdir"} <= listed
    assert "not-declared" not in listed and ".rkeys-missing" not in listed  # never the whole home
    assert (rk.user_home / ".rkeys.cnf").read_text() == "[client]\npassword=s3cret\n"
    p = rk.cli("run", "rkeys@1", "--dry-run", "--", "true")
    assert f"  mount ro: {rk.user_home}/.rkeys.cnf -> /tmp/.rkeys.cnf".encode() in p.stderr


def test_home_file_pointing_at_the_docker_socket_is_refused(rk: Setup) -> None:
    """Attack: ~/.rkeysdir is a symlink to /var/run; mounting it would hand over the daemon."""
    p = rk.cli("-q", "install", "--yes", "rkeys@1")
    assert p.returncode == 0, p.stderr
    target = rk.user_home / ".rkeysdir"
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.symlink("/var/run", target)
    try:
        got = rk.shim("sh-1", "-c", "ls $HOME/.rkeysdir")
        assert got.returncode == MountError.exit_code
        line = one_line_error(got.stderr)
        assert line.startswith("sandman: rkeys@1: will not mount home file ~/.rkeysdir (really ")
        assert "it would expose the Docker socket" in line
        assert got.stdout == b""
    finally:
        target.unlink()


def test_devices_and_capabilities(rk: Setup) -> None:
    p = rk.cli("install", "--yes", "rkeys@dev")
    assert p.returncode == 0, p.stderr
    shown = (p.stdout + p.stderr).decode()
    assert "devices: /dev/zero:/dev/rkeys0" in shown
    assert "capabilities: all dropped except SYS_RAWIO; no new privileges" in shown
    got = rk.shim("rkeys-dev", "sh", "-c", "head -c 4 /dev/rkeys0 | od -An -tx1; grep CapBnd /proc/self/status")
    assert got.returncode == 0, got.stderr
    out = got.stdout.decode().split()
    assert out[:4] == ["00", "00", "00", "00"]
    assert out[-1] == f"{1 << 17:016x}"  # CAP_SYS_RAWIO (17) and nothing else
    assert rk.cli("-q", "install", "--yes", "rkeys@host").returncode == 0
    got = rk.shim("rkeys-host", "sh", "-c", "grep CapBnd /proc/self/status; ls /dev/rkeys0 2>&1 || true")
    assert got.stdout.decode().split()[1] == "0" * 16  # without cap_add: none at all
    p = rk.cli("run", "rkeys@dev", "--dry-run", "--", "true")
    assert b"  device:   /dev/zero:/dev/rkeys0\n" in p.stderr
    assert b"capability added: SYS_RAWIO" in p.stderr and b"no devices" not in p.stderr
    # config.toml on this host turns the device off (a change: it needs the --yes)
    rk.config('[tools.rkeys]\ndevices = []\ncap_add = []\n')
    try:
        p = rk.cli("install", "--yes", "rkeys@dev")
        assert p.returncode == 0, p.stderr
        got = rk.shim("rkeys-dev", "sh", "-c", "ls /dev/rkeys0 2>/dev/null || echo gone; grep CapBnd /proc/self/status")
        assert got.stdout.decode().split() == ["gone", "CapBnd:", "0" * 16], got.stderr
    finally:
        rk.config("")
        assert rk.cli("-q", "install", "--yes", "rkeys@dev").returncode == 0


def test_a_device_missing_on_this_host(rk: Setup) -> None:
    p = rk.cli("install", "--yes", "rkeys@nodev")
    assert p.returncode == DeviceError.exit_code, p.stderr
    line = one_line_error(p.stderr)
    recipe = rk.recipes / TOOL / "recipe.toml"
    assert line == (f"sandman: {recipe}:{NODEV_LINE}: devices: /dev/rkeys-no-such-device does not exist on "
                    "this host (or is not a device); set [tools.TOOL] devices in config.toml to this "
                    "host's device")
    assert not (rk.bin / "rkeys-nodev").exists()


def test_a_device_that_disappears_after_install(rk: Setup) -> None:
    """The shim checks with builtins at every run: a device gone since install is exit 98, one line."""
    node = Path(f"/dev/sandman-rkeys-{os.getpid()}")
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
    try:
        rk.config(f'[tools."rkeys@dev"]\ndevices = ["{node}"]\n')
        p = rk.cli("install", "--yes", "rkeys@dev")
        assert p.returncode == 0, p.stderr
        assert rk.shim("rkeys-dev", "true").returncode == 0
        node.unlink()
        got = rk.shim("rkeys-dev", "true")
        assert got.returncode == DeviceError.exit_code
        assert one_line_error(got.stderr) == (
            f"sandman: rkeys@dev: device {node} does not exist on this host (it is in the recipe's "
            "devices; set [tools.rkeys] devices in config.toml to use another)")
        doc = rk.cli("doctor", "--json")
        checks = {c["what"]: c for c in json.loads(doc.stdout)}
        assert checks[f"rkeys@dev device {node}"]["ok"] is False
        assert "not a device on this host" in checks[f"rkeys@dev device {node}"]["detail"]
    finally:
        node.unlink(missing_ok=True)
        rk.config("")
        rk.cli("-q", "install", "--yes", "rkeys@dev")


def test_bad_home_file_entry_is_one_line_with_file_line(rk: Setup) -> None:
    d = rk.root / "bad" / TOOL
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(RECIPE.replace('".rkeys-missing"]', '"../.ssh/id_rsa"]'))
    p = sandman_cli("install", "rkeys@host", env=rk.env(SANDMAN_RECIPE_PATH=str(d.parent)), cwd=rk.work)
    assert p.returncode == RecipeError.exit_code
    assert one_line_error(p.stderr) == (
        f"sandman: {d}/recipe.toml:4: home_files: '../.ssh/id_rsa' must name a file or folder inside your "
        "home, without . or .. or //")
    (d / "recipe.toml").write_text(RECIPE.replace('".rkeys-missing"]', '"/etc/shadow"]'))
    p = sandman_cli("install", "rkeys@host", env=rk.env(SANDMAN_RECIPE_PATH=str(d.parent)), cwd=rk.work)
    assert p.returncode == RecipeError.exit_code
    assert one_line_error(p.stderr) == (
        f"sandman: {d}/recipe.toml:4: home_files: '/etc/shadow' must be a path relative to your home "
        "(like \".my.cnf\"), not absolute")
