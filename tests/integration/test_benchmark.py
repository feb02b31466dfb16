"""The shim benchmark runs end to end (short mode). Times are printed, never asserted: the
machine is shared and noisy; docs/performance.md holds figures measured on purpose."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    return subprocess.run([sys.executable, "-m", "benchmarks.shim", "--short", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)


def test_short_benchmark_prints_every_figure(docker_client) -> None:
    proc = run_benchmark()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    for variant in ("native", "bare docker run", "bare docker exec", "cold shim", "warm shim",
                    "agent shim"):
        assert re.search(rf"^{re.escape(variant)}.*\s\d+\.\d\s+\d+\.\d$", out, re.M), variant
    for ratio in ("cold/bare-run", "warm/exec", "warm/bare-run", "agent/exec"):
        assert re.search(rf"^{re.escape(ratio)}\s+\d\.\d{{3}}\s+\(target <= [\d.]+\)\s+(PASS|FAIL)$",
                         out, re.M), ratio
    assert re.search(r"^install sqlite3@3\.46 \(cache hit\): \d+ ms$", out, re.M)
    assert re.search(r"^warm loop: 20 calls in [\d.]+ s", out, re.M)
    assert re.search(r"^agent loop: 200 sqlite3 calls over 50 files in [\d.]+ s \([\d.]+ ms per call\), "
                     r"0 failures, 0 bytes on stderr, 0 processes left$", out, re.M)
    assert re.search(r"^machine: .+, \d+ cores, docker ", out, re.M)


def test_json_output_has_the_figures_and_leaves_nothing_behind(docker_client) -> None:
    proc = run_benchmark("--json", "--rounds", "2", "--loop", "3")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert set(res["median_ms"]) == {"native", "bare docker run", "bare docker exec",
                                     "cold shim", "warm shim", "agent shim"}
    assert all(v > 0 for v in res["median_ms"].values())
    assert set(res["ratios"]) == {"cold/bare-run", "warm/exec", "warm/bare-run", "agent/exec"}
    assert res["warm_loop"]["calls"] == 3
    assert res["install_cache_hit_s"] > 0
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=io.sandman.role=bench"],
                          capture_output=True, text=True).stdout.split()
    assert left == []
