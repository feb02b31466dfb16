"""Issue 20 item 3: each rule a shim runs on its hot path lives in exactly one place, the bash of
shims/, and sandman's own checks run that copy (sandman/runtime_rules.py):

- mount refusal: shims/shim.bash `sm_refused` (sandman.shims.refusal runs it);
- the pin grammar, the choice and a pin's target: shims/default.bash (sandman.pinfiles and
  sandman.pins run its parts);
- the warm daemon key: shims/warm.bash (sandman.warm.daemon_key runs it);
- Podman's run-time folder and sockets, and when a folder is refused: shims/shim.bash (the Podman
  folder rule; sandman.engine_choice.podman_paths runs it);
- the subordinate ids of rootless Podman: shims/shim.bash (the subordinate id rule;
  sandman.engine_choice.subid_ranges runs it).

The first tests fail when a second copy appears: a rule's words and tokens are in the code (not
the comments or docstrings) of exactly one file of sandman/ and shims/. The others change the
one copy, in a private copy of shims/, and see sandman's answer change with it.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from sandman import engine_choice, pinfiles, shims, warm
from sandman import paths as paths_module
from sandman.commands import pins

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "sandman").rglob("*.py"), *(ROOT / "shims").iterdir()])
SHIM, DEFAULT, WARM = "shims/shim.bash", "shims/default.bash", "shims/warm.bash"


def _python_code(text: str) -> list[str]:
    """The string constants of a module's code: what it says and matches, not its docstrings."""
    tree = ast.parse(text)
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def _other_code(text: str) -> list[str]:
    """The lines of a bash or C file without their comments (a line's own, or `  # ...` after
    its code)."""
    return [line.split("  # ", 1)[0] for line in text.splitlines()
            if not line.lstrip().startswith(("#", "//", "/*", "*"))]


def _code() -> dict[str, list[str]]:
    out = {}
    for f in SOURCES:
        text = f.read_text(encoding="utf-8", errors="replace")
        out[str(f.relative_to(ROOT))] = _python_code(text) if f.suffix == ".py" else _other_code(text)
    return out


CODE = _code()


def _holders(fragment: str, *, exact: bool = False) -> list[str]:
    return sorted(name for name, pieces in CODE.items()
                  if any(fragment == p if exact else fragment in p for p in pieces))


# (fragment, the one file whose code holds it)
REFUSAL = [
    ("it is / (set SANDMAN_ALLOW_ROOT=1 to allow)", SHIM),
    ("it is your home directory (set SANDMAN_ALLOW_HOME=1 to allow)", SHIM),
    ("it would expose the Docker socket", SHIM),
    ("it would expose the Podman socket", SHIM),
    ("the host's kernel and devices", SHIM),
    ("the host's run-time folder (service and session sockets)", SHIM),
    ("(your session's sockets)", SHIM),
    ("a socket, FIFO or device", SHIM),
    ("it is a shared folder (sticky", SHIM),
    ("/run/media", SHIM),
]
PIN_GRAMMAR = [
    ("malformed table header", DEFAULT),
    ('[tools] holds only tool = "version" lines, not tables', DEFAULT),
    ("a second [tools] table", DEFAULT),
    ("is pinned twice", DEFAULT),
    ("not a version (letters, digits and . _ + - only)", DEFAULT),
    ("pins go in a [tools] table", DEFAULT),
    ('write each pin as tool = "version"', DEFAULT),
    ("write the pin as", DEFAULT),
    ("no version (write:", DEFAULT),
    ("([A-Za-z0-9._-]+)", DEFAULT),  # a quoted key
    ("version[[:space:]]*=", DEFAULT),  # mise's { version = "v" }
    ("mise.toml", DEFAULT),  # the walk: which files, in which order
    ("/$SM_PROJECT_FILE", DEFAULT),
    ("/$SM_TOOL_VERSIONS", DEFAULT),
]
PIN_FILE_NAMES = [(".sandman.toml", "sandman/pinfiles.py"), (".tool-versions", "sandman/pinfiles.py")]
DAEMON_KEY = [("%25", WARM), ("%2F", WARM)]
PODMAN_FOLDER = [
    ("podman-run-", SHIM),
    ("/run/user/", SHIM),
    ("podman/podman.sock", SHIM),
    ("/run/podman", SHIM),
    (".sandman-runtime-ok", SHIM),
    ("sandman does not use it", SHIM),
]
SUBIDS = [("has none): an admin runs", SHIM)]


@pytest.mark.parametrize(("fragment", "home"),
                         REFUSAL + PIN_GRAMMAR + DAEMON_KEY + PODMAN_FOLDER + SUBIDS[:1])
def test_a_rule_s_words_and_tokens_are_in_one_file(fragment: str, home: str) -> None:
    assert _holders(fragment) == [home]


@pytest.mark.parametrize(("name", "home"), PIN_FILE_NAMES)
def test_a_pin_file_is_named_once(name: str, home: str) -> None:
    """Named once, as a value: the plain shim gets it rendered (SM_PROJECT_FILE...)."""
    assert _holders(name, exact=True) == [home]
    assert not [line for line in CODE[DEFAULT] if name in line]


def test_no_python_spelling_of_the_shims_patterns() -> None:
    """bash's [[:space:]] in Python's spelling was the mark of the pin grammar's twin."""
    assert _holders("[ \\t\\r\\v\\f]") == []
    assert _holders(" \t\r\v\f") == []


# -- sandman's answer follows the one copy ------------------------------------------------------
@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private copy of shims/ that sandman reads instead; edit(file, old, new) changes it."""
    folder = tmp_path / "shims"
    shutil.copytree(ROOT / "shims", folder)
    for module in (paths_module, pinfiles, pins, shims, warm, engine_choice):
        monkeypatch.setattr(module, "shim_templates_dir", lambda: folder, raising=False)
    warm.daemon_key.cache_clear()
    engine_choice._podman_paths.cache_clear()

    def edit(name: str, old: str, new: str) -> None:
        f = folder / name
        text = f.read_text()
        assert old in text
        f.write_text(text.replace(old, new))
        warm.daemon_key.cache_clear()
        engine_choice._podman_paths.cache_clear()

    yield edit
    warm.daemon_key.cache_clear()
    engine_choice._podman_paths.cache_clear()


def test_the_refusal_sandman_checks_is_the_runtime_s(templates) -> None:
    assert shims.refusal("/") == "it is / (set SANDMAN_ALLOW_ROOT=1 to allow)"
    templates("shim.bash", 'sm_why="it is / (set', 'sm_why="the root, / (set')
    assert shims.refusal("/") == "the root, / (set SANDMAN_ALLOW_ROOT=1 to allow)"


def test_the_pin_grammar_sandman_reads_is_the_shim_s(templates, tmp_path: Path) -> None:
    with pytest.raises(pinfiles.PinSyntaxError, match="malformed table header"):
        pins.scan("[tools\n")
    templates("default.bash", '"malformed table header"', '"a header that does not close"')
    with pytest.raises(pinfiles.PinSyntaxError, match="a header that does not close"):
        pins.scan("[tools\n")
    f = tmp_path / ".tool-versions"
    f.write_text("tt 1\n")
    assert pinfiles.read_pin(f, "tt") == "1"
    templates("default.bash", "ver=${BASH_REMATCH[3]} sm_at=$n", "ver=7 sm_at=$n")
    assert pinfiles.read_pin(f, "tt") == "7"


def test_the_choice_sandman_reports_is_the_shim_s(templates, tmp_path: Path) -> None:
    paths = paths_module.Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mise.toml").write_text('[tools]\ntt = "1"\n')
    (tmp_path / "w" / ".mise.toml").write_text('[tools]\ntt = "2"\n')
    assert pins.choose(paths, "tt", tmp_path / "w", {}).version == "1"
    templates("default.bash", '"$sm_d/mise.toml" "$sm_d/.mise.toml"', '"$sm_d/.mise.toml" "$sm_d/mise.toml"')
    assert pins.choose(paths, "tt", tmp_path / "w", {}).version == "2"


def test_the_daemon_key_sandman_uses_is_the_shim_s(templates) -> None:
    assert warm.daemon_key("tcp://a/b") == "@tcp:%2F%2Fa%2Fb"
    templates("warm.bash", "sm_dkey=@${sm_dkey//\\//%2F}", "sm_dkey=@${sm_dkey//\\//_}")
    assert warm.daemon_key("tcp://a/b") == "@tcp:__a_b"


def test_the_podman_folder_sandman_uses_is_the_shim_s(templates) -> None:
    assert engine_choice.podman_paths({}).all_sockets[0] == "/run/podman/podman.sock"
    templates("shim.bash", "sm_psocks=(/run/podman/podman.sock", "sm_psocks=(/run/podman/api.sock")
    assert engine_choice.podman_paths({}).all_sockets[0] == "/run/podman/api.sock"
    assert "/run/podman/api.sock" in shims.podman_socket_paths()


def test_the_subordinate_ids_sandman_reads_are_the_shim_s(templates, tmp_path: Path) -> None:
    f = tmp_path / "subids"
    f.write_text("alice:100000:65536\n")
    assert engine_choice.subid_ranges("alice", 1, (str(f), str(f)))[0] == ["100000+65536"] * 2
    templates("shim.bash", "sm_ranges[-1]=$s+$c", "sm_ranges[-1]=$s-$c")
    assert engine_choice.subid_ranges("alice", 1, (str(f), str(f)))[0] == ["100000-65536"] * 2
