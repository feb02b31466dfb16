"""The decisions the commands make, without Typer: the failure rule of a command over several
items, upgrade's install-or-rewrite, `uninstall --force`, gc's shim runtimes, `which`'s
verdict, the recipe check's exit code, push signing first, matrix's environment, and the
OSErrors that are no bug. cli.py only renders what these return (tests/integration runs the
commands themselves)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from fakes import FakeEngine

from sandman import batch, images, installs, shims, state
from sandman.catalog import Catalog, Spec, default_sources
from sandman.commands import install, matrix, pins, publish, status
from sandman.commands import recipes as recipecheck
from sandman.commands import upgrade as upgrade_core
from sandman.config import Config
from sandman.context import Context, SilentReporter
from sandman.errors import (
    EngineError,
    ImageMissingError,
    NoSpaceError,
    NotFoundError,
    PinError,
    RecipeError,
    SignatureError,
    StateError,
    StateWriteError,
    UnsafeInputError,
    UsageError,
)
from sandman.paths import Paths


def context(tmp_path: Path, engine: FakeEngine | None = None) -> Context:
    env = {"SANDMAN_HOME": str(tmp_path / "home"), "SANDMAN_RECIPE_PATH": str(tmp_path / "recipes"),
           "PATH": "/usr/bin:/bin"}
    paths = Paths.from_env(env)
    ctx = Context(paths=paths, config=Config(), env=env)
    ctx.engine = engine or FakeEngine()  # type: ignore[misc]
    ctx.catalog = Catalog(default_sources(paths, env), paths)  # type: ignore[misc]
    return ctx


def said(ctx: Context) -> list[str]:
    out = ctx.out
    assert isinstance(out, SilentReporter)
    return out.lines


# -- batch: one rule for a command over several items -----------------------------------------
def test_one_item_raises_its_own_error() -> None:
    def fail(item: str) -> str:
        raise ImageMissingError(f"{item} is gone")

    with pytest.raises(ImageMissingError, match="a is gone"):
        batch.each(["a"], fail, failed=lambda item, e: pytest.fail("said, not raised"))


def test_several_items_go_on_and_exit_with_the_first_failure() -> None:
    told: list[str] = []

    def work(item: str) -> str:
        if item == "b":
            raise NotFoundError("no b")
        if item == "c":
            raise StateError("bad c")
        return item.upper()

    got = batch.each(["a", "b", "c", "d"], work, failed=lambda item, e: told.append(f"{item}: {e.message}"))
    assert told == ["b: no b", "c: bad c"]
    assert [name for name, _ in got.outcomes] == ["a", "b", "c", "d"]
    assert got.outcomes[0][1] == "A" and got.outcomes[3][1] == "D"
    assert [name for name, _ in got.failed] == ["b", "c"]
    assert got.exit_code == NotFoundError.exit_code
    assert batch.each(["a"], work, failed=lambda item, e: None).exit_code == 0
    assert batch.Batch().exit_code == 0


# -- upgrade: a new image or new shims, by state ----------------------------------------------
def item(version: str, state_: str) -> status.InstallStatus:
    return status.InstallStatus(tool="t", version=version, source="builtin", image=f"sandman/t:{version}-old",
                                image_id="", fingerprint="", shims=[], size=None, state=state_,
                                installed_at="")


def test_upgrade_rebuilds_images_and_rewrites_shims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    todo = [item("1", "image-stale"), item("2", "image-replaced"), item("3", "image-stale: base"),
            item("4", "shim-stale: env"), item("5", "shim-missing"), item("6", "image-missing")]
    monkeypatch.setattr(status, "needing_upgrade", lambda ctx, keys: todo)
    done: list[tuple[str, str, bool | None]] = []

    def result(spec: Spec) -> install.InstallResult:
        rec = installs.InstallRecord(tool=spec.tool, version=str(spec.version), source="builtin",
                                     recipe_file="", fingerprint="", image_id="", image_tag=f"sandman/t:{spec.version}-new",
                                     shims=(), bin_dir="", installed_at="")
        return install.InstallResult(rec, True, [])

    def fake_install(ctx: Context, spec: Spec, *, force: bool = False, approve: object = None) -> install.InstallResult:
        if spec.version == "6":
            raise ImageMissingError("no base")
        done.append(("install", str(spec.version), force))
        return result(spec)

    def fake_rewrite(ctx: Context, spec: Spec, approve: object = None) -> install.InstallResult:
        done.append(("rewrite", str(spec.version), None))
        return result(spec)

    monkeypatch.setattr(install, "install", fake_install)
    monkeypatch.setattr(install, "rewrite_shims", fake_rewrite)
    ctx = context(tmp_path)
    got = upgrade_core.upgrade(ctx, [])
    assert done == [("install", "1", False), ("install", "2", True), ("install", "3", True),
                    ("rewrite", "4", None), ("rewrite", "5", None)]
    assert said(ctx)[0] == "upgraded t@1 (image-stale): sandman/t:1-old -> sandman/t:1-new"
    assert said(ctx)[-1] == "warning: t@6 not upgraded: no base"
    assert got.exit_code == ImageMissingError.exit_code
    assert [name for name, _ in got.outcomes] == [f"t@{v}" for v in "123456"]

    monkeypatch.setattr(status, "needing_upgrade", lambda ctx, keys: [item("6", "image-missing")])
    with pytest.raises(ImageMissingError):  # alone: its own error
        upgrade_core.upgrade(ctx, ["t@6"])
    monkeypatch.setattr(status, "needing_upgrade", lambda ctx, keys: [])
    assert upgrade_core.upgrade(ctx, []).outcomes == ()


# -- reshim and install over several specs -------------------------------------------------------
def test_reshim_all_warns_per_version_and_raises_alone(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    got = install.reshim_all(ctx, [Spec("t", "1"), Spec("t", "2")])
    assert [name for name, _ in got.failed] == ["t@1", "t@2"] and got.exit_code == NotFoundError.exit_code
    assert [line.split(":")[0] for line in said(ctx)] == ["warning"] * 2
    assert said(ctx)[0].startswith("warning: t@1 not rewritten: t@1 is not installed")
    with pytest.raises(NotFoundError):
        install.reshim_all(ctx, [Spec("t", "1")])
    assert install.reshim_all(ctx, [], every=True).outcomes == ()  # nothing installed
    with pytest.raises(NotFoundError):
        install.install_all(ctx, [Spec("t", "1")])  # no such recipe: raised, as a lone install


# -- bootstrap: a base this home made is kept ---------------------------------------------------
def test_bootstrap_keeps_the_base_this_home_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandman import agent, provenance
    from sandman.commands import bases

    base_id = "sha256:" + "b" * 64
    ctx = context(tmp_path, FakeEngine({"debian:bookworm-slim": base_id}))
    provenance.record_made(ctx.paths, "debian:bookworm-slim", base_id)
    asked: list[str] = []
    monkeypatch.setattr(agent, "can_build", lambda engine, paths: asked.append("agent") or False)
    bases.bootstrap(ctx, ["debian:bookworm-slim"])
    assert said(ctx) == ["debian:bookworm-slim: already present"] and asked == ["agent"]
    with pytest.raises(UsageError, match="only Debian bases"):  # every name planned first
        bases.bootstrap(ctx, ["debian:bookworm-slim", "alpine:3"], force=True)


# -- uninstall --force: what names the version, and nothing else ------------------------------
def shim(path: Path, owner: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/bash\n{shims.MARKER}\n# for: {owner}\n")


def test_uninstall_force_removes_what_names_the_version_of_an_unreadable_record(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    root = images.root_ref(ctx.paths, "t", "1")
    engine = FakeEngine({root: "sha256:" + "1" * 64, "other": "sha256:" + "2" * 64})
    ctx.engine = engine  # type: ignore[misc]
    record = installs.record_path(ctx.paths, "t", "1")
    record.parent.mkdir(parents=True)
    record.write_text("{ not json")
    shim(ctx.paths.bin_dir / "t-1", "t@1")
    shim(ctx.paths.bin_dir / "t-2", "t@2")
    (ctx.paths.bin_dir / "t").write_text("#!/bin/sh\n# someone else's\n")

    with pytest.raises(StateError):
        list(install.uninstall_all(ctx, [Spec("t", "1")]))
    assert record.exists()

    [u] = install.uninstall_all(ctx, [Spec("t", "1")], force=True)
    assert u.forced and u.removed == [ctx.paths.bin_dir / "t-1", record]
    assert sorted(p.name for p in ctx.paths.bin_dir.iterdir()) == ["t", "t-2"]
    assert engine.called("untag") == [root] and engine.image(root) is None
    assert engine.image("other") is not None

    with pytest.raises(NotFoundError):  # nothing left that names it: the error stands
        list(install.uninstall_all(ctx, [Spec("t", "1")], force=True))


# -- gc: shim runtimes no shim sources --------------------------------------------------------
def test_gc_removes_unused_shim_runtimes_unless_dry_run(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    current = shims.write_runtime(ctx.paths)
    old = shims.runtime_dir(ctx.paths) / "shim-bbbbbbbbbbbb.bash"
    old.write_text("# an older runtime\n")

    dry = status.gc(ctx, dry_run=True)
    assert (dry.verdicts, dry.runtimes, dry.removed) == ([], [old], 0)
    assert old.exists()
    real = status.gc(ctx, dry_run=False)
    assert real.runtimes == [old] and not old.exists() and current.exists()
    assert status.gc(ctx, dry_run=False).runtimes == []


# -- which: what the plain command runs, as an error ------------------------------------------
def test_which_failure_names_the_fix(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    none = pins.Which(pins.Choice("t", None, "none", None), None, None, [], None)
    assert isinstance(none.failure(bin_dir), NotFoundError)
    assert none.failure(bin_dir).message == (  # type: ignore[union-attr]
        "t: no version chosen here (no $SANDMAN_T_VERSION, no .sandman.toml naming it, no global choice)")
    env = pins.Choice("t", "2", "env", "SANDMAN_T_VERSION")
    broken = pins.Which(env, None, None, [], "not installed; run: sandman install t@2")
    assert broken.failure(bin_dir).message == (  # type: ignore[union-attr]
        "t 2 (set by $SANDMAN_T_VERSION) is not installed; run: sandman install t@2")
    glob = pins.Choice("t", "2", "global", "/c/versions.toml")
    missing = pins.Which(glob, "2", "/b/t-2", ["t", "tq"], None).failure(bin_dir)
    assert isinstance(missing, PinError)
    assert missing.message.startswith(f"t, tq in {bin_dir} is missing") and \
        missing.message.endswith("run: sandman use t 2 --global")
    assert pins.Which(glob, "2", "/b/t-2", [], None).failure(bin_dir) is None


# -- recipes check ----------------------------------------------------------------------------
def test_recipe_check_exit_code() -> None:
    assert recipecheck.RecipeCheck(3, []).exit_code == 0
    unsafe = UnsafeInputError("x")
    assert recipecheck.RecipeCheck(1, [unsafe, UnsafeInputError("y")]).exit_code == UnsafeInputError.exit_code
    assert recipecheck.RecipeCheck(2, [unsafe, RecipeError("z")]).exit_code == RecipeError.exit_code


def test_recipe_check_says_when_no_engine_looked_at_the_bases(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_recipe(tmp_path / "recipes", "t", '[versions."1"]\nbase = "vendor/os:7"\npackages = ["x"]\n')
    ctx = context(tmp_path)

    def no_engine(engine: object, versions: object) -> list[RecipeError]:
        raise EngineError("no engine answers")

    import sandman.build

    monkeypatch.setattr(sandman.build, "packages_without_apt", no_engine)
    got = recipecheck.check(ctx, [folder])
    assert (got.checked, got.errors, got.exit_code) == (1, [], 0)
    assert said(ctx) == ["sandman: the bases of `packages` were not checked: no engine answers"]


# -- push: signed before anything is pushed -----------------------------------------------------
def write_recipe(root: Path, tool: str, body: str) -> Path:
    folder = root / tool
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(f'schema = 1\ntool = "{tool}"\ndescription = "d"\n\n{body}')
    return folder


def test_push_with_a_bad_key_pushes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandman.build import BuildResult
    from sandman.commands import registry, signing

    write_recipe(tmp_path / "recipes", "t", '[versions."1"]\nbase = "debian:bookworm-slim"\n')
    built = BuildResult("sha256:" + "1" * 64, "sandman/t:1", "f" * 64, False)
    monkeypatch.setattr(install, "build", lambda ctx, r: built)
    signed: list[tuple[str, str]] = []

    def bad_key(ctx: Context, key: Path, **about: str) -> object:
        signed.append((about["tool"], about["image_id"]))
        raise SignatureError("that key cannot sign")

    pushed: list[str] = []
    monkeypatch.setattr(signing, "sign_image", bad_key)
    monkeypatch.setattr(registry, "push", lambda *a, **kw: pushed.append("image"))
    ctx = context(tmp_path)
    with pytest.raises(SignatureError):
        list(publish.push(ctx, [Spec("t", "1")], "registry.example:5000", tmp_path / "key"))
    assert signed == [("t", built.image_id)] and pushed == []
    with pytest.raises(UsageError, match="no registry configured"):
        list(publish.push(ctx, [Spec("t", "1")], None))


# -- matrix: the environment each version runs in -----------------------------------------------
def test_matrix_runs_after_every_build_and_dry_runs_only_when_asked(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    envs: list[dict[str, str]] = []
    monkeypatch.setattr(matrix, "prepare", lambda ctx, specs, mounts, dry_run: steps.append("prepare") or [])

    def run_all(targets: object, args: object, env: dict[str, str], *, jobs: int | None) -> list:
        steps.append("run")
        envs.append(env)
        return []

    monkeypatch.setattr(matrix, "run_all", run_all)
    ctx = context(tmp_path)
    given = {"SANDMAN_DRY_RUN": "1", "KEEP": "x"}
    matrix.run(ctx, [], ["true"], given, prepared=lambda: steps.append("prepared"))
    matrix.run(ctx, [], ["true"], {"KEEP": "x"}, dry_run=True)
    assert steps == ["prepare", "prepared", "run", "prepare", "run"]
    assert envs == [{"KEEP": "x"}, {"KEEP": "x", "SANDMAN_DRY_RUN": "1"}]
    assert given == {"SANDMAN_DRY_RUN": "1", "KEEP": "x"}  # the caller's own is left alone


# -- the trust a terminal gives, and the catalog read again ----------------------------------
def test_forget_catalog_reads_the_sources_again(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    first = ctx.catalog
    assert ctx.catalog is first
    ctx.forget_catalog()
    assert ctx.catalog is not first


# -- OSErrors that are no bug ---------------------------------------------------------------------
def test_os_failures_that_are_not_bugs(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    full = OSError(errno.ENOSPC, "No space left on device", "/anywhere/x")
    assert isinstance(state.os_failure(full, paths), NoSpaceError)
    ours = OSError(errno.EACCES, "Permission denied", str(paths.state_dir / "x"))
    assert isinstance(state.os_failure(ours, paths), StateWriteError)
    theirs = OSError(errno.EACCES, "Permission denied", str(tmp_path / "elsewhere"))
    assert state.os_failure(theirs, paths) is None
    assert state.os_failure(OSError(errno.EACCES, "Permission denied"), paths) is None
    assert state.os_failure(ValueError("a bug"), paths) is None
