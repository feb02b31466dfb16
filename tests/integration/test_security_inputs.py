"""Malicious recipes, the exact attacks of issue 9 (items 4 and 5) and issue 10 §5, end to end.

Each test writes a recipe into a SANDMAN_RECIPE_PATH folder and runs the real `sandman` CLI in a
subprocess: what must never happen (a host secret in an image, the output or the log; escape
sequences reaching a terminal; a shim for a command the image lacks) is checked on the real
daemon, and a positive control next to each attack shows that the same pipeline does copy,
print or install what it is allowed to.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import ImageRemover, log_file, paths_of, sandman_argv
from ptyrun import run_on_pty

from sandman.errors import ConsentError, MissingCommandError, RecipeError, UnsafeInputError
from sandman.names import LABEL_TOOL

TOOLS = ("h3sec-shadow", "h3sec-ctl", "h3sec-cmds", "h3sec-nosh")
ATTACK = "\\r\\u001b[1A\\u001b[J  + env set TZ_HINT=UTC"  # as written in the TOML file


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images(remove_images_after_module: ImageRemover) -> None:
    """Images built here carry one of TOOLS as their tool label; they go at the end."""
    remove_images_after_module(*TOOLS)


def recipe(root: Path, tool: str, body: str) -> Path:
    d = root / tool
    d.mkdir(parents=True, exist_ok=True)
    f = d / "recipe.toml"
    f.write_text(f'schema = 1\ntool = "{tool}"\ndescription = "issue 9 attack"\n{body}')
    return f


def line_of(f: Path, needle: str) -> int:
    return next(n for n, text in enumerate(f.read_text().splitlines(), 1) if needle in text)


def log_text(home: Path) -> str:
    return log_file(home).read_text(errors="replace")


def images_of(tool: str) -> list[str]:
    out = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter",
                          f"label={LABEL_TOOL}={tool}"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()))  # an image with several tags is listed once per tag


def shadow_lines() -> list[str]:
    """/etc/shadow's entries (long enough to be unmistakable) for the never-seen checks."""
    return [ln for ln in Path("/etc/shadow").read_text().splitlines() if len(ln) >= 12]


def one_line(stderr: str) -> str:
    """The error: one line, the last one (an install may first say what the tool can reach)."""
    lines = stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("sandman: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


# -- issue 9 item 4: build inputs --------------------------------------------------------------
@pytest.mark.docker
def test_files_through_a_symlinked_folder_never_reach_an_image(
        sandman, home: Path, tmp_path: Path, docker_client) -> None:
    root = tmp_path / "recipes"
    env = {"SANDMAN_RECIPE_PATH": str(root)}
    f = recipe(root, "h3sec-shadow",
               '\n[versions."1"]\nbase = "debian:bookworm-slim"\nfiles = ["etc/shadow"]\n')
    (f.parent / "etc").symlink_to("/etc")  # the attack: ln -s /etc etc
    secrets = shadow_lines()
    assert secrets, "the test needs a readable /etc/shadow"

    got = sandman("install", "h3sec-shadow@1", env=env)
    assert got.returncode == UnsafeInputError.exit_code, got.stderr
    assert one_line(got.stderr).startswith(
        f"sandman: {f}:{line_of(f, 'files =')}: versions.1.files: 'etc/shadow' resolves to /etc/shadow")
    # the same attack one level down: a link inside a folder listed in `files`
    f.write_text(f.read_text().replace('["etc/shadow"]', '["conf"]'))
    (f.parent / "conf").mkdir()
    (f.parent / "conf" / "app.ini").write_text("allowed = yes\n")
    (f.parent / "conf" / "shadow").symlink_to("/etc/shadow")
    got2 = sandman("install", "h3sec-shadow@1", env=env)
    assert got2.returncode == UnsafeInputError.exit_code, got2.stderr
    assert "'conf/shadow' resolves to /etc/shadow" in one_line(got2.stderr)
    assert images_of("h3sec-shadow") == []  # nothing was built, so no image holds the secret
    for text in (got.stdout, got.stderr, got2.stdout, got2.stderr, log_text(home)):
        assert not any(s in text for s in secrets)

    # the control: without the link the same recipe builds and copies the folder's own file
    (f.parent / "conf" / "shadow").unlink()
    ok = sandman("install", "h3sec-shadow@1", env=env)
    assert ok.returncode == 0, ok.stderr
    [image] = images_of("h3sec-shadow")
    cat = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "sh", "-c",
                          "cat /opt/sandman/files/conf/app.ini; ls -A /opt/sandman/files/conf"],
                         capture_output=True, text=True, timeout=120)
    assert cat.stdout == "allowed = yes\napp.ini\n", cat.stderr


@pytest.mark.parametrize("target", ["secret", "/dev/zero"])
def test_a_dockerfile_linked_out_of_the_folder_is_refused_unread(
        sandman, home: Path, tmp_path: Path, target: str) -> None:
    """No daemon needed: the recipe is refused when it is loaded, before any build."""
    root = tmp_path / "recipes"
    f = recipe(root, "h3sec-shadow", '\n[versions."1"]\ndockerfile = "Dockerfile"\n')
    secret = tmp_path / "secret.env"
    secret.write_text("FROM_TOKEN=h3-canary-5e1f9c\n")
    secret.chmod(0o600)
    (f.parent / "Dockerfile").symlink_to(secret if target == "secret" else target)
    started = time.monotonic()
    got = sandman("install", "h3sec-shadow@1", env={"SANDMAN_RECIPE_PATH": str(root)},
                  timeout=60)
    assert time.monotonic() - started < 30  # /dev/zero is never read
    assert got.returncode == UnsafeInputError.exit_code, got.stderr
    assert one_line(got.stderr).startswith(
        f"sandman: {f}:{line_of(f, 'dockerfile =')}: versions.1.dockerfile: 'Dockerfile' resolves to")
    assert "h3-canary" not in got.stdout + got.stderr + log_text(home)


# -- issue 9 item 5: control characters ---------------------------------------------------------
CTL_V1 = '\n[versions."1"]\nbase = "debian:bookworm-slim"\nrun = ["echo h3sec-ctl"]\n'
CTL_V2 = '''env = {{ TZ_HINT = "{attack}" }}

[[mounts]]
name = "keys"
source = "{keys}"
target = "/k"
mode = "rw"
''' + CTL_V1


@pytest.mark.docker
def test_the_consent_text_shows_escape_sequences_and_obeys_none(
        sandman, home: Path, tmp_path: Path, shim_env: dict[str, str], docker_client) -> None:
    root = tmp_path / "recipes"
    keys = tmp_path / "keys"
    keys.mkdir()
    env = {"SANDMAN_RECIPE_PATH": str(root)}
    escaped = "\\r\\e[1A\\e[J  + env set TZ_HINT=UTC"

    # first install: the disclosure lists the value, escaped
    recipe(root, "h3sec-ctl", CTL_V2.format(attack=ATTACK, keys=keys))
    first = sandman("install", "--yes", "h3sec-ctl@1", env=env)  # grants a rw mount
    assert first.returncode == 0, first.stderr
    assert f"env set: TZ_HINT={escaped}" in first.stderr
    assert f"mount keys: {keys} -> /k (read-write)" in first.stderr
    assert "\x1b" not in first.stderr and "\r" not in first.stderr

    # an update that grants the mount and the env value: the refusal lists both, escaped
    recipe(root, "h3sec-ctl", CTL_V1)
    assert sandman("install", "--yes", "h3sec-ctl@1", env=env).returncode == 0
    recipe(root, "h3sec-ctl", CTL_V2.format(attack=ATTACK, keys=keys))
    refused = sandman("install", "h3sec-ctl@1", env=env)
    assert refused.returncode == ConsentError.exit_code, refused.stderr
    assert f"+ mount keys: {keys} -> /k (read-write)" in refused.stderr
    assert f"+ env set TZ_HINT={escaped}" in refused.stderr
    assert "\x1b" not in refused.stderr and "\r" not in refused.stderr

    # the prompt on a real terminal: the mount line is still there when the question comes
    code, seen, _ = run_on_pty(sandman_argv("install", "h3sec-ctl@1"),
                               env={**shim_env, **env}, stdout_tty=False,
                               replies={b"Accept these changes?": b"n\n"})
    assert code == ConsentError.exit_code, seen
    text = seen.decode(errors="replace")
    assert text.index(f"+ mount keys: {keys} -> /k (read-write)") < text.index(
        f"+ env set TZ_HINT={escaped}") < text.index("Accept these changes?")
    assert b"\x1b" not in seen and b"\r\x1b" not in seen

    log = log_text(home)
    assert escaped in log and "\x1b" not in log and "\r" not in log


@pytest.mark.parametrize(("old", "new", "key"), [
    ('run = ["echo h3sec-ctl"]', 'run = ["echo h3sec-ctl"]\ncommands = ["ls\\n"]',
     "versions.1.commands: 'ls\\n'"),
    ('run = ["echo h3sec-ctl"]', 'run = ["echo h3sec-ctl"]\npass_env = ["HOME\\n"]',
     "versions.1.pass_env: 'HOME\\n'"),
    ('[versions."1"]', '[versions."1\\n"]', 'versions."1\\n": \'1\\n\''),
])
def test_names_with_a_trailing_newline_exit_112_with_file_line(
        sandman, tmp_path: Path, old: str, new: str, key: str) -> None:
    root = tmp_path / "recipes"
    f = recipe(root, "h3sec-ctl", CTL_V1.replace(old, new))
    where = f"{f}:{line_of(f, new.splitlines()[-1])}: {key}"
    check = sandman("recipes", "check", str(f.parent))
    assert check.returncode == RecipeError.exit_code, check.stderr
    assert check.stderr.startswith(where), check.stderr
    install = sandman("install", "h3sec-ctl@1", env={"SANDMAN_RECIPE_PATH": str(root)})
    assert install.returncode == RecipeError.exit_code, install.stderr
    assert one_line(install.stderr).startswith(f"sandman: {where}")


# -- issue 10 §5: `recipes check DIR` of recipe folders -----------------------------------------
def test_recipes_check_reads_every_recipe_folder_of_a_dir(sandman, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    recipe(root, "h3sec-ok", CTL_V1)
    bad1 = recipe(root, "h3sec-bad1", CTL_V1.replace("base =", "bsae ="))
    bad2 = recipe(root, "h3sec-bad2", CTL_V1 + 'commands = ["jq x"]\n')
    got = sandman("recipes", "check", str(root))
    assert got.returncode == RecipeError.exit_code, got.stderr
    lines = got.stderr.splitlines()
    assert lines[0].startswith(f"{bad1}:{line_of(bad1, 'bsae')}: versions.1.bsae: unknown key")
    assert any(x.startswith(f"{bad2}:{line_of(bad2, 'commands')}: versions.1.commands: 'jq x'")
               for x in lines), got.stderr
    assert "h3sec-ok" not in got.stderr
    (bad1.parent / "recipe.toml").unlink()
    bad2.unlink()
    good = sandman("recipes", "check", str(root))
    assert good.returncode == 0, good.stderr
    assert "1 recipe(s) OK" in good.stderr


# -- issue 10 §5: declared commands missing from the image --------------------------------------
def shims_of(home: Path) -> list[str]:
    return sorted(p.name for p in paths_of(home).bin_dir.iterdir()) if paths_of(home).bin_dir.is_dir() else []


@pytest.mark.docker
def test_a_declared_command_missing_from_the_image_fails_the_install(
        sandman, home: Path, tmp_path: Path, docker_client) -> None:
    root = tmp_path / "recipes"
    env = {"SANDMAN_RECIPE_PATH": str(root)}
    body = ('commands = {cmds}\nsmoke = ["ls", "/"]\n\n[versions."1"]\n'
            'base = "debian:bookworm-slim"\nrun = ["echo h3sec-cmds"]\n')
    recipe(root, "h3sec-cmds", body.format(cmds='["ls", "jqx"]'))
    got = sandman("install", "h3sec-cmds@1", env=env)
    assert got.returncode == MissingCommandError.exit_code, got.stderr
    assert "declared command 'jqx' not found in the new image" in one_line(got.stderr)
    assert images_of("h3sec-cmds") == []  # built, checked, discarded: never tagged
    assert shims_of(home) == []

    # the control: the same image with only real commands installs and runs
    recipe(root, "h3sec-cmds", body.format(cmds='["ls"]'))
    ok = sandman("install", "h3sec-cmds@1", env=env)
    assert ok.returncode == 0, ok.stderr
    assert shims_of(home) == ["h3sec-cmds-1", "ls-1"]
    [image] = images_of("h3sec-cmds")

    # commands are not in the fingerprint: a recipe that adds one reuses the cached image, and
    # the install is refused all the same; the good image and the existing shims stay
    recipe(root, "h3sec-cmds", body.format(cmds='["ls", "jqx"]'))
    again = sandman("install", "h3sec-cmds@1", env=env)
    assert again.returncode == MissingCommandError.exit_code, again.stderr
    assert "'jqx' not found in its image" in one_line(again.stderr)
    assert images_of("h3sec-cmds") == [image]
    assert shims_of(home) == ["h3sec-cmds-1", "ls-1"]


@pytest.mark.docker
def test_commands_are_found_in_an_image_without_a_shell(
        sandman, home: Path, tmp_path: Path, docker_client) -> None:
    root = tmp_path / "recipes"
    env = {"SANDMAN_RECIPE_PATH": str(root)}
    f = recipe(root, "h3sec-nosh", 'commands = ["ls", "jqx"]\nsmoke = ["ls", "/"]\n\n'
               '[versions."1"]\ndockerfile = "Dockerfile"\n')
    (f.parent / "Dockerfile").write_text("FROM debian:bookworm-slim\nRUN rm /bin/sh\n")
    got = sandman("install", "h3sec-nosh@1", env=env)
    assert got.returncode == MissingCommandError.exit_code, got.stderr
    assert "declared command 'jqx' not found in the new image" in one_line(got.stderr)
    assert images_of("h3sec-nosh") == []
    f.write_text(f.read_text().replace('["ls", "jqx"]', '["ls"]'))
    ok = sandman("install", "h3sec-nosh@1", env=env)
    assert ok.returncode == 0, ok.stderr
    [image] = images_of("h3sec-nosh")
    nosh = subprocess.run(["docker", "run", "--rm", image, "/bin/sh", "-c", "true"],
                          capture_output=True, text=True, timeout=120)
    assert nosh.returncode == 127, nosh.stderr  # really no shell: the fallback did the check


def test_recipes_show_and_list_escape_recipe_text(sandman, tmp_path: Path) -> None:
    root = tmp_path / "recipes"
    f = recipe(root, "h3sec-ctl", CTL_V2.format(attack=ATTACK, keys="/srv/\\u001b[2Jkeys"))
    f.write_text(f.read_text().replace('"issue 9 attack"', '"clean\\u001b[2K\\rfake line"'))
    env = {"SANDMAN_RECIPE_PATH": str(root)}
    show = sandman("recipes", "show", "h3sec-ctl", env=env)
    assert show.returncode == 0, show.stderr
    assert "h3sec-ctl: clean\\e[2K\\rfake line" in show.stdout
    assert "keys: /srv/\\e[2Jkeys -> /k (rw)" in show.stdout
    assert "TZ_HINT=\\r\\e[1A\\e[J  + env set TZ_HINT=UTC" in show.stdout
    listed = sandman("recipes", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "clean\\e[2K\\rfake line" in listed.stdout
    for text in (show.stdout, listed.stdout):
        assert "\x1b" not in text and "\r" not in text
