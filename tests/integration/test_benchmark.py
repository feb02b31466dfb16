"""The shim benchmark runs end to end (short mode), on Docker and on rootless Podman.

Times are printed, never compared with the targets: the machine is shared and noisy, and
docs/performance.md holds figures measured on purpose. What is asserted is the structure (every
figure of every engine), that each engine's bare commands are that engine's (rootless Podman's
with `--userns keep-id`, as its shim), and ratios that only a broken measurement would give.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandman.names import LABEL_ROLE

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("bare run", "bare exec", "cold shim", "warm shim", "agent shim", "full agent shim",
            "bash start", "sh start", "shim to client")
RATIOS = ("cold/bare-run", "warm/exec", "warm/bare-run", "agent/exec")


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    return subprocess.run([sys.executable, "-m", "benchmarks.shim", "--short", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=2400)


def bench_containers(engine: str) -> list[str]:
    """Containers the benchmark's bare runs made (label io.sandman.role=bench), still there."""
    argv = [engine, "ps", "-aq", "--filter", f"label={LABEL_ROLE}=bench"]
    if engine == "podman":  # rootless: the benchmark user's own store
        from podman_helpers import ensure_podman_user

        user = ensure_podman_user()
        return subprocess.run(user.argv(argv), env=user.env(), cwd="/", capture_output=True,
                              text=True, check=True).stdout.split()
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def test_short_benchmark_prints_every_figure_for_both_engines(docker_client) -> None:
    # What this proves is that every figure is measured and printed, for both engines in one
    # round robin; the figures themselves are the benchmark's business (docs/performance.md).
    # Two rounds and short loops print every line that five and 200 would.
    proc = run_benchmark("--engines", "docker,podman", "--rounds", "2", "--loop", "3",
                         "--agent-loop", "50")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    assert re.search(r"^machine: .+, \d+ cores, kernel ", out, re.M)
    assert re.search(r"^load average: [\d.]+ [\d.]+ [\d.]+ before, ", out, re.M)
    assert re.search(r"^command: sqlite3-3\.46 -version   rounds: 2 \(round robin over docker, "
                     r"podman\)", out, re.M)
    assert re.search(r"^native\s+\d+\.\d\s+\d+\.\d$", out, re.M)
    assert re.search(r"^docker \S+ \(as ", out, re.M)
    assert re.search(r"^podman \S+ rootless \(as sandman-podman, runtime \w+, storage \w+\)$",
                     out, re.M)
    for engine in ("docker", "podman"):
        for variant in VARIANTS:
            name = variant.replace("bare ", f"bare {engine} ")
            assert re.search(rf"^{re.escape(name)}\s+\d+\.\d\s+\d+\.\d$", out, re.M), name
        for line in ("agent shim split: sh start", "shim to its client vs bash", "first warm call", "xargs -P1:", "xargs -P4:"):
            assert re.search(rf"^{engine} {re.escape(line)}", out, re.M), (engine, line)
        for ratio in RATIOS:
            assert re.search(rf"^{engine} {re.escape(ratio)}\s+\d+\.\d{{3}}\s+\(target <= [\d.]+\)"
                             r"\s+(PASS|FAIL)$", out, re.M), (engine, ratio)
        assert re.search(rf"^{engine} install sqlite3@3\.46 \(cache hit\): \d+ ms$", out, re.M)
        assert re.search(rf"^{engine} agent: (built|copied from the Docker build)", out, re.M)
        assert re.search(rf"^{engine} warm loop: 3 calls in [\d.]+ s", out, re.M)
        assert re.search(rf"^{engine} agent loop: 50 sqlite3 calls over 50 files in [\d.]+ s "
                         r"\([\d.]+ ms per call\), 0 failures, 0 bytes on stderr, "
                         r"0 processes left$", out, re.M), engine
    # The variants of the two engines are sections of one round robin, Docker's first.
    assert out.index("docker cold/bare-run") < out.index("bare podman run")


def test_json_podman_alone_runs_rootless_against_its_own_bare_commands(docker_client) -> None:
    proc = run_benchmark("--json", "--engines", "podman", "--rounds", "2", "--loop", "3",
                         "--agent-loop", "50")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert list(res["engines"]) == ["podman"]
    pm = res["engines"]["podman"]
    assert pm["rootless"] is True and pm["as"] == "sandman-podman"
    run = pm["bare_run"]
    assert Path(run[0]).name == "podman" and run[1] == "run"
    assert run[run.index("--userns") + 1] == "keep-id"  # the shim's options, not Docker's
    assert "--name" not in run and "--label" not in run
    assert pm["bare_exec"][:2] == ["podman", "exec"]
    assert set(pm["median_ms"]) == set(VARIANTS) == set(pm["min_ms"])
    assert all(v > 0 for v in pm["median_ms"].values())
    assert set(pm["ratios"]) == set(RATIOS)
    for name, r in pm["ratios"].items():
        assert math.isfinite(r["value"]) and r["value"] > 0, name
        assert r["pass"] == (r["value"] <= r["limit"]), name
    # a sane measurement: a cold shim costs about a bare run, never several; the agent is far
    # below an exec on any load
    assert 0.3 < pm["ratios"]["cold/bare-run"]["value"] < 3
    assert pm["ratios"]["agent/exec"]["value"] < 1
    assert pm["warm_loop"]["calls"] == 3
    assert pm["agent_loop"]["calls"] == 50 and pm["agent_loop"]["failures"] == 0
    assert pm["agent_loop"]["left"] == [] and pm["agent_loop"]["stderr_bytes"] == 0
    assert pm["install_cache_hit_s"] > 0
    assert res["native"]["median_ms"] > 0
    assert bench_containers("podman") == []
    assert bench_containers("docker") == []


def test_unknown_engine_is_refused_in_one_line() -> None:
    proc = run_benchmark("--engines", "docker,lxc")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("benchmark: --engines docker,lxc: name each of docker, "
                                   "podman at most once")
    assert proc.stdout == ""
