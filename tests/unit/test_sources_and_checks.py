"""Sources and version checks without a daemon (issue 13 §1 and §3).

The recipe keys are validated with file:line; the download code runs against a real HTTP server
on 127.0.0.1 (a thread) and real files; the version check's matching and its one-container
script run against a fake engine and /bin/sh. The builds themselves are in
tests/integration/test_sources.py and test_version_check.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from fakes import FakeEngine
from helpers import FileServer

from sandman.build import (
    CHECK_MARK,
    check_argv,
    check_existing,
    match_version,
    plan_build,
    render_dockerfile,
    verify_image,
)
from sandman.config import load_config
from sandman.engine import ImageInfo
from sandman.errors import (
    BuildError,
    RecipeError,
    SourceError,
    StateError,
    VersionMismatchError,
)
from sandman.paths import Paths
from sandman.recipe_check import load_recipe
from sandman.recipes import Source, VersionCheck
from sandman.sources import cache_path, candidates, configured_mirror, fetch, fetch_all

PAYLOAD = b"#!/bin/sh\necho tool 1.2.3\n" * 50
SHA = hashlib.sha256(PAYLOAD).hexdigest()
HEAD = 'schema = 1\ntool = "demo"\ndescription = "demo"\n'


def write_recipe(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "demo"
    d.mkdir(exist_ok=True)
    f = d / "recipe.toml"
    f.write_text(HEAD + body)
    return f


def line_of(f: Path, needle: str) -> int:
    return next(n for n, text in enumerate(f.read_text().splitlines(), 1) if needle in text)


def refused(f: Path) -> RecipeError:
    with pytest.raises(RecipeError) as exc:
        load_recipe(f)
    assert exc.value.exit_code == RecipeError.exit_code
    return exc.value


# -- the recipe keys ------------------------------------------------------------------------------
def test_sources_load_with_the_file_named_after_the_url(tmp_path: Path) -> None:
    f = write_recipe(tmp_path, f'''
[versions."1"]
base = "debian:bookworm-slim"
sources = [
  {{ url = "https://example.org/dl/tool-1.2.3.tar.gz", sha256 = "{SHA}" }},
  {{ url = "https://example.org/get?id=7", sha256 = "{"1" * 64}", file = "patch.diff" }},
  {{ url = "https://example.org/dl/a%2Bb.tgz", sha256 = "{"2" * 64}" }},
]
''')
    srcs = load_recipe(f).version("1").build.sources
    assert srcs == (Source("https://example.org/dl/tool-1.2.3.tar.gz", SHA, "tool-1.2.3.tar.gz"),
                    Source("https://example.org/get?id=7", "1" * 64, "patch.diff"),
                    Source("https://example.org/dl/a%2Bb.tgz", "2" * 64, "a+b.tgz"))


@pytest.mark.parametrize(("entry", "needle", "message"), [
    ('{ url = "https://example.org/t.tar.gz" }', "url =",
     "versions.1.sources[0]: missing required key 'sha256'"),
    (f'{{ url = "ftp://example.org/t.tar.gz", sha256 = "{SHA}" }}', "ftp://",
     "versions.1.sources[0].url: 'ftp://example.org/t.tar.gz' is not an http:// or https:// URL"),
    (f'{{ url = "/srv/t.tar.gz", sha256 = "{SHA}" }}', "/srv/t",
     "is not an http:// or https:// URL"),
    ('{ url = "https://example.org/t.tar.gz", sha256 = "ABC123" }', "ABC123",
     "versions.1.sources[0].sha256: expected 64 lower-case hex digits"),
    (f'{{ url = "https://example.org/t.tar.gz", sha256 = "{SHA.upper()}" }}', "sha256",
     "expected 64 lower-case hex digits"),
    (f'{{ url = "https://example.org/dl/", sha256 = "{SHA}" }}', "dl/",
     "is not a plain file name"),
    (f'{{ url = "https://example.org/t.tar.gz", sha256 = "{SHA}", file = "../x" }}', "../x",
     "versions.1.sources[0].file: '../x' is not a plain file name"),
    (f'{{ url = "https:///t.tar.gz", sha256 = "{SHA}" }}', "https:///", "has no host"),
    (f'{{ url = "file:///etc/shadow", sha256 = "{SHA}" }}', "file://",
     "'file:///etc/shadow' is not an http:// or https:// URL"),
    (f'{{ url = "https://example.org/t.tar.gz", sha256 = "{SHA}", size = 3 }}', "size",
     "versions.1.sources[0].size: unknown key"),
])
def test_bad_sources_are_one_line_with_file_and_line(tmp_path: Path, entry: str, needle: str,
                                                     message: str) -> None:
    f = write_recipe(tmp_path, f'\n[versions."1"]\nbase = "debian:bookworm-slim"\nsources = [\n  {entry},\n]\n')
    err = refused(f)
    assert line_of(f, needle) == 8  # the entry; the error points at its array, `sources = [`
    assert err.message.startswith(f"{f}:7: "), err.message
    assert message in err.message
    assert "\n" not in err.message


def test_two_sources_with_one_name_are_refused(tmp_path: Path) -> None:
    f = write_recipe(tmp_path, f'''
[versions."1"]
base = "debian:bookworm-slim"
sources = [
  {{ url = "https://a.example/t.tar.gz", sha256 = "{SHA}" }},
  {{ url = "https://b.example/t.tar.gz", sha256 = "{"1" * 64}" }},
]
''')
    assert "a second source named 't.tar.gz'" in refused(f).message


def test_sources_are_in_the_fingerprint_by_sha256_not_url(tmp_path: Path) -> None:
    engine = FakeEngine({"debian:bookworm-slim": "sha256:base"})

    def fp(url: str, sha: str) -> str:
        f = write_recipe(tmp_path, f'\n[versions."1"]\nbase = "debian:bookworm-slim"\nrun = ["true"]\n'
                         f'sources = [{{ url = "{url}", sha256 = "{sha}" }}]\n')
        return plan_build(load_recipe(f), load_recipe(f).version("1"), source="env",
                          kits_folder=tmp_path, engine=engine).fingerprint  # type: ignore[arg-type]

    a = fp("https://a.example/t.tar.gz", SHA)
    assert fp("https://mirror.example/pub/t.tar.gz", SHA) == a  # moved: the same bytes
    assert fp("https://a.example/t.tar.gz", "1" * 64) != a  # other bytes: another image
    assert fp("https://a.example/u.tar.gz", SHA) != a  # another name in the context


def test_a_recipe_without_sources_keeps_its_dockerfile_and_fingerprint_shape(tmp_path: Path) -> None:
    f = write_recipe(tmp_path, '\n[versions."1"]\nbase = "debian:bookworm-slim"\nrun = ["true"]\n')
    v = load_recipe(f).version("1")
    assert "sources" not in render_dockerfile(v)
    with_sources = write_recipe(tmp_path, '\n[versions."1"]\nbase = "debian:bookworm-slim"\nrun = ["true"]\n'
                                f'sources = [{{ url = "https://a.example/t.tar.gz", sha256 = "{SHA}" }}]\n')
    df = render_dockerfile(load_recipe(with_sources).version("1")).splitlines()
    assert df[2:] == ['COPY ["sources/", "/tmp/sources/"]', "RUN true", "RUN rm -rf /tmp/sources"]


# -- version_check -------------------------------------------------------------------------------
def test_version_check_placeholders_are_escaped_per_version(tmp_path: Path) -> None:
    f = write_recipe(tmp_path, '''
version_check = { command = ["jq", "--version"], expect = '^jq-({version}(\\.\\d+)?)$' }

[versions."1.7"]
base = "debian:trixie-slim"
full_version = "1.7.1"
version_check = { command = ["jq", "--version"], expect = "^jq-{full_version}$" }

[versions."1.6"]
base = "debian:bookworm-slim"

[versions."1.5+x"]
base = "debian:bullseye-slim"
version_check = false
''')
    r = load_recipe(f)
    assert r.version("1.7").check == VersionCheck(("jq", "--version"), r"^jq-1\.7\.1$")
    assert r.version("1.7").full_version == "1.7.1"
    assert r.version("1.6").check == VersionCheck(("jq", "--version"), r"^jq-(1\.6(\.\d+)?)$")
    assert r.version("1.6").full_version is None
    assert r.version("1.5+x").check is None  # `false` turns the top-level check off


@pytest.mark.parametrize(("check", "needle", "message"), [
    ('{ command = ["t"] }', "version_check", "version_check: missing required key 'expect'"),
    ('{ expect = "x" }', "version_check", "version_check: missing required key 'command'"),
    ('{ command = [], expect = "x" }', "version_check", "expected at least one word"),
    ('{ command = ["t"], expect = "v({version}" }', "version_check",
     "version_check.expect: not a valid regular expression: missing ), unterminated subpattern"),
    ('{ command = ["t"], expect = "{full_version}" }', "version_check",
     "version_check.expect: uses {full_version}, but version '1' has no full_version key"),
    ('{ command = ["t"], expect = "x", regex = true }', "version_check",
     "version_check.regex: unknown key"),
    ('"t --version"', "version_check", "version_check: expected a table"),
])
def test_bad_version_checks_are_one_line_with_file_and_line(tmp_path: Path, check: str, needle: str,
                                                            message: str) -> None:
    f = write_recipe(tmp_path, f'version_check = {check}\n\n[versions."1"]\nbase = "debian:bookworm-slim"\n')
    err = refused(f)
    assert err.message.startswith(f"{f}:{line_of(f, needle)}: "), err.message
    assert message in err.message


def test_a_bad_full_version_is_refused(tmp_path: Path) -> None:
    f = write_recipe(tmp_path, '[versions."1"]\nbase = "debian:bookworm-slim"\nfull_version = "1 2"\n')
    assert f"{f}:6: versions.1.full_version: '1 2' is not a valid version" in refused(f).message


@pytest.mark.parametrize(("tool", "version", "printed", "proven"), [
    ("sqlite3", "3.34", "3.34.1 2021-01-20 14:10:07 10e20c0b43500cfb9bbc0eaa061c57514f715d87238f4d835880cd846b9ealt1\n", "3.34.1"),
    ("openssl", "1.1", "OpenSSL 1.1.1w  11 Sep 2023\n", "1.1.1w"),
    ("openssl", "3.0", "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)\n", "3.0.19"),
    ("python2", "2.7", "Python 2.7.18\n", "2.7.18"),
    ("postgresql-client", "15", "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", "15.18"),
    ("symcli", "9.2", "Symmetrix Command Line Interface (SYMCLI) Version V9.2.0.0 (Edit Level: 2460)\n", "9.2.0.0"),
])
def test_builtin_checks_match_what_the_tools_print(tool: str, version: str, printed: str, proven: str) -> None:
    from sandman.paths import builtin_recipes_dir

    r = load_recipe(builtin_recipes_dir() / tool / "recipe.toml")
    check = r.version(version).check
    assert check is not None
    assert match_version(check, printed, tool, "x") == proven
    other = printed.replace(version, "9.99", 1)  # another version of the same tool
    with pytest.raises(VersionMismatchError):
        match_version(check, other, tool, "x")


def test_every_builtin_recipe_version_has_a_check() -> None:
    from sandman.catalog import Catalog
    from sandman.paths import builtin_recipes_dir

    del Catalog  # the built-in folder itself, whatever else the catalog holds
    for f in sorted(builtin_recipes_dir().glob("*/recipe.toml")):
        r = load_recipe(f)
        assert all(v.check is not None for v in r.versions), f


def test_a_mismatch_shows_both_escaped() -> None:
    check = VersionCheck(("t", "--version"), r"^t (2\.4\.\d+)")
    with pytest.raises(VersionMismatchError) as exc:
        match_version(check, "t \x1b[2J2.5.0\r0\n", "building t@2.4", "the new image was discarded")
    e = exc.value
    assert e.exit_code == VersionMismatchError.exit_code and isinstance(e, BuildError)
    assert e.message == ("building t@2.4: the version check `t --version` printed 't \\e[2J2.5.0\\r0', "
                         "which does not match '^t (2\\.4\\.\\d+)'; the new image was discarded "
                         "(is the recipe's base or package the version it names?)")


def host_engine(image: str, *, shell: bool = True) -> FakeEngine:
    """An image that is this host: CHECK_SCRIPT runs with the host's /bin/sh (unless shell is
    False), the commands are the host's, its PATH and the folders on it too."""

    def run(command: list[str]) -> tuple[int, str]:
        if command[0] == "/bin/sh" and not shell:
            return 127, "cannot run /bin/sh: no such file or directory"
        p = subprocess.run(command, capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    path = os.environ["PATH"]
    folders = {d: "\n".join(os.listdir(d)).encode() for d in path.split(":") if os.path.isdir(d)}
    return FakeEngine({image: ImageInfo(image, (), {}, 1, "", env=(f"PATH={path}",))},
                      files=folders, run=run)


def plan_for(check: VersionCheck | None, smoke: tuple[str, ...] = ("true",),
             commands: tuple[str, ...] = ("sh",)):
    from sandman.build import BuildPlan

    return BuildPlan(tool="t", version="2.4", source="env", dockerfile="FROM x\n", files={},
                     buildargs={}, bases={}, fingerprint="f" * 64, smoke=smoke, commands=commands,
                     version_check=check)


@pytest.mark.parametrize("shell", [True, False])
def test_the_check_runs_with_commands_and_smoke_in_one_container(shell: bool) -> None:
    engine = host_engine("img", shell=shell)
    check = VersionCheck(("sh", "-c", "echo 't version 2.4.7' >&2"), r"t version (2\.4\.\d+)")
    assert verify_image(engine, plan_for(check), "img", lambda line: None) == "2.4.7"
    assert len(engine.called("run_capture")) == (1 if shell else 3)
    bad = VersionCheck(("sh", "-c", "echo 't version 2.5.0'"), r"t version (2\.4\.\d+)")
    with pytest.raises(VersionMismatchError, match=r"printed 't version 2\.5\.0'"):
        verify_image(engine, plan_for(bad), "img", lambda line: None)
    # the smoke test's own output never passes for the version's
    quiet = VersionCheck(("true",), r"2\.4")
    with pytest.raises(VersionMismatchError, match="printed nothing"):
        verify_image(engine, plan_for(quiet, smoke=("echo", "2.4")), "img", lambda line: None)
    # a failing smoke test is still a build failure once the version is right
    with pytest.raises(BuildError, match="smoke test `false` exited 1"):
        verify_image(engine, plan_for(check, smoke=("false",)), "img", lambda line: None)


def test_the_version_words_with_spaces_and_dashes_reach_the_command_intact() -> None:
    argv = check_argv(("sh",), VersionCheck(("printf", "%s|", "a b", "--", "-n"), "x"), ("echo", "s"))
    p = subprocess.run(argv, capture_output=True, text=True)
    assert p.stdout == f"{CHECK_MARK}\na b|--|-n|\nsandman-version-check-status:0\ns\n"


def test_a_cached_image_is_checked_once_and_kept_on_a_mismatch(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path)})
    engine = host_engine("sha256:abc")
    check = VersionCheck(("echo", "t 2.4.1"), r"t (2\.4\.\d+)")
    assert check_existing(engine, paths, "sha256:abc", plan_for(check)) == "2.4.1"
    assert check_existing(engine, paths, "sha256:abc", plan_for(check)) == "2.4.1"
    assert len(engine.called("run_capture")) == 1  # the second time from what was remembered
    other = VersionCheck(("echo", "t 2.4.1"), r"t (2\.5\.\d+)")
    with pytest.raises(VersionMismatchError, match=r"nothing was installed .its image .* is kept"):
        check_existing(engine, paths, "sha256:abc", plan_for(other))


# -- config and mirror -----------------------------------------------------------------------------
def test_sources_mirror_in_config_and_env(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('sources_mirror = "/srv/sources"\n')
    assert load_config(cfg).sources_mirror == "/srv/sources"
    assert configured_mirror("/srv/sources", {}) == "/srv/sources"
    assert configured_mirror("/srv/sources", {"SANDMAN_SOURCES_MIRROR": "http://m/x"}) == "http://m/x"
    cfg.write_text('\n\nsources_mirror = "ftp://m/x"\n')
    with pytest.raises(StateError, match=r"config.toml:3: sources_mirror: 'ftp://m/x' is not an http"):
        load_config(cfg)
    cfg.write_text('sources_mirror = "relative/dir"\n')
    with pytest.raises(StateError, match="neither a URL prefix nor an absolute folder"):
        load_config(cfg)
    with pytest.raises(StateError, match="SANDMAN_SOURCES_MIRROR: 'x' is neither"):
        configured_mirror(None, {"SANDMAN_SOURCES_MIRROR": "x"})


def test_a_mirror_is_tried_first_by_name_then_by_sha256() -> None:
    s = Source("https://upstream.example/dl/tool-1.0.tar.gz?x=1", SHA, "tool.tgz")
    assert candidates(s, None) == [s.url]
    assert candidates(s, "http://mirror.example/pub/") == [
        "http://mirror.example/pub/tool-1.0.tar.gz", "http://mirror.example/pub/tool.tgz",
        f"http://mirror.example/pub/sha256/{SHA}", s.url]
    assert candidates(s, "/srv/m") == [
        "file:///srv/m/tool-1.0.tar.gz", "file:///srv/m/tool.tgz", f"file:///srv/m/sha256/{SHA}", s.url]


# -- downloads -------------------------------------------------------------------------------------
@pytest.fixture
def server(http_server: FileServer) -> FileServer:
    """The payload at /tool-1.0.tar.gz."""
    (http_server.root / "tool-1.0.tar.gz").write_bytes(PAYLOAD)
    return http_server


def test_download_verify_cache_then_offline(tmp_path: Path, server: FileServer) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    src = Source(f"{server.url}/tool-1.0.tar.gz", SHA, "tool-1.0.tar.gz")
    lines: list[str] = []
    got = fetch_all([src], paths, mirror=None, on_line=lines.append, what="t@1")
    target = cache_path(paths, SHA)
    assert got == {"sources/tool-1.0.tar.gz": target} and target.read_bytes() == PAYLOAD
    assert target == paths.cache_dir / "sources" / "sha256" / SHA
    assert lines[0].startswith(f"downloading tool-1.0.tar.gz from {src.url}")
    assert lines[-1].startswith("downloaded tool-1.0.tar.gz:")
    assert [p.name for p in target.parent.iterdir()] == [SHA]  # no temp file left
    server.stop()
    assert fetch(src, paths, mirror=None, on_line=lines.append, what="t@1") == target  # offline


def test_a_mismatch_names_the_url_and_the_cache_path_and_keeps_nothing(tmp_path: Path, server: FileServer) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    wrong = "0" * 64
    src = Source(f"{server.url}/tool-1.0.tar.gz", wrong, "tool-1.0.tar.gz")
    with pytest.raises(SourceError) as exc:
        fetch(src, paths, mirror=None, on_line=lambda line: None, what="t@1")
    e = exc.value
    assert e.exit_code == SourceError.exit_code
    assert e.message == (f"t@1: cannot get source 'tool-1.0.tar.gz' from {src.url}: sha256 {SHA}, the "
                         f"recipe expects {wrong}; nothing was built. Download it yourself, check that "
                         f"`sha256sum` prints {wrong}, and put it at {cache_path(paths, wrong)}")
    assert list(cache_path(paths, wrong).parent.iterdir()) == []


def test_a_404_and_an_unreachable_host(tmp_path: Path, server: FileServer) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    src = Source(f"{server.url}/nope.tar.gz", SHA, "nope.tar.gz")
    with pytest.raises(SourceError, match=r"from http://127\.0\.0\.1:\d+/nope\.tar\.gz: HTTP 404 "):
        fetch(src, paths, mirror=None, on_line=lambda line: None, what="t@1")
    server.stop()
    src = Source(f"{server.url}/tool-1.0.tar.gz", SHA, "tool-1.0.tar.gz")
    with pytest.raises(SourceError, match=r"unreachable .*Connection refused.*put it at"):
        fetch(src, paths, mirror=None, on_line=lambda line: None, what="t@1")


def test_a_file_dropped_by_hand_is_used_when_it_matches(tmp_path: Path) -> None:
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    src = Source("http://127.0.0.1:9/tool-1.0.tar.gz", SHA, "tool-1.0.tar.gz")  # discard port
    target = cache_path(paths, SHA)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not it")
    with pytest.raises(SourceError) as exc:
        fetch(src, paths, mirror=None, on_line=lambda line: None, what="t@1")
    assert f"{target}: {hashlib.sha256(b'not it').hexdigest()}" in (exc.value.detail or "")
    target.write_bytes(PAYLOAD)
    assert fetch(src, paths, mirror=None, on_line=lambda line: None, what="t@1") == target


def test_mirror_folder_and_url_prefix_come_before_the_url(tmp_path: Path, server: FileServer) -> None:
    src = Source("http://127.0.0.1:9/dl/tool-1.0.tar.gz", SHA, "tool-1.0.tar.gz")  # unreachable
    folder = tmp_path / "mirror"
    (folder / "sha256").mkdir(parents=True)
    (folder / "sha256" / SHA).write_bytes(PAYLOAD)
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "h1")})
    assert fetch(src, paths, mirror=str(folder), on_line=lambda line: None, what="t").read_bytes() == PAYLOAD
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "h2")})
    assert fetch(src, paths, mirror=server.url + "/", on_line=lambda line: None, what="t").read_bytes() == PAYLOAD
    assert server.hits == ["/tool-1.0.tar.gz"]
    # a mirror that has a wrong file under the name: the next candidate, and the error lists each
    (server.root / "tool-1.0.tar.gz").write_bytes(b"tampered")
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "h3")})
    with pytest.raises(SourceError) as exc:
        fetch(src, paths, mirror=server.url, on_line=lambda line: None, what="t")
    detail = exc.value.detail or ""
    assert f"{server.url}/tool-1.0.tar.gz: sha256 {hashlib.sha256(b'tampered').hexdigest()}" in detail
    assert f"{server.url}/sha256/{SHA}: HTTP 404" in detail
    assert "http://127.0.0.1:9/dl/tool-1.0.tar.gz: unreachable" in detail


def test_a_fifo_in_a_mirror_folder_is_refused_without_blocking(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.mkfifo(mirror / "t.tar.gz")
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    src = Source("http://127.0.0.1:9/t.tar.gz", SHA, "t.tar.gz")  # discard port
    with pytest.raises(SourceError) as exc:
        fetch(src, paths, mirror=str(mirror), on_line=lambda line: None, what="t")
    assert "t.tar.gz: not a regular file" in (exc.value.detail or "")


def test_a_long_download_reports_its_progress(tmp_path: Path, server: FileServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import sandman.sources

    monkeypatch.setattr(sandman.sources, "PROGRESS_EVERY", 0.0)  # every block, not every 2 s
    monkeypatch.setattr(sandman.sources, "CHUNK", 256)
    paths = Paths.from_env({"SANDMAN_HOME": str(tmp_path / "home")})
    lines: list[str] = []
    fetch(Source(f"{server.url}/tool-1.0.tar.gz", SHA, "tool-1.0.tar.gz"), paths, mirror=None,
          on_line=lines.append, what="t@1")
    progress = [ln for ln in lines if ln.startswith("downloading tool-1.0.tar.gz: ")]
    assert len(progress) >= len(PAYLOAD) // 256 - 1
    assert progress[0] == "downloading tool-1.0.tar.gz: 0.0 MiB of 0.0 MiB (19%)"
    assert progress[-1].endswith("(100%)")
