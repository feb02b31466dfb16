"""A real legacy example (issue 13 §5): the built-in sqlite3-legacy recipe builds SQLite 3.7.17
from sqlite.org's 2013 source tarball with gcc from Debian's packages.

sqlite.org is not reachable from CI, so the end-to-end build serves a stand-in tarball from a
local HTTP server (the `http_server` fixture) as the sources mirror: a tiny C program laid out like
sqlite's autoconf tarball (`configure`, a Makefile, `make install`). The recipe is the built-in
one with only its tool name and sha256 changed, so its real build steps (apt gcc, configure,
make, purge) and its version check run here; the recipe's URL stays sqlite.org's and is never
contacted, because the mirror has the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from helpers import FileServer, ImageRemover, base_env, paths_of

from sandman.paths import builtin_recipes_dir

RECIPE = builtin_recipes_dir() / "sqlite3-legacy" / "recipe.toml"
TOOL = "h6legacy"
NAME = "sqlite-autoconf-3071700.tar.gz"
REAL_SHA = "8ff46d0baa9e64c0815544e829e985f1161c096aa6344c8f430791dbeadc2baf"

SHELL_C = r"""#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-version") == 0) {
        puts("3.7.17 2013-05-20 00:56:22 stand-in-built-by-sandman-tests");
        return 0;
    }
    printf("stand-in sqlite3:");
    for (int i = 1; i < argc; i++) printf(" [%s]", argv[i]);
    putchar('\n');
    return 3;
}
"""
CONFIGURE = """#!/bin/sh
# a stand-in for autoconf's configure: only --prefix matters
prefix=/usr/local
for a in "$@"; do case "$a" in --prefix=*) prefix="${a#--prefix=}" ;; esac; done
printf 'PREFIX = %s\\n' "$prefix" > Makefile
cat Makefile.in >> Makefile
"""
MAKEFILE_IN = "all: sqlite3\nsqlite3: shell.c\n\tgcc -O2 -o sqlite3 shell.c\ninstall: sqlite3\n\t" \
              "install -m 0755 sqlite3 $(PREFIX)/bin/sqlite3\n"


def stand_in_tarball() -> bytes:
    files = {"configure": (CONFIGURE, 0o755), "Makefile.in": (MAKEFILE_IN, 0o644), "shell.c": (SHELL_C, 0o644)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"sqlite-autoconf-3071700/{name}")
            info.size, info.mode, info.mtime = len(data), mode, 1_368_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARBALL = stand_in_tarball()
SHA = hashlib.sha256(TARBALL).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images(remove_images_after_module: ImageRemover) -> None:
    remove_images_after_module(TOOL)


def test_the_builtin_recipe_names_the_real_tarball_and_validates(sandman) -> None:
    version = tomllib.loads(RECIPE.read_text())["versions"]["3.7"]
    assert version["sources"] == [{"url": "https://www.sqlite.org/2013/" + NAME, "sha256": REAL_SHA}]
    p = sandman("recipes", "check", str(RECIPE))
    assert p.returncode == 0, p.stderr
    p = sandman("recipes", "show", "sqlite3-legacy")
    assert p.returncode == 0, p.stderr
    assert "sqlite3-legacy@3.7: debian:bookworm-slim" in p.stdout
    assert "full version: 3.7.17" in p.stdout
    assert f"sources:    {NAME} <- https://www.sqlite.org/2013/{NAME}" in p.stdout
    assert "version check: `sqlite3 -version` must print /^(3\\.7\\.\\d+) /" in p.stdout


@pytest.mark.docker
def test_built_from_source_through_a_mirror_end_to_end(sandman, home: Path, tmp_path: Path,
                                                       http_server: FileServer, docker_client) -> None:
    server = http_server
    (server.root / "mirror").mkdir()
    (server.root / "mirror" / NAME).write_bytes(TARBALL)
    text = RECIPE.read_text()
    assert text.count(REAL_SHA) == 1 and text.count('tool = "sqlite3-legacy"') == 1
    folder = tmp_path / "recipes" / TOOL
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(text.replace(REAL_SHA, SHA).replace('"sqlite3-legacy"', f'"{TOOL}"'))
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes"), "SANDMAN_SOURCES_MIRROR": f"{server.url}/mirror"}
    try:
        p = sandman("-v", "install", f"{TOOL}@3.7", env=env)
        assert p.returncode == 0, p.stderr
    finally:
        server.stop()
    assert f"downloading {NAME} from {server.url}/mirror/{NAME}" in p.stderr
    assert server.hits == [f"/mirror/{NAME}"]  # sqlite.org never asked
    [item] = json.loads(sandman("list", "--json", env=env).stdout)
    assert item["full_version"] == "3.7.17"

    shim = paths_of(home).bin_dir / "sqlite3-3.7"
    run = subprocess.run([str(shim), "-version"], env=base_env(home), capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, "3.7.17 2013-05-20 00:56:22 stand-in-built-by-sandman-tests\n"), run.stderr
    run = subprocess.run([str(shim), "db.sqlite", "select 1;"], env=base_env(home), capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (3, "stand-in sqlite3: [db.sqlite] [select 1;]\n"), run.stderr

    # the compiler left with the build step: the image has the shell, not gcc
    probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", item["image"], "-c",
                            "command -v gcc make; ls /usr/local/bin /tmp"], capture_output=True, text=True, timeout=120)
    assert (probe.returncode, probe.stdout) == (0, "/tmp:\n\n/usr/local/bin:\nsqlite3\n"), probe

    # the dry run shows the docker command the shim runs
    p = sandman("run", "--dry-run", f"{TOOL}@3.7", "sqlite3", "-version", env=env)
    assert p.returncode == 0, p.stderr
    assert re.search(r"docker .*--network none .*" + re.escape(item["image"]), p.stdout + p.stderr), p
