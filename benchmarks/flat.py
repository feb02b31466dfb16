"""How the everyday commands grow with the number of installs (issue 24: flat costs).

One tool whose recipe has 200 versions (each a one-line `run` on one base: the layer is
built once and every version is its own image, with its own fingerprint, labels, tags,
record and shim, made by a real `sandman install`), and one home per size: 5 installs, 20,
60 and 200. Then `list`, `list --json`, `doctor`, `upgrade` (nothing to do) and
`reshim --all` are timed at every size, in rounds: each round runs every command in every
home, the order rotating every round, so the sizes are measured in the same minutes. They run
as the CLI the user runs (`python -m sandman`). One extra, untimed run of each command counts
its HTTP requests to the engine.

The machine is shared and noisy, so only figures of the same run are compared: each
command's median at every size against its own median at the smallest size (the baseline),
and its slope, the least-squares milliseconds per install over every size measured.

    python -m benchmarks.flat                 # 5, 20, 60, 200 installs, 5 rounds
    python -m benchmarks.flat --short         # 1 and 3 installs, 1 round (CI)
    python -m benchmarks.flat --json          # the figures as JSON on stdout
    python -m benchmarks.flat --keep-images   # leave the 200 images for the next run

The images are built once per machine (a few minutes for 200; they are kept with
--keep-images, and a later run then installs them as cache hits). The homes share them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.shim import load, machine  # the same machine lines as the shim benchmark

TOOL = "sm-bench-flat"
BASE = "debian:bookworm-slim"
VERSIONS = 200
SIZES = (5, 20, 60, 200)
SHORT_SIZES = (1, 3)
COMMANDS = {  # name -> sandman arguments
    "list": ["list"],
    "list --json": ["list", "--json"],
    "doctor": ["doctor"],
    "upgrade": ["upgrade"],
    "reshim --all": ["reshim", "--all"],
}
TARGET_SECONDS = 0.5  # at 200 installs
TARGET_RATIO = 1.5  # at 60 installs against 5
# Runs the CLI as `python -m sandman` does, counting the HTTP requests it sends to the engine:
# the SDK's (requests, then urllib3) and sandman's own reads (engine_reads.py) both start each
# request with http.client's putrequest; the count goes to stderr at exit.
COUNTING = ("import atexit, sys, http.client\n"
            "n = [0]\n"
            "put = http.client.HTTPConnection.putrequest\n"
            "def counted(self, *a, **k):\n"
            "    n[0] += 1\n"
            "    return put(self, *a, **k)\n"
            "http.client.HTTPConnection.putrequest = counted\n"
            "atexit.register(lambda: sys.stderr.write(f'\\nsandman-requests: {n[0]}\\n'))\n"
            "sys.argv = ['sandman', *sys.argv[1:]]\n"
            "from sandman.cli import main\n"
            "main()\n")


def write_recipe(root: Path, versions: int) -> None:
    """One tool, `versions` versions: the same one-line `run` on one base (one cached layer),
    so each version's image is its own (fingerprint, labels) at the cost of a cache hit."""
    lines = ["schema = 1", f'tool = "{TOOL}"', 'description = "flat-cost benchmark tool"',
             f'entrypoint = ["{TOOL}"]', f'commands = ["{TOOL}"]', ""]
    for v in range(1, versions + 1):
        lines += [f'[versions."{v}"]', f'base = "{BASE}"',
                  f'run = ["ln -s /bin/true /usr/local/bin/{TOOL}"]', ""]
    (root / TOOL).mkdir(parents=True, exist_ok=True)
    (root / TOOL / "recipe.toml").write_text("\n".join(lines))


def sandman(args: list[str], env: dict[str, str], *, check: bool = True,
            counting: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", COUNTING, *args] if counting else \
        [sys.executable, "-m", "sandman", *args]
    proc = subprocess.run(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"sandman {' '.join(args[:3])}... exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-600:]}")
    return proc


def timed(args: list[str], env: dict[str, str], ok: tuple[int, ...]) -> tuple[float, int]:
    t = time.perf_counter()
    proc = sandman(args, env, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode not in ok:
        raise RuntimeError(f"sandman {' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-600:]}")
    return elapsed, proc.returncode


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with a single point)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def remove_images() -> None:
    from sandman.names import LABEL_TOOL

    ids = subprocess.run(["docker", "images", "-q", "--filter", f"label={LABEL_TOOL}={TOOL}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *dict.fromkeys(ids)], capture_output=True)


def measure(sizes: list[int], rounds: int, keep_images: bool) -> dict:
    from sandman.errors import CHECK_FAILED

    res: dict = {"machine": machine(), "sizes": sizes, "rounds": rounds, "tool": TOOL,
                 "recipe_versions": max(VERSIONS, max(sizes)), "load": {"before": load()},
                 "commands": list(COMMANDS), "median_ms": {c: {} for c in COMMANDS},
                 "min_ms": {c: {} for c in COMMANDS}, "requests": {c: {} for c in COMMANDS},
                 "exit": {c: {} for c in COMMANDS}, "install_s": {}}
    with tempfile.TemporaryDirectory(prefix="sm-bench-flat-") as tmp:
        root = Path(tmp)
        write_recipe(root / "recipes", res["recipe_versions"])
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
        envs: dict[int, dict[str, str]] = {}
        try:
            for size in sizes:  # one home per size, all made before anything is timed
                home = root / f"home-{size}"
                env = dict(base_env, SANDMAN_HOME=str(home), SANDMAN_RECIPE_PATH=str(root / "recipes"))
                env["PATH"] = f"{home / 'bin'}{os.pathsep}{base_env.get('PATH', '')}"
                t = time.perf_counter()
                specs = [f"{TOOL}@{v}" for v in range(1, size + 1)]
                for i in range(0, len(specs), 50):  # a few commands, not one per install
                    sandman(["install", "--yes", *specs[i:i + 50]], env)
                res["install_s"][size] = round(time.perf_counter() - t, 1)
                envs[size] = env
            res["load"]["homes made"] = load()
            # Every round times every command at every size, in an order that rotates, so the
            # sizes are compared in the same minutes: a load that drifts during the run moves
            # them all, not the last size alone.
            pairs = [(s, c) for s in sizes for c in COMMANDS]
            samples: dict[tuple[int, str], list[float]] = {pc: [] for pc in pairs}
            for r in range(rounds):
                k = (r * (len(COMMANDS) + 1)) % len(pairs)
                for size, c in pairs[k:] + pairs[:k]:
                    # doctor may fail a check of this machine (mmdebstrap not installed)
                    ok = (0, CHECK_FAILED) if c == "doctor" else (0,)
                    elapsed, code = timed(COMMANDS[c], envs[size], ok)
                    samples[size, c].append(elapsed * 1000)
                    res["exit"][c][size] = code
            res["load"]["timed"] = load()
            for size, c in pairs:
                res["median_ms"][c][size] = round(statistics.median(samples[size, c]), 1)
                res["min_ms"][c][size] = round(min(samples[size, c]), 1)
                proc = sandman(COMMANDS[c], envs[size], check=False, counting=True)
                counts = [ln for ln in proc.stderr.splitlines()
                          if ln.startswith("sandman-requests: ")]
                res["requests"][c][size] = int(counts[-1].split()[-1]) if counts else -1
        finally:
            if not keep_images:
                remove_images()
    first = sizes[0]
    res["ratio"] = {c: {s: round(res["median_ms"][c][s] / res["median_ms"][c][first], 3)
                        for s in sizes} for c in COMMANDS}
    res["slope_ms_per_install"] = {
        c: round(slope(sizes, [res["median_ms"][c][s] for s in sizes]), 2) for c in COMMANDS}
    res["requests_per_install"] = {
        c: round(slope(sizes, [float(res["requests"][c][s]) for s in sizes]), 2) for c in COMMANDS}
    return res


def report(res: dict) -> str:
    sizes, first = res["sizes"], res["sizes"][0]
    m = res["machine"]
    out = [f"machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, python {m['python']}",
           "load average: " + ", ".join(f"{v} {k}" for k, v in res["load"].items()),
           f"tool: {res['tool']} ({res['recipe_versions']} versions in its recipe)   installs: "
           f"{', '.join(map(str, sizes))}   rounds: {res['rounds']} (round robin)",
           "installs made in: " + ", ".join(f"{s}: {res['install_s'][s]} s" for s in sizes), ""]
    width = max(len(c) for c in res["commands"]) + 2
    head = "".join(f"{s:>10}" for s in sizes)
    out.append(f"{'median ms':<{width}}{head}  {'ms/install':>10}")
    for c in res["commands"]:
        row = "".join(f"{res['median_ms'][c][s]:>10.1f}" for s in sizes)
        out.append(f"{c:<{width}}{row}  {res['slope_ms_per_install'][c]:>10.2f}")
    out += ["", f"{'ratio to ' + str(first):<{width}}{head}"]
    for c in res["commands"]:
        out.append(f"{c:<{width}}" + "".join(f"{res['ratio'][c][s]:>10.3f}" for s in sizes))
    out += ["", f"{'requests':<{width}}{head}  {'per install':>10}"]
    for c in res["commands"]:
        row = "".join(f"{res['requests'][c][s]:>10d}" for s in sizes)
        out.append(f"{c:<{width}}{row}  {res['requests_per_install'][c]:>10.2f}")
    targets = []
    if 200 in sizes:
        for c in res["commands"]:
            v = res["median_ms"][c][200]
            targets.append(f"{c} at 200: {v:.1f} ms <= {TARGET_SECONDS * 1000:.0f} "
                           f"{'PASS' if v <= TARGET_SECONDS * 1000 else 'FAIL'}")
    if 5 in sizes and 60 in sizes:
        for c in res["commands"]:
            r = res["median_ms"][c][60] / res["median_ms"][c][5]
            targets.append(f"{c} 60/5: {r:.3f} <= {TARGET_RATIO} "
                           f"{'PASS' if r <= TARGET_RATIO else 'FAIL'}")
    if targets:
        out += ["", "targets:"] + [f"  {t}" for t in targets]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.flat", description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="1 and 3 installs, 1 round (for CI)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--rounds", type=int, help="rounds per size (default 5, short 1)")
    ap.add_argument("--sizes", help="comma-separated install counts, ascending (default 5,20,60,200)")
    ap.add_argument("--keep-images", action="store_true", help="leave the tool's images for the next run")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.short else 5)
    try:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
            list(SHORT_SIZES if args.short else SIZES)
    except ValueError:
        sizes = []
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1 or rounds < 1:
        print(f"benchmark: --sizes {args.sizes}: ascending positive counts, each once", file=sys.stderr)
        return 2
    try:
        res = measure(sizes, rounds, args.keep_images)
    except RuntimeError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2, sort_keys=True) if args.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
