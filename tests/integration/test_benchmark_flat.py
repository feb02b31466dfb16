"""The flat-cost benchmark (benchmarks/flat.py) runs end to end in its short form.

Times are printed, never compared with the targets (docs/performance.md holds figures measured
on purpose): what is asserted is the shape of the output, every command with a median for every
size, its ratio to the smallest size, its slope per install and its request count.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("list", "list --json", "doctor", "upgrade", "reshim --all")


def test_short_flat_benchmark_prints_every_figure(docker_client) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.flat", "--short"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    assert re.search(r"^machine: .+, \d+ cores, kernel ", out, re.M)
    assert re.search(r"^tool: \S+ \(200 versions in its recipe\)   installs: 1, 3   rounds: 1 ", out, re.M)
    assert re.search(r"^median ms\s+1\s+3\s+ms/install$", out, re.M)
    assert re.search(r"^ratio to 1\s+1\s+3$", out, re.M)
    assert re.search(r"^requests\s+1\s+3\s+per install$", out, re.M)
    num = r"-?\d+\.\d+"
    for c in COMMANDS:
        name = re.escape(c)
        assert re.search(rf"^{name}\s+{num}\s+{num}\s+{num}$", out, re.M), c  # medians, slope
        assert re.search(rf"^{name}\s+1\.000\s+{num}$", out, re.M), c  # ratios to 1 install
        counts = re.search(rf"^{name}\s+(\d+)\s+(\d+)\s+{num}$", out, re.M)  # requests, slope
        assert counts and int(counts[1]) > 0, c
