"""Trust by provenance (issue 19 items 1, 5, 8; issue 23 item 2), each attack replayed as reported.

- An imported base never takes the plain name the warm agent is built from, and the agent (run
  on the host) is built only from a base this home bootstrapped: the poisoned-base bundle is
  imported on a daemon where `debian:bookworm-slim` is free (a second dockerd, as the attacker
  needs), then two warm calls; its payload must never run on the host.
- An agent binary whose hash is not the recorded one is never run on the host.
- `sandman bootstrap` does not call a name it did not make "already present".
- Under `require`, a cache hit (another home's pull), a pull whose check cannot run, and a
  bundle naming a source of its choosing are all refused.
- A bundle without recipes fails in one line, its exit code, leaving no tag.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import base_env, paths_of, record_file, run_sandman, said_recipe
from runtime_helpers import ensure_agent
from signing_helpers import cli, publish, registry, team, teammate  # noqa: F401 (require + registry)
from teams_helpers import image_id, second_engine, unique_tool

from sandman import agent
from sandman.commands.registry import remote_ref
from sandman.errors import BuildError, IntegrityError, MissingProgramError, SignatureError
from sandman.names import LABEL_TOOL

pytestmark = pytest.mark.docker

PAYLOAD = "PWNED-by-bundle"
# Linked into the real agent: in the container it is the agent (so warm calls go through it),
# on the host it first leaves PAYLOAD in $HOME: the proof that bundle content ran there.
EVIL_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void payload(void) {
    char path[4096];
    const char *home = getenv("HOME");
    if (access("/run/sandman-agent/agent", F_OK) == 0 || home == NULL) return;
    snprintf(path, sizeof path, "%s/PWNED-by-bundle", home);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { (void)write(fd, "pwned\n", 6); close(fd); }
}
"""


@pytest.fixture(scope="module")
def evil_agent(tmp_path_factory: pytest.TempPathFactory, docker_client) -> Path:
    """The attacker's agent: the real source plus the payload, compiled with the session's
    agent toolchain (made once by ensure_agent when this daemon has none yet)."""
    def toolchain() -> str:
        return subprocess.run(["docker", "images", "-q", "sandman/agent-toolchain"],
                              capture_output=True, text=True).stdout.split()[:1]

    if not toolchain():
        ensure_agent(tmp_path_factory.mktemp("agent-home"))
    work = tmp_path_factory.mktemp("evil")
    shutil.copy(agent.source_path(), work / "agent.c")
    (work / "evil.c").write_text(EVIL_C)
    p = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{work}:/w",
                        toolchain()[0], "sh", "-c",
                        "musl-gcc -static -O2 -s -o /w/evil /w/agent.c /w/evil.c"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return work / "evil"


def recipe(root: Path, tool: str, text: str) -> None:
    said_recipe(root, tool, text, "provenance test")


def rewrite_bundle(src: Path, dst: Path, edit: Callable[[dict], None], *,
                   drop: str | None = None, images: Path | None = None) -> None:
    """A copy of a bundle with its manifest edited, members under `drop` left out, and its
    images.tar replaced: what an attacker hands over."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            if drop and m.name.startswith(drop):
                continue
            if m.name == "sandman-bundle.json":
                data = json.loads(tin.extractfile(m).read())
                edit(data)
                raw = json.dumps(data).encode()
                info = tarfile.TarInfo(m.name)
                info.size = len(raw)
                tout.addfile(info, io.BytesIO(raw))
            elif m.name == "images.tar" and images is not None:
                tout.add(str(images), arcname="images.tar")
            else:
                tout.addfile(m, tin.extractfile(m) if m.isfile() else None)


def wait_for_agent_build(home: Path, timeout: float = 240) -> None:
    """The first warm call starts the agent's build in the background: wait until it is over
    (the binary is there, or its `.try` file holds why not)."""
    binary = agent.binary_path(paths_of(home))
    marker = Path(f"{binary}.try")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if binary.exists() or (marker.exists() and marker.read_text(errors="replace").strip()):
            return
        time.sleep(0.5)


# -- issue 19 item 1: the imported base and the agent ----------------------------------------------

def test_a_bundles_base_never_becomes_the_agents_base_nor_runs_on_the_host(
        tmp_path, docker_client, evil_agent, remove_images_after):
    tool = unique_tool()
    remove_images_after(tool)
    recipes = tmp_path / "recipes"
    recipe(recipes, tool, "harmless")
    home_a = tmp_path / "home-a"
    env_a = {**base_env(home_a), "SANDMAN_RECIPE_PATH": str(recipes), "SANDMAN_WARM": "0"}

    p = run_sandman("export", f"{tool}@1", "-o", str(tmp_path / "honest.tar"), env=env_a)
    assert p.returncode == 0, p.stderr
    # the poisoned base: apt-get does nothing, musl-gcc "compiles" the attacker's agent
    ctx = tmp_path / "poison"
    ctx.mkdir()
    shutil.copy(evil_agent, ctx / "evil")
    (ctx / "Dockerfile").write_text(
        f"FROM debian:bookworm-slim\nLABEL {LABEL_TOOL}={tool}\nCOPY evil /opt/evil\n"
        "RUN printf '#!/bin/sh\\nexit 0\\n' > /usr/bin/apt-get && "
        "printf '#!/bin/sh\\nmkdir -p /out && cp /opt/evil /out/sandman-agent\\n' > /usr/bin/musl-gcc && "
        "chmod 755 /usr/bin/apt-get /usr/bin/musl-gcc\n")
    poison_tag = f"sandman-test-poison/{tool}:1"
    subprocess.run(["docker", "build", "-q", "-t", poison_tag, str(ctx)], check=True,
                   capture_output=True)
    poison_id = image_id(docker_client, poison_tag)
    with tarfile.open(tmp_path / "honest.tar") as t:
        tool_tag = json.loads(t.extractfile("sandman-bundle.json").read())["tools"][0]["image_tag"]
    subprocess.run(["docker", "save", "-o", str(tmp_path / "images.tar"), tool_tag, poison_tag],
                   check=True)

    def poison(m: dict) -> None:
        m["tools"][0]["bases"] = {"debian:bookworm-slim": poison_id}
        m["tools"][0]["signature"] = ""

    bundle = tmp_path / "poisoned.tar"
    rewrite_bundle(tmp_path / "honest.tar", bundle, poison, images=tmp_path / "images.tar")

    with second_engine() as host:  # a daemon where debian:bookworm-slim is free
        home_b = tmp_path / "home-b"
        fake_home = tmp_path / "user-home"
        fake_home.mkdir()
        env_b = {**base_env(home_b), "DOCKER_HOST": host, "HOME": str(fake_home)}
        p = run_sandman("import", str(bundle), env={**env_b, "SANDMAN_WARM": "0"})
        assert p.returncode == 0, p.stderr
        for _ in range(2):  # the first warm call starts the agent's build, the second uses it
            call = subprocess.run([str(paths_of(home_b).bin_dir / f"{tool}-1")],
                                  env={**env_b, "SANDMAN_WARM": "1"}, capture_output=True,
                                  text=True, timeout=300, cwd=tmp_path)
            assert call.returncode == 0 and call.stdout == "harmless\n", call.stderr
            wait_for_agent_build(home_b)
            run_sandman("warm", "stop", env=env_b)  # the next call starts a container afresh
        assert not (fake_home / PAYLOAD).exists(), "the bundle's base ran code on the host"
        b = subprocess.run(["docker", "-H", host, "images", "--format",
                            "{{.Repository}}:{{.Tag}} {{.ID}}"], capture_output=True, text=True)
        assert "debian:bookworm-slim" not in b.stdout, b.stdout  # never its plain name
        assert f"sandman-base/debian-bookworm-slim:{poison_id.replace(':', '-')}" in b.stdout
        assert not agent.binary_path(paths_of(home_b)).exists()  # nothing bootstrapped there
        assert "bootstrap" in Path(f"{agent.binary_path(paths_of(home_b))}.try").read_text()


def test_an_agent_binary_not_matching_its_recorded_hash_never_runs_on_the_host(
        tmp_path, home, sandman, shim_env, evil_agent, remove_images_after):
    tool = unique_tool()
    remove_images_after(tool)
    recipes = tmp_path / "recipes"
    recipe(recipes, tool, "real")
    ensure_agent(home)
    p = sandman("install", f"{tool}@1", env={"SANDMAN_RECIPE_PATH": str(recipes)})
    assert p.returncode == 0, p.stderr
    binary = agent.binary_path(paths_of(home))
    shutil.copy(evil_agent, binary)  # what a poisoned build (or anything else) left there
    fake_home = tmp_path / "user-home"
    fake_home.mkdir()
    env = {**shim_env, "SANDMAN_WARM": "1", "HOME": str(fake_home)}
    try:
        for _ in range(2):
            call = subprocess.run([str(paths_of(home).bin_dir / f"{tool}-1")], env=env,
                                  capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert call.returncode == 0 and call.stdout == "real\n", call.stderr
        assert not (fake_home / PAYLOAD).exists(), "an unrecorded agent binary ran on the host"
        sandman("warm", "stop")
        p = sandman("reshim", f"{tool}@1", env={"SANDMAN_RECIPE_PATH": str(recipes)})
        assert p.returncode == 0, p.stderr
        assert not binary.exists()  # writing shims removed it: the next warm call builds it again
    finally:
        sandman("warm", "stop")
        binary.unlink(missing_ok=True)  # never harvested into the session's seed pool


def test_bootstrap_does_not_call_a_name_it_did_not_make_already_present(tmp_path, sandman):
    stub = tmp_path / "stub-bin"
    stub.mkdir()
    (stub / "mmdebstrap").write_text("#!/bin/sh\necho 'stub mmdebstrap: no mirror here' >&2\nexit 1\n")
    (stub / "mmdebstrap").chmod(0o755)
    before = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim"],
                            capture_output=True, text=True).stdout.strip()
    p = sandman("-v", "bootstrap", "debian:bookworm-slim",
                env={"PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"})
    assert "already present" not in p.stderr, p.stderr
    assert p.returncode == BuildError.exit_code, p.stderr
    assert "did not bootstrap" in p.stderr and "Traceback" not in p.stderr
    after = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim"],
                           capture_output=True, text=True).stdout.strip()
    assert after == before  # a failed bootstrap moves nothing


# -- issue 23 item 2: the cache hit and the pull under `require` -----------------------------------

def test_a_cache_hit_from_another_homes_pull_is_checked_under_require(team, docker_client,
                                                                      registry):
    tool, env = team["tool"], team["env"]
    p = cli(team["home"], "install", f"{tool}@1.0")
    assert p.returncode == 0, p.stderr
    rec = json.loads(record_file(team["home"], tool, "1.0").read_text())
    # the attacker's secsig@1: altered content, the right fingerprint label (inherited), unsigned
    ctx = team["tmp"] / "altered"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {rec['image_tag']}\nRUN echo attacker > /usr/local/share/{tool}.txt\n")
    subprocess.run(["docker", "build", "-q", "-t", f"sandman-test-altered/{tool}:1", str(ctx)],
                   check=True, capture_output=True)
    remote = remote_ref(registry, tool, "1.0", rec["fingerprint"])
    subprocess.run(["docker", "tag", f"sandman-test-altered/{tool}:1", remote], check=True)
    subprocess.run(["docker", "push", remote], check=True, capture_output=True)
    for ref in (remote, f"sandman-test-altered/{tool}:1", rec["image_tag"]):
        subprocess.run(["docker", "rmi", ref], capture_output=True)

    alice = teammate(team, "home-alice")
    p = cli(alice, "install", f"{tool}@1.0", env=env)
    assert p.returncode == SignatureError.exit_code, p.stderr
    assert image_id(docker_client, rec["image_tag"]) is None  # refused: nothing tagged
    bob = teammate(team, "home-bob", config='signatures = "warn"\n')
    p = cli(bob, "install", f"{tool}@1.0", env=env)
    assert p.returncode == 0, p.stderr  # Bob's choice, Bob's home
    assert "signature policy: warn" in p.stderr
    p = cli(alice, "install", f"{tool}@1.0", env=env)  # Bob's pull proves nothing to Alice
    assert p.returncode == SignatureError.exit_code, p.stderr
    assert "Traceback" not in p.stderr and "signature policy: require" in p.stderr.splitlines()[-1]
    assert not record_file(alice, tool, "1.0").exists()
    assert not (paths_of(alice).bin_dir / tool).exists()


def test_a_pull_whose_signature_cannot_be_checked_is_never_tagged(team, docker_client, tmp_path):
    tool, keys = team["tool"], team["keys"]
    _remote, tag, _original = publish(team, docker_client, "2.0", "--sign", str(keys["alice"]))
    no_keygen = tmp_path / "path-without-ssh-keygen"
    no_keygen.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for f in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if f.name != "ssh-keygen" and not (no_keygen / f.name).exists():
                (no_keygen / f.name).symlink_to(f)
    carol = teammate(team, "home-carol")
    env = {**team["env"], "PATH": str(no_keygen)}
    for _ in range(2):  # the second install must not take what the first left
        p = cli(carol, "install", f"{tool}@2.0", env=env)
        assert p.returncode == MissingProgramError.exit_code, p.stderr
        assert image_id(docker_client, tag) is None
    assert not record_file(carol, tool, "2.0").exists()


# -- issue 19 items 5 and 8: bundles and the policy, all or nothing ------------------------------

@pytest.fixture
def team_bundle(team, tmp_path) -> Path:
    """An unsigned bundle of the team's tool@1.0, exported from the publisher's home."""
    out = tmp_path / "teambundle.tar"
    p = cli(team["home"], "export", f"team/{team['tool']}@1.0", "-o", str(out))
    assert p.returncode == 0, p.stderr
    return out


def test_a_bundle_cannot_pick_the_source_whose_policy_it_is_checked_under(team, team_bundle,
                                                                            tmp_path):
    home_b = teammate(team, "home-b")
    p = cli(home_b, "import", str(team_bundle))
    assert p.returncode == SignatureError.exit_code, p.stderr  # as it says: team, require

    def other_source(m: dict) -> None:
        for t in m["tools"]:
            t["source"] = "some-other-name"

    renamed = tmp_path / "renamed.tar"
    rewrite_bundle(team_bundle, renamed, other_source)
    p = cli(home_b, "import", str(renamed))
    assert p.returncode == SignatureError.exit_code, p.stderr
    assert "some-other-name" in p.stderr and "Traceback" not in p.stderr
    assert not record_file(home_b, team["tool"], "1.0").exists()
    assert not (paths_of(home_b).repos_dir / "renamed").exists()  # not registered


def test_a_bundle_without_recipes_fails_in_one_line_and_tags_nothing(team, team_bundle,
                                                                      tmp_path, docker_client):
    with tarfile.open(team_bundle) as t:
        listed = json.loads(t.extractfile("sandman-bundle.json").read())["tools"][0]
    subprocess.run(["docker", "rmi", "-f", listed["image_id"]], capture_output=True)
    broken = tmp_path / "no-recipes.tar"
    rewrite_bundle(team_bundle, broken, lambda m: None, drop="recipes/")
    home_b = teammate(team, "home-b", config='signatures = "off"\n')
    p = cli(home_b, "import", str(broken))
    assert p.returncode == IntegrityError.exit_code, p.stderr
    assert "Traceback" not in p.stderr and "recipes/" in p.stderr.splitlines()[-1], p.stderr
    assert image_id(docker_client, listed["image_tag"]) is None
    assert image_id(docker_client, listed["image_id"]) is None  # not even loaded
