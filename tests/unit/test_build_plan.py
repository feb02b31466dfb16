"""Fingerprints and build plans, with a fake engine (no daemon): what changes them and what not."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tarfile
import time
from pathlib import Path

import pytest
import requests.exceptions
import urllib3.exceptions
from fakes import FakeEngine

from sandman.build import (
    BuildPlan,
    base_refs,
    check_kits,
    declared_commands,
    image_ref,
    mark_build_steps,
    plan_build,
    render_dockerfile,
    verify_image,
    with_bases,
    write_context,
)
from sandman.engine import Engine, ImageInfo
from sandman.errors import (
    BuildError,
    DaemonUnavailableError,
    ImageMissingError,
    KitError,
    MissingCommandError,
    UnsafeInputError,
)
from sandman.names import LABEL_BUILD_STEP, LABEL_FINGERPRINT, LABEL_ROLE, ROLE_PROBE
from sandman.recipe_check import load_recipe

RECIPE = """\
schema = 1
tool = "demo"
description = "demo"
smoke = ["true"]

[versions."1"]
base = "debian:bookworm-slim"
packages = ["sqlite3"]
files = ["helper.sh"]

[versions."2"]
dockerfile = "Dockerfile"
build_args = { BASE = "debian:trixie-slim" }
kits = [{ file = "kit.tgz", sha256 = "KITSHA" }]
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes" / "demo"
    d.mkdir(parents=True)
    (d / "helper.sh").write_text("echo hi\n")
    (d / "Dockerfile").write_text("ARG BASE=debian:bullseye-slim\nFROM ${BASE} AS one\nFROM one\nCOPY kits/ /k/\n")
    return d


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    k = tmp_path / "kits"
    k.mkdir()
    (k / "kit.tgz").write_bytes(b"vendor bits")
    return k


def load(recipe_dir: Path, text: str = RECIPE) -> object:
    sha = hashlib.sha256(b"vendor bits").hexdigest()
    (recipe_dir / "recipe.toml").write_text(text.replace("KITSHA", sha))
    return load_recipe(recipe_dir / "recipe.toml")


ENGINE = FakeEngine({"debian:bookworm-slim": "sha256:aaa", "debian:trixie-slim": "sha256:bbb"})


def fp(recipe_dir: Path, kits: Path, version: str = "1", engine: FakeEngine = ENGINE, text: str = RECIPE) -> str:
    r = load(recipe_dir, text)
    return plan_build(r, r.version(version), source="env", kits_folder=kits, engine=engine).fingerprint


def test_render_dockerfile(recipe_dir: Path) -> None:
    r = load(recipe_dir)
    text = render_dockerfile(r.version("1"))
    assert text.startswith("FROM debian:bookworm-slim\n")
    assert "apt-get install -y --no-install-recommends sqlite3" in text
    assert 'COPY ["files/helper.sh", "/opt/sandman/files/helper.sh"]' in text


def test_fingerprint_stable_and_sensitive(recipe_dir: Path, kits: Path) -> None:
    a = fp(recipe_dir, kits)
    assert a == fp(recipe_dir, kits)  # no change, same identity
    assert a != fp(recipe_dir, kits, text=RECIPE.replace('"sqlite3"', '"sqlite3", "less"'))
    (recipe_dir / "helper.sh").write_text("echo changed\n")
    b = fp(recipe_dir, kits)
    assert b != a  # a context file changed
    other_base = FakeEngine({"debian:bookworm-slim": "sha256:ccc", "debian:trixie-slim": "sha256:bbb"})
    # portable: another machine's base (another local id), or none at all, gives the same
    # fingerprint; another base *reference* does not
    assert fp(recipe_dir, kits, engine=other_base) == b
    assert fp(recipe_dir, kits, engine=FakeEngine({})) == b
    assert fp(recipe_dir, kits, text=RECIPE.replace('base = "debian:bookworm-slim"',
                                                    'base = "debian:trixie-slim"')) != b
    # runtime-only settings (how the shim runs) do not rebuild the image
    assert fp(recipe_dir, kits, text=RECIPE.replace('smoke = ["true"]', 'smoke = ["true"]\nnetwork = true')) == b
    # another version's settings do not touch this version's identity
    assert fp(recipe_dir, kits, text=RECIPE.replace('BASE = "debian:trixie-slim"', 'BASE = "debian:trixie-slim", X = "1"')) == b


def test_dockerfile_bases_and_kits(recipe_dir: Path, kits: Path) -> None:
    r = load(recipe_dir)
    plan = plan_build(r, r.version("2"), source="env", kits_folder=kits, engine=ENGINE)
    assert plan.bases == {"debian:trixie-slim": "sha256:bbb"}
    assert plan.files["kits/kit.tgz"] == kits / "kit.tgz"
    assert "Dockerfile" in plan.files
    assert plan.tag == image_ref("demo", "2", plan.fingerprint)
    assert plan.labels[LABEL_FINGERPRINT] == plan.fingerprint


def test_base_refs() -> None:
    df = "ARG V=12\nFROM debian:${V}-slim AS a\nFROM a\nFROM scratch\nFROM --platform=x busybox AS b\n"
    assert base_refs(df, {}) == ["debian:12-slim", "busybox"]
    assert base_refs(df, {"V": "13"})[0] == "debian:13-slim"


def test_missing_kit_says_where(recipe_dir: Path, kits: Path) -> None:
    r = load(recipe_dir)
    (kits / "kit.tgz").unlink()
    with pytest.raises(KitError, match=f"put it at {kits / 'kit.tgz'}"):
        check_kits(r, r.version("2"), kits)
    (kits / "kit.tgz").write_bytes(b"tampered")
    with pytest.raises(KitError, match="has sha256"):
        check_kits(r, r.version("2"), kits)


def test_missing_base_names_the_fix(recipe_dir: Path, kits: Path) -> None:
    engine = FakeEngine({})
    r = load(recipe_dir)
    plan = plan_build(r, r.version("1"), source="env", kits_folder=kits, engine=engine)
    assert (plan.bases, plan.base_refs, engine.called("pull")) == ({}, ("debian:bookworm-slim",), [])
    with pytest.raises(ImageMissingError, match="sandman bootstrap debian:bookworm-slim"):
        with_bases(engine, plan)  # only a build needs the base
    assert engine.called("pull") == ["debian:bookworm-slim"]  # it tried to pull first


# -- build inputs are regular files inside their folder (issue 9 item 4) ----------------------
def test_a_kit_linked_out_of_the_kits_folder_is_refused(recipe_dir: Path, kits: Path,
                                                        tmp_path: Path) -> None:
    r = load(recipe_dir)
    outside = tmp_path / "elsewhere.tgz"
    outside.write_bytes(b"vendor bits")  # even with the right checksum
    (kits / "kit.tgz").unlink()
    (kits / "kit.tgz").symlink_to(outside)
    with pytest.raises(UnsafeInputError) as exc:
        check_kits(r, r.version("2"), kits)
    line = (recipe_dir / "recipe.toml").read_text().splitlines().index(
        next(x for x in (recipe_dir / "recipe.toml").read_text().splitlines() if "kits =" in x)) + 1
    assert exc.value.message.startswith(f"{recipe_dir / 'recipe.toml'}:{line}: kit 'kit.tgz': ")
    assert "outside the kits folder" in exc.value.message


def test_a_kit_that_is_a_device_is_refused_without_reading_it(recipe_dir: Path,
                                                              kits: Path) -> None:
    r = load(recipe_dir)
    (kits / "kit.tgz").unlink()
    os.mkfifo(kits / "kit.tgz")  # hashing it would wait forever
    with pytest.raises(UnsafeInputError, match="is not a regular file"):
        check_kits(r, r.version("2"), kits)


def test_plan_refuses_a_link_out_of_a_files_folder(recipe_dir: Path, kits: Path) -> None:
    (recipe_dir / "conf").mkdir()
    (recipe_dir / "conf" / "shadow").symlink_to("/etc/shadow")
    r = load(recipe_dir, RECIPE.replace('files = ["helper.sh"]', 'files = ["helper.sh", "conf"]'))
    with pytest.raises(UnsafeInputError, match="'conf/shadow' resolves to /etc/shadow"):
        plan_build(r, r.version("1"), source="env", kits_folder=kits, engine=ENGINE)


def test_the_context_holds_file_contents_never_links(recipe_dir: Path, kits: Path) -> None:
    (recipe_dir / "lib").mkdir()
    (recipe_dir / "lib" / "real.sh").write_text("echo real\n")
    (recipe_dir / "lib" / "alias.sh").symlink_to("real.sh")
    r = load(recipe_dir, RECIPE.replace('files = ["helper.sh"]', 'files = ["helper.sh", "lib"]'))
    plan = plan_build(r, r.version("1"), source="env", kits_folder=kits, engine=ENGINE)
    buf = io.BytesIO()
    write_context(plan, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert all(m.isreg() for m in members.values())
        assert tar.extractfile(members["files/lib/alias.sh"]).read() == b"echo real\n"
        dockerfile = tar.extractfile(members["Dockerfile"]).read().decode()
    assert dockerfile == mark_build_steps(plan.dockerfile)


def test_build_steps_are_labelled_and_the_final_image_is_not() -> None:
    df = "ARG B=x\nFROM ${B} AS one\nRUN a\nfrom one\nRUN b\n"
    out = mark_build_steps(df).splitlines()
    assert out == ["ARG B=x", "FROM ${B} AS one", f'LABEL {LABEL_BUILD_STEP}="1"', "RUN a",
                   "from one", f'LABEL {LABEL_BUILD_STEP}="1"', "RUN b",
                   f'LABEL {LABEL_BUILD_STEP}=""']


# -- declared commands are checked in the new image (issue 10 §5) -----------------------------
NEW = "sha256:new"


def check_engine(present: set[str], *, shell: bool = True) -> FakeEngine:
    """The new image NEW, with (or without) /bin/sh and the commands present, answering the
    check container as it would; its PATH has a folder it lacks (/opt/bin)."""

    def run(command: list[str]) -> tuple[int, str]:
        if command[0] == "/bin/sh":
            if not shell:
                return 127, "cannot run /bin/sh: no such file or directory"
            sep = command.index("--")
            missing = [c for c in command[4:sep] if c not in present]
            smoke = command[sep + 1:]
            head = "sandman-missing-commands:" + "".join(" " + m for m in missing) + "\n"
            if missing:
                return 97, head
            return (1, head + "smoke failed\n") if smoke == ["false"] else (0, head)
        return (1, "smoke failed\n") if command == ["false"] else (0, "")

    usr_bin = "\n".join(sorted(n.rsplit("/", 1)[-1] for n in present
                               if n.startswith("/usr/bin/") or "/" not in n)).encode()
    image = ImageInfo(NEW, (), {}, 1, "", env=("PATH=/opt/bin:/usr/bin",))
    return FakeEngine({NEW: image}, files={"/usr/bin": usr_bin}, run=run)


def plan_with(commands: tuple[str, ...], smoke: tuple[str, ...]) -> BuildPlan:
    return BuildPlan(tool="demo", version="1", source="env", dockerfile="FROM x\n", files={},
                     buildargs={}, bases={}, fingerprint="f" * 64, smoke=smoke,
                     commands=commands)


@pytest.mark.parametrize("shell", [True, False])
def test_missing_commands_are_listed(shell: bool) -> None:
    engine = check_engine({"ls", "cat"}, shell=shell)
    with pytest.raises(MissingCommandError) as exc:
        verify_image(engine, plan_with(("ls", "jqx", "cat", "yqx"), ("true",)), NEW,
                     lambda line: None)
    assert exc.value.exit_code == MissingCommandError.exit_code
    assert "declared commands 'jqx', 'yqx' not found in the new image" in exc.value.message


@pytest.mark.parametrize("shell", [True, False])
def test_commands_and_smoke_pass_in_one_container(shell: bool) -> None:
    engine = check_engine({"ls"}, shell=shell)
    verify_image(engine, plan_with(("ls",), ("true",)), NEW, lambda line: None)
    assert len(engine.called("run_capture")) == (1 if shell else 2)  # without a shell the smoke test runs alone
    with pytest.raises(BuildError, match="smoke test `false` exited 1"):
        verify_image(engine, plan_with(("ls",), ("false",)), NEW, lambda line: None)


def test_entrypoint_counts_as_a_declared_command(recipe_dir: Path) -> None:
    r = load(recipe_dir, RECIPE.replace('smoke = ["true"]',
                                        'smoke = ["true"]\nentrypoint = ["demo", "-q"]\n'
                                        'commands = ["demo", "demo-admin"]'))
    assert declared_commands(r.version("1")) == ("demo", "demo-admin")


# -- a daemon that goes away mid-build (issue 9 item 7) ---------------------------------------
class DroppingApi:
    """A docker API whose build stream breaks off after the first step."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def containers(self, **kw: object) -> list[dict]:
        return []

    def build(self, **kw: object):
        yield {"stream": "Step 1/3 : FROM debian:bookworm-slim\n"}
        raise self.exc


@pytest.mark.parametrize("exc", [
    urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)"),
    requests.exceptions.ChunkedEncodingError("Connection broken"),
    requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")),
    http.client.IncompleteRead(b""),
])
def test_a_dropped_build_stream_is_daemon_unavailable(exc: BaseException) -> None:
    client = type("Client", (), {"api": DroppingApi(exc)})()
    lines: list[str] = []
    with pytest.raises(DaemonUnavailableError) as err:
        Engine(client).build(io.BytesIO(b""), labels={}, buildargs={}, on_line=lines.append,
                             what="demo@1")
    assert err.value.exit_code == DaemonUnavailableError.exit_code
    assert "\n" not in err.value.message and err.value.message.startswith("building demo@1: ")
    assert lines == ["Step 1/3 : FROM debian:bookworm-slim"]


class LeftoverApi:
    def __init__(self, now: float) -> None:
        old = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(now - 600))
        new = time.strftime("%Y-%m-%dT%H:%M:%S.1Z", time.gmtime(now - 5))
        self.finished = {"old": old, "fresh": new, "probe": old}
        self.listed = [
            {"Id": "old", "State": "exited", "Labels": {LABEL_BUILD_STEP: "1"}},
            {"Id": "fresh", "State": "exited", "Labels": {LABEL_BUILD_STEP: "1"}},
            {"Id": "probe", "State": "exited",
             "Labels": {LABEL_BUILD_STEP: "1", LABEL_ROLE: ROLE_PROBE}},
            {"Id": "stuck", "State": "created", "Created": int(now - 3600), "Labels": {}},
        ]
        self.removed: list[str] = []
        self.filters: dict = {}

    def containers(self, all: bool, filters: dict) -> list[dict]:
        self.filters = filters
        return self.listed

    def inspect_container(self, cid: str) -> dict:
        return {"State": {"FinishedAt": self.finished[cid]}}

    def remove_container(self, cid: str, force: bool) -> None:
        self.removed.append(cid)


def test_leftover_build_containers_are_removed_once_stopped_a_while() -> None:
    api = LeftoverApi(time.time())
    client = type("Client", (), {"api": api})()
    assert Engine(client).remove_build_leftovers() == 2
    assert api.removed == ["old", "stuck"]  # the fresh one may be a live build's step
    assert api.filters["label"] == f"{LABEL_BUILD_STEP}=1"
