"""`sandman bootstrap --from-rootfs FILE NAME:TAG`: a vendor OS's root filesystem as a base.

The tests make their own "vendor" root filesystem: the files of debian:bookworm-slim (from
`docker export`), plus a release file and a file owned by another uid, gzip-compressed as
vendors ship them. A recipe on that base then `run`s with the system's own tools. Garbage is
refused with one line, and no failure moves the base's name.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import remove_images

from sandman.bootstrap import inspect_rootfs, rootfs_platform
from sandman.errors import BuildError, UsageError

RELEASE = "VendorOS Server release 7.9 (test)\n"


def add_file(tar: tarfile.TarFile, name: str, data: bytes, *, mode: int = 0o644, uid: int = 0,
             kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.type, info.linkname = \
        (len(data) if kind == tarfile.REGTYPE else 0), mode, uid, uid, kind, link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def vendor_rootfs(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rootfs") / "vendoros-7.9.tar.gz"
    c = docker_client.containers.create("debian:bookworm-slim", ["true"],
                                        labels={"io.sandman.test": "rootfs"})
    try:
        exported = tmp_path_factory.mktemp("export") / "export.tar"
        with exported.open("wb") as f:
            for chunk in c.export():
                f.write(chunk)
    finally:
        c.remove(force=True)
    with tarfile.open(exported) as src, gzip.open(out, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            if m.name in ("etc/os-release", "usr/lib/os-release"):
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        add_file(dst, "etc/vendor-release", RELEASE.encode())
        add_file(dst, "etc/os-release", b'NAME="VendorOS"\nVERSION_ID="7.9"\n')
        add_file(dst, "opt/vendor/data", b"owned by 4321\n", mode=0o600, uid=4321)
    exported.unlink()
    return out


@pytest.fixture
def ref(docker_client) -> Iterator[str]:
    name = f"sandman-test-rootfs/vendoros:{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        docker_client.images.remove(name, force=True)


def image_id(client, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except Exception:
        return None


@pytest.mark.docker
def test_a_vendor_rootfs_is_inspected_before_anything(vendor_rootfs: Path, tmp_path: Path) -> None:
    fs = inspect_rootfs(vendor_rootfs)
    assert [p.name for p in fs.platforms] == ["linux/amd64"] and fs.shell == "bash"
    assert fs.sha256 == sha256(vendor_rootfs)
    assert rootfs_platform(fs, None).name == "linux/amd64"
    with pytest.raises(UsageError, match=r"holds linux/amd64 programs \(its /bin/sh\), not linux/arm64"):
        rootfs_platform(fs, "linux/arm64")
    with pytest.raises(UsageError, match="--platform linux/sparc: unknown platform"):
        rootfs_platform(fs, "linux/sparc")


@pytest.mark.docker
def test_rootfs_becomes_a_base_that_recipes_run_on(vendor_rootfs: Path, ref: str, sandman,
                                                   shim_env, docker_client, tmp_path: Path) -> None:
    p = sandman("bootstrap", "--from-rootfs", str(vendor_rootfs), ref)
    assert p.returncode == 0, p.stderr
    assert f"{ref}: made sha256:" in p.stderr
    img = docker_client.images.get(ref)
    assert (img.attrs["Architecture"], img.attrs["Config"]["Cmd"]) == ("amd64", ["bash"])
    assert img.labels["io.sandman.rootfs.sha256"] == sha256(vendor_rootfs)
    out = docker_client.containers.run(ref, ["stat", "-c", "%u %a", "/opt/vendor/data"],
                                       remove=True, network_mode="none")
    assert out.decode() == "4321 600\n"  # owners and modes as in the tarball
    p = sandman("bootstrap", "--from-rootfs", str(vendor_rootfs), ref)
    assert p.returncode == 0 and f"{ref}: already present" in p.stderr
    # a recipe on it: `run` uses the vendor system's own shell and tools
    tool = f"rf{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "recipes" / tool
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(
        f'schema = 1\ntool = "{tool}"\ndescription = "vendor rootfs test"\n'
        f'entrypoint = ["cat", "/usr/local/share/{tool}"]\n'
        f'[versions."7.9"]\nbase = "{ref}"\n'
        f"run = [\"sed 's/^/release: /' /etc/vendor-release > /usr/local/share/{tool}\"]\n")
    env = {"SANDMAN_RECIPE_PATH": str(tmp_path / "recipes")}
    try:
        p = sandman("install", f"{tool}@7.9", env=env)
        assert p.returncode == 0, p.stderr
        import subprocess

        r = subprocess.run([f"{tool}-7.9"], env={**shim_env, **env}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (0, "release: " + RELEASE, "")
    finally:
        remove_images(tool)


def garbage(tmp: Path) -> dict[str, tuple[Path, int, str]]:
    """Attack files: each with the exit code and the one line it must get."""
    out: dict[str, tuple[Path, int, str]] = {}
    f = tmp / "notatar.tar.gz"
    f.write_bytes(b"\x1f\x8b this is no gzip, and no tar\n" * 50)
    out["not a tar"] = (f, 2, f"sandman: --from-rootfs {f}: not a tar archive (plain, gzip, bzip2 or xz)\n")
    f = tmp / "nosh.tar"
    with tarfile.open(f, "w") as t:
        add_file(t, "etc/motd", b"hello\n")
        add_file(t, "bin/bash", b"\x7fELF not really\n", mode=0o755)
    out["no shell"] = (f, 2, f"sandman: --from-rootfs {f}: no /bin/sh in it, so it is not a root "
                             "filesystem (make one with: tar -C ROOT -cf FILE .)\n")
    f = tmp / "loop.tar"
    with tarfile.open(f, "w") as t:  # bin -> bin: a link loop never resolves
        add_file(t, "bin", b"", kind=tarfile.SYMTYPE, link="bin")
    out["link loop"] = (f, 2, out["no shell"][2].replace(str(tmp / "nosh.tar"), str(f)))
    f = tmp / "script.tar"
    with tarfile.open(f, "w") as t:
        add_file(t, "usr/bin/sh", b"#!/bin/busybox sh\n", mode=0o755)
        add_file(t, "bin", b"", kind=tarfile.SYMTYPE, link="usr/bin")
    out["not a program"] = (f, 2, f"sandman: --from-rootfs {f}: its /bin/sh is not a Linux program (ELF)\n")
    return out


@pytest.mark.docker
def test_garbage_is_refused_in_one_line_and_the_base_stays(vendor_rootfs: Path, ref: str, sandman,
                                                           docker_client, tmp_path: Path) -> None:
    p = sandman("bootstrap", "--from-rootfs", str(vendor_rootfs), ref)
    assert p.returncode == 0, p.stderr
    good = image_id(docker_client, ref)
    for what, (f, code, line) in garbage(tmp_path).items():
        p = sandman("-q", "bootstrap", "--force", "--from-rootfs", str(f), ref)
        assert (p.returncode, p.stderr) == (code, line), what
        assert image_id(docker_client, ref) == good, what
    # a shell that looks right (an x86-64 ELF header) but cannot run: found only once built;
    # the new image is thrown away and the name stays on the good base
    f = tmp_path / "broken-sh.tar"
    with open("/bin/sh", "rb") as real, tarfile.open(f, "w") as t:
        add_file(t, "bin/sh", real.read(64) + b"\0" * 64, mode=0o755)
    p = sandman("-q", "bootstrap", "--force", "--from-rootfs", str(f), ref)
    assert p.returncode == BuildError.exit_code, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(
        f"sandman: cannot make {ref}: its /bin/sh does not run here (exit ")
    assert p.stderr.endswith(f"; {ref} was not changed\n")
    assert image_id(docker_client, ref) == good
    assert docker_client.images.list(filters={"label": f"io.sandman.rootfs.sha256={sha256(f)}"}) == []
    # names: sandman's own namespace, and no tag
    for bad, says in (("sandman/vendoros:1", "the sandman/ names belong to the images sandman builds"),
                      ("vendoros", "is not a NAME:TAG")):
        p = sandman("-q", "bootstrap", "--from-rootfs", str(vendor_rootfs), bad)
        assert p.returncode == 2 and says in p.stderr and p.stderr.count("\n") == 1, p.stderr
    p = sandman("-q", "bootstrap", "--from-rootfs", str(tmp_path / "missing.tar"), ref)
    assert (p.returncode, p.stderr) == (2, f"sandman: --from-rootfs {tmp_path / 'missing.tar'}: no such file\n")
