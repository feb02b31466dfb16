"""Recipe search path and name resolution; config.toml; paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandman.catalog import Catalog, Source, default_sources, parse_spec
from sandman.config import load_config
from sandman.errors import NotFoundError, StateError, UsageError
from sandman.paths import Paths, builtin_recipes_dir

MINI = 'schema = 1\ntool = "{tool}"\ndescription = "{desc}"\n[versions."1"]\nbase = "debian:bookworm-slim"\n'


def make(root: Path, tool: str, desc: str = "x") -> None:
    (root / tool).mkdir(parents=True)
    (root / tool / "recipe.toml").write_text(MINI.format(tool=tool, desc=desc))


def test_parse_spec() -> None:
    s = parse_spec("team/sqlite3@3.34")
    assert (s.source, s.tool, s.version) == ("team", "sqlite3", "3.34")
    assert str(s) == "team/sqlite3@3.34"
    for bad in ("sqlite3", "sqlite3@", "@3.34", "Sqlite3@1", "a b@1", "sqlite3@3.34@x"):
        with pytest.raises(UsageError, match="is not TOOL@VERSION"):
            parse_spec(bad)
    assert parse_spec("sqlite3", need_version=False).version is None


def test_precedence_and_shadowing(tmp_path: Path) -> None:
    env_dir, user = tmp_path / "env", tmp_path / "home" / "recipes"
    make(env_dir, "sqlite3", "mine")
    make(user, "only-user")
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    cat = Catalog(default_sources(paths, {"SANDMAN_RECIPE_PATH": str(env_dir)}))
    entries = [(e.tool, e.source.name, e.shadowed_by) for e in cat.entries()]
    assert ("sqlite3", "env", None) in entries
    assert ("sqlite3", "builtin", "env") in entries
    assert ("only-user", "user", None) in entries
    _, recipe = cat.load("sqlite3")
    assert recipe.description == "mine"
    _, builtin = cat.load("sqlite3", "builtin")
    assert builtin.version_names == ["3.34", "3.40", "3.46"]


def test_unknown_names_list_what_exists() -> None:
    cat = Catalog([Source("builtin", "builtin", builtin_recipes_dir())])
    with pytest.raises(NotFoundError, match=r"known tools: .*sqlite3"):
        cat.resolve(parse_spec("sqlite@3.34"))
    with pytest.raises(NotFoundError, match=r"versions: 3.34, 3.40, 3.46"):
        cat.resolve(parse_spec("sqlite3@9.9"))
    with pytest.raises(NotFoundError, match="unknown recipe source 'nope'"):
        cat.resolve(parse_spec("nope/sqlite3@3.34"))


def test_paths_follow_sandman_home(tmp_path: Path) -> None:
    p = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    assert p.config_file == tmp_path / "config.toml"
    assert p.bin_dir == tmp_path / "bin"
    assert p.installs_dir.is_relative_to(tmp_path) and p.cache_dir.is_relative_to(tmp_path)
    p2 = Paths.from_env({"SANDMAN_HOME": str(tmp_path), "SANDMAN_BIN_DIR": str(tmp_path / "b2")})
    assert p2.bin_dir == tmp_path / "b2"
    default = Paths.from_env({})
    assert default.bin_dir == Path.home() / ".local" / "bin"


def test_config(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text(
        'registry = "127.0.0.1:5000/team"\n'
        '[tools.symcli.mounts]\ndb = "/srv/a"\n'
        '[tools."symcli@7.6".mounts]\ndb = "/srv/b"\n'
        '[tools.symcli]\nenv = { X = "1" }\nextra_mounts = ["/data:/data:ro"]\n'
    )
    c = load_config(f)
    assert c.registry == "127.0.0.1:5000/team"
    assert c.for_tool("symcli", "9.2").mounts == {"db": "/srv/a"}
    assert c.for_tool("symcli", "7.6").mounts == {"db": "/srv/b"}
    assert c.for_tool("symcli", "7.6").env == {"X": "1"}
    assert c.for_tool("symcli", "7.6").extra_mounts == ("/data:/data:ro",)
    assert load_config(tmp_path / "absent.toml").tools == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("bin_dirr = '/x'\n", "bin_dirr: unknown key"),
        ("[tools.a]\nextra_mounts = ['nocolon']\n", "is not HOST:CONTAINER"),
        ("[tools.a]\nwarm = 'yes'\n", "tools.a.warm: expected true or false"),
        ("warm_idle_minutes = 0\n", "warm_idle_minutes"),
        ("x = [\n", "invalid TOML"),
        ("archive_mirror = 'archive.debian.org/debian'\n", ":1: archive_mirror: expected an http://, https:// or file:// URL"),
        ("\nmirror = 'ftp://m/debian'\n", ":2: mirror: expected an http"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(text)
    with pytest.raises(StateError, match=words) as exc:
        load_config(f)
    assert str(f) in exc.value.message
