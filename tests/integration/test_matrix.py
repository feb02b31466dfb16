"""`sandman matrix`: one command against several versions, on the real daemon.

The case is real: a table declared STRICT (SQLite 3.37+) makes the database unreadable for
3.34 ("malformed database schema"), while 3.46 reads it. The report must show that.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run_sandman

from sandman.errors import CHECK_FAILED, NotFoundError

pytestmark = pytest.mark.docker


def cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_sandman(*args, cwd=cwd, env=env, timeout=600)


@pytest.fixture
def strict_db(tmp_path: Path, shared_env: dict[str, str]) -> Path:
    work = tmp_path / "work dir"
    work.mkdir()
    made = subprocess.run(["sqlite3-3.46", "db", "create table t(a int, b text) strict;"
                           " insert into t values (1, 'x');"],
                          cwd=work, env=shared_env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return work


def test_report_shows_the_versions_disagree(strict_db: Path, shared_env: dict[str, str]) -> None:
    p = cli({**shared_env, "COLUMNS": "160"}, "matrix", "sqlite3@3.34,3.46", "--",
            "sqlite3", "db", "select * from t", cwd=strict_db)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "$ sqlite3 db 'select * from t'" in out
    assert "sqlite3@3.34" in out and "sqlite3@3.46" in out
    assert "malformed database schema" in out
    assert "1|x" in out
    assert "exit codes differ: 3.34=" in out and "3.46=0" in out
    # side by side: the two keys share the header line
    header = next(line for line in out.splitlines() if "sqlite3@3.34" in line)
    assert "sqlite3@3.46" in header


def test_json_is_parseable_and_exact(strict_db: Path, shared_env: dict[str, str]) -> None:
    p = cli(shared_env, "matrix", "--json", "sqlite3@3.34,3.46", "--",
            "sqlite3", "db", "select * from t", cwd=strict_db)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema"] == 1
    assert doc["command"] == ["sqlite3", "db", "select * from t"]
    assert doc["agree"] is False
    old, new = doc["results"]
    assert (old["key"], new["key"]) == ("sqlite3@3.34", "sqlite3@3.46")
    assert old["exit_code"] != 0 and "malformed database schema" in old["stderr"]
    assert old["stdout"] == ""
    assert new["exit_code"] == 0 and new["stdout"] == "1|x\n" and new["stderr"] == ""
    assert all(isinstance(r["seconds"], float) and r["seconds"] > 0 for r in doc["results"])
    assert "stdout_diff" not in old


def test_diff_shows_a_unified_diff(strict_db: Path, shared_env: dict[str, str]) -> None:
    p = cli(shared_env, "matrix", "--diff", "sqlite3@3.34,3.46", "--",
            "sqlite3", "db", "select * from t", cwd=strict_db)
    assert p.returncode == 0, p.stderr
    assert "--- sqlite3@3.34 stdout" in p.stdout and "+++ sqlite3@3.46 stdout" in p.stdout
    assert "+1|x" in p.stdout
    assert "-Error: malformed database schema" in p.stdout
    j = cli(shared_env, "matrix", "--diff", "--json", "sqlite3@3.34,3.46", "--",
            "sqlite3", "db", "select * from t", cwd=strict_db)
    doc = json.loads(j.stdout)
    assert doc["results"][0]["stdout_diff"] is None
    assert "+1|x" in doc["results"][1]["stdout_diff"]


def test_all_and_agreement(tmp_path: Path, shared_env: dict[str, str]) -> None:
    """`sqlite3@all` runs every installed version; the same answer everywhere agrees."""
    p = cli(shared_env, "matrix", "--json", "--fail-on-diff", "sqlite3@all", "--",
            "sqlite3", ":memory:", "select 6*7", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["version"] for r in doc["results"]] == ["3.34", "3.46"]
    assert doc["agree"] is True and {r["stdout"] for r in doc["results"]} == {"42\n"}
    differ = cli(shared_env, "matrix", "--fail-on-diff", "sqlite3@all", "--",
                 "sqlite3", ":memory:", "select sqlite_version()", cwd=tmp_path)
    assert differ.returncode == CHECK_FAILED, differ.stdout + differ.stderr


def test_stdin_is_not_shared(tmp_path: Path, shared_env: dict[str, str]) -> None:
    p = run_sandman("matrix", "--json", "sqlite3@3.34,3.46", "--", "sqlite3", ":memory:",
                    input="select 1;\n", cwd=tmp_path, env=shared_env, timeout=600)
    assert p.returncode == 0, p.stderr
    assert [r["stdout"] for r in json.loads(p.stdout)["results"]] == ["", ""]


def test_versions_run_in_parallel(tmp_path: Path, shared_env: dict[str, str]) -> None:
    """Two versions sleeping 3 s take well under 2 x 3 s with two jobs, and not with one."""
    cmd = ["sqlite3", ":memory:", "select 1"]
    # warm up: both images' first start is slower
    cli(shared_env, "matrix", "sqlite3@3.34,3.46", "--", *cmd, cwd=tmp_path)
    sleep = ["bash", "-c", "sleep 3"]
    t0 = time.monotonic()
    par = cli(shared_env, "matrix", "-j", "2", "--json", "sqlite3@3.34,3.46", "--", *sleep, cwd=tmp_path)
    parallel = time.monotonic() - t0
    t0 = time.monotonic()
    ser = cli(shared_env, "matrix", "-j", "1", "--json", "sqlite3@3.34,3.46", "--", *sleep, cwd=tmp_path)
    serial = time.monotonic() - t0
    assert par.returncode == 0 and ser.returncode == 0, par.stderr + ser.stderr
    for run in (par, ser):
        assert [(r["exit_code"], r["stderr"]) for r in json.loads(run.stdout)["results"]] == [(0, "")] * 2
    assert serial >= 6, serial  # each version really slept its 3 s, one after the other
    assert parallel < serial * 0.8, (parallel, serial)


def test_bad_targets_are_one_line_errors(tmp_path: Path, shared_env: dict[str, str]) -> None:
    p = cli(shared_env, "matrix", "sqlite3@3.34,,3.46", "--", "true", cwd=tmp_path)
    assert p.returncode == 2 and "empty item" in p.stderr and "Traceback" not in p.stderr
    p = cli(shared_env, "matrix", "nosuchtool@all", "--", "true", cwd=tmp_path)
    assert p.returncode == NotFoundError.exit_code and "no version of nosuchtool is installed" in p.stderr
    p = cli(shared_env, "matrix", "sqlite3@9.9", "--", "true", cwd=tmp_path)
    assert p.returncode == NotFoundError.exit_code and "unknown version '9.9'" in p.stderr


def test_a_second_target_without_a_comma_is_a_usage_error(tmp_path: Path,
                                                          shared_env: dict[str, str]) -> None:
    """`matrix sqlite3@3.34 sqlite3@3.46 -- ...` once ran `sqlite3@3.46` as the command."""
    p = cli(shared_env, "matrix", "sqlite3@3.34", "sqlite3@3.46", "--", "sqlite3", ":memory:",
            "select 1", cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "'sqlite3@3.46' after 'sqlite3@3.34' looks like a second target" in lines[0]
    assert "sandman matrix sqlite3@3.34,3.46 -- CMD ARGS" in lines[0]
    assert p.stdout == ""
    # after `--` the same word is the command, as the user asked
    p = cli(shared_env, "matrix", "--json", "sqlite3@3.46", "--", "sqlite3@3.34", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"][0]["exit_code"] == 127  # no such program in the image
