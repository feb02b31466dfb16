"""The environment: a short list crosses into the container, and locales never break tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.register_assert_rewrite("runtime_helpers")
from runtime_helpers import Kit  # noqa: E402

pytestmark = pytest.mark.docker

# What the container may see: the image's own ENV, what docker sets, and sandman's list.
# COLUMNS, LINES and LANGUAGE are on the shim's list too (passed when set: pytest-xdist's
# workers have COLUMNS and LINES in their environment, a plain run has not)
ALLOWED = {"PATH", "HOSTNAME", "HOME", "DEBIAN_FRONTEND", "TERM", "USER", "LOGNAME", "TZ", "LANG",
           "LC_ALL", "RT_FIXED", "RT_PASS", "PWD", "SHLVL", "_", "OLDPWD", "COLUMNS", "LINES",
           "LANGUAGE"}


def container_env(p: subprocess.CompletedProcess) -> dict[str, str]:
    assert p.returncode == 0, p.stderr
    return dict(item.split("=", 1) for item in p.stdout.decode().split("\0") if item)


def test_nothing_but_the_list_leaks_in(kit: Kit, mode: str, work: Path) -> None:
    # rootless Podman looks the user's subordinate ids up by $USER: it must be the account's
    user = kit.user.name if kit.user is not None else "alice"
    env = kit.env(mode, SECRET="hunter2", AWS_SECRET_ACCESS_KEY="nope", SSH_AUTH_SOCK="/tmp/agent",
                  RT_PASS="passed", TERM="xterm-256color", USER=user)
    got = container_env(kit.run([kit.shim("rtprobe-1"), "env", "-0"], env=env, cwd=work))
    # Podman adds `container=podman` to every container (systemd's convention), nothing else
    allowed = ALLOWED | {"container"} if kit.podman else ALLOWED
    assert set(got) <= allowed, set(got) - allowed
    assert "hunter2" not in "".join(got.values())
    assert got["RT_PASS"] == "passed"  # the recipe's pass_env
    assert got["RT_FIXED"] == "fixed value"  # the recipe's env
    assert got["TERM"] == "xterm-256color"
    assert got["USER"] == user
    assert got["HOME"] == "/tmp"
    unset = container_env(kit.run([kit.shim("rtprobe-1"), "env", "-0"], env=kit.env(mode), cwd=work))
    assert "RT_PASS" not in unset  # pass_env only when set on the host


def test_timezone_follows_the_host(kit: Kit, mode: str, work: Path) -> None:
    tokyo = kit.run([kit.shim("rtprobe-1"), "date", "+%Z %z"], env=kit.env(mode, TZ="Asia/Tokyo"), cwd=work)
    assert tokyo.stdout == b"JST +0900\n", tokyo.stderr
    host = subprocess.run(["date", "+%z"], capture_output=True, env={"PATH": "/usr/bin:/bin"}).stdout
    same = kit.run([kit.shim("rtprobe-1"), "date", "+%z"], env=kit.env(mode), cwd=work)
    assert same.stdout == host


def host_has_locale(name: str) -> bool:
    have = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    norm = {h.lower().replace("-", "") for h in have}
    return name.lower().replace("-", "") in norm


def shim_stderr(stderr: bytes, env: dict[str, str]) -> bytes:
    """stderr minus the one warning the *host's* bash prints, before the shim's first line,
    when LC_ALL names a locale the host itself lacks (every bash script on that host does)."""
    lc_all = env.get("LC_ALL")
    if lc_all and not host_has_locale(lc_all):
        warning = f"/bin/bash: warning: setlocale: LC_ALL: cannot change locale ({lc_all})\n"
        return stderr.replace(warning.encode(), b"", 1)
    return stderr


@pytest.mark.parametrize("var", ["LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES"])
def test_missing_host_locale_falls_back_without_warnings(kit: Kit, mode: str, work: Path,
                                                         var: str) -> None:
    env = kit.env(mode, **{var: "de_DE.UTF-8"})
    p = kit.run([kit.shim("rtprobe-1"), "bash", "-c", f'echo "${var}"; printf "%s\\n" "é"'], env=env,
            cwd=work)
    assert p.returncode == 0
    assert shim_stderr(p.stderr, env) == b""  # bash in the image would warn for a missing locale
    assert p.stdout == "C.UTF-8\né\n".encode()
    latin = kit.run([kit.shim("rtprobe-1"), "sh", "-c", f'echo "${var}"'],
                env=kit.env(mode, **{var: "de_DE.ISO-8859-1"}), cwd=work)
    assert latin.stdout == b"C\n"
    same = kit.run([kit.shim("rtprobe-1"), "sh", "-c", f'echo "${var}"'],
               env=kit.env(mode, **{var: "C.UTF-8"}), cwd=work)
    assert same.stdout == b"C.UTF-8\n"  # a locale the image has passes unchanged


@pytest.mark.parametrize("var", ["LANG", "LC_ALL"])
def test_legacy_tools_with_an_unknown_host_locale(shared_env: dict[str, str], mode: str,
                                                  tmp_path: Path, var: str) -> None:
    """python2.7 and sqlite3 neither crash nor warn with a host locale their image lacks."""
    env = {**shared_env, var: "de_DE.UTF-8", "LC_CTYPE": "de_DE.UTF-8", "LC_MESSAGES": "de_DE.UTF-8"}
    if mode == "warm":
        env["SANDMAN_WARM"] = "1"
    code = ("import locale, sys; locale.setlocale(locale.LC_ALL, ''); "
            "sys.stdout.write(locale.getpreferredencoding() + '\\n')")
    py = subprocess.run(["python2.7-2.7", "-c", code], env=env, cwd=tmp_path, capture_output=True)
    assert py.returncode == 0, py.stderr
    assert (py.stdout, shim_stderr(py.stderr, env)) == (b"UTF-8\n", b"")
    sq = subprocess.run(["sqlite3-3.34", ":memory:", "select 'é' || 1;"], env=env, cwd=tmp_path,
                        capture_output=True)
    assert (sq.returncode, sq.stdout, shim_stderr(sq.stderr, env)) == (0, "é1\n".encode(), b"")
