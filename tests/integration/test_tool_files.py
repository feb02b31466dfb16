"""Issue 21 items 7, 9, 10 on the real daemon, with the shipped sqlite3 recipe (a cached image):
the tool's own manual page beside its shims (`man -w`, `man -P cat`, `sandman man`), the
completion of a shim's own arguments in an interactive bash, and a `.tool-versions` pin read
from a subfolder by the plain shim and by `sandman which`. Then the completion of an image's own
script (a tiny recipe's): computed in the tool's sandbox, words only, nothing run on the host."""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest
from helpers import ImageRemover, paths_of, require_program
from teams_helpers import unique_tool

from sandman import toolfiles
from sandman.errors import NotFoundError
from sandman.names import LABEL_TOOL
from sandman.paths import Paths

pytestmark = pytest.mark.docker


def test_man_completion_and_tool_versions(home, sandman, shim_env, tmp_path):
    r = sandman("install", "sqlite3@3.34")
    assert r.returncode == 0, r.stderr
    paths = Paths.from_env()
    env = {**shim_env, "MANPATH": "", "MANPAGER": "cat", "PAGER": "cat"}
    env.pop("MANPATH")  # man-db finds <bin>/../share/man through PATH

    # 10: the version's own page, found by man through PATH, and by `sandman man`
    page = toolfiles.man_dir(paths) / "man1" / "sqlite3-3.34.1.gz"
    assert page.is_file()
    r = sandman("man", "sqlite3@3.34", "--path")
    assert (r.returncode, r.stdout) == (0, f"{page}\n"), r.stderr
    r = sandman("man", "sqlite3@3.34", "nosuchpage")
    assert r.returncode == NotFoundError.exit_code and "sqldiff, sqlite3" in r.stderr
    require_program("man")
    r = subprocess.run(["man", "-w", "sqlite3-3.34"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, str(page)), r.stderr
    r = subprocess.run(["man", "-P", "cat", "sqlite3-3.34"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "A command line interface for SQLite version 3" in r.stdout

    # 7: registered for the shim's name in an interactive bash; file names where the tool
    # ships no completion of its own (sqlite3's Debian package has none)
    work = tmp_path / "w"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "alpha.db").write_text("")
    probe = (f"source {toolfiles.loader(paths)}; complete -p sqlite3-3.34; "
             "COMP_WORDS=(sqlite3-3.34 al); COMP_CWORD=1; COMP_LINE='sqlite3-3.34 al'; "
             "_sandman_c_sqlite3_3_34 sqlite3-3.34 al sqlite3-3.34; echo \"reply=${#COMPREPLY[@]}\"; "
             "compgen -o default -- al; complete -p sandman >/dev/null 2>&1; echo own=$?")
    r = subprocess.run(["bash", "--norc", "-i", "-c", probe], cwd=work / "sub", env=env,
                       capture_output=True, text=True, timeout=60)
    assert "complete -o default -F _sandman_c_sqlite3_3_34 sqlite3-3.34" in r.stdout, r
    assert "reply=0" in r.stdout and "alpha.db" in r.stdout  # -o default: file names
    link = toolfiles.completion_dir(paths) / "sqlite3-3.34"  # bash-completion's own lazy load
    assert link.is_symlink() and link.resolve().name == "sqlite3-3.34.bash"

    # 9: .tool-versions picked from a subfolder, by the plain shim and by `which`
    (work / ".tool-versions").write_text("nodejs 20.11.0\nsqlite3 3.34\n")
    r = sandman("use", "sqlite3", "3.34", "--tool-versions", cwd=work / "sub")
    assert r.returncode == 0, r.stderr
    assert (work / ".tool-versions").read_text() == "nodejs 20.11.0\nsqlite3 3.34\n"
    assert not (work / ".sandman.toml").exists() and not (work / "sub" / ".tool-versions").exists()
    r = sandman("which", "sqlite3", cwd=work / "sub")
    assert r.returncode == 0 and f"set by {work / '.tool-versions'}" in r.stdout, r.stderr
    r = subprocess.run([str(paths.bin_dir / "sqlite3"), "-version"], cwd=work / "sub",
                       env={**env, "PWD": str(work / "sub")}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("3.34."), r.stderr

    # uninstall takes the page and the completion away
    assert sandman("uninstall", "sqlite3@3.34").returncode == 0
    assert not page.exists() and not link.exists()


# -- issue 21 item 7: an image's completion script is code; it never runs on the host -----------
def fake_recipe(tool: str, outside: str) -> str:
    """`fake` ships a completion script that offers --alpha --beta (and a word with an escape
    sequence in it), and that tries, when sourced and when called, to write a marker in the
    cwd, in $HOME and at an absolute path of the host that no container mounts; and a manual
    page whose groff requests would run a command on the host that renders it."""
    script = [
        f'touch "$PWD/m-cwd" "$HOME/m-home" {outside}/m-abs 2>/dev/null',
        '_fake() { touch "$PWD/m-fn" 2>/dev/null',
        '  COMPREPLY=($(compgen -W "--alpha --beta" -- "$2"))',
        "  [[ $2 == --* ]] && COMPREPLY+=($'--esc\\e]0;pwned\\a')",
        '}',
        'complete -F _fake fake']
    run = ["mkdir -p /usr/share/bash-completion/completions",
           f"printf '%s\\n' {shlex.join(script)} > /usr/share/bash-completion/completions/fake",
           "printf '#!/bin/sh\\necho \"$0 $*\"\\n' > /usr/local/bin/fake",
           "cp /usr/local/bin/fake /usr/local/bin/plain && chmod 755 /usr/local/bin/fake /usr/local/bin/plain",
           "mkdir -p /usr/share/man/man1",
           "printf '%s\\n' " + shlex.join([
               ".TH FAKE 1", ".SH NAME", "fake \\- a fake tool", f".sy touch {outside}/m-sy",
               f".pso touch {outside}/m-pso", f".pi touch {outside}/m-pi", "fake manual text"])
           + " > /usr/share/man/man1/fake.1"]
    return (f'schema = 1\ntool = "{tool}"\ndescription = "completion sandbox test"\n'
            f'entrypoint = ["fake"]\ncommands = ["fake", "plain"]\n\n[versions."1"]\n'
            f'base = "debian:bookworm-slim"\nrun = {json.dumps([" && ".join(run)])}\n')


def containers_of(docker_client, tool: str, since: int) -> list[dict]:
    """Container 'create' events of tool's shims since `since`."""
    return list(docker_client.events(since=since, until=int(time.time()) + 1, decode=True,
                                     filters={"type": "container", "event": "create",
                                              "label": f"{LABEL_TOOL}={tool}"}))


def test_an_images_completion_runs_in_its_sandbox_and_only_words_come_back(
        home, sandman, shim_env, tmp_path, docker_client,
        remove_images_after: ImageRemover) -> None:
    tool = unique_tool()
    remove_images_after(tool)
    outside = tmp_path / "nowhere"  # on the host, mounted by no container
    outside.mkdir()
    folder = paths_of(home).user_recipes_dir / tool
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(fake_recipe(tool, str(outside)))
    r = sandman("install", f"{tool}@1")
    assert r.returncode == 0, r.stderr
    paths = Paths.from_env()
    regs = toolfiles.registrations_dir(paths)
    assert not list(regs.glob("*.tool"))  # no script of the image is kept on the host
    assert "source" not in (regs / "fake-1.bash").read_text()
    user_home = tmp_path / "user-home"
    work = tmp_path / "w"
    user_home.mkdir()
    work.mkdir()
    (work / "afile.txt").write_text("")
    env = {**shim_env, "HOME": str(user_home), "SANDMAN_WARM": "0"}

    def complete(shim: str, words: list[str]) -> subprocess.CompletedProcess:
        line = " ".join([shim, *words])
        probe = (f"source {shlex.quote(str(toolfiles.loader(paths)))}; "
                 f"COMP_WORDS=({shlex.join([shim, *words])}); COMP_CWORD={len(words)}; "
                 f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}; "
                 f"{toolfiles._fn_name(shim)} {shim} {shlex.quote(words[-1])} {shim}; "
                 "echo n=${#COMPREPLY[@]}; printf '<%s>\\n' \"${COMPREPLY[@]}\"; complete -p " + shim)
        return subprocess.run(["bash", "--norc", "-i", "-c", probe], cwd=work, env=env,
                              capture_output=True, text=True, timeout=60)

    since = int(time.time()) - 1
    for shim in ("fake-1", f"{tool}-1"):  # a command's shim, the tool's own (its entrypoint)
        r = complete(shim, ["--"])
        # the words, from the container; the one with an escape sequence is dropped
        assert r.stdout.startswith("n=2\n<--alpha>\n<--beta>\ncomplete -o default -F"), r
    assert containers_of(docker_client, tool, since)  # computed in the tool's container
    # what the script tried to write: nowhere on the host (cwd read-only; HOME is the
    # container's; the absolute path is mounted by no container)
    assert not [p for p in tmp_path.rglob("m-*")], list(tmp_path.rglob("m-*"))

    # its manual page is data: man-db renders it with groff in its safer mode, nothing runs
    require_program("man")
    r = subprocess.run(["man", "-P", "cat", "fake-1"], cwd=work, capture_output=True, text=True,
                       timeout=60, env={**env, "MANPAGER": "cat", "PAGER": "cat"})
    assert r.returncode == 0 and "fake manual text" in r.stdout, r
    assert not [p for p in tmp_path.rglob("m-*")], list(tmp_path.rglob("m-*"))

    # a command whose image has no script: file names, and no container at all
    since = int(time.time())
    time.sleep(1)  # events are per second
    r = complete("plain-1", ["af"])
    assert r.stdout.startswith("n=0\n<>\ncomplete -o default -F _sandman_c_plain_1 plain-1"), r
    time.sleep(1)
    assert containers_of(docker_client, tool, since) == []

    # completion mode, as the runtime builds it: the cwd read-only, the words not mounted
    r = subprocess.run(["fake-1", "fake-1", str(outside / "x")], cwd=work, capture_output=True,
                       text=True, timeout=60, env={
                           **env, "SANDMAN_DRY_RUN": "1", "SANDMAN_COMPLETE": "fake",
                           "SANDMAN_COMPLETE_CWORD": "1"})
    assert r.returncode == 0, r.stderr
    assert f"mount ro: {work} -> {work}" in r.stderr and "mount rw" not in r.stderr, r.stderr
    assert str(outside) not in r.stderr.replace(f"{outside}/x", ""), r.stderr
    engine_options, _, command = r.stdout.partition(" bash -c ")
    assert " -t " not in engine_options and "sandman-complete fake 1 " in command
