"""The recipe loader: built-ins validate, and every mistake names file, line and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandman.errors import RecipeError, UnsafeInputError
from sandman.paths import builtin_recipes_dir
from sandman.recipe_check import check_paths, check_recipe, load_recipe
from sandman.recipe_inputs import build_inputs
from sandman.recipe_source import MAX_DOCKERFILE_BYTES, MAX_RECIPE_BYTES, LineLocator

GOOD = """\
schema = 1
tool = "demo"
description = "A demo tool"
entrypoint = ["demo"]
commands = ["demo", "demo-admin"]
env = { A = "1" }
pass_env = ["PGHOST"]
path_env = { DEMO_DB = "rw" }

[[mounts]]
name = "db"
source = "~/.demo"
target = "/var/demo"
mode = "rw"

[versions."1.0"]
base = "debian:bookworm-slim"
packages = ["sqlite3"]

[versions."2.0"]
base = "debian:trixie-slim"
packages = ["sqlite3"]
network = true
commands = ["demo"]
"""


def write(tmp_path: Path, text: str, tool: str = "demo") -> Path:
    d = tmp_path / tool
    d.mkdir(parents=True, exist_ok=True)
    f = d / "recipe.toml"
    f.write_text(text)
    return f


def error_of(tmp_path: Path, text: str, tool: str = "demo") -> RecipeError:
    with pytest.raises(RecipeError) as exc:
        load_recipe(write(tmp_path, text, tool))
    return exc.value


@pytest.mark.parametrize("tool", ["sqlite3", "openssl", "python2", "postgresql-client", "symcli"])
def test_builtin_recipes_validate(tool: str) -> None:
    r = load_recipe(builtin_recipes_dir() / tool / "recipe.toml")
    assert r.tool == tool
    assert r.versions


def test_builtin_versions_are_the_promised_ones() -> None:
    want = {
        "sqlite3": ["3.34", "3.40", "3.46"],
        "openssl": ["1.1", "3.0", "3.5"],
        "python2": ["2.7"],
        "postgresql-client": ["13", "15", "17"],
        "symcli": ["7.6", "8.4", "9.2"],
    }
    for tool, versions in want.items():
        assert load_recipe(builtin_recipes_dir() / tool / "recipe.toml").version_names == versions
    pg = load_recipe(builtin_recipes_dir() / "postgresql-client" / "recipe.toml")
    assert set(pg.versions[0].runtime.commands) >= {"pg_dump", "pg_restore", "psql"}


def test_good_recipe_model(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, GOOD))
    v1, v2 = r.versions
    assert v1.runtime.entrypoint == ("demo",)
    assert v1.runtime.commands == ("demo", "demo-admin")
    assert v1.runtime.network == "none"
    assert v1.runtime.mounts[0].mode == "rw"
    assert v1.runtime.path_env == {"DEMO_DB": "rw"}
    # a version's value replaces the top-level one
    assert v2.runtime.network == "bridge"  # the boolean stays none/bridge
    assert v2.runtime.commands == ("demo",)
    assert v2.runtime.env == {"A": "1"}
    assert v2.build.base == "debian:trixie-slim"


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('packages = ["sqlite3"]\nnetwork', 'packages = ["sqlite3"\nnetwork'))
    assert err.message.startswith(f"{tmp_path / 'demo' / 'recipe.toml'}:")
    assert "invalid TOML" in err.message
    line = int(err.message.split(":")[1])
    assert 20 <= line <= 24


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ('packages = ["sqlite3"]\n\n', 'packages = "sqlite3"\n\n', 18, 'versions."1.0".packages',
         "expected a list of strings"),
        ('mode = "rw"', 'mode = "rx"', 14, "mounts[0].mode", 'expected "ro" or "rw"'),
        ('target = "/var/demo"', 'target = "var/demo"', 13, "mounts[0].target", "absolute path"),
        ("network = true", "netwrok = true", 23, 'versions."2.0".netwrok', "did you mean 'network'"),
        ('tool = "demo"', 'tool = "other"', 2, "tool", "does not match its folder name"),
        ("schema = 1", "schema = 7", 1, "schema", "unsupported schema 7"),
        ('pass_env = ["PGHOST"]', 'pass_env = ["PG HOST"]', 7, "pass_env", "not a valid environment"),
    ],
)
def test_errors_name_file_line_key(tmp_path: Path, old: str, new: str, line: int, key: str,
                                   words: str) -> None:
    assert old in GOOD
    err = error_of(tmp_path, GOOD.replace(old, new, 1))
    path = tmp_path / "demo" / "recipe.toml"
    assert err.message.startswith(f"{path}:{line}: {key}: "), err.message
    assert words in err.message
    assert "\n" not in err.message


def test_every_error_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace('mode = "rw"', 'mode = "x"').replace("network = true", "network = 1")
    err = error_of(tmp_path, text)
    assert "mounts[0].mode" in err.message
    assert err.detail is not None and 'versions."2.0".network' in err.detail


def test_missing_required(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'schema = 1\ntool = "demo"\n')
    assert "missing required key 'description'" in err.message
    assert "versions" in (err.detail or "")


def test_build_mode_conflicts(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    text = GOOD.replace('packages = ["sqlite3"]\n\n', 'packages = ["sqlite3"]\ndockerfile = "Dockerfile"\n\n', 1)
    err = error_of(tmp_path, text)
    assert "use either 'dockerfile' or 'base'" in err.message
    err = error_of(tmp_path, GOOD.replace('base = "debian:bookworm-slim"\n', "", 1))
    assert "needs 'base'" in err.message


def test_dockerfile_and_files_must_exist_inside(tmp_path: Path) -> None:
    text = GOOD.replace('base = "debian:bookworm-slim"\npackages = ["sqlite3"]',
                        'dockerfile = "Dockerfile"\nfiles = ["../etc/passwd"]', 1)
    err = error_of(tmp_path, text)
    everything = err.message + "\n" + (err.detail or "")
    assert "'Dockerfile' does not exist" in everything
    assert "'../etc/passwd' must be a relative path inside the recipe folder" in everything


def test_kits_validated(tmp_path: Path) -> None:
    text = GOOD.replace('packages = ["sqlite3"]\n\n', 'packages = ["sqlite3"]\nkits = [{ file = "k.tgz", sha256 = "abc" }]\n\n', 1)
    err = error_of(tmp_path, text)
    assert 'versions."1.0".kits[0].sha256' in err.message
    assert "64 lower-case hex" in err.message


def test_not_utf8(tmp_path: Path) -> None:
    f = write(tmp_path, "")
    f.write_bytes(b"tool = \"\xff\"\n")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(f)


def test_line_locator_quoted_and_arrays() -> None:
    text = 'a = 1\n[versions."3.34"]\nbase = "x"\n[[mounts]]\nname = "a"\n[[mounts]]\nname = "b"\n'
    loc = LineLocator(text)
    assert loc.find(("versions", "3.34", "base")) == 3
    assert loc.find(("mounts", 1, "name")) == 7
    assert loc.find(("mounts", 0, "name")) == 5
    assert loc.find(("a",)) == 1


# -- names with a trailing newline (issue 9 item 5): `$` would let them through --------------
@pytest.mark.parametrize(("old", "new", "key"), [
    ('commands = ["demo", "demo-admin"]', 'commands = ["demo", "ls\\n"]', "commands"),
    ('pass_env = ["PGHOST"]', 'pass_env = ["HOME\\n"]', "pass_env"),
    ('[versions."1.0"]', '[versions."1\\n"]', 'versions."1\\n"'),
    ('env = { A = "1" }', 'env = { "A\\n" = "1" }', "env"),
    ('name = "db"', 'name = "db\\n"', "mounts[0].name"),
    ('packages = ["sqlite3"]\n\n[versions."2.0"]', 'packages = ["sqlite3\\n"]\n\n[versions."2.0"]',
     'versions."1.0".packages'),
])
def test_names_with_a_trailing_newline_are_rejected(tmp_path: Path, old: str, new: str,
                                                     key: str) -> None:
    assert old in GOOD
    f = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError) as exc:
        load_recipe(f)
    err = exc.value
    assert err.exit_code == RecipeError.exit_code
    line = next(n for n, text in enumerate(f.read_text().splitlines(), 1) if new.split("\n")[0] in text)
    assert err.message.startswith(f"{f}:{line}: {key}"), err.message
    assert "\\n'" in err.message  # the name is shown escaped...
    assert "\n" not in err.message  # ...and the message stays one line


def test_error_messages_escape_control_characters(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace('source = "~/.demo"', 'source = "\\u001b[2Jrel"', 1))
    assert "\x1b" not in err.message and "'\\e[2Jrel' must be an absolute path" in err.message


# -- build inputs (issue 9 item 4): regular files inside the recipe folder only --------------
def files_recipe(tmp_path: Path, files: str = '["etc/shadow"]', extra: str = "") -> Path:
    return write(tmp_path, f'schema = 1\ntool = "demo"\ndescription = "d"\n\n[versions."1"]\n'
                           f'base = "debian:bookworm-slim"\nfiles = {files}\n{extra}')


def unsafe_of(f: Path, *, check: bool = False) -> UnsafeInputError:
    with pytest.raises(UnsafeInputError) as exc:
        (check_recipe if check else load_recipe)(f)
    assert exc.value.exit_code == UnsafeInputError.exit_code
    return exc.value


def test_files_through_a_symlinked_folder_are_refused(tmp_path: Path) -> None:
    f = files_recipe(tmp_path)
    (f.parent / "etc").symlink_to("/etc")
    err = unsafe_of(f)
    assert err.message.startswith(f"{f}:7: versions.1.files: 'etc/shadow' resolves to "
                                  "/etc/shadow, outside the recipe folder"), err.message


def test_a_symlink_inside_a_files_folder_is_refused(tmp_path: Path) -> None:
    f = files_recipe(tmp_path, '["data"]')
    (f.parent / "data").mkdir()
    (f.parent / "data" / "ok.txt").write_text("fine")
    (f.parent / "data" / "shadow").symlink_to("/etc/shadow")
    load_recipe(f)  # the folder itself is fine; its content is walked by check and by build
    err = unsafe_of(f, check=True)
    assert err.message.startswith(f"{f}:7: versions.1.files: 'data/shadow' resolves to")


def test_symlinks_that_stay_inside_are_followed(tmp_path: Path) -> None:
    f = files_recipe(tmp_path, '["data", "alias.sh"]')
    (f.parent / "data").mkdir()
    (f.parent / "data" / "real.sh").write_text("echo hi\n")
    (f.parent / "data" / "loop").symlink_to("..")  # a link to an ancestor: no endless walk
    (f.parent / "alias.sh").symlink_to("data/real.sh")
    r = check_recipe(f)
    inputs = build_inputs(r, r.versions[0])
    assert inputs["files/alias.sh"] == (f.parent / "data" / "real.sh").resolve()
    assert inputs["files/data/real.sh"] == (f.parent / "data" / "real.sh").resolve()


def test_a_dockerfile_linked_to_a_secret_never_shows_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text("API_TOKEN=s3cr3t-do-not-print\n")
    f = write(tmp_path, 'schema = 1\ntool = "demo"\ndescription = "d"\n\n[versions."1"]\n'
                        'dockerfile = "Dockerfile"\n')
    (f.parent / "Dockerfile").symlink_to(secret)
    err = unsafe_of(f)
    assert err.message.startswith(f"{f}:6: versions.1.dockerfile: 'Dockerfile' resolves to")
    assert "s3cr3t" not in err.message + (err.detail or "")


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "big"])
def test_a_dockerfile_that_is_not_a_small_regular_file_is_refused(tmp_path: Path,
                                                                   target: str) -> None:
    f = write(tmp_path, 'schema = 1\ntool = "demo"\ndescription = "d"\n\n[versions."1"]\n'
                        'dockerfile = "Dockerfile"\n')
    df = f.parent / "Dockerfile"
    if target == "fifo":
        os.mkfifo(df)  # opening it for reading would block forever
    elif target == "big":
        df.write_bytes(b"# x\n" * (MAX_DOCKERFILE_BYTES // 4 + 1))
    else:
        (f.parent / "dev").symlink_to("/dev")
        df.symlink_to("dev/zero")  # inside by name, a device once resolved
    err = unsafe_of(f)
    assert err.message.startswith(f"{f}:6: versions.1.dockerfile: ")
    if target == "big":
        assert f"larger than {MAX_DOCKERFILE_BYTES} bytes" in err.message
    elif target == "fifo":
        assert "not a regular file" in err.message


def test_a_recipe_file_that_is_a_device_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    d.mkdir()
    (d / "recipe.toml").symlink_to("/dev/zero")
    err = unsafe_of(d / "recipe.toml")
    assert err.message == f"{d / 'recipe.toml'}: the recipe file is not a regular file"


def test_a_huge_recipe_file_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "# padding\n" * (MAX_RECIPE_BYTES // 10 + 1))
    assert "larger than" in unsafe_of(f).message


def test_check_paths_reads_a_folder_of_recipe_folders(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    good = write(root, GOOD)
    bad_cmd = write(root, GOOD.replace('"demo-admin"', '"ls\\n"').replace('tool = "demo"', 'tool = "b"'),
                    tool="b")
    bad_ver = write(root, GOOD.replace('[versions."2.0"]', '[versions."2\\n"]')
                    .replace('tool = "demo"', 'tool = "c"'), tool="c")
    (root / "notes").mkdir()  # a folder without a recipe is not one
    checked, errors = check_paths([root])
    assert checked == 3 and good.exists()
    assert [e.message.split(":")[0] for e in errors] == [str(bad_cmd), str(bad_ver)]
    assert errors[0].message.startswith(f"{bad_cmd}:5: commands: ")
    line = bad_ver.read_text().splitlines().index('[versions."2\\n"]') + 1
    assert errors[1].message.startswith(f"{bad_ver}:{line}: versions.\"2\\n\": ")
    assert check_paths([root / "demo"]) == (1, [])
    (tmp_path / "empty").mkdir()
    checked, errors = check_paths([tmp_path / "empty"])
    assert checked == 0 and "no recipe.toml" in errors[0].message
