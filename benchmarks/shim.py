"""How much a shim costs: native, bare docker run, bare docker exec, cold, warm and agent shims.

The machine this runs on is shared and noisy, so the variants are measured in one run and
alternating (round robin, the order rotating every round), and only medians and ratios of the
same run are reported. The bare `docker run` is the very command the cold shim would exec
(taken from its dry run, with its own name and without sandman's labels, so the reaper leaves it
alone); the bare `docker exec` goes into the warm container the warm shim uses, with the same
user, working directory and environment. So each ratio is the shim's own overhead.
The warm shim is measured twice: through `docker exec` (`SANDMAN_AGENT=0`) and through the warm
agent (sandman/agent.py), both into the same warm container.

After the round robin come two loops: warm calls through `docker exec`, and the user's loop
over real sqlite3 files through the agent (`for f in dumps/*.db; do sqlite3-3.46 "$f" ...`),
run by bash, checked for 0 failures, 0 bytes on stderr and no process left in the container.

    python -m benchmarks.shim            # 30 rounds, a 200-call warm loop, 10,000 agent calls
    python -m benchmarks.shim --short    # 5 rounds, a 20-call loop, 200 agent calls (CI)
    python -m benchmarks.shim --json     # the figures as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = "sqlite3@3.46"
SHIM = "sqlite3-3.46"
ARGS = ["-version"]
TARGETS = {  # ratio name -> (numerator, denominator, limit)
    "cold/bare-run": ("cold shim", "bare docker run", 1.10),
    "warm/exec": ("warm shim", "bare docker exec", 1.30),
    "warm/bare-run": ("warm shim", "bare docker run", 0.35),
    "agent/exec": ("agent shim", "bare docker exec", 0.15),
}
AGENT_MAIN = "/run/sandman-agent/agent"
DUMPS = 50  # sqlite3 files the agent loop goes over


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        docker = "unknown"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "docker": docker or "unknown",
            "kernel": platform.release(), "python": platform.python_version()}


def sandman(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandman", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv[:3])}... exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return elapsed


def bare_run_argv(shim: Path, env: dict[str, str], cwd: Path) -> list[str]:
    """The docker run the cold shim would exec, renamed and without sandman's labels."""
    proc = subprocess.run([str(shim), *ARGS], env={**env, "SANDMAN_DRY_RUN": "1"}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"dry run of {shim} failed: {proc.stderr.strip()}")
    argv = shlex.split(proc.stdout.strip().splitlines()[-1])
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--label", "--name"):
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def run_variant(name: str, argv: list[str], env: dict[str, str], cwd: Path, n: list[int]) -> float:
    if name == "bare docker run":
        n[0] += 1
        i = argv.index("run") + 1
        argv = [*argv[:i], "--name", f"sandman-bench-{os.getpid()}-{n[0]}",
                "--label", "io.sandman.role=bench", *argv[i:]]
    return timed(argv, env, cwd)


def warm_container(home: Path) -> str:
    out = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", "label=io.sandman.role=warm",
         "--filter", f"label=io.sandman.home={home / 'state' / 'warm'}"],
        capture_output=True, text=True, timeout=30).stdout.split()
    if not out:
        raise RuntimeError("the warm shim started no warm container")
    return out[0]


def make_dumps(folder: Path) -> list[str]:
    """DUMPS small sqlite3 files; returns what `select count(*), sum(v)` gives for each."""
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    expected = []
    for i in range(DUMPS):
        db = sqlite3.connect(folder / f"c{i:02}.db")
        db.execute("create table t (k text, v integer)")
        db.executemany("insert into t values (?, ?)", [(f"k{j}", j) for j in range(i + 1)])
        db.commit()
        db.close()
        expected.append(f"{i + 1}|{i * (i + 1) // 2}")
    return expected


def left_in(container: str) -> list[str]:
    """Processes in a warm container besides its init and the agent."""
    top = subprocess.run(["docker", "top", container, "-eo", "pid,args"], capture_output=True,
                         text=True, timeout=60).stdout.splitlines()[1:]
    return [ln for ln in top if "docker-init" not in ln and f"{AGENT_MAIN} serve" not in ln]


def agent_loop(calls: int, env: dict[str, str], work: Path, container: str) -> dict:
    """The user's loop through the agent: time per call, failures, stderr, what is left."""
    expected = make_dumps(work / "dumps")
    rounds = max(1, calls // DUMPS)
    script = (f"for r in $(seq {rounds}); do for f in dumps/*.db; do "
              f"{SHIM} \"$f\" 'select count(*), sum(v) from t;' || echo FAILED; done; done")
    t = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], env=env, cwd=work, capture_output=True,
                          timeout=7200)
    total = time.perf_counter() - t
    lines = proc.stdout.decode(errors="replace").splitlines()
    want = expected * rounds
    failures = sum(1 for a, b in zip(lines, want, strict=False) if a != b) + abs(len(lines) - len(want))
    time.sleep(0.5)
    return {"calls": rounds * DUMPS, "total_s": total, "per_call_ms": total / (rounds * DUMPS) * 1000,
            "failures": failures, "stderr_bytes": len(proc.stderr), "left": left_in(container)}


def measure(rounds: int, loop: int, agent_calls: int = 10_000, keep_home: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sandman-bench-"))
    home, work = tmp / "home", tmp / "work"
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
    env.update(SANDMAN_HOME=str(home), PATH=f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    result: dict = {"machine": machine(), "rounds": rounds, "spec": SPEC, "command": [SHIM, *ARGS]}
    try:
        proc = sandman("-q", "install", SPEC, env=env, cwd=work)
        if proc.returncode != 0:
            raise RuntimeError(f"sandman install {SPEC} failed: {proc.stderr.strip()}")
        t = time.perf_counter()
        proc = sandman("-q", "install", SPEC, env=env, cwd=work)
        result["install_cache_hit_s"] = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"sandman install {SPEC} (cache hit) failed: {proc.stderr.strip()}")
        shim = home / "bin" / SHIM
        cold_env = {**env, "SANDMAN_WARM": "0"}
        warm_env = {**env, "SANDMAN_WARM": "1", "SANDMAN_AGENT": "0"}
        agent_env = {**env, "SANDMAN_WARM": "1"}
        from sandman import agent
        from sandman.engine import Engine
        from sandman.paths import Paths

        t = time.perf_counter()
        agent.build(Engine.connect(), Paths.from_env(env))
        result["agent_build_s"] = time.perf_counter() - t
        timed([str(shim), *ARGS], agent_env, work)  # starts the warm container (not measured)
        ctr = warm_container(home)
        main = subprocess.run(["docker", "inspect", "-f", "{{.Path}}", ctr], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        if main != AGENT_MAIN:
            raise RuntimeError(f"the warm container does not run the agent ({main})")
        uid, gid = os.geteuid(), os.getegid()
        native = shutil.which("sqlite3")
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "native": ([native, *ARGS] if native else ["/bin/true"], env),
            "bare docker run": (bare_run_argv(shim, cold_env, work), env),
            "bare docker exec": (["docker", "exec", "-i", "-u", f"{uid}:{gid}", "-w", str(work),
                                  "-e", "HOME=/tmp", ctr, "sqlite3", *ARGS], env),
            "cold shim": ([str(shim), *ARGS], cold_env),
            "warm shim": ([str(shim), *ARGS], warm_env),
            "agent shim": ([str(shim), *ARGS], agent_env),
        }
        result["native_command"] = "sqlite3 (host)" if native else "/bin/true (no host sqlite3)"
        samples: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        counter = [0]
        for k in names:  # one unmeasured call each: page cache, daemon caches
            run_variant(k, variants[k][0], variants[k][1], work, counter)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                argv, e = variants[k]
                samples[k].append(run_variant(k, argv, e, work, counter))
        result["median_ms"] = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        result["min_ms"] = {k: min(v) * 1000 for k, v in samples.items()}
        med = result["median_ms"]
        result["ratios"] = {}
        for name, (num, den, limit) in TARGETS.items():
            ratio = med[num] / med[den]
            result["ratios"][name] = {"value": ratio, "limit": limit, "pass": ratio <= limit}
        t = time.perf_counter()
        for _ in range(loop):
            timed([str(shim), *ARGS], warm_env, work)
        total = time.perf_counter() - t
        result["warm_loop"] = {"calls": loop, "total_s": total, "per_call_ms": total / loop * 1000}
        result["agent_loop"] = agent_loop(agent_calls, agent_env, work, ctr)
        al = result["agent_loop"]
        result["pass"] = (all(r["pass"] for r in result["ratios"].values())
                          and not al["failures"] and not al["stderr_bytes"] and not al["left"])
    finally:
        cleanup(home, env, work)
        if not keep_home:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def cleanup(home: Path, env: dict[str, str], work: Path) -> None:
    if home.exists():
        sandman("-q", "warm", "stop", env=env, cwd=work)
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=io.sandman.role=bench"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    try:  # the reaper this home's shims started: by its pid, checked against its command line
        pid = int((home / "state" / "reaper.pid").read_text().strip())
        if b"sandman.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def report(res: dict) -> str:
    m = res["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, docker {m['docker']}, kernel {m['kernel']}",
             f"command: {' '.join(res['command'])}   rounds: {res['rounds']} (round robin)   "
             f"native: {res['native_command']}",
             "", f"{'variant':<18} {'median ms':>10} {'min ms':>8}"]
    for k, v in res["median_ms"].items():
        lines.append(f"{k:<18} {v:>10.1f} {res['min_ms'][k]:>8.1f}")
    lines.append("")
    for name, r in res["ratios"].items():
        lines.append(f"{name:<14} {r['value']:.3f}  (target <= {r['limit']:.2f})  "
                     f"{'PASS' if r['pass'] else 'FAIL'}")
    lines.append("")
    lines.append(f"install {res['spec']} (cache hit): {res['install_cache_hit_s'] * 1000:.0f} ms")
    w = res["warm_loop"]
    lines.append(f"warm loop: {w['calls']} calls in {w['total_s']:.2f} s "
                 f"({w['per_call_ms']:.1f} ms per call)")
    a = res["agent_loop"]
    lines.append(f"agent loop: {a['calls']} sqlite3 calls over {DUMPS} files in {a['total_s']:.2f} s "
                 f"({a['per_call_ms']:.1f} ms per call), {a['failures']} failures, "
                 f"{a['stderr_bytes']} bytes on stderr, {len(a['left'])} processes left")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shim", description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="few rounds and a short loop (for CI)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--rounds", type=int, help="rounds of the round robin (default 30, short 5)")
    ap.add_argument("--loop", type=int, help="warm calls in the loop (default 200, short 20)")
    ap.add_argument("--agent-loop", type=int,
                    help="sqlite3 calls through the agent (default 10000, short 200)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.short else 30)
    loop = args.loop or (20 if args.short else 200)
    agent_calls = args.agent_loop or (200 if args.short else 10_000)
    try:
        res = measure(rounds, loop, agent_calls)
    except RuntimeError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2, sort_keys=True) if args.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
