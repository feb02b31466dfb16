"""The CLI reference and the exit-code tables are generated and complete, and TOOL@VERSION
arguments complete in shells.

docs/cli.md must equal `python -m sandman.docgen` output, and docs/runtime.md's exit-code block
docgen's; when this fails after a CLI or exit-code change, regenerate both with
`python -m sandman.docgen --write`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import log_file, run_sandman

from sandman import installs
from sandman.cli import click_command
from sandman.completion import installed_specs, matrix_specs, recipe_specs
from sandman.docgen import BEGIN, END, RUNTIME_DOC, render, runtime_block, walk, with_block
from sandman.errors import EXIT_GROUPS, ConsentError, NotFoundError
from sandman.installs import InstallRecord
from sandman.paths import Paths

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m sandman.docgen --write"


def test_every_command_argument_and_option_has_help() -> None:
    missing = []
    for path, cmd, _ in walk(click_command()):
        if not (cmd.help or "").strip():
            missing.append(" ".join(path))
        for p in cmd.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{' '.join(path)} {p.name}")
    assert missing == [], f"add help text to: {', '.join(missing)}"


def test_cli_reference_is_up_to_date() -> None:
    expected = render(click_command())
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, f"docs/cli.md is out of date; regenerate it: {REGENERATE}"


def test_reference_covers_every_command() -> None:
    text = render(click_command())
    names = [" ".join(p) for p, _, _ in walk(click_command())][1:]
    assert names and all(f"## `{n}`" in text for n in names)
    for must in ("sandman matrix", "sandman upgrade", "--dry-run", "--yes", f"| {ConsentError.exit_code} |"):
        assert must in text


def test_generator_stays_deterministic_at_any_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render(click_command())
    monkeypatch.setenv("COLUMNS", "250")
    assert render(click_command()) == narrow


# -- completion -------------------------------------------------------------------------------
def _record(paths: Paths, tool: str, version: str) -> None:
    installs.write_record(paths, InstallRecord(
        tool=tool, version=version, source="builtin", recipe_file="x", fingerprint="f" * 64,
        image_id="sha256:" + "0" * 64, image_tag=f"sandman/{tool}:{version}-ffffffffffff",
        shims=(f"{tool}-{version}",), bin_dir=str(paths.bin_dir), installed_at="2026-01-01T00:00:00"))


def test_recipe_completion_uses_the_catalog(home: Path) -> None:
    paths = Paths.from_env()
    assert "sqlite3@3.34" in recipe_specs("", paths)
    assert set(recipe_specs("sqlite3@3.4", paths)) == {"sqlite3@3.40", "sqlite3@3.46"}
    assert recipe_specs("nothing-like-this", paths) == []


def test_recipe_completion_follows_the_search_path_and_survives_broken_recipes(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "recipes"
    (extra / "mytool").mkdir(parents=True)
    (extra / "mytool" / "recipe.toml").write_text(
        'schema = 1\ntool = "mytool"\ndescription = "x"\n'
        '[versions."1.0"]\nbase = "debian:bookworm-slim"\n')
    (extra / "broken").mkdir()
    (extra / "broken" / "recipe.toml").write_text("this is not toml [")
    monkeypatch.setenv("SANDMAN_RECIPE_PATH", str(extra))
    got = recipe_specs("", Paths.from_env())
    assert "mytool@1.0" in got and not any(s.startswith("broken") for s in got)


def test_installed_completion_uses_the_records(home: Path) -> None:
    paths = Paths.from_env()
    assert installed_specs("", paths) == []
    _record(paths, "sqlite3", "3.34")
    _record(paths, "python2", "2.7")
    assert sorted(installed_specs("", paths)) == ["python2@2.7", "sqlite3@3.34"]
    assert installed_specs("sq", paths) == ["sqlite3@3.34"]
    installs.record_path(paths, "bad", "1").write_text("{")  # unreadable state: no suggestions, no crash
    assert installed_specs("", paths) == []


def test_matrix_completion(home: Path) -> None:
    paths = Paths.from_env()
    assert "sqlite3@all" in matrix_specs("sqli", paths)
    assert matrix_specs("sqlite3@3.34,", paths) == ["sqlite3@3.34,3.40", "sqlite3@3.34,3.46"]
    assert matrix_specs("sqlite3@3.34,3.46,3.4", paths) == ["sqlite3@3.34,3.46,3.40"]


def shell_complete(home: Path, **env: str) -> list[str]:
    e = {"PATH": "/usr/bin:/bin", "SANDMAN_HOME": str(home), **env}
    code = "import sys; sys.argv[0] = 'sandman'; from sandman.cli import main; main()"
    p = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_bash_completion_protocol(home: Path) -> None:
    got = shell_complete(home, _SANDMAN_COMPLETE="complete_bash",
                         COMP_WORDS="sandman install sqlite3@3.4", COMP_CWORD="2")
    assert got == ["sqlite3@3.40", "sqlite3@3.46"]
    _record(Paths.from_env(), "sqlite3", "3.34")
    got = shell_complete(home, _SANDMAN_COMPLETE="complete_bash",
                         COMP_WORDS="sandman uninstall ", COMP_CWORD="2")
    assert got == ["sqlite3@3.34"]
    got = shell_complete(home, _SANDMAN_COMPLETE="complete_bash",
                         COMP_WORDS="sandman matrix sqlite3@3.34,", COMP_CWORD="2")
    assert got == ["sqlite3@3.34,3.40", "sqlite3@3.34,3.46"]


def test_zsh_and_fish_completion_protocol(home: Path) -> None:
    zsh = "\n".join(shell_complete(home, _SANDMAN_COMPLETE="complete_zsh",
                                   _TYPER_COMPLETE_ARGS="sandman build sqlite3@3.3"))
    assert '"sqlite3@3.34"' in zsh and "3.46" not in zsh
    fish = shell_complete(home, _SANDMAN_COMPLETE="complete_fish",
                          _TYPER_COMPLETE_ARGS="sandman run sqlite3@3.3",
                          _TYPER_COMPLETE_FISH_ACTION="get-args")
    assert fish == ["sqlite3@3.34"]


def test_show_completion_script_names_the_completion_variable(home: Path) -> None:
    """`--show-completion` takes no shell name: Typer asks the process tree which shell runs it
    (shellingham). So it runs here as a user runs it, from an interactive-like bash, and the
    answer does not depend on what started pytest (a full run under sh once said "Shell  not
    supported")."""
    e = {"PATH": "/usr/bin:/bin", "SANDMAN_HOME": str(home), "SHELL": "/bin/bash",
         "PYTHONPATH": str(ROOT)}
    code = "import sys; sys.argv[0] = 'sandman'; from sandman.cli import main; main()"
    # `; exit $?` keeps bash alive as python's parent (a lone command would be exec'd in its place)
    p = subprocess.run(["/bin/bash", "-c", '"$0" -c "$1" --show-completion; exit $?', sys.executable,
                        code], env=e, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "_SANDMAN_COMPLETE=complete_bash" in p.stdout
    assert "complete -o default -F _sandman_completion sandman" in p.stdout


def test_usage_errors_are_one_line_exit_2(home: Path) -> None:
    e = {"PATH": "/usr/bin:/bin", "SANDMAN_HOME": str(home)}
    p = run_sandman("install", "--no-such-option", env=e, timeout=60, cwd=ROOT)
    assert p.returncode == 2 and "No such option" in p.stderr and "internal error" not in p.stderr
    log = log_file(home).read_text()
    assert "sandman install --no-such-option" in log and "exit 2" in log


def test_errors_are_logged_with_their_exit_code(home: Path) -> None:
    e = {"PATH": "/usr/bin:/bin", "SANDMAN_HOME": str(home)}
    p = run_sandman("uninstall", "nosuch@1", env=e, timeout=60, cwd=ROOT)
    assert p.returncode == NotFoundError.exit_code and p.stderr.count("\n") == 1
    log = log_file(home).read_text()
    assert "sandman uninstall nosuch@1" in log
    assert "Traceback" in log and "NotFoundError" in log and log.rstrip().endswith(f"exit {NotFoundError.exit_code}")
    assert p.stdout == ""


def test_exit_code_block_in_runtime_md_is_up_to_date() -> None:
    current = RUNTIME_DOC.read_text(encoding="utf-8")
    assert RUNTIME_DOC == ROOT / "docs" / "runtime.md"
    assert current == with_block(current, runtime_block()), \
        f"docs/runtime.md's exit codes are out of date; regenerate them: {REGENERATE}"


def test_exit_code_tables_in_the_docs_are_the_ones_sandman_prints() -> None:
    """docs/runtime.md's tables, docs/cli.md's and `sandman exit-codes` come from
    errors.EXIT_GROUPS: the same groups, in the same order, row for row."""
    want = [(g.title, [(e.code, e.meaning) for e in g.codes]) for g in EXIT_GROUPS]
    runtime = RUNTIME_DOC.read_text(encoding="utf-8")
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for doc, text in (("runtime.md", runtime[runtime.index(BEGIN):runtime.index(END)]),
                      ("cli.md", cli[cli.index("\n## Exit codes\n"):])):
        groups: list[tuple[str, list[tuple[int, str]]]] = []
        for line in text.splitlines():
            if line.startswith("**") and line.endswith("**"):
                groups.append((line.strip("*"), []))
            elif groups and line.startswith("| ") and line != "| code | meaning |":
                code, meaning = line.strip("| ").split(" | ", 1)
                groups[-1][1].append((int(code), meaning))
        assert groups == want, doc
    p = run_sandman("exit-codes", timeout=60, cwd=ROOT)
    printed: list[tuple[str, list[tuple[int, str]]]] = []
    for line in p.stdout.splitlines():
        if line.endswith(":") and not line[0].isspace():
            printed.append((line[:-1], []))
        elif line.strip():
            code, meaning = line.split(None, 1)
            printed[-1][1].append((int(code), meaning))
    assert printed == want


def test_every_error_class_has_its_own_code_in_the_table() -> None:
    """Exit 1 is for bugs only: each SandmanError subclass has a distinct, listed code."""
    from sandman import errors

    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.SandmanError) and c is not errors.SandmanError]
    codes = [c.exit_code for c in classes]
    assert 1 not in codes
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(code in errors.EXIT_CODES for code in codes)
