"""Image work on Podman (issue 11): `sandman bootstrap` into Podman's store, bundles between a
Docker host and a Podman host, Podman's save stream read by import.

Everything goes through sandman's Engine, which talks to Podman's Docker-compatible API socket
with the docker SDK. What this found and pins down: Podman 4's compat import ignores the tag
(the base would have been named `debian:latest`, moving whatever had that name), and Podman
writes names in full in a save stream (`docker.io/sandman/...`, `localhost/debian:...`), which
import must not take for names the manifest does not list.

Each test's tool has a unique name; its images are removed from every store by that name. The
bootstrapped base is `debian:bookworm` (not -slim: no recipe of the other tests uses it, as in
test_bootstrap.py); rootful Podman is root's store, rootless is the `sandman-podman` user's.
mmdebstrap is the recording stand-in (bootstrap_helpers.py): the import is what is tested here.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootstrap_helpers import StandIn
from helpers import PODMAN, remove_images, run_sandman, stop_reapers
from podman_helpers import PodmanUser, ensure_bases, ensure_podman_user

from sandman.engine_reads import short_tag
from sandman.errors import SubidError

pytestmark = pytest.mark.docker

BOOTSTRAPPED = "debian:bookworm"


def tool_name() -> str:
    return f"pi{uuid.uuid4().hex[:10]}"


def write_recipe(recipes: Path, tool: str, base: str, marker: str) -> None:
    """A tool that prints its marker, then exits with the code given as its first argument."""
    (recipes / tool).mkdir(parents=True, exist_ok=True)
    (recipes / tool / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "podman images test"\n'
        f'entrypoint = ["sh", "-c", "cat /usr/local/share/{tool}.txt; exit ${{1:-0}}", "sh"]\n\n'
        f'[versions."1"]\nbase = "{base}"\n'
        f"run = [\"echo '{tool} {marker}' > /usr/local/share/{tool}.txt\"]\n")


def root_sandman(engine: str, home: Path, recipes: Path | None, *args: str,
                 timeout: float = 900, extra: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDMAN_", "DOCKER_"))}
    env.update(SANDMAN_HOME=str(home), SANDMAN_ENGINE=engine, SANDMAN_WARM="0", **(extra or {}))
    if recipes is not None:
        env["SANDMAN_RECIPE_PATH"] = str(recipes)
    return run_sandman(*args, env=env, timeout=timeout, cwd="/")


def inspect(cli: str, ref: str, fmt: str) -> str | None:
    """`docker|podman image inspect -f fmt ref` as root, None when there is no such image."""
    p = subprocess.run([cli, "image", "inspect", "-f", fmt, ref], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def drop_replaced(argv: list[str], old: str | None, env: dict[str, str] | None = None) -> None:
    """The base `bootstrap --force` replaced, once no name is left on it (never forced: an image
    built on it keeps it)."""
    if old is None:
        return
    tags = subprocess.run([*argv, "image", "inspect", "-f", "{{len .RepoTags}}", old],
                          capture_output=True, text=True, env=env, cwd="/").stdout.strip()
    if tags == "0":
        subprocess.run([*argv, "rmi", old], capture_output=True, env=env, cwd="/")


@pytest.fixture(scope="module")
def user() -> PodmanUser:
    u = ensure_podman_user()
    ensure_bases(u)
    ensure_bases(None)
    return u


@pytest.fixture
def shared(user: PodmanUser) -> Iterator[Path]:
    """A folder root and the rootless user both reach (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="sandman-podman-images-"))
    d.chmod(0o755)
    os.chown(d, user.uid, user.gid)
    yield d
    for home in d.glob("*home"):  # a shim started the home's orphan reaper: end it first
        pids = [int(f.read_text()) for f in (home / "state").glob("reaper*.pid")
                if f.read_text().strip().isdigit()]
        stop_reapers(home)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(d, ignore_errors=True)


def user_dir(user: PodmanUser, path: Path) -> Path:
    path.mkdir(parents=True)
    os.chown(path, user.uid, user.gid)
    return path


def bundle_tag(bundle: Path) -> str:
    """The image tag of the bundle's one tool, from its manifest."""
    with tarfile.open(bundle) as tar:
        f = tar.extractfile("sandman-bundle.json")
        assert f is not None
        return json.loads(f.read())["tools"][0]["image_tag"]


def run_shim(user: PodmanUser | None, shim: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [str(shim), *args]
    if user is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    return subprocess.run(user.argv(argv), env=user.env(), capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_bootstrap_into_rootful_podman(shared: Path, mmdebstrap_standin: StandIn) -> None:
    """Root with SANDMAN_ENGINE=podman: the base lands in root's Podman store under its own
    name (no other name moved), runs, and a recipe built FROM it has Docker's fingerprint."""
    # A real mmdebstrap run would add Debian's own packages and keys; CI's .ci/run bootstraps
    # the -slim bases for real (into Docker), and test_platform.py its arm64 base.
    marker = mmdebstrap_standin.provide("bookworm", "debian:bookworm-slim")
    record = mmdebstrap_standin.record()
    latest_before = inspect("podman", "debian:latest", "{{.Id}}")
    old = inspect("podman", BOOTSTRAPPED, "{{.Id}}")
    home = shared / "root-home"
    p = root_sandman("podman", home, None, "bootstrap", "--force", BOOTSTRAPPED,
                     extra=mmdebstrap_standin.env(record))
    assert p.returncode == 0, p.stderr
    [call] = StandIn.calls(record)
    assert call.euid == 0 and "--mode=root" in call.options
    assert call.positional[0] == "bookworm"
    assert f"{BOOTSTRAPPED}: imported sha256:" in p.stderr
    made = p.stderr.split(f"{BOOTSTRAPPED}: imported ")[1][:19]
    drop_replaced(["podman"], old)
    # Podman's compat import ignores the tag: before the fix this named it debian:latest
    assert inspect("podman", "debian:latest", "{{.Id}}") == latest_before
    assert (inspect("podman", BOOTSTRAPPED, "{{.Id}}") or "-").startswith(made[7:])
    # Podman names it in full (docker.io/library/debian:bookworm); sandman reads it short
    names = json.loads(inspect("podman", BOOTSTRAPPED, "{{json .RepoTags}}") or "[]")
    assert [short_tag(n) for n in names] == [BOOTSTRAPPED]
    assert inspect("podman", BOOTSTRAPPED, "{{json .Config.Cmd}}") == '["bash"]'
    out = subprocess.run(["podman", "run", "--rm", "--network=none", BOOTSTRAPPED, "cat",
                          "/etc/debian_version", "/etc/sandman-standin"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("12."), out.stderr
    assert out.stdout.endswith("\n" + marker)  # the tarball mmdebstrap wrote, nothing else
    p = root_sandman("podman", home, None, "bootstrap", BOOTSTRAPPED,
                     extra=mmdebstrap_standin.env(record))
    assert p.returncode == 0 and f"{BOOTSTRAPPED}: already present" in p.stderr
    assert len(StandIn.calls(record)) == 1

    # a recipe on that base builds under Podman, with the fingerprint Docker gives it
    if inspect("docker", BOOTSTRAPPED, "{{.Id}}") is None:  # test_bootstrap.py makes it
        save = subprocess.Popen(["podman", "save", BOOTSTRAPPED], stdout=subprocess.PIPE)
        subprocess.run(["docker", "load", "-q"], stdin=save.stdout, check=True,
                       capture_output=True, timeout=300)
        assert save.wait() == 0
    tool = tool_name()
    recipes = shared / "recipes"
    write_recipe(recipes, tool, BOOTSTRAPPED, "on a bootstrapped base")
    try:
        built = {}
        for engine in ("podman", "docker"):
            p = root_sandman(engine, shared / f"build-{engine}", recipes, "build", f"{tool}@1")
            assert p.returncode == 0, p.stderr
            built[engine] = p.stdout.strip()
        assert built["podman"] == built["docker"]
        fp = "{{index .Config.Labels \"io.sandman.fingerprint\"}}"
        assert inspect("podman", built["podman"], fp) == inspect("docker", built["docker"], fp)
        bases = json.loads(inspect("podman", built["podman"],
                                   "{{index .Config.Labels \"io.sandman.bases\"}}") or "{}")
        assert bases[BOOTSTRAPPED].startswith(made)
    finally:
        remove_images(tool, engine=PODMAN)
        remove_images(tool)


def test_bootstrap_into_rootless_podman(user: PodmanUser, shared: Path,
                                        mmdebstrap_standin: StandIn) -> None:
    """An ordinary user, no docker group: mmdebstrap --mode=unshare, imported into its store."""
    # A real run would add Debian's side of --mode=unshare (its use of the user's subordinate
    # ranges); the stand-in checks that the user has one, and runs as that user.
    marker = mmdebstrap_standin.provide("bookworm", "debian:bookworm-slim")
    record = mmdebstrap_standin.record(owner=(user.uid, user.gid))

    def image_id(ref: str) -> str | None:
        out = user.podman("image", "inspect", "-f", "{{.Id}}", ref, check=False).strip()
        return out or None

    latest_before, old = image_id("debian:latest"), image_id(BOOTSTRAPPED)
    home = user_dir(user, shared / "home")
    p = user.sandman("bootstrap", "--force", BOOTSTRAPPED,
                     env=user.env(SANDMAN_HOME=str(home), SANDMAN_WARM="0",
                                  **mmdebstrap_standin.env(record, path=user.env()["PATH"])))
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "--mode=unshare" in err and f"{BOOTSTRAPPED}: imported sha256:" in err
    [call] = StandIn.calls(record)
    assert call.euid == user.uid and "--mode=unshare" in call.options
    suite, target = call.positional
    assert suite == "bookworm" and Path(target).is_relative_to(home)  # in the user's own cache
    drop_replaced(user.argv(["podman"]), old, env=user.env())
    made = err.split(f"{BOOTSTRAPPED}: imported ")[1][7:19]
    assert (image_id(BOOTSTRAPPED) or "-").startswith(made)
    assert image_id("debian:latest") == latest_before
    out = user.podman("run", "--rm", "--network=none", BOOTSTRAPPED, "cat", "/etc/debian_version",
                      "/etc/sandman-standin")
    assert out.startswith("12.") and out.endswith("\n" + marker)
    assert user.podman("image", "inspect", "-f", "{{json .Config.Cmd}}", BOOTSTRAPPED).strip() \
        == '["bash"]'


def test_bootstrap_without_subids_says_what_to_do(shared: Path, mmdebstrap_standin: StandIn) -> None:
    """A non-root user with the docker group but no subordinate ranges: mmdebstrap's unshare
    mode cannot map users, so bootstrap stops first, one line with the fix, exit 94, and the
    base is left as it was."""
    user = ensure_podman_user("sandman-nosubid", subids=False)
    record = mmdebstrap_standin.record(owner=(user.uid, user.gid))
    before = inspect("docker", BOOTSTRAPPED, "{{.Id}}")
    home = user_dir(user, shared / "nosubid-home")
    docker_gid = grp.getgrnam("docker").gr_gid
    as_user = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", f"--groups={docker_gid}"]
    p = run_sandman("bootstrap", "--force", BOOTSTRAPPED, prefix=as_user, python=user.python,
                    env=user.env(SANDMAN_HOME=str(home), SANDMAN_ENGINE="docker",
                                 **mmdebstrap_standin.env(record, path=user.env()["PATH"])),
                    timeout=300, cwd="/")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == SubidError.exit_code, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"sandman: cannot bootstrap {BOOTSTRAPPED} as sandman-nosubid: "
                               "mmdebstrap --mode=unshare"), lines[0]
    assert "usermod --add-subuids" in lines[0] and "run sandman bootstrap as root" in lines[0]
    assert inspect("docker", BOOTSTRAPPED, "{{.Id}}") == before
    assert not any(home.rglob("bootstrap-*")) and StandIn.calls(record) == []  # nothing ran


def test_docker_bundle_imports_into_rootless_podman(user: PodmanUser, shared: Path) -> None:
    """Exported by root from Docker, imported by the rootless user: same id, same fingerprint,
    the shim runs as that user with the tool's output and exit code, `list` shows it."""
    tool = tool_name()
    recipes = shared / "recipes"
    write_recipe(recipes, tool, "debian:bookworm-slim", "from docker")
    bundle = shared / "from-docker.tar"
    try:
        p = root_sandman("docker", shared / "docker-home", recipes, "export", f"{tool}@1",
                         "-o", str(bundle))
        assert p.returncode == 0, p.stderr
        bundle.chmod(0o644)
        tag = bundle_tag(bundle)
        docker_id = inspect("docker", tag, "{{.Id}}")
        fingerprint = inspect("docker", tag, "{{index .Config.Labels \"io.sandman.fingerprint\"}}")

        home = user_dir(user, shared / "user-home")
        env = user.env(SANDMAN_HOME=str(home), SANDMAN_WARM="0")
        p = user.sandman("import", str(bundle), env=env)
        err = p.stderr.decode()
        assert p.returncode == 0, err
        assert "which the manifest does not list" not in err
        assert f"installed {tool}@1" in err
        said = user.podman("image", "inspect", "-f",
                           "{{.Id}} {{index .Labels \"io.sandman.fingerprint\"}}", tag).split()
        assert said == [docker_id.removeprefix("sha256:"), fingerprint]  # type: ignore[union-attr]

        shim = home / "bin" / f"{tool}-1"
        work = user_dir(user, shared / "work")
        r = run_shim(user, shim, work)
        assert (r.returncode, r.stdout) == (0, f"{tool} from docker\n"), r.stderr
        r = run_shim(user, shim, work, "7")
        assert (r.returncode, r.stdout) == (7, f"{tool} from docker\n"), r.stderr
        p = user.sandman("list", env=env)
        assert p.returncode == 0, p.stderr.decode()
        assert any(ln.split()[:1] == [f"{tool}@1"] and tag in ln
                   for ln in p.stdout.decode().splitlines())
    finally:
        remove_images(tool, engine=user.podman_cli)
        remove_images(tool)


def test_rootless_podman_bundle_imports_into_docker(user: PodmanUser, shared: Path) -> None:
    """The other way: built and exported by the rootless user (Podman's save stream, names in
    full), imported by root into Docker with the same id and no name outside the manifest."""
    tool = tool_name()
    recipes = user_dir(user, shared / "recipes")
    write_recipe(recipes, tool, "debian:bookworm-slim", "from podman")
    for f in recipes.rglob("*"):
        os.chown(f, user.uid, user.gid)
    home, out = user_dir(user, shared / "user-home"), user_dir(user, shared / "out")
    bundle = out / "from-podman.tar"
    try:
        p = user.sandman("export", f"{tool}@1", "-o", str(bundle),
                         env=user.env(SANDMAN_HOME=str(home), SANDMAN_WARM="0",
                                      SANDMAN_RECIPE_PATH=str(recipes)))
        assert p.returncode == 0, p.stderr.decode()
        with tarfile.open(bundle) as tar, tarfile.open(fileobj=tar.extractfile("images.tar")) as images:
            saved = json.loads(images.extractfile("manifest.json").read())  # type: ignore[union-attr]
        tag = bundle_tag(bundle)
        # Podman's GET /images/get answers a docker-archive, its names in full
        names = sorted(t for e in saved for t in e["RepoTags"])
        assert names == ["docker.io/" + tag, "localhost/debian:bookworm-slim"] or \
            names == sorted(["docker.io/" + tag, "docker.io/library/debian:bookworm-slim"])
        podman_id = user.podman("image", "inspect", "-f", "{{.Id}}", tag).strip()

        p = root_sandman("docker", shared / "docker-home", None, "import", str(bundle))
        assert p.returncode == 0, p.stderr
        assert "which the manifest does not list" not in p.stderr
        assert inspect("docker", tag, "{{.Id}}") == f"sha256:{podman_id}"
        r = run_shim(None, shared / "docker-home" / "bin" / f"{tool}-1", out, "3")
        assert (r.returncode, r.stdout) == (3, f"{tool} from podman\n"), r.stderr
    finally:
        remove_images(tool, engine=user.podman_cli)
        remove_images(tool)
