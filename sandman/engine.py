"""The Docker boundary: the only module that imports the Docker SDK.

Everything the daemon can say goes through here and comes out as a sandman error that keeps
its context (the failing build step and the log tail, the exit status), so the rest of the
code never sees a docker exception or an HTTP status.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from sandman.engine_choice import Docker, EngineChoice, probe_options, setup_fix
from sandman.engine_reads import ImageInfo, connection_error, from_inspect, from_listing, lost
from sandman.errors import (
    BuildError,
    EngineError,
    EngineSetupError,
    ImageMissingError,
    NoSpaceError,
    RemoteError,
    SandmanError,
)
from sandman.names import LABEL, LABEL_BUILD_STEP, LABEL_ROLE, LABEL_TOOL, ROLE_PROBE
from sandman.text import safe, safe_lines

LOG_TAIL = 25
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colour codes tools print into build logs


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
    except docker.errors.NotFound as e:
        text = str(e.explanation or e)
        if "image not known" in text:  # Podman's word for a missing image
            raise ImageMissingError(f"{action}: {text}") from e
        raise EngineError(f"{action}: the engine said: {text}") from e
    except docker.errors.APIError as e:
        text = str(e.explanation or e)
        if _is_no_space(text):
            raise NoSpaceError(f"{action}: no space left on device (docker: {text})") from e
        if fix := setup_fix(text):
            raise EngineSetupError(f"{action}: {fix} (the engine said: {text.splitlines()[0]})") from e
        raise EngineError(f"{action}: docker said: {text}") from e
    except docker.errors.DockerException as e:
        raise connection_error(e) from e
    except (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError,
            http.client.HTTPException) as e:
        raise lost(action) from e
    except (OSError, requests.exceptions.ConnectionError, ConnectionError) as e:
        if isinstance(e, requests.exceptions.ConnectionError) and any(
                isinstance(a, urllib3.exceptions.ProtocolError) for a in e.args):
            raise lost(action) from e  # requests' wrapping of the same broken answer
        raise connection_error(e) from e


class Engine:
    def __init__(self, client: Any, choice: EngineChoice | None = None) -> None:
        self.client = client
        self.api = client.api
        self.choice = choice or Docker("docker", str(getattr(self.api, "base_url", "")), False, "")

    @classmethod
    def connect(cls, choice: EngineChoice, *, service_log: Path | None = None,
                say: Callable[[str], None] | None = None) -> Engine:
        """The SDK client of the engine chosen once for this process (Context.choice);
        Podman's API service is started when needed."""
        choice.ready(service_log, say)
        with translate(f"connecting to {choice.label}"):
            if choice.sdk_from_env:  # DOCKER_HOST with DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
                client = docker.from_env(version="auto", timeout=600)
            else:
                client = docker.DockerClient(base_url=choice.base_url, version="auto", timeout=600)
            client.ping()
        return cls(client, choice)

    def network_mode(self, network: bool) -> str | None:
        """The network of a container sandman starts itself (probes, the agent's build);
        None: the engine's default network."""
        mode = self.choice.network_mode("bridge" if network else "none")
        return None if mode == "bridge" else mode

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
        filters = [f"{LABEL}.{k}={v}" for k, v in labels.items()] or [LABEL_TOOL]
        with translate("listing images"):
            imgs = self.client.images.list(filters={"label": filters})
        return [_image_info(i) for i in imgs]

    def image_list(self, label: str = LABEL_TOOL) -> list[ImageInfo]:
        """Every image carrying label, from one listing call.

        `images()` inspects each image after listing them, so an image removed in between by
        someone else (another user's gc, a test) fails the whole call; gc needs a listing that
        a busy shared daemon cannot break.
        """
        with translate("listing images"):
            found = self.api.images(filters={"label": [label]})
        return [from_listing(i) for i in found]

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        with translate(f"tagging {ref}"):
            self.api.tag(image_id, repo, tag)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        with contextlib.suppress(ImageMissingError), translate(f"removing image {ref}"):
            self.api.remove_image(ref, force=force, noprune=False)

    def untag(self, ref: str) -> str | None:
        """Remove one name of an image, never forced: docker deletes the image with its last
        name, unless a container (running or stopped) or a child image still needs it.

        Returns None when the name (or the image) is gone, else docker's reason for refusing.
        """
        with translate(f"removing {ref}"):
            try:
                self.api.remove_image(ref, force=False, noprune=False)
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as e:
                if e.status_code == 409:
                    return str(e.explanation or e)
                raise
        return None

    def pull(self, ref: str) -> ImageInfo:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        try:
            with translate(f"pulling {ref}"):
                if self.choice.plain_http_api(repo):
                    # Podman's compat pull has no TLS switch: its own API has
                    res = self.api._post(f"{self.api.base_url}/v4.0.0/libpod/images/pull",
                                         stream=True, params={"reference": f"{repo}:{tag}",
                                                              "tlsVerify": "false"})
                    self.api._raise_for_status(res)
                    for chunk in self.api._stream_helper(res, decode=True):
                        if "error" in chunk:
                            raise RemoteError(f"cannot pull {ref}: {chunk['error']}")
                else:
                    self.api.pull(repo, tag=tag)
        except SandmanError as e:
            raise RemoteError(f"cannot pull {ref}: {e.message}") from e
        info = self.image(ref)
        if info is None:  # pragma: no cover - the daemon said yes but has nothing
            raise RemoteError(f"cannot pull {ref}: the daemon reported success but has no image")
        return info

    def import_tarball(self, tarball: Path, ref: str, changes: list[str]) -> str:
        """Imported untagged, then tagged: Podman 4's compat import ignores the tag (it would
        name the image <repo>:latest, moving whatever had that name)."""
        with translate(f"importing {tarball} as {ref}"), tarball.open("rb") as f:
            out = self.api.import_image_from_data(f, changes=changes)
        m = re.search(r"sha256:[0-9a-f]{64}", str(out))
        info = self.image(m.group(0)) if m else None
        if info is None:
            raise EngineError(f"importing {ref}: docker did not create the image ({out!r})")
        self.tag(info.id, ref)
        return info.id

    def build(
        self,
        context: IO[bytes],
        *,
        labels: dict[str, str],
        buildargs: dict[str, str],
        on_line: Callable[[str], None],
        what: str,
        platform: str | None = None,
    ) -> str:
        """Build from a tar context; return the new image id (untagged: callers tag on success).

        `platform` (linux/arm64) is what `FROM scratch` becomes; an image FROM a base keeps the
        base's platform whatever it says (docker 20.10's builder), so callers check the base.

        A local Podman builds with its own client (`podman build`, see _podman_build): its API
        service does not cancel a build whose client went away, so a Ctrl-C would leave the step
        running there; a child build is one sandman can stop.
        """
        log = _BuildLog(on_line, what)
        with contextlib.suppress(SandmanError):
            self.remove_build_leftovers()
        if self.choice.builds_with_cli(os.environ):
            image_id: str | None = self._podman_build(context, labels=labels, buildargs=buildargs,
                                                      platform=platform, log=log)
        else:
            image_id = self._api_build(context, labels=labels, buildargs=buildargs,
                                       platform=platform, log=log)
        if image_id is None:
            m = next((re.search(r"Successfully built ([0-9a-f]+)", t) for t in reversed(log.tail)
                      if "Successfully built" in t), None)
            if not m:
                raise BuildError(f"building {what}: docker reported no image", detail="\n".join(log.tail))
            image_id = m.group(1)
        info = self.image(image_id)
        if info is None:
            raise BuildError(f"building {what}: the new image {image_id} vanished")
        return info.id

    def _api_build(self, context: IO[bytes], *, labels: dict[str, str], buildargs: dict[str, str],
                   platform: str | None, log: _BuildLog) -> str | None:
        """Docker (or a remote Podman): the build streamed from the API; None if no id came."""
        image_id: str | None = None
        with translate(f"building {log.what}"):
            stream = self.api.build(
                fileobj=context,
                custom_context=True,
                rm=True,
                forcerm=True,
                pull=False,
                labels=labels,
                buildargs=buildargs,
                decode=True,
                platform=platform,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        log.feed(line)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    log.fail(str(chunk.get("error", "")))
        return image_id

    def _podman_build(self, context: IO[bytes], *, labels: dict[str, str], buildargs: dict[str, str],
                      platform: str | None, log: _BuildLog) -> str:
        """`podman build` as a child: the same build the compat API runs (Docker's manifest
        format, no pull, intermediate containers removed even on failure), its id from
        --iidfile, in the store the API then inspects.

        Why the CLI: Podman 4's API service goes on with a build after its client is gone (a
        Ctrl-C left `RUN sleep 120` running 30 s later), and `podman build` itself, on SIGINT,
        exits at once leaving the step running and its Buildah containers in the store. A step
        killed, though, fails the build the ordinary way: Podman removes its containers and
        exits. So on an interrupt sandman kills the child's steps (_stop_podman_build), waits for
        it, then goes on with the interrupt. The child has a session of its own, so a terminal's
        Ctrl-C reaches sandman only and this order holds.
        """
        with tempfile.TemporaryDirectory(prefix="sandman-build-") as tmp:
            folder = Path(tmp) / "context"
            _unpack_context(context, folder, log.what)
            iidfile = Path(tmp) / "image-id"
            argv = [self.choice.cli, "build", "--pull=never", "--rm", "--force-rm", "--layers",
                    "--format", "docker", f"--iidfile={iidfile}",
                    "--file", str(folder / "Dockerfile")]
            for key, value in labels.items():
                argv += ["--label", f"{key}={value}"]
            for key, value in buildargs.items():
                argv += ["--build-arg", f"{key}={value}"]
            if platform:
                argv += ["--platform", platform]
            argv.append(str(folder))
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
            except OSError as e:
                raise EngineError(f"building {log.what}: cannot run {self.choice.cli}: {e}") from e
            assert proc.stdout is not None
            try:
                for raw in proc.stdout:
                    log.feed(raw.decode("utf-8", "replace"))
                code = proc.wait()
            except BaseException:
                _stop_podman_build(proc)
                raise
            finally:
                proc.stdout.close()
            if code != 0:
                errors = [t for t in log.tail if t.startswith("Error: ")]
                error = errors[-1][len("Error: "):] if errors else f"podman build exited {code}"
                if fix := setup_fix(error):  # as translate() says it for the API
                    raise EngineSetupError(f"building {log.what}: {fix} (the engine said: {error})",
                                           detail="\n".join(log.tail))
                log.fail(error, logged=bool(errors))
            try:
                return iidfile.read_text().strip()
            except OSError as e:
                raise BuildError(f"building {log.what}: podman reported no image ({e})",
                                 detail="\n".join(log.tail)) from e

    def remove_build_leftovers(self, min_age: float = 120.0) -> int:
        """Remove the stopped containers of builds that never finished; return how many.

        docker removes a build's intermediate containers itself, unless it dies mid-build:
        then they stay, exited. They are found by LABEL_BUILD_STEP="1" (inherited from the
        build's intermediate images; finished images carry it empty) and removed only once
        stopped for `min_age` seconds, so another user's build in progress (which commits a
        step's container the moment it exits) is never disturbed.
        """
        removed = 0
        now = time.time()
        with translate("removing containers left by an interrupted build"):
            found = self.api.containers(all=True, filters={
                "label": f"{LABEL_BUILD_STEP}=1", "status": ["exited", "dead", "created"]})
            for c in found:
                if LABEL_ROLE in (c.get("Labels") or {}):
                    continue  # a container sandman ran on purpose, never a build step
                if c.get("State") == "created":
                    stopped = float(c.get("Created") or now)
                else:
                    finished = str(self.api.inspect_container(c["Id"])["State"].get("FinishedAt", ""))
                    stopped = _epoch(finished, default=now)
                if now - stopped >= min_age:
                    with contextlib.suppress(docker.errors.NotFound):
                        self.api.remove_container(c["Id"], force=True)
                        removed += 1
        return removed

    def run_capture(
        self, image: str, command: list[str], *, entrypoint: list[str] | None = None,
        user: str | None = None, network: bool = False,
    ) -> tuple[int, str]:
        """Run a short command in a throwaway container (smoke tests, image facts)."""
        with translate(f"running {' '.join(command)} in {image}"):
            container = self.client.containers.create(
                image, command=command, entrypoint=entrypoint, user=user,
                **probe_options(self.choice, network=network))
            try:
                try:
                    container.start()
                except docker.errors.APIError as e:
                    text = str(e.explanation or e)
                    if re.search(r"no such file or directory|executable file not found", text,
                                 re.IGNORECASE):
                        # as `docker run` does: 127, the command is not in the image
                        return 127, f"cannot run {command[0]}: {text}"
                    raise
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
                                                      labels={LABEL_ROLE: ROLE_PROBE})
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
                        elif top is not None and (top.issym() or top.islnk()):
                            out[path] = b""  # there, as a link (/bin/sh -> dash): no content read
            finally:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
        return out

    # -- containers -------------------------------------------------------------------------
    def containers(self, **labels: str) -> list[ContainerInfo]:
        filters = [f"{LABEL}.{k}={v}" if v else f"{LABEL}.{k}" for k, v in labels.items()]
        with translate("listing containers"):
            found = self.client.containers.list(all=True, filters={"label": filters},
                                                ignore_removed=True)  # removed meanwhile: gone
        return [ContainerInfo(c.id, c.name, dict(c.labels), c.status) for c in found]

    def container_images(self) -> dict[str, list[str]]:
        """Every container on the daemon (any state, anyone's), by the id of its image."""
        with translate("listing containers"):
            found = self.api.containers(all=True)
        out: dict[str, list[str]] = {}
        for c in found:
            names = [str(n).lstrip("/") for n in c.get("Names") or []] or [str(c.get("Id", ""))[:12]]
            out.setdefault(str(c.get("ImageID", "")), []).append(names[0])
        return out

    def remove_container(self, ident: str) -> None:
        # suppress inside translate: translate would turn NotFound into an error first
        with translate(f"removing container {ident}"), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(ident, force=True)

    def push(self, ref: str, on_line: Callable[[str], None]) -> None:
        repo, _, tag = ref.rpartition(":")
        with translate(f"pushing {ref}"):
            if self.choice.plain_http_api(repo):
                res = self.api._post(self.api._url("/images/{0}/push", repo),
                                     params={"tag": tag, "tlsVerify": "false"}, stream=True)
                self.api._raise_for_status(res)
                chunks = self.api._stream_helper(res, decode=True)
            else:
                chunks = self.api.push(repo, tag=tag, stream=True, decode=True)
            for chunk in chunks:
                if "error" in chunk:
                    raise RemoteError(f"pushing {ref}: {chunk['error']}")
                if chunk.get("status"):
                    on_line(str(chunk["status"]))

    def save(self, refs: list[str], out: IO[bytes]) -> None:
        """`docker save` of several images into one stream: shared layers are written once.

        The SDK's public calls save one image at a time (layers shared by a tool and its base
        would be written twice), so this asks the Engine API's documented `GET /images/get`
        with several names, through the client's public requests session.
        """
        url = f"{self.api.base_url}/v{self.api.api_version}/images/get"
        with translate(f"saving {', '.join(refs)}"):
            res = self.api.get(url, params={"names": refs}, stream=True)
            if res.status_code != 200:
                text = res.text.strip()
                if res.status_code == 404:
                    raise ImageMissingError(f"saving {', '.join(refs)}: {text}")
                raise EngineError(f"saving {', '.join(refs)}: docker said: {text}")
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
                    raise EngineError(f"loading images: docker said: {chunk['error']}")
                text = str(chunk.get("stream", "")).strip()
                if text:
                    on_line(text)
                    m = re.match(r"Loaded image(?: ID)?: (\S+)", text)
                    if m:
                        loaded.append(m.group(1))
        return loaded


class DryRunRefused(SandmanError):
    """A dry run asked the engine to change something. It never reaches the user unless
    sandman has a bug (exit 1): callers of a dry engine fall back to what they can see."""


class DryRunEngine(Engine):
    """An engine that looks and never touches: dry runs use it, so "nothing is built, pulled,
    created or started" is enforced at the Docker boundary, not hoped for in every caller."""

    def _refuse(self, what: str) -> Any:
        raise DryRunRefused(f"dry run: sandman tried to {what} (a bug: please report it)")

    def tag(self, image_id: str, ref: str) -> None:
        self._refuse(f"tag {ref}")

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        self._refuse(f"remove {ref}")

    def untag(self, ref: str) -> str | None:
        return self._refuse(f"remove {ref}")

    def pull(self, ref: str) -> ImageInfo:
        return self._refuse(f"pull {ref}")

    def import_tarball(self, tarball: Path, ref: str, changes: list[str]) -> str:
        return self._refuse(f"import {ref}")

    def build(self, context: IO[bytes], **kwargs: Any) -> str:  # type: ignore[override]
        return self._refuse(f"build {kwargs.get('what', 'an image')}")

    def run_capture(self, image: str, command: list[str], **kwargs: Any) -> tuple[int, str]:  # type: ignore[override]
        return self._refuse(f"run {' '.join(command)} in {image}")

    def read_files(self, image: str, files: list[str]) -> dict[str, bytes]:
        return self._refuse(f"create a container of {image} to read files")

    def remove_container(self, ident: str) -> None:
        self._refuse(f"remove container {ident}")

    def push(self, ref: str, on_line: Callable[[str], None]) -> None:
        self._refuse(f"push {ref}")

    def load(self, data: IO[bytes], on_line: Callable[[str], None]) -> list[str]:
        return self._refuse("load images")


class _BuildLog:
    """What a build printed: each line to on_line (escape sequences made safe), the last
    LOG_TAIL kept for the error, and the step it was at (Docker's "Step 2/5 :", Buildah's
    "STEP 2/5:")."""

    def __init__(self, on_line: Callable[[str], None], what: str) -> None:
        self.on_line = on_line
        self.what = what
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.step = "the build"

    def feed(self, text: str) -> None:
        for line in ANSI_RE.sub("", text).splitlines():
            line = safe(line)  # what a build prints may hold escape sequences
            if not line.strip():
                continue
            if re.match(r"^(Step \d+/\d+ :|STEP \d+/\d+:)", line):
                self.step = line.strip()
            self.tail.append(line)
            self.on_line(line)

    def fail(self, error: str, *, logged: bool = False) -> None:
        """Raise the build's error: BuildError naming the step, or NoSpaceError."""
        msg = safe_lines(error.strip())
        if not logged:
            self.tail.append(msg)
        log = "\n".join(self.tail)
        if _is_no_space(msg):
            raise NoSpaceError(f"building {self.what}: no space left on device at {self.step}",
                               detail=log)
        last = msg.splitlines()[-1] if msg else "no reason given"
        raise BuildError(f"building {self.what} failed at {self.step}: {last}", detail=log)


def _unpack_context(context: IO[bytes], folder: Path, what: str) -> None:
    """The tar context as a folder for `podman build`, each file with its mode and time.

    sandman wrote that tar (regular files under plain relative names); anything else in it is
    refused rather than unpacked.
    """
    folder.mkdir(mode=0o700)
    with tarfile.open(fileobj=context, mode="r|") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if (not parts or Path(member.name).is_absolute() or ".." in parts
                    or not (member.isfile() or member.isdir())):
                raise BuildError(f"building {what}: unexpected entry in the build context: "
                                 f"{safe(member.name)}")
            target = folder.joinpath(*parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with open(target, "xb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, member.mode & 0o7777)
            os.utime(target, (member.mtime, member.mtime))


def _step_processes(root: int) -> list[int]:
    """The running build steps under process root: its descendants in a session of their own
    (Buildah starts each RUN step's container so, its OCI runtime monitor stays in root's)."""
    parent: dict[int, int] = {}
    session: dict[int, int] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(stat_file.parent.name)
        parent[pid], session[pid] = int(fields[1]), int(fields[3])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                todo.append(child)
                if session[child] != session.get(root):
                    found.append(child)
    return found


def _stop_podman_build(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Stop an interrupted `podman build` child and wait for it to clean up.

    Its running step is killed (SIGKILL to the container's first process ends its whole PID
    namespace): the build then fails as any failed step does, and Podman removes the step's
    containers before it exits. Steps it starts meanwhile are killed too. Only if it has not
    exited after `grace` seconds is Podman itself stopped.
    """
    if proc.stdout is not None:  # keep reading: a child blocked on a full pipe never exits
        os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in _step_processes(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError, TypeError):
            while proc.stdout is not None and proc.stdout.read(65536):
                pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _epoch(stamp: str, *, default: float) -> float:
    """Seconds since the epoch of docker's RFC 3339 time (nanoseconds and zone ignored: UTC)."""

    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return default


def _image_info(img: Any) -> ImageInfo:
    """An SDK Image: its inspect answer, under the id and names the SDK read from it."""
    return from_inspect({**img.attrs, "Id": img.id, "RepoTags": list(img.tags)})
