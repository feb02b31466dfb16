"""The build progress line: current step, a running clock, the step's own last output."""

from __future__ import annotations

import io

import pytest

from sandman import cli


def test_progress_line_shows_step_and_elapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    clock = [100.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    p = cli._Progress()
    p.phase, p.detail = "Step 3/7: RUN apt-get update", "Get:1 http://deb.debian.org"
    clock[0] += 83
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(p)
    assert out.getvalue().strip() == "Step 3/7: RUN apt-get update  [1:23]  Get:1 http://deb.debian.org"


def test_reporter_on_a_terminal_tracks_the_current_step(monkeypatch: pytest.MonkeyPatch) -> None:
    rep = cli.CliReporter(1, None)
    rep.tty = True
    started = []

    class FakeStatus:
        def __init__(self, renderable: object) -> None:
            started.append(renderable)

        def start(self) -> None: ...
        def stop(self) -> None: ...

    import rich.console

    monkeypatch.setattr(rich.console.Console, "status", lambda self, r: FakeStatus(r))
    rep.step("Step 1/3 : FROM debian:bookworm-slim")
    rep.step(" ---> 701ad36e3b4b")
    rep.step("Step 3/3 : RUN apt-get install -y sqlite3")
    rep.step("Unpacking sqlite3 (3.40.1-2) ...")
    rep.step("Removing intermediate container 1234")
    assert len(started) == 1
    prog = rep._progress
    assert prog is started[0]
    assert prog.phase == "Step 3/3: RUN apt-get install -y sqlite3"
    assert prog.detail == "Unpacking sqlite3 (3.40.1-2) ..."
    rep.close()


def test_reporter_off_a_terminal_prints_plain_step_lines(capsys: pytest.CaptureFixture) -> None:
    rep = cli.CliReporter(1, None)
    rep.tty = False
    rep.step("Step 2/5 : RUN true")
    rep.step(" ---> Running in abc")
    rep.step("smoke test: sqlite3 -version")
    rep.close()
    assert capsys.readouterr().err.splitlines() == ["Step 2/5: RUN true", "smoke test: sqlite3 -version"]
