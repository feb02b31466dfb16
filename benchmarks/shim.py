"""How much a shim costs, per engine: native, bare run, bare exec, cold, warm and agent shims.

The machine this runs on is shared and noisy, so every variant of every engine is measured in
one run and alternating (round robin, the order rotating every round), and only medians and
ratios of the same run are reported. Each engine's ratios are against that engine's own bare
commands: the bare `run` is the very command the cold shim would exec (taken from its dry run,
with its own name and without sandman's labels, so the reaper leaves it alone); the bare `exec`
goes into the warm container the warm shim uses, with the same user, working directory and
environment. So each ratio is the shim's own overhead on that engine.
The warm shim is measured twice: through `exec` (`SANDMAN_AGENT=0`) and through the warm agent
(sandman/agent.py), both into the same warm container.

Engines: Docker as the current user, and rootless Podman. Run as root, the Podman commands run
as the ordinary user `sandman-podman` (made if missing, with subordinate uid ranges; no docker
group) through `setpriv`, with its own SANDMAN_HOME, image store and API service: its bare
commands and its shims alike, so `setpriv`'s exec is on both sides of its ratios.

After the round robin come, per engine, two loops: warm calls through `exec`, and the user's
loop over real sqlite3 files through the agent (`for f in dumps/*.db; do sqlite3-3.46 "$f" ...`),
run by bash, checked for 0 failures, 0 bytes on stderr and no process left in the container.

    python -m benchmarks.shim            # 30 rounds, a 200-call warm loop, 10,000 agent calls
    python -m benchmarks.shim --short    # 5 rounds, a 20-call loop, 200 agent calls (CI)
    python -m benchmarks.shim --json     # the figures as JSON on stdout
    python -m benchmarks.shim --engines podman   # one engine (default: every one that works)
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
from dataclasses import dataclass
from pathlib import Path

from benchmarks.rootless import Runner, ensure_bases, podman_runner

SPEC = "sqlite3@3.46"
SHIM = "sqlite3-3.46"
SPEC_BASE = "debian:trixie-slim"  # recipes/sqlite3: the base of 3.46
ARGS = ["-version"]
ENGINES = ("docker", "podman")
VARIANTS = ("bare run", "bare exec", "cold shim", "warm shim", "agent shim", "full agent shim",
            "bash start", "sh start", "shim to client")
# The shim's own time, split (issue 22 item 4): `sh -c :` (the shim's interpreter); the shim
# up to the exec of the client (a copy of the shim whose agent is /bin/true: sh, the values and
# the front); the agent shim as it is; and the same call through the whole runtime
# (SANDMAN_ROUTE_SKIP=1: sh, then bash and the runtime).
# front = shim to client - sh start; client = agent shim - shim to client. `bash -c :` is the
# yardstick of the goal: the shim up to its client costs at most 1 ms more than bash starting.
SHIM_OVER_BASH_MS = 1.0
TARGETS = {  # ratio name -> (numerator, denominator, limit), within one engine
    "cold/bare-run": ("cold shim", "bare run", 1.10),
    "warm/exec": ("warm shim", "bare exec", 1.30),
    "warm/bare-run": ("warm shim", "bare run", 0.35),
    "agent/exec": ("agent shim", "bare exec", 0.08),
}
AGENT_MS = 8.0  # the agent shim's median on a quiet machine (issue 22 item 1)
PARALLEL = 4  # xargs -P: the loop over the files, sequential and with this many at once
AGENT_MAIN = "/run/sandman-agent/agent"
DUMPS = 50  # sqlite3 files the agent loop goes over
# The benchmark's homes are new: the agent is built only from a base a home bootstrapped, so
# the bases already on this machine (its operator's, made by `sandman bootstrap`) are recorded
# for the benchmark's home first, as that bootstrap would have.
BUILD_AGENT = ("import os\nfrom sandman import agent, provenance\nfrom sandman.engine import Engine\n"
               "from sandman.engine_choice import choose\nfrom sandman.paths import Paths\n"
               "engine, paths = Engine.connect(choose()), Paths.from_env(dict(os.environ))\n"
               "ref = agent.PREFERRED_BASES[0]\n"
               "provenance.record_made(paths, ref, engine.image(ref).id)\n"
               "print(agent.build(engine, paths))")


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version()}


def available() -> list[str]:
    """The engines that work here: a Docker daemon this user reaches, a Podman to run rootless."""
    out = []
    try:
        if subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True, timeout=30).returncode == 0:
            out.append("docker")
    except (OSError, subprocess.TimeoutExpired):
        pass
    if shutil.which("podman") and (os.geteuid() != 0 or shutil.which("setpriv")):
        out.append("podman")
    return out


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        shown = [a for a in argv if not a.startswith("--re") and a not in ("setpriv", "--clear-groups")]
        raise RuntimeError(f"{shlex.join(shown[:3])}... exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return elapsed


@dataclass(frozen=True)
class Setup:
    """One engine, ready: its runner, folders, environments and the commands to time."""

    runner: Runner
    home: Path
    work: Path
    env: dict[str, str]
    container: str
    variants: dict[str, tuple[list[str], dict[str, str]]]
    info: dict


def sandman(r: Runner, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return r.run([r.python, "-m", "sandman", *args], env=env, cwd=cwd)


def bare_run_argv(r: Runner, shim: Path, env: dict[str, str], cwd: Path) -> list[str]:
    """The run the cold shim would exec, renamed and without sandman's labels."""
    proc = r.run([str(shim), *ARGS], env={**env, "SANDMAN_DRY_RUN": "1"}, cwd=cwd, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"dry run of {shim} failed: {proc.stderr.strip()}")
    argv = shlex.split(proc.stdout.strip().splitlines()[-1])
    if Path(argv[0]).name != r.engine:
        raise RuntimeError(f"the {r.engine} shim would run {argv[0]}, not {r.engine}")
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--label", "--name"):
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def run_variant(variant: str, argv: list[str], env: dict[str, str], cwd: Path, n: list[int]) -> float:
    if variant == "bare run":
        n[0] += 1
        i = argv.index("run") + 1
        argv = [*argv[:i], "--name", f"sandman-bench-{os.getpid()}-{n[0]}",
                "--label", "io.sandman.role=bench", *argv[i:]]
    return timed(argv, env, cwd)


def warm_container(r: Runner, home: Path) -> str:
    """This home's running warm container (its io.sandman.home label is under state/warm)."""
    ids = r.run([r.engine, "ps", "-q", "--no-trunc", "--filter", "label=io.sandman.role=warm"],
                timeout=60).stdout.split()
    for cid in ids:
        label = r.run([r.engine, "inspect", "-f", '{{index .Config.Labels "io.sandman.home"}}',
                       cid], timeout=60).stdout.strip()
        if label == str(home / "state" / "warm") or label.startswith(f"{home / 'state' / 'warm'}/"):
            return cid
    raise RuntimeError(f"the warm shim started no warm container ({r.engine})")


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


def left_in(r: Runner, container: str) -> list[str]:
    """Processes in a warm container besides its init and the agent."""
    top = r.run([r.engine, "top", container, *(["-eo", "pid,args"] if r.engine == "docker"
                                                  else ["pid", "args"])], timeout=60)
    return [ln for ln in top.stdout.splitlines()[1:]
            if ln.strip() and "-init" not in ln and f"{AGENT_MAIN} serve" not in ln]


def agent_loop(s: Setup, calls: int, env: dict[str, str]) -> dict:
    """The user's loop through the agent: time per call, failures, stderr, what is left."""
    expected = make_dumps(s.work / "dumps")
    s.runner.give(s.work / "dumps")
    rounds = max(1, calls // DUMPS)
    script = (f"for r in $(seq {rounds}); do for f in dumps/*.db; do "
              f"{SHIM} \"$f\" 'select count(*), sum(v) from t;' || echo FAILED; done; done")
    t = time.perf_counter()
    proc = subprocess.run(s.runner.argv(["bash", "-c", script]), env=env, cwd=s.work,
                          capture_output=True, timeout=7200)
    total = time.perf_counter() - t
    lines = proc.stdout.decode(errors="replace").splitlines()
    want = expected * rounds
    failures = sum(1 for a, b in zip(lines, want, strict=False) if a != b) + abs(len(lines) - len(want))
    time.sleep(0.5)
    return {"calls": rounds * DUMPS, "total_s": total, "per_call_ms": total / (rounds * DUMPS) * 1000,
            "failures": failures, "stderr_bytes": len(proc.stderr),
            "left": left_in(s.runner, s.container)}


def warm_count(r: Runner, home: Path) -> int:
    """This home's running warm containers (their io.sandman.home label is the warm folder,
    or a folder in it: Podman's and another daemon's are kept apart)."""
    warm = str(home / "state" / "warm")
    if r.engine == "docker":
        labels = r.run([r.engine, "ps", "--filter", "label=io.sandman.role=warm", "--format",
                        '{{.Label "io.sandman.home"}}'], timeout=60).stdout.split()
        return sum(1 for x in labels if x == warm or x.startswith(warm + "/"))
    ids = r.run([r.engine, "ps", "-q", "--no-trunc", "--filter", "label=io.sandman.role=warm"],
                timeout=60).stdout.split()
    n = 0
    for cid in ids:
        label = r.run([r.engine, "inspect", "-f", '{{index .Config.Labels "io.sandman.home"}}', cid],
                      timeout=60).stdout.strip()
        n += label == warm or label.startswith(warm + "/")
    return n


def first_calls(s: Setup, rounds: int) -> dict:
    """The first call of a tool@version in warm mode (its container and agent start) against
    a cold call, alternating; then many first calls at once, which must start one container."""
    argv, agent_env = s.variants["agent shim"]
    cold_argv, cold_env = s.variants["cold shim"]
    first, cold = [], []
    for _ in range(rounds):
        sandman(s.runner, "-q", "warm", "stop", env=s.env, cwd=s.work)
        first.append(timed(argv, agent_env, s.work))
        cold.append(timed(cold_argv, cold_env, s.work))
    sandman(s.runner, "-q", "warm", "stop", env=s.env, cwd=s.work)
    procs = [subprocess.Popen(argv, env=agent_env, cwd=s.work, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(8)]
    errs = sum(len(p.communicate(timeout=600)[1]) for p in procs)
    fails = sum(1 for p in procs if p.returncode != 0)
    first_ms, cold_ms = statistics.median(first) * 1000, statistics.median(cold) * 1000
    return {"first_ms": first_ms, "cold_ms": cold_ms, "ratio": first_ms / cold_ms,
            "concurrent": 8, "containers": warm_count(s.runner, s.home), "concurrent_failures": fails,
            "concurrent_stderr_bytes": errs}


def parallel_loop(s: Setup, calls: int, jobs: int) -> dict:
    """xargs -P over the files (1,000 calls by default): sequential, then `jobs` at once."""
    if not (s.work / "dumps").exists():  # the agent loop's files, when it ran first
        make_dumps(s.work / "dumps")
        s.runner.give(s.work / "dumps")
    rounds = max(1, calls // DUMPS)
    want = sorted(f"dumps/c{i:02}.db|{i + 1}|{i * (i + 1) // 2}" for i in range(DUMPS)) * rounds
    out = {}
    for n in (1, jobs):
        script = (f"for r in $(seq {rounds}); do printf '%s\\n' dumps/*.db; done | xargs -P {n} "
                  f"-I{{}} {SHIM} {{}} \"select '{{}}', count(*), sum(v) from t;\"")
        t = time.perf_counter()
        proc = subprocess.run(s.runner.argv(["bash", "-c", script]), env=s.variants["agent shim"][1],
                              cwd=s.work, capture_output=True, timeout=7200)
        total = time.perf_counter() - t
        got = sorted(proc.stdout.decode(errors="replace").splitlines())
        wrong = sum(1 for a, b in zip(got, sorted(want), strict=False) if a != b) + abs(len(got) - len(want))
        out[f"P{n}"] = {"calls": rounds * DUMPS, "total_s": total, "wrong": wrong,
                        "stderr_bytes": len(proc.stderr), "status": proc.returncode}
    out["speedup"] = out["P1"]["total_s"] / out[f"P{jobs}"]["total_s"]
    out["jobs"] = jobs
    time.sleep(0.5)
    out["left"] = left_in(s.runner, warm_container(s.runner, s.home))
    return out


def engine_info(r: Runner) -> dict:
    if r.engine == "docker":
        v = r.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=60).stdout
        return {"version": v.strip() or "unknown", "as": "root" if os.geteuid() == 0 else "user"}
    fmt = ("{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}} "
           "{{.Host.Security.Rootless}}")
    out = r.run(["podman", "info", "--format", fmt], timeout=120).stdout.split()
    if len(out) != 4:
        raise RuntimeError(f"podman info failed for {r.env.get('USER', 'this user')}")
    return {"version": out[0], "runtime": out[1], "storage": out[2], "rootless": out[3] == "true",
            "as": r.env.get("USER") or str(os.geteuid())}


def agent_binary(r: Runner, env: dict[str, str], cwd: Path, docker_home: Path | None) -> str:
    """Build the warm agent with this engine; how it was got (rootless Podman: see below)."""
    from sandman import agent
    from sandman.paths import Paths

    proc = r.run([r.python, "-c", BUILD_AGENT], env=env, cwd=cwd)
    if proc.returncode == 0:
        return "built"
    err = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    # The toolchain step needs a network; rootless Podman's (slirp4netns) needs /dev/net/tun,
    # which some hosts keep root-only. The binary is static and named by its source's hash,
    # so the one Docker built is the very same file.
    if docker_home is None and "docker" in available():  # Podman alone: build it with Docker
        docker_home = cwd.parents[1] / "agent-docker"
        build = subprocess.run([sys.executable, "-c", BUILD_AGENT], capture_output=True, text=True,
                               env={**os.environ, "SANDMAN_HOME": str(docker_home),
                                    "SANDMAN_ENGINE": "docker"}, cwd=cwd.parents[1], timeout=1800)
        if build.returncode != 0:
            docker_home = None
    if docker_home is None:
        raise RuntimeError(f"building the warm agent with {r.engine} failed: {err}")
    src = agent.binary_path(Paths.from_env({"SANDMAN_HOME": str(docker_home)}))
    dst = agent.binary_path(Paths.from_env({"SANDMAN_HOME": env["SANDMAN_HOME"]}))
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    shutil.copy2(agent.record_path(src), agent.record_path(dst))  # its recorded sha256
    r.give(dst.parents[1])
    return f"copied from the Docker build (the {r.engine} build failed: {err})"


def prepare(r: Runner, tmp: Path, docker_home: Path | None) -> Setup:
    base = tmp / r.engine
    home, work = base / "home", base / "work"
    work.mkdir(parents=True)
    r.give(base)
    env = {**r.env, "SANDMAN_HOME": str(home), "PATH": f"{home / 'bin'}{os.pathsep}{r.env.get('PATH', '')}"}
    info = engine_info(r)
    if r.engine == "podman" and r.owner is not None:
        from sandman.agent import PREFERRED_BASES

        ensure_bases(r, (SPEC_BASE, PREFERRED_BASES[0]))
    proc = sandman(r, "-q", "install", SPEC, env=env, cwd=work)
    if proc.returncode != 0:
        raise RuntimeError(f"sandman install {SPEC} ({r.engine}) failed: {proc.stderr.strip()}")
    t = time.perf_counter()
    proc = sandman(r, "-q", "install", SPEC, env=env, cwd=work)
    info["install_cache_hit_s"] = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"sandman install {SPEC} ({r.engine}, cache hit) failed: {proc.stderr.strip()}")
    shim = home / "bin" / SHIM
    cold_env = {**env, "SANDMAN_WARM": "0"}
    warm_env = {**env, "SANDMAN_WARM": "1", "SANDMAN_AGENT": "0"}
    agent_env = {**env, "SANDMAN_WARM": "1"}
    t = time.perf_counter()
    info["agent_binary"] = agent_binary(r, env, work, docker_home)
    info["agent_build_s"] = time.perf_counter() - t
    timed(r.argv([str(shim), *ARGS]), agent_env, work)  # starts the warm container (not measured)
    ctr = warm_container(r, home)
    main = r.run([r.engine, "inspect", "-f", "{{.Path}}{{range .Args}} {{.}}{{end}}", ctr],
                 timeout=60).stdout.strip()  # Podman names its init here, Docker does not
    if f"{AGENT_MAIN} serve" not in main:
        raise RuntimeError(f"the {r.engine} warm container does not run the agent ({main})")
    uid, gid = r.owner or (os.geteuid(), os.getegid())
    info["bare_run"] = bare_run_argv(r, shim, cold_env, work)
    info["bare_exec"] = [r.engine, "exec", "-i", "-u", f"{uid}:{gid}", "-w", str(work),
                         "-e", "HOME=/tmp", ctr, "sqlite3", *ARGS]
    fast = work.parent / f"{SHIM}.to-client"  # the shim, its client replaced by /bin/true
    text = shim.read_text()
    agent_line = next(ln for ln in text.splitlines() if ln.startswith("SM_AGENT="))
    fast.write_text(text.replace(agent_line, "SM_AGENT=/bin/true").replace(
        "SM_SELF=${BASH_SOURCE[0]-}", f"SM_SELF={shlex.quote(str(shim))}"))
    fast.chmod(0o755)
    r.give(fast)
    variants = {
        "bash start": (r.argv(["bash", "-c", ":"]), env),
        "sh start": (r.argv(["/bin/sh", "-c", ":"]), env),
        "shim to client": (r.argv([str(fast), *ARGS]), agent_env),
        "full agent shim": (r.argv([str(shim), *ARGS]), {**agent_env, "SANDMAN_ROUTE_SKIP": "1"}),
        "bare run": (r.argv(info["bare_run"]), env),
        "bare exec": (r.argv(info["bare_exec"]), env),
        "cold shim": (r.argv([str(shim), *ARGS]), cold_env),
        "warm shim": (r.argv([str(shim), *ARGS]), warm_env),
        "agent shim": (r.argv([str(shim), *ARGS]), agent_env),
    }
    return Setup(r, home, work, env, ctr, variants, info)


def runners(engines: list[str], tmp: Path) -> list[Runner]:
    out = []
    for e in engines:
        if e == "docker":
            env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
            env["SANDMAN_ENGINE"] = "docker"
            out.append(Runner("docker", (), env, sys.executable, None, False))
        else:  # rootless; the engine is auto's choice for that user (no docker socket)
            out.append(podman_runner(tmp / "site"))
    return out


def measure(rounds: int, loop: int, agent_calls: int = 10_000, engines: list[str] | None = None,
            keep_home: bool = False, parallel_calls: int = 1000) -> dict:
    engines = [e for e in ENGINES if e in (engines or available())]  # Docker's agent first
    if not engines:
        raise RuntimeError("no engine works here (no Docker daemon reachable, no podman)")
    # not "sandman-...": test sessions on this machine remove warm containers of such homes
    tmp = Path(tempfile.mkdtemp(prefix="sm-bench-"))
    tmp.chmod(0o755)  # the rootless user's folders are in it
    result: dict = {"machine": machine(), "load_before": load(), "rounds": rounds, "spec": SPEC,
                    "command": [SHIM, *ARGS], "engines": {}}
    setups: list[Setup] = []
    try:
        docker_home = None
        for r in runners(engines, tmp):
            s = prepare(r, tmp, docker_home)
            setups.append(s)
            result["engines"][r.engine] = s.info
            if r.engine == "docker":
                docker_home = s.home
        native = shutil.which("sqlite3")
        result["native_command"] = "sqlite3 (host)" if native else "/bin/true (no host sqlite3)"
        work0 = setups[0].work
        host_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDMAN_")}
        variants: dict[tuple[str, str], tuple[list[str], dict[str, str], Path]] = {
            ("host", "native"): ([native, *ARGS] if native else ["/bin/true"], host_env, work0)}
        for s in setups:
            for v, (argv, env) in s.variants.items():
                variants[(s.runner.engine, v)] = (argv, env, s.work)
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
        names = list(variants)
        counter = [0]
        for k in names:  # one unmeasured call each: page cache, daemon caches
            argv, env, cwd = variants[k]
            run_variant(k[1], argv, env, cwd, counter)
        for rnd in range(rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for k in order:
                argv, env, cwd = variants[k]
                samples[k].append(run_variant(k[1], argv, env, cwd, counter))
        result["load_after_rounds"] = load()
        result["native"] = {"median_ms": statistics.median(samples[("host", "native")]) * 1000,
                            "min_ms": min(samples[("host", "native")]) * 1000}
        ok = True
        for s in setups:
            e = s.runner.engine
            res = result["engines"][e]
            res["median_ms"] = {v: statistics.median(samples[(e, v)]) * 1000 for v in VARIANTS}
            res["min_ms"] = {v: min(samples[(e, v)]) * 1000 for v in VARIANTS}
            med = res["median_ms"]
            res["ratios"] = {}
            for name, (num, den, limit) in TARGETS.items():
                ratio = med[num] / med[den]
                res["ratios"][name] = {"value": ratio, "limit": limit, "pass": ratio <= limit}
            res["split_ms"] = {"sh start": med["sh start"],
                               "front": med["shim to client"] - med["sh start"],
                               "client": med["agent shim"] - med["shim to client"],
                               "full runtime (route skipped)": med["full agent shim"] - med["sh start"],
                               "shim over bash start": med["shim to client"] - med["bash start"]}
        for s in setups:  # the loops, one engine after the other
            res = result["engines"][s.runner.engine]
            argv, warm_env = s.variants["warm shim"]
            t = time.perf_counter()
            for _ in range(loop):
                timed(argv, warm_env, s.work)
            total = time.perf_counter() - t
            res["warm_loop"] = {"calls": loop, "total_s": total, "per_call_ms": total / loop * 1000}
            res["agent_loop"] = agent_loop(s, agent_calls, s.variants["agent shim"][1])
            res["parallel"] = parallel_loop(s, parallel_calls, PARALLEL)
            res["first"] = first_calls(s, max(3, rounds // 3))
            al, pl = res["agent_loop"], res["parallel"]
            res["pass"] = (all(r["pass"] for r in res["ratios"].values())
                           and not al["failures"] and not al["stderr_bytes"] and not al["left"]
                           and not any(pl[k]["wrong"] or pl[k]["stderr_bytes"]
                                       for k in ("P1", f"P{PARALLEL}"))
                           and res["first"]["containers"] == 1)
            ok = ok and res["pass"]
        result["load_after"] = load()
        result["pass"] = ok
    finally:
        for s in setups:
            cleanup(s)
        if not keep_home:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def cleanup(s: Setup) -> None:
    r = s.runner
    if s.home.exists():
        sandman(r, "-q", "warm", "stop", env=s.env, cwd=s.work)
    ids = r.run([r.engine, "ps", "-aq", "--filter", "label=io.sandman.role=bench"],
                timeout=120).stdout.split()
    if ids:
        r.run([r.engine, "rm", "-f", *ids], timeout=300)
    # the reapers this home's shims started (one per daemon: reaper.pid, reaper@<socket>.pid):
    # by their pid, checked against their command line
    for pidfile in (s.home / "state").glob("reaper*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            if b"sandman.reaper" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def engine_title(e: str, info: dict) -> str:
    if e == "docker":
        return f"docker {info['version']} (as {info['as']})"
    mode = "rootless" if info.get("rootless") else "rootful"
    return (f"podman {info['version']} {mode} (as {info['as']}, runtime {info['runtime']}, "
            f"storage {info['storage']})")


def report(res: dict) -> str:
    m = res["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}",
             f"load average: {res['load_before']} before, {res['load_after_rounds']} after the "
             f"rounds, {res['load_after']} at the end",
             f"command: {' '.join(res['command'])}   rounds: {res['rounds']} (round robin over "
             f"{', '.join(res['engines'])})   native: {res['native_command']}",
             "", f"{'variant':<18} {'median ms':>10} {'min ms':>8}",
             f"{'native':<18} {res['native']['median_ms']:>10.1f} {res['native']['min_ms']:>8.1f}"]
    for e, info in res["engines"].items():
        lines += ["", engine_title(e, info)]
        for v in VARIANTS:
            name = v.replace("bare ", f"bare {e} ")
            lines.append(f"{name:<18} {info['median_ms'][v]:>10.1f} {info['min_ms'][v]:>8.1f}")
        for name, r in info["ratios"].items():
            lines.append(f"{e} {name:<14} {r['value']:.3f}  (target <= {r['limit']:.2f})  "
                         f"{'PASS' if r['pass'] else 'FAIL'}")
        lines.append(f"{e} install {res['spec']} (cache hit): {info['install_cache_hit_s'] * 1000:.0f} ms")
        lines.append(f"{e} agent: {info['agent_binary']}")
        w = info["warm_loop"]
        lines.append(f"{e} warm loop: {w['calls']} calls in {w['total_s']:.2f} s "
                     f"({w['per_call_ms']:.1f} ms per call)")
        sp = info["split_ms"]
        lines.append(f"{e} agent shim split: sh start {sp['sh start']:.1f} ms, front "
                     f"{sp['front']:.1f} ms, client and call {sp['client']:.1f} ms (whole runtime "
                     f"instead of the fast path: {sp['full runtime (route skipped)']:.1f} ms after sh)")
        over = sp["shim over bash start"]
        lines.append(f"{e} shim to its client vs bash -c ':' {over:+.1f} ms (target <= "
                     f"+{SHIM_OVER_BASH_MS:.0f} ms) {'PASS' if over <= SHIM_OVER_BASH_MS else 'FAIL'}")
        lines.append(f"{e} agent shim median {info['median_ms']['agent shim']:.1f} ms (target <= "
                     f"{AGENT_MS:.0f} ms on a quiet machine)")
        f = info["first"]
        lines.append(f"{e} first warm call {f['first_ms']:.1f} ms vs cold {f['cold_ms']:.1f} ms: "
                     f"{f['ratio']:.3f} (target <= 1.15); {f['concurrent']} first calls at once started "
                     f"{f['containers']} container(s), {f['concurrent_failures']} failed, "
                     f"{f['concurrent_stderr_bytes']} bytes on stderr")
        p = info["parallel"]
        for k in ("P1", f"P{p['jobs']}"):
            lines.append(f"{e} xargs -{k}: {p[k]['calls']} calls in {p[k]['total_s']:.2f} s, "
                         f"{p[k]['wrong']} wrong, {p[k]['stderr_bytes']} bytes on stderr")
        lines.append(f"{e} xargs -P{p['jobs']} / -P1 throughput: {p['speedup']:.2f}x (target >= 1.7 "
                     f"on 2 cores), {len(p['left'])} processes left")
        a = info["agent_loop"]
        lines.append(f"{e} agent loop: {a['calls']} sqlite3 calls over {DUMPS} files in "
                     f"{a['total_s']:.2f} s ({a['per_call_ms']:.1f} ms per call), {a['failures']} "
                     f"failures, {a['stderr_bytes']} bytes on stderr, {len(a['left'])} processes left")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shim", description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="few rounds and a short loop (for CI)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--rounds", type=int, help="rounds of the round robin (default 30, short 5)")
    ap.add_argument("--loop", type=int, help="warm calls in the loop (default 200, short 20)")
    ap.add_argument("--agent-loop", type=int,
                    help="sqlite3 calls through the agent (default 10000, short 200)")
    ap.add_argument("--parallel", type=int,
                    help="calls in the xargs -P loops (default 1000, short 100)")
    ap.add_argument("--engines", help="comma-separated: docker,podman (default: every engine "
                                      "that works here; Podman is rootless)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.short else 30)
    loop = args.loop or (20 if args.short else 200)
    agent_calls = args.agent_loop or (200 if args.short else 10_000)
    parallel_calls = args.parallel or (100 if args.short else 1000)
    engines = None
    if args.engines:
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        bad = [e for e in engines if e not in ENGINES]
        if bad or not engines or len(set(engines)) != len(engines):
            print(f"benchmark: --engines {args.engines}: name each of docker, podman at most once",
                  file=sys.stderr)
            return 2
    try:
        res = measure(rounds, loop, agent_calls, engines, parallel_calls=parallel_calls)
    except RuntimeError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2, sort_keys=True) if args.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
