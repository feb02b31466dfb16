"""`install_many`: builds overlap (bounded by the cores), each spec gets its own result or error."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from sandman.catalog import Spec
from sandman.commands import install as core
from sandman.context import Context, SilentReporter
from sandman.errors import BuildError, NotFoundError
from sandman.paths import Paths


@pytest.fixture
def ctx(tmp_path) -> Context:
    from sandman.config import Config

    return Context(paths=Paths.from_env({"SANDMAN_HOME": str(tmp_path)}), config=Config(),
                   out=SilentReporter())


def fake_pipeline(monkeypatch: pytest.MonkeyPatch, cores: int, fail: set[str], missing: set[str]):
    state = {"now": 0, "max": 0, "finished": []}
    lock = threading.Lock()

    def prepare(ctx, spec, approve=None):
        if spec.tool in missing:
            raise NotFoundError(f"no recipe for {spec.tool}")
        return SimpleNamespace(key=str(spec), spec=spec)

    def build(ctx, r, *, force=False):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        if r.spec.tool in fail:
            raise BuildError(f"building {r.key} failed")
        return f"image-of-{r.key}"

    def finish(ctx, r, result):
        state["finished"].append(r.key)
        return result

    monkeypatch.setattr(core, "prepare", prepare)
    monkeypatch.setattr(core, "build", build)
    monkeypatch.setattr(core, "finish", finish)
    monkeypatch.setattr(core.os, "cpu_count", lambda: cores)
    return state


def test_builds_run_in_parallel_bounded_by_cores(ctx, monkeypatch) -> None:
    state = fake_pipeline(monkeypatch, cores=2, fail=set(), missing=set())
    specs = [Spec(t, "1") for t in ("a", "b", "c", "d")]
    t = time.monotonic()
    out = core.install_many(ctx, specs)
    assert time.monotonic() - t < 0.75  # 4 builds of 0.2 s, two at a time: ~0.4 s
    assert state["max"] == 2
    assert [r for _, r in out] == [f"image-of-{s}" for s in specs]


def test_one_failure_does_not_lose_the_others(ctx, monkeypatch) -> None:
    state = fake_pipeline(monkeypatch, cores=4, fail={"b"}, missing={"c"})
    specs = [Spec(t, "1") for t in ("a", "b", "c", "d")]
    out = dict(core.install_many(ctx, specs))
    assert out[specs[0]] == "image-of-a@1" and out[specs[3]] == "image-of-d@1"
    assert isinstance(out[specs[1]], BuildError)
    assert isinstance(out[specs[2]], NotFoundError)
    assert sorted(state["finished"]) == ["a@1", "d@1"]
