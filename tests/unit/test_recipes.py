"""The recipe loader: built-ins validate, and every mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandman.errors import RecipeError
from sandman.paths import builtin_recipes_dir
from sandman.recipes import LineLocator, load_recipe

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
    assert v1.runtime.network is False
    assert v1.runtime.mounts[0].mode == "rw"
    assert v1.runtime.path_env == {"DEMO_DB": "rw"}
    # a version's value replaces the top-level one
    assert v2.runtime.network is True
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
