"""Bundles are untrusted input (issue 9 items 3 and 7): an import changes only what its manifest
lists, after checking the content, and never moves a tag another home's shims run; an export
killed with SIGKILL leaves nothing the next export does not clean up.

The victim is another home's installed tool (a unique name per test, so that a failing test
cannot re-tag an image other sessions on this daemon use); the attack is the one of the issue:
a bundle whose manifest lists only `slow@1` while its images.tar carries the victim's tag.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ImageRemover, paths_of, record_file, run_sandman, said_recipe, sandman_argv

from sandman.errors import IntegrityError
from sandman.names import LABEL_FINGERPRINT, LABEL_TOOL

pytestmark = pytest.mark.docker


def cli(home: Path, recipes: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(recipes), SANDMAN_WARM="0")
    return run_sandman(*args, env=env)


def recipe(root: Path, tool: str, text: str) -> None:
    said_recipe(root, tool, text, "bundle test")


def image_id(ref: str) -> str | None:
    p = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True,
                       text=True)
    return p.stdout.strip() if p.returncode == 0 else None


@dataclass(frozen=True)
class Site:
    tmp: Path
    recipes: Path
    victim: str  # tool installed in the victim's home
    slow: str  # tool the bundle is about
    victim_home: Path
    victim_tag: str
    victim_id: str
    bundle: Path  # an honest bundle of slow@1

    def shim(self) -> subprocess.CompletedProcess:
        return subprocess.run([str(paths_of(self.victim_home).bin_dir / f"{self.victim}-1")],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def site(tmp_path: Path, docker_client, remove_images_after: ImageRemover) -> Site:
    token = uuid.uuid4().hex[:8]
    victim, slow = f"victim{token}", f"slow{token}"
    remove_images_after(victim, slow)
    recipes = tmp_path / "recipes"
    recipe(recipes, victim, "the real victim")
    recipe(recipes, slow, "slow from the bundle")
    victim_home, exporter = tmp_path / "victim-home", tmp_path / "exporter"
    p = cli(victim_home, recipes, "install", f"{victim}@1")
    assert p.returncode == 0, p.stderr
    rec = json.loads(record_file(victim_home, victim, "1").read_text())
    bundle = tmp_path / "slow.tar"
    p = cli(exporter, recipes, "export", f"{slow}@1", "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    return Site(tmp_path, recipes, victim, slow, victim_home, rec["image_tag"], rec["image_id"],
                bundle)


def rewrite_bundle(src: Path, dst: Path, *, manifest=None, images=None) -> None:
    """A copy of bundle src with its manifest and/or its images.tar changed by the functions
    given (each takes and returns the member's parsed/raw content)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if m.name == "sandman-bundle.json" and manifest is not None:
                data = (json.dumps(manifest(json.loads(data)), indent=2) + "\n").encode()
            if m.name == "images.tar" and images is not None:
                data = images(data)
            if data is not None:
                m.size = len(data)
                tout.addfile(m, io.BytesIO(data))
            else:
                tout.addfile(m)


def rewrite_save(data: bytes, change) -> bytes:
    """images.tar with its members passed through change(name, bytes) -> bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        for m in tin.getmembers():
            body = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if body is not None:
                body = change(m.name, body)
                m.size = len(body)
                tout.addfile(m, io.BytesIO(body))
            else:
                tout.addfile(m)
    return out.getvalue()


def assert_victim_untouched(site: Site) -> None:
    assert image_id(site.victim_tag) == site.victim_id
    r = site.shim()
    assert (r.returncode, r.stdout) == (0, "the real victim\n"), r.stderr


def one_line(p: subprocess.CompletedProcess, code: int) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("  ")]
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    errors = [ln for ln in lines if ln.startswith("sandman: ") and "warning" not in ln]
    assert len(errors) == 1, p.stderr
    return errors[0]


def test_an_unlisted_tag_in_images_tar_is_not_loaded(site: Site) -> None:
    """The issue's bundle: the manifest lists slow@1 only, images.tar also names the victim's
    tag, on the bundle's own content."""
    def add_victim_tag(name: str, body: bytes) -> bytes:
        if name == "manifest.json":
            entries = json.loads(body)
            entries[0]["RepoTags"] = [*(entries[0].get("RepoTags") or []), site.victim_tag]
            return json.dumps(entries).encode()
        if name == "repositories":
            repos = json.loads(body)
            repo, _, tag = site.victim_tag.rpartition(":")
            first = next(iter(next(iter(repos.values())).values()))
            repos.setdefault(repo, {})[tag] = first
            return json.dumps(repos).encode()
        return body

    crafted = site.tmp / "crafted.tar"
    rewrite_bundle(site.bundle, crafted, images=lambda d: rewrite_save(d, add_victim_tag))
    with tarfile.open(crafted) as t, tarfile.open(fileobj=t.extractfile("images.tar")) as inner:  # type: ignore[arg-type]
        assert site.victim_tag in json.loads(inner.extractfile("manifest.json").read())[0]["RepoTags"]  # type: ignore[union-attr]

    home = site.tmp / "importer"
    p = cli(home, site.recipes, "import", str(crafted))
    assert p.returncode == 0, p.stderr
    assert site.victim_tag in p.stderr and "not loaded, no tag moved" in p.stderr
    assert_victim_untouched(site)
    listed = cli(site.victim_home, site.recipes, "list", "--json")
    [row] = json.loads(listed.stdout)
    assert row["image_id"] == site.victim_id
    got = subprocess.run([str(paths_of(home).bin_dir / f"{site.slow}-1")], capture_output=True, text=True)
    assert got.stdout == "slow from the bundle\n"


def test_content_that_does_not_hash_to_the_manifest_is_refused(site: Site) -> None:
    """The slow image's config is altered (its labels now claim the victim): its id changes."""
    with tarfile.open(site.bundle) as t:
        manifest = json.loads(t.extractfile("sandman-bundle.json").read())  # type: ignore[union-attr]
    slow_id = manifest["tools"][0]["image_id"].removeprefix("sha256:")
    victim_fp = site.victim_tag.rsplit("-", 1)[1]

    def forge(name: str, body: bytes) -> bytes:
        if slow_id in name and name.endswith(".json"):
            cfg = json.loads(body)
            cfg["config"]["Labels"][LABEL_TOOL] = site.victim
            cfg["config"]["Labels"][LABEL_FINGERPRINT] = victim_fp
            return json.dumps(cfg).encode()
        return body

    crafted = site.tmp / "forged.tar"
    rewrite_bundle(site.bundle, crafted, images=lambda d: rewrite_save(d, forge))
    before = set(subprocess.run(["docker", "images", "-aq", "--no-trunc"], capture_output=True,
                                text=True).stdout.split())
    p = cli(site.tmp / "importer", site.recipes, "import", str(crafted))
    line = one_line(p, IntegrityError.exit_code)
    assert "lacks what the manifest lists" in line
    assert_victim_untouched(site)
    after = set(subprocess.run(["docker", "images", "-aq", "--no-trunc"], capture_output=True,
                               text=True).stdout.split())
    assert not any(slow_id[:12] in i for i in after - before)  # nothing was loaded


def test_a_manifest_that_claims_the_victims_tag_is_refused(site: Site) -> None:
    """The manifest itself names the victim tool and tag, on the bundle's content."""
    victim_fp = site.victim_tag.rsplit("-", 1)[1]

    def claim(m: dict) -> dict:
        t = m["tools"][0]
        t.update(tool=site.victim, image_tag=site.victim_tag, fingerprint=victim_fp + "0" * 52)
        return m

    crafted = site.tmp / "claims.tar"
    rewrite_bundle(site.bundle, crafted, manifest=claim)
    p = cli(site.tmp / "importer", site.recipes, "import", str(crafted))
    line = one_line(p, IntegrityError.exit_code)
    assert site.victim in line
    assert_victim_untouched(site)


def test_a_base_tag_with_other_content_is_not_moved(site: Site) -> None:
    base = f"sandman-test-base-{uuid.uuid4().hex[:8]}:1"
    subprocess.run(["docker", "tag", site.victim_id, base], check=True)
    try:
        def add_base(m: dict) -> dict:
            m["tools"][0]["bases"][base] = "sha256:" + "1" * 64
            return m

        crafted = site.tmp / "base.tar"
        rewrite_bundle(site.bundle, crafted, manifest=add_base)
        p = cli(site.tmp / "importer", site.recipes, "import", str(crafted))
        line = one_line(p, IntegrityError.exit_code)
        assert base in line and "never moves a tag" in line
        assert image_id(base) == site.victim_id
    finally:
        subprocess.run(["docker", "rmi", base], capture_output=True)


def test_sigkill_during_export_leaves_nothing_the_next_export_keeps(site: Site) -> None:
    out_dir = site.tmp / "out"
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(site.tmp / "exporter"), SANDMAN_RECIPE_PATH=str(site.recipes))
    proc = subprocess.Popen(sandman_argv("export", f"{site.slow}@1", "-o", str(out_dir / "b.tar")),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out_dir.glob(".*.tmp")):
        assert proc.poll() is None, "export ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = list(out_dir.glob(".*"))
    assert left and not (out_dir / "b.tar").exists()  # the kill left its temp file
    p = cli(site.tmp / "exporter", site.recipes, "export", f"{site.slow}@1", "-o", str(out_dir / "b.tar"))
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out_dir.iterdir()) == ["b.tar"]
    with tarfile.open(out_dir / "b.tar") as t:
        assert "images.tar" in t.getnames()
