"""Image ownership on a shared daemon: two real Unix users, two SANDMAN_HOMEs, one daemon.

Each home holds a root (a `sandman-root/<home-id>/<tool>:<version>` tag) on the image its
install uses; any user's `gc` removes exactly the sandman images no root holds and no container
uses (issue 10 §2), and untagged sandman images left by a lost build race (issue 9 item 9).

Every test uses its own tool (a unique name), and runs gc with `--tool` so that, on a daemon
shared with other test sessions, it judges only images the test made. The users are real
(`useradd`), in the docker group only through setpriv, with private (0700) homes that the other
user cannot read: gc cannot lean on reading another home's records.
"""

from __future__ import annotations

import grp
import hashlib
import io
import json
import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ImageRemover, ensure_unix_user, paths_of, record_file, run_sandman, sandman_argv
from podman_helpers import python_for

from sandman.names import LABEL_FINGERPRINT, LABEL_TOOL, LABEL_VERSION

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
USERS = ("sandman-gc-a", "sandman-gc-b")


# -- real users who can run sandman -----------------------------------------------------------
def ensure_user(name: str) -> tuple[int, int]:
    pw = ensure_unix_user(name, "-U", "-s", "/bin/bash")
    return pw.pw_uid, pw.pw_gid


def docker_gid() -> int:
    try:
        return grp.getgrnam("docker").gr_gid
    except KeyError:
        return os.stat("/var/run/docker.sock").st_gid


def _setpriv(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={docker_gid()}"]


@pytest.fixture(scope="session")
def user_python() -> tuple[str, str]:
    """(interpreter, PYTHONPATH) with which another user runs this checkout's sandman."""
    uid, gid = ensure_user(USERS[0])
    return python_for(uid, gid)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path  # SANDMAN_HOME, private to the user (0700)
    recipes: Path
    python: tuple[str, str]

    def env(self) -> dict[str, str]:
        return {"PATH": f"{paths_of(self.home).bin_dir}:/usr/local/bin:/usr/bin:/bin",
                "HOME": pwd.getpwnam(self.name).pw_dir, "USER": self.name, "LOGNAME": self.name,
                "SANDMAN_HOME": str(self.home), "SANDMAN_RECIPE_PATH": str(self.recipes),
                "PYTHONPATH": self.python[1], "SANDMAN_WARM": "0"}

    def sandman(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run_sandman(*args, prefix=_setpriv(self.uid, self.gid), python=self.python[0],
                           env=self.env(), cwd=self.home, timeout=timeout)

    def shim(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*_setpriv(self.uid, self.gid), str(paths_of(self.home).bin_dir / name), *args],
                              env=self.env(), cwd=self.home, capture_output=True, text=True,
                              timeout=timeout)


def recipe_text(tool: str, versions: tuple[str, ...]) -> str:
    out = [f'schema = 1\ntool = "{tool}"\ndescription = "gc test tool"',
           f'entrypoint = ["cat", "/usr/local/share/{tool}.txt"]', ""]
    for v in versions:
        out += [f'[versions."{v}"]', 'base = "debian:bookworm-slim"',
                f"run = [\"echo '{tool} {v}' > /usr/local/share/{tool}.txt\"]", ""]
    return "\n".join(out)


def images_of(tool: str) -> dict[str, list[str]]:
    """image id -> tags, for every image labelled with tool (untagged ones included)."""
    out = subprocess.run(["docker", "images", "--no-trunc", "--filter",
                          f"label={LABEL_TOOL}={tool}", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        image_id, _, tag = line.partition(" ")
        found.setdefault(image_id, [])
        if "<none>" not in tag:
            found[image_id].append(tag)
    return {image_id: sorted(tags) for image_id, tags in found.items()}


@pytest.fixture
def tool(remove_images_after: ImageRemover) -> Iterator[str]:
    name = f"gc{uuid.uuid4().hex[:10]}"
    remove_images_after(name)
    yield name
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_TOOL}={name}"],
                         capture_output=True, text=True).stdout.split()
    if out:
        subprocess.run(["docker", "rm", "-f", *out], capture_output=True)


@pytest.fixture
def users(tool: str, user_python: tuple[str, str], docker_client) -> Iterator[tuple[User, User]]:
    root = Path(tempfile.mkdtemp(prefix="sandman-gc-"))
    root.chmod(0o755)
    recipes = root / "recipes"
    (recipes / tool).mkdir(parents=True)
    (recipes / tool / "recipe.toml").write_text(recipe_text(tool, ("1", "2")))
    for p in (recipes, recipes / tool):
        p.chmod(0o755)
    (recipes / tool / "recipe.toml").chmod(0o644)
    made = []
    for name in USERS:
        uid, gid = ensure_user(name)
        home = root / name
        home.mkdir(mode=0o700)
        os.chown(home, uid, gid)
        made.append(User(name, uid, gid, home, recipes, user_python))
    try:
        yield made[0], made[1]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return p


def dry_lines(p: subprocess.CompletedProcess, tool: str) -> list[str]:
    return [ln for ln in ok(p).stdout.splitlines() if tool in ln]


# -- the tests --------------------------------------------------------------------------------
def test_neither_users_gc_breaks_the_other_users_shims(users: tuple[User, User], tool: str) -> None:
    alice, bob = users
    ok(alice.sandman("install", f"{tool}@1"))
    ok(bob.sandman("install", f"{tool}@1", f"{tool}@2"))
    assert len(images_of(tool)) == 2  # 1 is shared by both homes
    peek = subprocess.run([*_setpriv(bob.uid, bob.gid), "ls", str(paths_of(alice.home).state_dir)],
                          capture_output=True)
    assert peek.returncode != 0  # bob cannot read alice's records: gc must not need them

    # the attack of issue 10: bob, who uses 1 and 2, uninstalls 2 and collects; alice collects
    # without having 2; each one's gc must leave the other's shims working
    ok(bob.sandman("uninstall", f"{tool}@2"))
    ok(alice.sandman("gc", "--tool", tool))
    assert ok(bob.shim(f"{tool}-1")).stdout == f"{tool} 1\n"
    ok(alice.sandman("uninstall", f"{tool}@1"))
    ok(alice.sandman("gc", "--tool", tool))
    assert ok(bob.shim(f"{tool}-1")).stdout == f"{tool} 1\n"  # alice gave up 1: bob still holds it
    ok(bob.sandman("gc", "--tool", tool))
    assert ok(bob.shim(f"{tool}-1")).stdout == f"{tool} 1\n"
    ok(alice.sandman("install", f"{tool}@1"))  # a cache hit: bob's image, now rooted twice
    ok(bob.sandman("gc", "--tool", tool))
    assert ok(alice.shim(f"{tool}-1")).stdout == f"{tool} 1\n"
    [one] = images_of(tool)  # 2 went with bob's gc: nobody held it
    assert len([t for t in images_of(tool)[one] if t.startswith("sandman-root/")]) == 2


def test_after_both_uninstall_gc_frees_the_image(users: tuple[User, User], tool: str) -> None:
    alice, bob = users
    ok(alice.sandman("install", f"{tool}@1"))
    ok(bob.sandman("install", f"{tool}@1"))
    [image] = images_of(tool)
    lines = dry_lines(bob.sandman("gc", "--dry-run", "--tool", tool), tool)
    assert len(lines) == 1 and lines[0].startswith(f"sandman/{tool}:1-"), lines
    assert "kept: rooted by 2 homes" in lines[0]
    ok(alice.sandman("uninstall", f"{tool}@1"))
    assert "kept: rooted by 1 home" in dry_lines(bob.sandman("gc", "--dry-run", "--tool", tool), tool)[0]
    ok(bob.sandman("uninstall", f"{tool}@1"))
    before = images_of(tool)
    assert list(before) == [image]
    dry = dry_lines(alice.sandman("gc", "--dry-run", "--tool", tool), tool)
    assert len(dry) == 1 and "would remove: no root" in dry[0], dry
    assert images_of(tool) == before  # a dry run removes nothing
    p = ok(alice.sandman("gc", "--tool", tool))
    assert f"removed sandman/{tool}:" in p.stdout
    assert images_of(tool) == {}


def test_a_containers_image_is_never_removed(users: tuple[User, User], tool: str) -> None:
    alice, bob = users
    ok(alice.sandman("install", f"{tool}@1"))
    # a long-running call of alice's tool (the run command runs CMD ARGS as given)
    runner = subprocess.Popen(
        [*_setpriv(alice.uid, alice.gid),
         *sandman_argv("run", f"{tool}@1", "--", "sleep", "120", python=alice.python[0])],
        env=alice.env(), cwd=alice.home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL_TOOL}={tool}"],
                                 capture_output=True, text=True).stdout.strip():
            assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
            assert time.monotonic() < deadline, "the container did not start"
            time.sleep(0.2)
        ok(alice.sandman("uninstall", f"{tool}@1"))
        dry = dry_lines(bob.sandman("gc", "--dry-run", "--tool", tool), tool)
        assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
        assert len(dry) == 1 and "kept: used by container sandman-" in dry[0], dry
        gc = ok(bob.sandman("-v", "gc", "--tool", tool))
        assert len(images_of(tool)) == 1, gc.stdout + gc.stderr  # still there: its container runs
        assert runner.poll() is None
    finally:
        runner.kill()
        runner.wait()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_TOOL}={tool}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    ok(bob.sandman("gc", "--tool", tool))  # the container is gone: now it goes
    assert images_of(tool) == {}


def test_an_install_from_before_roots_is_kept_until_its_home_claims_it(
        users: tuple[User, User], tool: str) -> None:
    alice, bob = users
    ok(alice.sandman("install", f"{tool}@1"))
    [image] = images_of(tool)
    # what an earlier sandman left: the image tag only, no root and no claim
    for t in images_of(tool)[image]:
        if not t.startswith("sandman/"):
            subprocess.run(["docker", "rmi", t], check=True, capture_output=True)
    assert [t.split(":")[0] for t in images_of(tool)[image]] == [f"sandman/{tool}"]
    dry = dry_lines(bob.sandman("gc", "--dry-run", "--tool", tool), tool)
    assert "kept: from an earlier sandman" in dry[0], dry
    ok(bob.sandman("gc", "--tool", tool))
    assert ok(alice.shim(f"{tool}-1")).stdout == f"{tool} 1\n"
    # alice's next reshim (or install, or gc) claims it; then her uninstall lets gc take it
    ok(alice.sandman("reshim", f"{tool}@1"))
    assert any(t.startswith("sandman-root/") for t in images_of(tool)[image])
    assert "kept: rooted by 1 home" in dry_lines(bob.sandman("gc", "--dry-run", "--tool", tool), tool)[0]
    ok(alice.sandman("uninstall", f"{tool}@1"))
    ok(bob.sandman("gc", "--tool", tool))
    assert images_of(tool) == {}


# -- lost build races (issue 9 item 9) ---------------------------------------------------------
def test_two_homes_installing_at_once_leave_no_untagged_image(users: tuple[User, User],
                                                              tool: str) -> None:
    alice, bob = users
    for _ in range(2):
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda u: u.sandman("install", f"{tool}@1"), (alice, bob)))
        for r in results:
            ok(r)
        found = images_of(tool)
        assert len(found) == 1 and all(found.values()), found  # one image, and it is tagged
        ids = set()
        for u in (alice, bob):
            ids.add(json.loads(subprocess.run(
                ["cat", str(record_file(u.home, tool, "1"))],
                capture_output=True, text=True, check=True).stdout)["image_id"])
        assert ids == set(found)
        assert ok(alice.shim(f"{tool}-1")).stdout == ok(bob.shim(f"{tool}-1")).stdout == f"{tool} 1\n"
        for u in (alice, bob):  # and again from scratch
            ok(u.sandman("uninstall", f"{tool}@1"))
        ok(alice.sandman("gc", "--tool", tool))
        assert images_of(tool) == {}


def _build(tool: str, marker: str, fingerprint: str) -> str:
    """An image labelled like sandman's build of tool@1 with fingerprint (content: marker)."""
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tar:
        data = (f"FROM debian:bookworm-slim\nRUN echo {marker} > /m\n").encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    labels = ["--label", f"{LABEL_TOOL}={tool}", "--label", f"{LABEL_VERSION}=1",
              "--label", f"{LABEL_FINGERPRINT}={fingerprint}"]
    p = subprocess.run(["docker", "build", "-q", *labels, "-"], input=ctx.getvalue(),
                       capture_output=True, check=True)
    return p.stdout.decode().strip()


def test_the_build_that_loses_the_race_is_discarded(tool: str, docker_client) -> None:
    from sandman.build import image_ref
    from sandman.engine import Engine
    from sandman.images import claim_ref, publish

    fingerprint = uuid.uuid4().hex * 2
    ref = image_ref(tool, "1", fingerprint)
    first, second = _build(tool, "first", fingerprint), _build(tool, "second", fingerprint)
    assert first != second
    engine = Engine(docker_client)
    assert publish(engine, first, ref, fingerprint, replace=False) == first
    # the other home's build of the same fingerprint finished second: it uses the first one's
    assert publish(engine, second, ref, fingerprint, replace=False) == first
    assert set(images_of(tool)) == {first}  # the loser is gone, not left untagged
    assert sorted(images_of(tool)[first]) == sorted([claim_ref(fingerprint), ref])
    # --force: the new build takes the tag, the old one is left for gc
    third = _build(tool, "third", fingerprint)
    assert publish(engine, third, ref, fingerprint, replace=True) == third
    assert engine.image(ref).id == third  # type: ignore[union-attr]


def _load_old_untagged(tool: str) -> str:
    """An untagged sandman image created in 2001 (a lost race long ago), by `docker load`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = b"left over\n"
        info = tarfile.TarInfo("leftover.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2001-01-01T00:00:00Z",
        "config": {"Labels": {LABEL_TOOL: tool, LABEL_VERSION: "1",
                              LABEL_FINGERPRINT: "0" * 64}, "Cmd": ["/leftover.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "history": [{"created": "2001-01-01T00:00:00Z"}],
    }).encode()
    config_id = hashlib.sha256(config).hexdigest()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in ((f"{config_id}.json", config), ("l/layer.tar", layer_bytes),
                           ("manifest.json", json.dumps([{"Config": f"{config_id}.json", "RepoTags": None,
                                                          "Layers": ["l/layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load", "-q"], input=out.getvalue(), capture_output=True, check=True)
    return f"sha256:{config_id}"


def test_gc_finds_untagged_sandman_images(users: tuple[User, User], tool: str) -> None:
    alice, _ = users
    old = _load_old_untagged(tool)
    assert images_of(tool) == {old: []}
    dry = [ln for ln in ok(alice.sandman("gc", "--dry-run", "--tool", tool)).stdout.splitlines()
           if old[:19] in ln]
    assert len(dry) == 1 and "would remove: untagged" in dry[0], dry
    ok(alice.sandman("gc", "--tool", tool))
    assert images_of(tool) == {}
