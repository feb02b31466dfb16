"""`sandman matrix` without a daemon: target parsing, the report layouts, the JSON shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandman import installs
from sandman.catalog import Spec
from sandman.commands.matrix import Outcome, agree, parse_targets, render_report, to_json
from sandman.context import Context
from sandman.errors import NotFoundError, UsageError
from sandman.installs import InstallRecord


def test_parse_targets() -> None:
    assert parse_targets("sqlite3@3.34,3.46") == [Spec("sqlite3", "3.34"), Spec("sqlite3", "3.46")]
    assert parse_targets("sqlite3@3.34, python2@2.7,3.46") == [
        Spec("sqlite3", "3.34"), Spec("python2", "2.7"), Spec("python2", "3.46")]
    assert parse_targets("repo/t@1,2") == [Spec("t", "1", "repo"), Spec("t", "2", "repo")]
    assert parse_targets("t@1,1") == [Spec("t", "1")]  # a repeat runs once
    for bad in ("sqlite3", "3.34,3.46", "t@1,,2", "t@1,bad version"):
        with pytest.raises(UsageError):
            parse_targets(bad)


def test_all_means_every_installed_version(home: Path) -> None:
    ctx = Context.from_env()
    with pytest.raises(NotFoundError, match="no version of sqlite3 is installed"):
        parse_targets("sqlite3@all", ctx)
    for v in ("3.34", "3.46"):
        installs.write_record(ctx.paths, InstallRecord(
            tool="sqlite3", version=v, source="builtin", recipe_file="x", fingerprint="f" * 64,
            image_id="i", image_tag="t", shims=(), bin_dir="b", installed_at="now"))
    assert parse_targets("sqlite3@all", ctx) == [Spec("sqlite3", "3.34"), Spec("sqlite3", "3.46")]


OLD = Outcome("sqlite3", "3.34", 1, 0.5, b"", b"Error: malformed database schema\n")
NEW = Outcome("sqlite3", "3.46", 0, 0.25, b"1|x\n", b"")


def test_side_by_side_report() -> None:
    text = render_report(["sqlite3", "db", "select * from t"], [OLD, NEW], diff=False, width=100)
    lines = text.splitlines()
    assert lines[0] == "$ sqlite3 db 'select * from t'"
    assert "sqlite3@3.34" in lines[1] and "sqlite3@3.46" in lines[1]
    assert "exit 1" in lines[2] and "exit 0" in lines[2]
    assert any("Error: malformed" in line and "|" in line for line in lines)
    assert lines[-1] == "exit codes differ: 3.34=1, 3.46=0"


def test_narrow_terminal_stacks_and_long_lines_wrap_not_cut() -> None:
    long = Outcome("t", "1", 0, 0.1, b"x" * 100 + b"END\n", b"")
    wide = render_report(["c"], [long, long], diff=False, width=120)
    assert "END" in wide  # wrapped inside its column, never cut
    narrow = render_report(["c"], [OLD, NEW], diff=False, width=40)
    assert "== sqlite3@3.34: exit 1, 0.50s" in narrow and "== sqlite3@3.46: exit 0, 0.25s" in narrow


def test_diff_report() -> None:
    text = render_report(["c"], [OLD, NEW], diff=True, width=200)
    assert "--- sqlite3@3.34 stdout" in text and "+1|x" in text
    assert "-Error: malformed database schema" in text
    same = render_report(["c"], [NEW, NEW], diff=True, width=200)
    assert "-- stdout: same as sqlite3@3.46" in same
    assert same.rstrip().endswith("all 2 versions agree (exit 0, same output)")


def test_json_shape() -> None:
    doc = to_json(["c"], [OLD, NEW], diff=False)
    assert doc == {
        "schema": 1, "command": ["c"], "agree": False,
        "results": [
            {"tool": "sqlite3", "version": "3.34", "key": "sqlite3@3.34", "exit_code": 1,
             "seconds": 0.5, "stdout": "", "stderr": "Error: malformed database schema\n"},
            {"tool": "sqlite3", "version": "3.46", "key": "sqlite3@3.46", "exit_code": 0,
             "seconds": 0.25, "stdout": "1|x\n", "stderr": ""},
        ]}
    with_diff = to_json(["c"], [OLD, NEW, NEW], diff=True)["results"]
    assert with_diff[0]["stdout_diff"] is None and "+1|x" in with_diff[1]["stdout_diff"]
    bad = Outcome("t", "1", 0, 0.1, b"\xff\xfe ok\n", b"")
    assert to_json(["c"], [bad], diff=False)["results"][0]["stdout"] == "\ufffd\ufffd ok\n"
    assert agree([NEW, NEW]) and not agree([OLD, NEW])
