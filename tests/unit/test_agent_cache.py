"""The warm agent's cache key and shim values (sandman/agent.py); the build itself is tested
against the real daemon in tests/integration/test_agent.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sandman import agent
from sandman.paths import Paths


def paths(tmp_path: Path) -> Paths:
    return Paths.from_env({"SANDMAN_HOME": str(tmp_path)})


def test_binary_is_named_by_the_hash_of_the_shipped_source(tmp_path: Path) -> None:
    digest = hashlib.sha256(agent.source_path().read_bytes()).hexdigest()
    assert agent.binary_path(paths(tmp_path)) == tmp_path / "data" / "agent" / f"sandman-agent-{digest[:12]}"
    assert b"SO_PEERCRED" in agent.source_path().read_bytes()  # the uid check is in what ships


def test_shim_values_name_the_binary_and_its_platform(tmp_path: Path) -> None:
    values = agent.shim_values(paths(tmp_path))
    assert values["SM_AGENT"] == str(agent.binary_path(paths(tmp_path)))
    assert values["SM_AGENT_PLATFORM"].startswith("linux/")
    assert (tmp_path / "data" / "agent").is_dir()  # made readable for other users' shims
    assert (tmp_path / "data" / "agent").stat().st_mode & 0o777 == 0o755


def test_platform_names_follow_docker(monkeypatch) -> None:
    for machine, name in (("x86_64", "linux/amd64"), ("aarch64", "linux/arm64"), ("s390x", "linux/s390x")):
        monkeypatch.setattr(agent.platform, "machine", lambda m=machine: m)
        assert agent.platform_name() == name


def test_the_toolchain_image_is_keyed_by_its_step_and_base_id() -> None:
    one, other = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert agent.toolchain_tag(one).startswith("sandman/agent-toolchain:")
    assert len(agent.toolchain_tag(one).rsplit(":", 1)[1]) == 12
    assert agent.toolchain_tag(one) != agent.toolchain_tag(other)  # another base, another image
