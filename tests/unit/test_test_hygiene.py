"""The tests take sandman's exit codes and label names from sandman, not from literals.

A literal `returncode == 118` keeps passing after someone renumbers MountError (and regenerates
the docs, whose tables come from errors.EXIT_GROUPS), yet then checks a code sandman no longer
uses for that failure. So the numbers and the label names are pinned once, here; every other
test asks errors and names.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeEngine

from sandman import errors, names
from sandman.engine import Engine
from sandman.engine_choice import EngineChoice

TESTS = Path(__file__).resolve().parent.parent

# 0-2 (success, any program's failure, usage), 125-127 (docker's and the shell's) and 128+N
# (death by signal N) are codes of the tool under test too, so a test may spell them.
SHARED_CODES = {0, 1, errors.USAGE, 125, 126, 127}
RESERVED = {code for code in errors.EXIT_CODES if code not in SHARED_CODES and code < 128}

# what a test calls an exit status it compares
STATUS_NAMES = {"returncode", "exit_code", "code", "rc"}

# (path under tests/, the line's text without indentation) -> why that literal is the tool's own
# status, not sandman's; none today: a tool told to exit with a reserved code compares against
# the code it was told (tests/integration/test_runtime_exit.py), not a literal in a comparison.
ALLOWED: dict[tuple[str, str], str] = {}


def _names_in(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def _reserved_literals(node: ast.AST) -> list[int]:
    return [sub.value for sub in ast.walk(node)
            if isinstance(sub, ast.Constant) and type(sub.value) is int and sub.value in RESERVED]


def literal_exit_codes(source: str) -> Iterator[tuple[int, int]]:
    """(line, code) of each comparison of an exit status with one of sandman's codes, spelled
    as a number (`p.returncode == 118`, `(p.returncode, err) == (123, ...)`, `code in (...)`)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if not any(_names_in(op) & STATUS_NAMES for op in operands):
            continue
        for op in operands:
            for code in _reserved_literals(op):
                yield op.lineno, code


def test_reserved_codes_are_sandmans_own() -> None:
    """The rule below looks for the codes sandman owns: every error class's code that is not
    also a tool's ordinary status."""
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.SandmanError)]
    owned = {c.exit_code for c in classes} | {errors.CHECK_FAILED}
    assert owned - SHARED_CODES == RESERVED
    assert errors.MountError.exit_code in RESERVED and 125 not in RESERVED and 130 not in RESERVED


def test_the_rule_catches_what_it_should() -> None:
    """The scanner itself: each spelling a test has used is found, a tool's status is not."""
    mount, state = errors.MountError.exit_code, errors.StateError.exit_code
    found = [code for _, code in literal_exit_codes(
        f"assert p.returncode == {mount}, p.stderr\n"
        f"assert (p.returncode, p.stderr) == ({state}, 'x')\n"
        f"assert code in (0, {mount})\n"
        f"assert e.value.exit_code == {state}\n")]
    assert found == [mount, state, mount, state]
    assert list(literal_exit_codes(
        "assert p.returncode == 127\n"
        "assert p.returncode == 128 + sig.value\n"
        f"assert p.returncode == errors.MountError.exit_code\n"
        f"timeout = {mount}\n"
        f"CODES = (0, 42, {mount})\n")) == []


def test_no_test_spells_a_sandman_exit_code_as_a_number() -> None:
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno, code in sorted(literal_exit_codes("\n".join(lines))):
            text = lines[lineno - 1].strip()
            if (rel, text) not in ALLOWED:
                bad.append(f"tests/{rel}:{lineno}: {code}: {text}")
    if bad:
        pytest.fail("use the error class's exit_code (sandman.errors), not the number:\n"
                    + "\n".join(bad), pytrace=False)


def test_exit_codes_are_the_ones_scripts_rely_on() -> None:
    """The one place a test spells sandman's exit codes as numbers: scripts test for them, so a
    renumbering is a breaking change even when the generated docs follow it."""
    assert errors.CODE == {
        "OK": 0, "BUG": 1, "USAGE": 2, "CHECK_FAILED": 102, "INTERRUPTED": 130,
        "PLATFORM": 99, "SOURCE": 104, "UNSAFE_INPUT": 108, "NOT_FOUND": 111, "RECIPE": 112, "KIT": 113,
        "MISSING_PROGRAM": 101, "VERSION_MISMATCH": 103, "MISSING_COMMAND": 106, "BUILD": 114,
        "IMAGE_MISSING": 117,
        "NO_ENGINE": 92, "ENGINE_MISSING": 93, "SUBID": 94, "STALE_SOCKET": 95, "ENGINE_SETUP": 96,
        "ENGINE": 100, "DAEMON_UNAVAILABLE": 115, "DAEMON_PERMISSION": 116,
        "DEVICE": 98, "PIN": 105, "MOUNT": 118, "ENGINE_RUN": 125, "CANNOT_INVOKE": 126,
        "COMMAND_NOT_FOUND": 127,
        "STATE_WRITE": 107, "CONFLICT": 119, "NO_SPACE": 122, "STATE": 123,
        "SIGNATURE": 97, "INTEGRITY": 109, "LOCK": 110, "UNTRUSTED": 120, "REMOTE": 121, "CONSENT": 124,
    }


def test_label_names_are_the_ones_users_filter_on() -> None:
    """The one place a test spells the label names and role values: users' `docker ps --filter
    label=...`, images built and shims written by an older sandman use them, so a rename is a
    breaking change, and the other tests take them from sandman.names."""
    assert names.LABELS == {
        "ROLE": "io.sandman.role", "TOOL": "io.sandman.tool", "VERSION": "io.sandman.version",
        "FINGERPRINT": "io.sandman.fingerprint", "SOURCE": "io.sandman.source",
        "PID": "io.sandman.pid", "HOST": "io.sandman.host", "UID": "io.sandman.uid",
        "REAPER": "io.sandman.reaper", "HOME": "io.sandman.home", "IDLE": "io.sandman.idle",
    }
    assert names.IMAGE_LABELS == {
        "BASES": "io.sandman.bases", "INPUTS": "io.sandman.inputs",
        "BUILD_STEP": "io.sandman.build-step", "SIGNATURE": "io.sandman.signature",
        "ROOTFS_SHA256": "io.sandman.rootfs.sha256", "ROOTFS_FILE": "io.sandman.rootfs.file",
    }
    assert sorted(names.ROLES) == ["agent-build", "doctor", "probe", "run", "signature", "warm"]


def test_the_fake_engine_is_asked_as_engine_is() -> None:
    """tests/fakes.py's FakeEngine keeps Engine's method names and parameters, so the code under
    test calls it exactly as it calls the real one (a renamed keyword fails here, not as a
    confusing TypeError in some other test, or not at all behind a **kwargs)."""
    own = {"called"}  # the fake's own way to tell what was asked
    methods = [n for n, _ in inspect.getmembers(FakeEngine, inspect.isfunction)
               if not n.startswith("_") and n not in own]
    assert methods
    for name in methods:
        assert hasattr(Engine, name), name
        fake, real = inspect.signature(getattr(FakeEngine, name)), inspect.signature(getattr(Engine, name))
        assert [(p.name, p.kind) for p in fake.parameters.values()] == \
            [(p.name, p.kind) for p in real.parameters.values()], name
    assert isinstance(FakeEngine.choice, EngineChoice)  # Engine.choice: the engine's kind


def test_no_test_module_imports_another() -> None:
    """A test module that imports another runs (and collects) the other's fixtures and tests
    under its own name, and ties two files together that look independent: shared code lives in
    a helper module (tests/helpers.py, tests/fakes.py, tests/integration/*_helpers.py)."""
    modules = {p.stem for p in TESTS.rglob("test_*.py")}
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names_ = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(TESTS)}: {n}" for n in names_ if n.split(".")[0] in modules]
    assert bad == [], bad
