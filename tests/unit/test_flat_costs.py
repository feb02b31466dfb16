"""Flat costs (issue 24): `list`, `upgrade`'s look and `reshim --all` ask the engine the same
number of questions with 3 installs as with 12, and parse the recipe once per command.

The installs are made by install.finish, the step of a real install after its image exists
(records, shims, roots and claims as a real install writes them), over a FakeEngine that
records every request: a return to an inspect per install, a base looked up per install, a
recipe parsed per install or tags posted when they are already right fails here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fakes import FakeEngine

import sandman.catalog
import sandman.recipe_check
import sandman.recipe_source
import sandman.recipes
from sandman import images, installs
from sandman.build import BuildResult, image_ref
from sandman.catalog import Catalog, Spec, default_sources
from sandman.commands import install, status
from sandman.config import Config
from sandman.context import Context
from sandman.engine import ImageInfo
from sandman.engine_choice import Docker
from sandman.errors import RecipeError
from sandman.names import LABEL_BASES, LABEL_FINGERPRINT, LABEL_TOOL
from sandman.paths import Paths

TOOL = "flat"
BASE = "debian:bookworm-slim"
BASE_ID = "sha256:" + "b" * 64
FILES = {"/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "/etc/group": b"root:x:0:\n",
         "/bin/sh": b""}


def fake(images: dict) -> FakeEngine:
    """A FakeEngine that is Docker, as the shims it writes ask."""
    engine = FakeEngine(images, files=FILES)
    engine.choice = Docker("docker", "unix:///var/run/docker.sock", False, "test")  # type: ignore[attr-defined]
    return engine


def write_recipe(root: Path, versions: int) -> None:
    lines = ["schema = 1", f'tool = "{TOOL}"', 'description = "d"', f'entrypoint = ["{TOOL}"]',
             f'commands = ["{TOOL}"]', ""]
    for v in range(1, versions + 1):
        lines += [f'[versions."{v}"]', f'base = "{BASE}"', 'run = ["true"]', ""]
    (root / TOOL).mkdir(parents=True)
    (root / TOOL / "recipe.toml").write_text("\n".join(lines))


def command_ctx(tmp_path: Path, engine: FakeEngine) -> Context:
    """A new Context, as each CLI command has: its own catalog, the same home and engine."""
    env = {"SANDMAN_HOME": str(tmp_path / "home"), "SANDMAN_RECIPE_PATH": str(tmp_path / "recipes"),
           "PATH": "/usr/bin:/bin"}
    paths = Paths.from_env(env)
    ctx = Context(paths=paths, config=Config(), env=env)
    ctx.engine = engine  # type: ignore[misc]
    ctx.catalog = Catalog(default_sources(paths, env), paths)  # type: ignore[misc]
    return ctx


def installed_home(tmp_path: Path, n: int) -> tuple[FakeEngine, list[ImageInfo]]:
    """n installs of one tool whose recipe has 2n versions; returns the engine and the images
    as first built (their own tag only: no root, no claim)."""
    write_recipe(tmp_path / "recipes", 2 * n)
    plans = fake({BASE: BASE_ID})
    ctx = command_ctx(tmp_path, plans)
    built: list[ImageInfo] = []
    for v in range(1, n + 1):
        r = install.resolve(ctx, Spec(TOOL, str(v)))
        fp = install.plan(ctx, r).fingerprint
        image_id = "sha256:" + hashlib.sha256(f"{TOOL}@{v}".encode()).hexdigest()
        built.append(ImageInfo(image_id, (image_ref(TOOL, str(v), fp),),
                               {LABEL_TOOL: TOOL, LABEL_FINGERPRINT: fp,
                                LABEL_BASES: json.dumps({BASE: BASE_ID})}, 1000 + v, ""))
    engine = fake({BASE: BASE_ID, **{i.tags[0]: i for i in built}})
    ctx = command_ctx(tmp_path, engine)
    for v, info in enumerate(built, start=1):
        r = install.resolve(ctx, Spec(TOOL, str(v)))
        install.finish(ctx, r, BuildResult(image_id=info.id, tag=info.tags[0],
                                           fingerprint=info.labels[LABEL_FINGERPRINT], built=True,
                                           origin="built"))
    return engine, built


@pytest.fixture(autouse=True)
def no_tool_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tool's completion and man pages (a container of the image) are not what is counted."""
    monkeypatch.setattr(install, "tool_files", lambda *a, **k: None, raising=False)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every recipe file the catalog parses."""
    seen: list[Path] = []
    real = sandman.catalog.load_recipe

    def counted(path: Path, **kw: object) -> sandman.recipes.Recipe:
        seen.append(path)
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sandman.catalog, "load_recipe", counted)
    return seen


@pytest.mark.parametrize("n", [3, 12])
def test_list_and_upgrade_read_the_engine_once_and_the_recipe_once(tmp_path, parses, n) -> None:
    engine, _ = installed_home(tmp_path, n)
    for look in (lambda c: status.list_installs(c), lambda c: status.needing_upgrade(c)):
        engine.calls.clear()
        parses.clear()
        items = look(command_ctx(tmp_path, engine))
        # one listing of sandman's images, the base looked up once: whatever n is
        assert engine.calls == [("image_list", (LABEL_TOOL,)), ("image", (BASE,))]
        assert len(parses) == 1
        if isinstance(items, list) and items and isinstance(items[0], status.InstallStatus):
            assert len(items) in (n, 0)
    assert [i.state for i in status.list_installs(command_ctx(tmp_path, engine))] == ["current"] * n
    assert status.needing_upgrade(command_ctx(tmp_path, engine)) == []


@pytest.mark.parametrize("n", [3, 12])
def test_list_answers_as_the_inspects_did(tmp_path, n) -> None:
    """The listing gives the same states and sizes; a tag the listing lacks (moved onto an image
    without sandman's labels) is still inspected: image-replaced, as before."""
    engine, built = installed_home(tmp_path, n)
    items = status.list_installs(command_ctx(tmp_path, engine))
    assert sorted((i.image_id, i.size, i.state) for i in items) == \
        sorted((b.id, b.size, "current") for b in built)
    foreign = "sha256:" + "f" * 64
    moved = fake({BASE: BASE_ID, **{b.tags[0]: b for b in built[1:]},
                  built[0].tags[0]: ImageInfo(foreign, (built[0].tags[0],), {}, 7, "")})
    items = status.list_installs(command_ctx(tmp_path, moved))
    assert [i.state for i in items] == ["image-replaced"] + ["current"] * (n - 1)
    assert moved.called("image") == [built[0].tags[0], BASE]


@pytest.mark.parametrize("n", [3, 12])
def test_reshim_all_posts_tags_only_where_they_are_missing(tmp_path, n) -> None:
    engine, built = installed_home(tmp_path, n)

    def reshim_all() -> None:
        ctx = command_ctx(tmp_path, engine)
        known = images.Known(engine_of=lambda: ctx.engine)
        for rec in installs.all_records(ctx.paths):
            install.reshim(ctx, Spec(rec.tool, rec.version), known)

    engine.calls.clear()
    reshim_all()  # install.finish rooted and claimed every image: nothing to tag
    assert engine.called("image_list") == [LABEL_TOOL]
    assert engine.called("image") == engine.called("tag") == engine.called("read_files") == []
    # images from before roots (no root, no claim): tagged once, then never again
    bare = fake({BASE: BASE_ID, **{b.tags[0]: b for b in built}})
    engine = bare
    reshim_all()
    assert len(bare.called("tag")) == 2 * n
    bare.calls.clear()
    reshim_all()
    assert bare.called("tag") == [] and bare.called("image_list") == [LABEL_TOOL]


def test_a_valid_recipe_never_looks_for_line_numbers(tmp_path, monkeypatch) -> None:
    write_recipe(tmp_path, 50)
    made: list[str] = []
    real = sandman.recipe_source.LineLocator

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, text: str) -> None:
            made.append(text)
            super().__init__(text)

    monkeypatch.setattr(sandman.recipe_check, "LineLocator", Counted)
    monkeypatch.setattr(sandman.recipe_source, "LineLocator", Counted)
    assert len(sandman.recipe_check.load_recipe(tmp_path / TOOL / "recipe.toml").versions) == 50
    assert made == []
    bad = tmp_path / "bad" / "recipe.toml"
    bad.parent.mkdir()
    bad.write_text('schema = 1\ntool = "bad"\ndescription = "d"\n\n[versions."1"]\nbase = 3\n')
    with pytest.raises(RecipeError) as e:
        sandman.recipe_check.load_recipe(bad)
    assert f"{bad}:6:" in e.value.message and len(made) == 1  # found when the error needs it


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and link under root: (inode, mtime, mode); a rewrite (a new inode by rename)
    or a chmod shows."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_mode)
    return out


@pytest.mark.parametrize("n", [3, 12])
def test_reshim_all_writes_only_what_changed(tmp_path, n) -> None:
    """A second `reshim --all` leaves every shim, passwd file, alias file and record as it is;
    a shim or passwd file whose mode is wrong, or whose bytes differ, is written again."""
    engine, _ = installed_home(tmp_path, n)
    home = tmp_path / "home"

    def reshim_all() -> list[Path]:
        ctx = command_ctx(tmp_path, engine)
        known = images.Known(engine_of=lambda: ctx.engine)
        done: set[str] = set()
        return [p for rec in installs.all_records(ctx.paths)
                for p in install.reshim(ctx, Spec(rec.tool, rec.version), known, aliases_done=done)]

    first = reshim_all()
    before = snapshot(home)
    again = reshim_all()
    assert again == first  # every shim is still named (the CLI says "rewrote" as before)
    after = snapshot(home)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {"state/log", "state"} | {k for k in after if k.startswith("state/log")}
    shim = first[0]
    text = shim.read_bytes()
    shim.chmod(0o775)
    passwd = next(p for p in home.rglob("passwd") if p.is_file())
    passwd.chmod(0o600)
    other = first[-1]
    other.write_bytes(other.read_bytes() + b"# edited\n")
    reshim_all()
    assert shim.stat().st_mode & 0o777 == 0o755 and shim.read_bytes() == text
    assert passwd.stat().st_mode & 0o777 == 0o644
    assert not other.read_bytes().endswith(b"# edited\n")


def test_tool_files_rewritten_only_when_changed(tmp_path) -> None:
    """expose twice: nothing written the second time; the same files as a fresh expose."""
    from sandman import toolfiles

    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    files = toolfiles.ToolFiles(("flat",), {"usr/share/man/man1/flat.1.gz": b"page"}, None)
    plan = {"flat-1": "flat", "flat-1-x": "x"}
    toolfiles.expose(paths, "flat@1", plan, files, "1")
    before = snapshot(tmp_path / "home")
    toolfiles.expose(paths, "flat@1", plan, files, "1")
    assert snapshot(tmp_path / "home") == before
    fewer = toolfiles.ToolFiles((), {}, None)
    toolfiles.expose(paths, "flat@1", {"flat-1": "flat"}, fewer, "1")
    fresh = tmp_path / "fresh"
    fpaths = Paths.from_env({"SANDMAN_HOME": str(fresh), "PATH": "/usr/bin:/bin"})
    toolfiles.expose(fpaths, "flat@1", {"flat-1": "flat"}, fewer, "1")
    assert sorted(snapshot(tmp_path / "home")) == sorted(snapshot(fresh))
    assert toolfiles.pages(paths, "flat@1") == []
