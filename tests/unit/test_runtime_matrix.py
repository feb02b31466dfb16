"""The matrix by reason (tests/runtime_matrix.py) covers every runtime test, and only real ones.

Read from the test sources (no collection, no daemon): a test that reaches `kit` or `mode`,
directly or through a fixture, must say on which engines and in which modes it runs and why,
so a new runtime test cannot silently run everywhere (or nowhere).
"""

from __future__ import annotations

import ast
from pathlib import Path

import runtime_matrix

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def _fixtures(tree: ast.Module) -> dict[str, set[str]]:
    """Fixture name -> the fixtures it asks for, for the fixtures defined in tree."""
    out: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
                "fixture" in ast.unparse(d) for d in node.decorator_list):
            out[node.name] = {a.arg for a in node.args.args}
    return out


def _closure(names: set[str], fixtures: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += fixtures.get(n, ())
    return seen


def _tests() -> dict[str, set[str]]:
    """'module::function' -> every fixture it reaches, for each integration test function."""
    shared = _fixtures(ast.parse((INTEGRATION / "conftest.py").read_text()))
    found = {}
    for path in sorted(INTEGRATION.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        fixtures = {**shared, **_fixtures(tree)}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found[f"{path.name}::{node.name}"] = _closure({a.arg for a in node.args.args},
                                                              fixtures)
    return found


def needs_entry(key: str, reach: set[str]) -> bool:
    return "mode" in reach or (key.startswith("test_runtime_") and "kit" in reach)


def test_every_runtime_test_has_an_entry() -> None:
    missing = [k for k, reach in _tests().items()
               if needs_entry(k, reach) and k not in runtime_matrix.MATRIX]
    assert missing == [], f"add these to tests/runtime_matrix.py: {missing}"


def test_every_entry_names_a_real_test_and_says_why() -> None:
    tests = _tests()
    for key, r in runtime_matrix.MATRIX.items():
        assert key in tests, f"{key}: no such test"
        assert r.why.strip(), key
        assert r.engines and set(r.engines) <= set(runtime_matrix.BOTH), key
        assert set(r.modes) <= set(runtime_matrix.ALL), key
        assert bool(r.modes) == ("mode" in tests[key]), f"{key}: modes must match its `mode`"


def test_the_check_sees_a_test_reaching_kit_through_a_fixture() -> None:
    """The closure is what makes the first test mean something: a fixture in between counts."""
    fixtures = {"scene": {"kit"}, "kit": {"request"}}
    assert needs_entry("test_runtime_x.py::t", _closure({"scene", "work"}, fixtures))
    assert not needs_entry("test_other.py::t", _closure({"scene"}, fixtures))
