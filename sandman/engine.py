"""The Docker boundary: the only module that imports the Docker SDK.

Everything the daemon can say goes through here and comes out as a sandman error that keeps
its context (the failing build step and the log tail, the exit status), so the rest of the
code never sees a docker exception or an HTTP status.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from sandman.errors import (
    BuildError,
    DaemonPermissionError,
    DaemonUnavailableError,
    ImageMissingError,
    NoSpaceError,
    RemoteError,
    SandmanError,
)

LABEL = "io.sandman"
LOG_TAIL = 25
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colour codes tools print into build logs


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int
    created: str


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    status: str


def _is_no_space(text: str) -> bool:
    return "no space left on device" in text.lower()


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn docker/requests exceptions raised while doing `action` into sandman errors."""
    try:
        yield
    except SandmanError:
        raise
    except docker.errors.ImageNotFound as e:
        raise ImageMissingError(f"{action}: {e.explanation or e}") from e
    except docker.errors.APIError as e:
        text = str(e.explanation or e)
        if _is_no_space(text):
            raise NoSpaceError(f"{action}: no space left on device (docker: {text})") from e
        raise SandmanError(f"{action}: docker said: {text}") from e
    except docker.errors.DockerException as e:
        raise _connection_error(e) from e
    except (OSError, requests.exceptions.ConnectionError, ConnectionError) as e:
        raise _connection_error(e) from e


def _connection_error(e: BaseException) -> SandmanError:
    text = str(e)
    if "Permission denied" in text or isinstance(e, PermissionError):
        return DaemonPermissionError(
            "permission denied on the Docker socket; add yourself to the 'docker' group "
            "(then log in again) or set DOCKER_HOST"
        )
    return DaemonUnavailableError(
        "cannot reach the Docker daemon; start it (systemctl start docker, or dockerd) "
        "or set DOCKER_HOST"
    )


class Engine:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.api = client.api

    @classmethod
    def connect(cls) -> Engine:
        with translate("connecting to Docker"):
            client = docker.from_env(version="auto", timeout=600)
            client.ping()
        return cls(client)

    # -- facts about the daemon -----------------------------------------------------------
    def version(self) -> dict[str, Any]:
        with translate("asking Docker for its version"):
            return dict(self.client.version())

    # -- images ---------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        try:
            with translate(f"looking up image {ref}"):
                img = self.client.images.get(ref)
        except ImageMissingError:
            return None
        return _image_info(img)

    def images(self, **labels: str) -> list[ImageInfo]:
        filters = [f"{LABEL}.{k}={v}" for k, v in labels.items()] or [f"{LABEL}.tool"]
        with translate("listing images"):
            imgs = self.client.images.list(filters={"label": filters})
        return [_image_info(i) for i in imgs]

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        with translate(f"tagging {ref}"):
            self.api.tag(image_id, repo, tag)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        with contextlib.suppress(ImageMissingError), translate(f"removing image {ref}"):
            self.api.remove_image(ref, force=force, noprune=False)

    def pull(self, ref: str) -> ImageInfo:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        try:
            with translate(f"pulling {ref}"):
                self.api.pull(repo, tag=tag)
        except SandmanError as e:
            raise RemoteError(f"cannot pull {ref}: {e.message}") from e
        info = self.image(ref)
        if info is None:  # pragma: no cover - the daemon said yes but has nothing
            raise RemoteError(f"cannot pull {ref}: the daemon reported success but has no image")
        return info

    def import_tarball(self, tarball: Path, ref: str, changes: list[str]) -> str:
        repo, _, tag = ref.rpartition(":")
        with translate(f"importing {tarball} as {ref}"), tarball.open("rb") as f:
            out = self.api.import_image_from_data(f, repository=repo, tag=tag, changes=changes)
        m = re.search(r"sha256:[0-9a-f]{64}", str(out))
        info = self.image(ref)
        if info is None:
            raise SandmanError(f"importing {ref}: docker did not create the image ({out!r})")
        return m.group(0) if m else info.id

    def build(
        self,
        context: IO[bytes],
        *,
        labels: dict[str, str],
        buildargs: dict[str, str],
        on_line: Callable[[str], None],
        what: str,
    ) -> str:
        """Build from a tar context; return the new image id (untagged: callers tag on success)."""
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        step = "the build"
        image_id: str | None = None
        with translate(f"building {what}"):
            stream = self.api.build(
                fileobj=context,
                custom_context=True,
                rm=True,
                forcerm=True,
                pull=False,
                labels=labels,
                buildargs=buildargs,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in ANSI_RE.sub("", chunk["stream"]).splitlines():
                        if not line.strip():
                            continue
                        if re.match(r"^Step \d+/\d+ :", line):
                            step = line.strip()
                        tail.append(line)
                        on_line(line)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    msg = chunk.get("error", "").strip()
                    tail.append(msg)
                    log = "\n".join(tail)
                    if _is_no_space(msg):
                        raise NoSpaceError(f"building {what}: no space left on device at {step}",
                                           detail=log)
                    raise BuildError(f"building {what} failed at {step}: {msg.splitlines()[-1]}",
                                     detail=log)
        if image_id is None:
            m = next((re.search(r"Successfully built ([0-9a-f]+)", t) for t in reversed(tail)
                      if "Successfully built" in t), None)
            if not m:
                raise BuildError(f"building {what}: docker reported no image", detail="\n".join(tail))
            image_id = m.group(1)
        info = self.image(image_id)
        if info is None:
            raise BuildError(f"building {what}: the new image {image_id} vanished")
        return info.id

    def run_capture(
        self, image: str, command: list[str], *, entrypoint: list[str] | None = None,
        user: str | None = None, network: bool = False,
    ) -> tuple[int, str]:
        """Run a short command in a throwaway container (smoke tests, image facts)."""
        with translate(f"running {' '.join(command)} in {image}"):
            container = self.client.containers.create(
                image, command=command, entrypoint=entrypoint, user=user,
                network_mode=None if network else "none",
                labels={f"{LABEL}.role": "probe"},
                security_opt=["no-new-privileges"], cap_drop=["ALL"],
            )
            try:
                container.start()
                status = container.wait(timeout=300)
                logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            finally:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return int(status.get("StatusCode", 1)), logs

    def read_files(self, image: str, files: list[str]) -> dict[str, bytes]:
        """Read small files from an image without running it (no shell needed in the image)."""
        import io
        import tarfile

        out: dict[str, bytes] = {}
        with translate(f"reading files of {image}"):
            container = self.client.containers.create(image, command=["true"],
                                                      labels={f"{LABEL}.role": "probe"})
            try:
                for path in files:
                    try:
                        stream, _ = container.get_archive(path)
                    except docker.errors.NotFound:
                        continue
                    buf = io.BytesIO(b"".join(stream))
                    with tarfile.open(fileobj=buf) as tar:
                        members = tar.getmembers()
                        top = members[0] if members else None
                        if top is not None and top.isfile():
                            f = tar.extractfile(top)
                            out[path] = f.read() if f else b""
                        elif top is not None and top.isdir():
                            # a directory: its entries' names, one per line
                            names = [m.name.split("/")[1] for m in members[1:]
                                     if m.name.count("/") == 1]
                            out[path] = "\n".join(names).encode()
            finally:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return out

    # -- containers -------------------------------------------------------------------------
    def containers(self, **labels: str) -> list[ContainerInfo]:
        filters = [f"{LABEL}.{k}={v}" if v else f"{LABEL}.{k}" for k, v in labels.items()]
        with translate("listing containers"):
            found = self.client.containers.list(all=True, filters={"label": filters})
        return [ContainerInfo(c.id, c.name, dict(c.labels), c.status) for c in found]

    def remove_container(self, ident: str) -> None:
        with contextlib.suppress(docker.errors.NotFound), translate(f"removing container {ident}"):
            self.api.remove_container(ident, force=True)

    def push(self, ref: str, on_line: Callable[[str], None]) -> None:
        repo, _, tag = ref.rpartition(":")
        with translate(f"pushing {ref}"):
            for chunk in self.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise RemoteError(f"pushing {ref}: {chunk['error']}")
                if chunk.get("status"):
                    on_line(str(chunk["status"]))

    def save(self, refs: list[str], out: IO[bytes]) -> None:
        """`docker save` of several images into one stream: shared layers are written once."""
        with translate(f"saving {', '.join(refs)}"):
            res = self.api._get(self.api._url("/images/get"), params={"names": refs}, stream=True)
            self.api._raise_for_status(res)
            for block in res.iter_content(chunk_size=1 << 20):
                out.write(block)

    def load(self, data: IO[bytes], on_line: Callable[[str], None]) -> list[str]:
        """`docker load`; returns what docker reports loading (tags, or ids of untagged images)."""
        loaded: list[str] = []
        with translate("loading images"):
            # a generator, so requests sends it chunked: the length of a file-like object can be
            # misjudged (a member of a tar reports the whole tar's size)
            blocks = iter(lambda: data.read(1 << 20), b"")
            for chunk in self.api.load_image(blocks):
                if "error" in chunk:
                    raise SandmanError(f"loading images: docker said: {chunk['error']}")
                text = str(chunk.get("stream", "")).strip()
                if text:
                    on_line(text)
                    m = re.match(r"Loaded image(?: ID)?: (\S+)", text)
                    if m:
                        loaded.append(m.group(1))
        return loaded


def _image_info(img: Any) -> ImageInfo:
    attrs = img.attrs
    return ImageInfo(
        id=img.id,
        tags=tuple(img.tags),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        size=int(attrs.get("Size") or 0),
        created=str(attrs.get("Created", "")),
    )
