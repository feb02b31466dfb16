"""The everyday commands read the engine without the Docker SDK (engine_reads.py, issue 24), and
what they read is what the SDK reads, on the real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import base_env, paths_of, sandman_argv

from sandman.engine import Engine
from sandman.engine_choice import Docker
from sandman.engine_reads import SocketReads
from sandman.errors import CHECK_FAILED
from sandman.names import DOCKER_SOCKET, LABEL_TOOL

pytestmark = pytest.mark.docker

SDK = ("docker", "requests", "urllib3")  # what a look at the engine no longer imports


def test_socket_reads_answer_as_the_sdk_does(docker_client, sandman, home: Path) -> None:
    assert sandman("install", "sqlite3@3.46").returncode == 0
    rec = json.loads(sandman("list", "--json").stdout)[0]
    sdk = Engine(docker_client, Docker("docker", f"unix://{DOCKER_SOCKET}", False, "test"))
    reads = SocketReads(DOCKER_SOCKET)
    root = next(t for t in sdk.image(rec["image_id"]).tags if t.startswith("sandman-root/"))
    for ref in (rec["image"], rec["image_id"], root, "debian:trixie-slim", "no-such/image:here"):
        assert reads.image(ref) == sdk.image(ref), ref
    by_sdk = {i.id: i for i in sdk.image_list(LABEL_TOOL)}
    by_reads = {i.id: i for i in reads.image_list(LABEL_TOOL)}
    both = by_sdk.keys() & by_reads.keys()  # other tests build and remove meanwhile
    assert rec["image_id"] in both
    assert all(by_sdk[i] == by_reads[i] for i in both)
    assert reads.version() == docker_client.version()


@pytest.mark.parametrize("args", [["list", "--json"], ["doctor"], ["upgrade"], ["reshim", "--all"]])
def test_a_look_at_the_installs_imports_no_sdk(args: list[str], sandman, home: Path) -> None:
    assert sandman("install", "sqlite3@3.46").returncode == 0
    p = subprocess.run([sys.executable, "-X", "importtime", *sandman_argv(*args)[1:]],
                       env=base_env(home), capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, CHECK_FAILED), p.stderr  # doctor: a check of this machine may fail
    imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sandman.engine_reads" in imported and not imported & set(SDK), imported & set(SDK)
    if args[0] == "list":
        [item] = json.loads(p.stdout)
        assert item["state"] == "current"
    assert (paths_of(home).bin_dir / "sqlite3-3.46").is_file()
