"""Replays of attacks on what a tool is granted and on what sandman trusts on the host (issues 19
and 23): a recipe source that reads a host file, a bundle that leaks private kits, another user's
Podman runtime folder, and grants (network, devices, home files...) given without a yes.

Each test replays the attack as reported and checks that it no longer works. The tools are tiny
recipes on debian:bookworm-slim (one `true` layer); runtime settings are not part of an image's
fingerprint, so every variant of a recipe reuses one image.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socketserver
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman, sandman_argv, source_cache
from podman_helpers import python_for
from ptyrun import run_on_pty
from teams_helpers import unique_tool

from sandman.errors import ConsentError, EngineSetupError, RecipeError

pytestmark = pytest.mark.docker

TINY = """\
schema = 1
tool = "{tool}"
description = "a grants probe for sandman's own tests"
entrypoint = ["true"]
{top}
[versions."1"]
base = "debian:bookworm-slim"
run = ["true"]
{extra}
"""


def write_recipe(home: Path, tool: str, *, top: str = "", extra: str = "") -> Path:
    folder = paths_of(home).user_recipes_dir / tool
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "recipe.toml"
    f.write_text(TINY.format(tool=tool, top=top, extra=extra))
    return f


@pytest.fixture
def tool(remove_images_after: ImageRemover) -> str:
    name = unique_tool()
    remove_images_after(name)
    return name


# -- issue 19.9: a recipe source names a file on this host ----------------------------------------
def test_a_recipe_source_cannot_read_a_file_of_this_host(sandman, home: Path, tool: str,
                                                         tmp_path: Path) -> None:
    """A recipe (someone else's) names file:///<a private file> with a guessed sha256. It got the
    file's sha256 in the error on a wrong guess, and the file itself into the image on a right
    one. A source is http(s) or the cache only: the recipe is refused before anything is read."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"hunter2\n")
    secret.chmod(0o600)
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    for guess in ("0" * 64, digest):
        f = write_recipe(home, tool, extra=f'sources = [{{ url = "{secret.as_uri()}", sha256 = "{guess}" }}]')
        p = sandman("install", "--yes", f"{tool}@1")
        out = p.stdout + p.stderr
        assert p.returncode == RecipeError.exit_code, out
        assert digest not in out.replace(guess, "")  # no oracle: only what the recipe itself says
        assert f"{f}:" in p.stderr and "is not an http:// or https:// URL" in p.stderr
        assert not (source_cache(home) / digest).exists()
        assert not record_file(home, tool, "1").exists()


# -- issue 23.5: an export with private kits ------------------------------------------------------
def _export(home: Path, umask: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), SANDMAN_KITS_DIR=str(home.parent / "kits"))
    return run_sandman("export", *args, env=env,
                       prefix=["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh"])


def test_an_export_follows_the_umask_and_one_holding_kits_is_private(
        home: Path, tool: str, tmp_path: Path, remove_images_after: ImageRemover) -> None:
    """Vendor kits are kept private (the kits folder); `export` wrote every bundle 0644, so the
    kits in it became world-readable. A bundle follows the umask; one holding kits is 0600."""
    kits = home.parent / "kits"
    kits.mkdir(mode=0o700)
    (kits / "vendor.bin").write_bytes(b"licensed vendor kit\n")
    (kits / "vendor.bin").chmod(0o600)
    kit_sha = hashlib.sha256(b"licensed vendor kit\n").hexdigest()
    write_recipe(home, tool)
    kitted = unique_tool()
    remove_images_after(kitted)
    write_recipe(home, kitted, extra=f'kits = [{{ file = "vendor.bin", sha256 = "{kit_sha}" }}]')

    plain = tmp_path / "plain.tar"
    p = _export(home, 0o027, "-o", str(plain), f"{tool}@1")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640  # the umask's, not a fixed 0644

    private = tmp_path / "kits.tar"
    p = _export(home, 0o022, "-o", str(private), f"{kitted}@1")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(private.stat().st_mode) == 0o600  # holds a kit: the owner's only


# -- issue 19.4: another user's Podman runtime folder ---------------------------------------------
VICTIM = 4242  # a uid with no passwd entry, no login session (no /run/user/4242)
ATTACKER = 65534  # nobody
REGISTRY = "registry.example.invalid:5000"


class _FakeAPI(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    seen: list[tuple[str, str, dict[str, str]]]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers like a Podman API and records every request (and its headers)."""

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        if self.path.endswith("/_ping"):
            body = b"OK"
        elif self.path.endswith("/version"):
            body = json.dumps({"ApiVersion": "1.41", "Version": "4.3.1", "MinAPIVersion": "1.24",
                               "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}).encode()
        else:
            body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_DELETE = _answer

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def planted_runtime_dir() -> Iterator[_FakeAPI]:
    """What the other user made: /tmp/podman-run-4242/podman/podman.sock, theirs, with a fake
    API behind it."""
    run_dir = Path(f"/tmp/podman-run-{VICTIM}")
    if run_dir.exists() or os.path.exists(f"/run/user/{VICTIM}"):
        pytest.skip(f"{run_dir} or /run/user/{VICTIM} exists on this host")
    (run_dir / "podman").mkdir(parents=True)
    for d in (run_dir, run_dir / "podman"):
        d.chmod(0o755)
        os.chown(d, ATTACKER, ATTACKER)
    sock = run_dir / "podman" / "podman.sock"
    server = _FakeAPI(str(sock), _Handler)
    server.seen = []
    os.chown(sock, ATTACKER, ATTACKER)
    sock.chmod(0o777)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    subids = ("/etc/subuid", "/etc/subgid")
    for f in subids:  # a Podman user, as the victim was: subordinate ids of its own
        with open(f, "a") as out:
            out.write(f"{VICTIM}:900000:65536\n")
    try:
        yield server
    finally:
        for f in subids:
            lines = Path(f).read_text().splitlines(keepends=True)
            Path(f).write_text("".join(ln for ln in lines if not ln.startswith(f"{VICTIM}:")))
        server.shutdown()
        server.server_close()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_another_users_podman_runtime_folder_is_refused(planted_runtime_dir: _FakeAPI,
                                                       public_tmp: Path) -> None:
    """User 4242 (no XDG_RUNTIME_DIR, no /run/user/4242) ran sandman with Podman: it took
    /tmp/podman-run-4242, which another user had made, and sent that user's fake API its
    requests (registry credentials included). Now: one line, the engine set-up code, and not
    one request."""
    home = public_tmp / "victim"
    (home / ".docker").mkdir(parents=True)
    auth = base64.b64encode(b"victim:registry-secret").decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": auth}}}))
    for d in (home, home / ".docker", home / ".docker" / "config.json"):
        os.chown(d, VICTIM, VICTIM)
    python, pythonpath = python_for(VICTIM, VICTIM)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": pythonpath,
           "LANG": "C.UTF-8", "SANDMAN_HOME": str(home / "sandman"), "SANDMAN_ENGINE": "podman",
           "SANDMAN_REGISTRY": REGISTRY}
    setpriv = ["setpriv", f"--reuid={VICTIM}", f"--regid={VICTIM}", "--clear-groups"]
    for args in (("pull", "sqlite3@3.46"), ("gc", "--dry-run")):
        p = run_sandman(*args, env=env, prefix=setpriv, python=python, cwd="/", timeout=120)
        assert planted_runtime_dir.seen == [], (args, planted_runtime_dir.seen)
        assert p.returncode == EngineSetupError.exit_code, (args, p.stdout, p.stderr)
        [line] = p.stderr.splitlines()
        assert line.startswith(f"sandman: Podman's runtime folder /tmp/podman-run-{VICTIM} "), line
        assert "Traceback" not in p.stderr


# -- issue 19.7: grants beyond the default need a yes ---------------------------------------------
def _on_tty(home: Path, args: list[str], answer: bytes) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env["SANDMAN_HOME"] = str(home)
    code, seen, _ = run_on_pty(sandman_argv(*args), env=env, stdout_tty=False,
                               replies={b"Accept": answer}, timeout=300)
    return code, seen.decode(errors="replace")


def test_host_network_on_first_install_is_asked_on_a_terminal(home: Path, tool: str, sandman) -> None:
    """A recipe with network = "host": the consent text was printed, never asked, and the `n`
    typed at the terminal was ignored (installed). Now the first install asks."""
    write_recipe(home, tool, top='network = "host"')
    code, text = _on_tty(home, ["install", f"{tool}@1"], b"n\n")
    assert code == ConsentError.exit_code, text
    assert "+ network: the host's (its 127.0.0.1 and every interface)" in text
    assert not record_file(home, tool, "1").exists()
    assert not (paths_of(home).bin_dir / f"{tool}-1").exists()
    code, text = _on_tty(home, ["install", f"{tool}@1"], b"y\n")
    assert code == 0, text
    assert json.loads(record_file(home, tool, "1").read_text())["runtime"]["network"] == "host"


@pytest.mark.parametrize("grant", [
    'network = true',
    'devices = ["/dev/zero:/dev/probe0"]',
    'cap_add = ["SYS_RAWIO"]',
    'home_files = [".probe.cnf"]',
    '[[mounts]]\nname = "data"\nsource = "/srv/grants-probe"\ntarget = "/data"\nmode = "rw"\noptional = true',
])
def test_a_grant_beyond_the_default_needs_yes_when_nobody_can_be_asked(
        home: Path, tool: str, sandman, grant: str) -> None:
    write_recipe(home, tool, top=grant)
    p = sandman("install", f"{tool}@1", input="")
    assert p.returncode == ConsentError.exit_code, p.stderr
    assert f"{tool}@1: the recipe " in p.stderr and "--yes" in p.stderr
    assert not record_file(home, tool, "1").exists()
    p = sandman("install", "--yes", f"{tool}@1")
    assert p.returncode == 0, p.stderr


def test_no_grant_needs_no_yes_and_taking_one_back_never_does(home: Path, tool: str, sandman) -> None:
    write_recipe(home, tool)
    p = sandman("install", f"{tool}@1", input="")
    assert p.returncode == 0, p.stderr  # the default: no network, nothing beyond the cwd
    write_recipe(home, tool, top='network = "host"\nhome_files = [".probe.cnf"]')
    assert sandman("install", f"{tool}@1", input="").returncode == ConsentError.exit_code
    assert sandman("install", "--yes", f"{tool}@1").returncode == 0
    write_recipe(home, tool, top='network = true')  # less: host -> bridge, no home file
    p = sandman("install", f"{tool}@1", input="")
    assert p.returncode == 0, p.stderr
    assert json.loads(record_file(home, tool, "1").read_text())["runtime"]["network"] == "bridge"


def test_a_consent_refusal_names_config_toml_when_config_toml_changed(home: Path, tool: str,
                                                                     sandman) -> None:
    write_recipe(home, tool)
    assert sandman("install", f"{tool}@1").returncode == 0
    config = paths_of(home).config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[tools.{tool}]\nnetwork = "host"\n')
    p = sandman("install", f"{tool}@1", input="")
    assert p.returncode == ConsentError.exit_code, p.stderr
    first = p.stderr.splitlines()[0]
    assert f"{config} changes what the tool may access" in first and "recipe" not in first, first
    config.write_text("")
    with contextlib.suppress(FileNotFoundError):
        config.unlink()
