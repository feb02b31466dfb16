"""Label keys, role values, the Docker socket and the shim runtime's exit codes are typed once.

sandman/names.py owns every `io.sandman.*` label key and the Docker socket path; sandman's
modules import them, and the bash runtime and the agent get them as values (`$SM_LABEL_ROLE`,
`$SM_EXIT_MOUNT`). These tests fail when a second spelling appears: a label key or the socket
path written out in another module, a label the shims spell that sandman does not know, or an
exit code the shims use that is not in errors.EXIT_GROUPS (or not the code rendered for its name).
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import sandman
from sandman import errors, names
from sandman.commands import pins
from sandman.paths import Paths, shim_templates_dir
from sandman.shims import runtime_text

PACKAGE = Path(sandman.__file__).resolve().parent
SHIMS = shim_templates_dir()
RUNTIME_FILES = ("shim.bash", "warm.bash")  # rendered together into the runtime, with shims.runtime_values
KNOWN_LABELS = set(names.LABELS.values()) | set(names.IMAGE_LABELS.values())


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings: prose may name a label."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _is_label_prefix(node: ast.AST) -> bool:
    return (isinstance(node, ast.FormattedValue)
            and ((isinstance(node.value, ast.Name) and node.value.id == "LABEL")
                 or (isinstance(node.value, ast.Attribute) and node.value.attr == "LABEL")))


def second_spellings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each label key or Docker socket path a module spells itself: a string
    holding `io.sandman` or /var/run/docker.sock, or an f-string `{LABEL}.word`. Building a key
    from a keyword (`f"{LABEL}.{k}"`, the engine's label filters) is no spelling."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if names.LABEL in node.value or names.DOCKER_SOCKET in node.value:
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            for before, after in itertools.pairwise(parts):
                if (_is_label_prefix(before) and isinstance(after, ast.Constant)
                        and re.match(r"\.[A-Za-z]", str(after.value))):
                    found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_the_rule_catches_what_it_should() -> None:
    got = [text for _, text in second_spellings(
        'A = "io.sandman.role"\n'
        'B = f"{LABEL}.bases"\n'
        'C = {f"{names.LABEL}.tool": 1}\n'
        'D = "unix:///var/run/docker.sock"\n')]
    assert got == ["io.sandman.role", "f'{LABEL}.bases'", "f'{names.LABEL}.tool'",
                   "unix:///var/run/docker.sock"]
    assert second_spellings(
        '"""The `io.sandman.bases` label, /var/run/docker.sock."""\n'
        'def f(k, v):\n'
        '    """Filters on io.sandman.role."""\n'
        '    return [f"{LABEL}.{k}={v}", f"{LABEL_ROLE}=warm", LABEL_TOOL]\n') == []


def test_no_module_but_names_spells_a_label_or_the_docker_socket() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "names.py":
            continue
        bad += [f"sandman/{path.relative_to(PACKAGE)}:{line}: {text}"
                for line, text in second_spellings(path.read_text(encoding="utf-8"))]
    assert bad == [], "take these from sandman.names:\n" + "\n".join(bad)


def test_names_own_their_values() -> None:
    assert f"unix://{names.DOCKER_SOCKET}" == names.DEFAULT_DOCKER_HOST
    assert all(v.startswith(f"{names.LABEL}.") for v in KNOWN_LABELS)
    assert len(KNOWN_LABELS) == len(names.LABELS) + len(names.IMAGE_LABELS)  # no key twice
    assert {n: errors.CODE[n] for n in errors.RUNTIME_EXITS} == errors.RUNTIME_CODES


def test_shims_spell_only_labels_and_roles_sandman_knows() -> None:
    """The bash runtime and the agent write labels through $SM_LABEL_<NAME>; a key they spell
    themselves must at least be one of names.py's, and a role one of names.ROLES."""
    roles = []
    for path in sorted([*SHIMS.glob("*.bash"), SHIMS / "agent.c"]):
        text = path.read_text(encoding="utf-8")
        spelled = {m.rstrip(".") for m in re.findall(r"io\.sandman\.[A-Za-z0-9._-]+", text)}
        assert spelled <= KNOWN_LABELS, (path.name, spelled - KNOWN_LABELS)
        used = set(re.findall(r"\bSM_LABEL_([A-Z0-9_]+)", text))
        assert used <= set(names.LABELS), (path.name, used - set(names.LABELS))
        roles += re.findall(r"\$\{?SM_LABEL_ROLE\}?=([A-Za-z0-9_-]+)", text)
    assert roles and set(roles) <= names.ROLES, roles


def _exit_literals(text: str) -> list[int]:
    """Codes a bash file spells as numbers: `exit N` and `sm_die MESSAGE N`."""
    codes = re.findall(r"\bexit\s+[\"']?(\d+)\b", text)
    codes += re.findall(r"\bsm_die\s+(?:\"(?:[^\"\\]|\\.)*\"|'[^']*'|\S+)\s+[\"']?(\d+)\b", text)
    return [int(c) for c in codes]


def test_the_exit_literal_scanner() -> None:
    assert _exit_literals('exit 0\n|| exit "125"\nsm_die "a \\"b\\" c" 118\nexit "$SM_EXIT_MOUNT"\n'
                          "sm_die 'x' \"$c\"\n") == [0, 125, 118]


def test_every_exit_code_the_shims_use_is_in_the_table() -> None:
    """A code the bash runtime spells is one of errors.EXIT_GROUPS; a `$SM_EXIT_<NAME>` it uses
    is a name of that table, and the file it runs in was rendered with that name's code."""
    tmp_home = {"SANDMAN_HOME": "/nonexistent/sandman-home"}  # render_default only names paths
    rendered = {name: runtime_text() for name in RUNTIME_FILES}
    rendered["default.bash"] = pins.render_default(Paths.from_env(tmp_home), "demo", "demo")
    literal, named = [], []
    for path in sorted(SHIMS.glob("*.bash")):
        text = path.read_text(encoding="utf-8")
        codes = _exit_literals(text)
        literal += codes
        assert set(codes) <= set(errors.EXIT_CODES), (path.name, set(codes) - set(errors.EXIT_CODES))
        used = set(re.findall(r"\bSM_EXIT_([A-Z0-9_]+)", text))
        named += used
        assert used <= set(errors.CODE), (path.name, used - set(errors.CODE))
        for name in used:
            assert re.search(rf"^SM_EXIT_{name}={errors.CODE[name]}$", rendered[path.name], re.M), \
                (path.name, name)
    assert literal and named  # the scanners see the files' `exit 0`, docker's `exit 125`, $SM_EXIT_MOUNT
