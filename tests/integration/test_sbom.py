"""`sandman sbom`: what is inside a real installed image, read from the image, not the recipe.

A tool built from a source (an https URL, its file dropped in the source cache) and a kit on debian:bookworm-slim; after install the
recipe folder is deleted, so whatever sbom prints can only come from the image. The package
list is compared with what dpkg-query says inside a container of the same image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import paths_of, record_file, remove_images, run_sandman, source_cache
from packageurl import PackageURL
from teams_helpers import unique_tool

from sandman.errors import NotFoundError

pytestmark = pytest.mark.docker
SOURCE_URL = "https://sources.example.invalid/payload.tar.gz"

RECIPE = """\
schema = 1
tool = "{tool}"
description = "sbom test tool"
entrypoint = ["cat", "/usr/local/share/{tool}.txt"]

[versions."1.0"]
base = "debian:bookworm-slim"
sources = [{{ url = "{source}", sha256 = "{source_sha}" }}]
kits = [{{ file = "kit.txt", sha256 = "{kit_sha}" }}]
run = ["tar -xzf /tmp/sources/payload.tar.gz -O > /usr/local/share/{tool}.txt && cat /tmp/kits/kit.txt >> /usr/local/share/{tool}.txt"]
"""


def cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    e.update(env, SANDMAN_HOME=str(home))
    return run_sandman(*args, env=e)


def test_sbom_lists_packages_sources_kits_and_base_from_the_image(tmp_path: Path, docker_client):
    tool = unique_tool()
    home = tmp_path / "home"
    home.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"from the source\n"
        info = tarfile.TarInfo("payload.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    source = tmp_path / "payload.tar.gz"
    source.write_bytes(buf.getvalue())
    kits = tmp_path / "kits"
    kits.mkdir()
    (kits / "kit.txt").write_text("from the kit\n")
    source_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    kit_sha = hashlib.sha256((kits / "kit.txt").read_bytes()).hexdigest()
    folder = paths_of(home).user_recipes_dir / tool
    folder.mkdir(parents=True)
    cache = source_cache(home)  # never downloaded: a file dropped in the cache by hand is used
    cache.mkdir(parents=True)
    (cache / source_sha).write_bytes(source.read_bytes())
    (folder / "recipe.toml").write_text(RECIPE.format(tool=tool, source=SOURCE_URL, source_sha=source_sha,
                                                      kit_sha=kit_sha))
    env = {"SANDMAN_KITS_DIR": str(kits)}
    try:
        p = cli(home, "install", f"{tool}@1.0", env=env)
        assert p.returncode == 0, p.stderr
        rec = json.loads(record_file(home, tool, "1.0").read_text())
        (folder / "recipe.toml").unlink()  # from here on, only the image knows
        folder.rmdir()

        inside = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "dpkg-query", rec["image_id"], "-W",
             "-f", "${Package} ${Version} ${Architecture}\n"],
            capture_output=True, text=True, check=True).stdout.splitlines()
        base_id = docker_client.images.get("debian:bookworm-slim").id

        p = cli(home, "sbom", f"{tool}@1.0", env=env)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == f"{tool}@1.0: image {rec['image_id']}"
        assert lines[1] == f"fingerprint {rec['fingerprint']}"
        assert f"base debian:bookworm-slim {base_id}" in lines
        assert f"  payload.tar.gz  sha256:{source_sha}  {SOURCE_URL}" in lines
        assert f"  kit.txt  sha256:{kit_sha}" in lines
        start = lines.index(f"packages ({len(inside)}):")
        listed = sorted(" ".join(x.split()) for x in lines[start + 1:])
        assert listed == sorted(inside) and len(inside) > 50  # every package, with its version

        p = cli(home, "sbom", f"{tool}@1.0", "--json", env=env)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
        top = doc["metadata"]["component"]
        assert (top["name"], top["version"], top["hashes"][0]["content"]) == (
            tool, "1.0", rec["image_id"].removeprefix("sha256:"))
        by_ref = {c["bom-ref"]: c for c in doc["components"]}
        assert by_ref["kit:kit.txt"]["hashes"] == [{"alg": "SHA-256", "content": kit_sha}]
        assert by_ref["source:payload.tar.gz"]["hashes"] == [{"alg": "SHA-256", "content": source_sha}]
        assert by_ref["base:debian:bookworm-slim"]["version"] == base_id
        libc = next(line.split() for line in inside if line.startswith("libc6 "))
        purl = PackageURL.from_string(by_ref[f"deb:libc6:{libc[2]}"]["purl"])
        assert (purl.type, purl.namespace, purl.name, purl.version, purl.qualifiers["arch"]) == (
            "deb", "debian", "libc6", libc[1], libc[2])
        assert sum(c["bom-ref"].startswith("deb:") for c in doc["components"]) == len(inside)

        p = cli(home, "sbom", f"{tool}@9.9", env=env)
        assert p.returncode == NotFoundError.exit_code and "Traceback" not in p.stderr
    finally:
        remove_images(tool)
