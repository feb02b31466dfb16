"""One stand-in for sandman.engine.Engine, for unit tests of the logic above the engine.

Plans, warm-mode bookkeeping, image facts and the checks of a new image only need a daemon's
answers, so they get them from plain data: what a test did not give is what a daemon would not
have (an unknown ref, a path the image lacks), and every call is recorded, so a test can say
what sandman asked for as well as what it concluded. Its methods keep Engine's names and
parameters (tests/unit/test_test_hygiene.py compares them), so a change to Engine's interface
breaks here first, not in a test that quietly stops exercising the code.

Importable as `fakes` from any test module, as `helpers` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from sandman.engine import ContainerInfo, ImageInfo
from sandman.engine_choice import Docker
from sandman.errors import RemoteError
from sandman.names import LABEL, LABEL_TOOL

# what a container answers to a command: (exit status, stdout and stderr together)
RunAnswer = Callable[[list[str]], tuple[int, str]]


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    """Engine's filter for `**labels` (role="warm" -> io.sandman.role=warm; "" -> the key only)."""
    return [f"{LABEL}.{k}={v}" if v else f"{LABEL}.{k}" for k, v in labels.items()]


def _matches(have: Mapping[str, str], wanted: Iterable[str]) -> bool:
    """Docker's label filter: every `key` present, every `key=value` equal."""
    for f in wanted:
        key, eq, value = f.partition("=")
        if key not in have or (eq and have[key] != value):
            return False
    return True


class FakeEngine:
    """images: ref -> image id (an image with that one name) or a whole ImageInfo; containers:
    what `containers()` lists; files: path -> content for `read_files`, for every image (a
    folder's content is its entries' names, one per line, as Engine reads it); run: the answer
    to each `run_capture` command; in_use: what `container_images()` says (image id -> the
    containers made from it). Nothing can be pulled: there is no registry.

    `read_files` without files and `run_capture` without run fail the test: a test that did
    not expect sandman to look inside an image must not pass on an invented answer.
    """

    # a Docker daemon: warm containers are keyed by DOCKER_HOST, not a socket
    choice = Docker("docker", "unix:///var/run/docker.sock", False, "a fake engine")

    def __init__(self, images: Mapping[str, str | ImageInfo] | None = None, *,
                 containers: Iterable[ContainerInfo] = (),
                 files: Mapping[str, bytes] | None = None,
                 run: RunAnswer | None = None,
                 in_use: Mapping[str, list[str]] | None = None) -> None:
        self._images = {ref: info if isinstance(info, ImageInfo) else ImageInfo(info, (ref,), {}, 1, "")
                        for ref, info in (images or {}).items()}
        self._containers = list(containers)
        self._files = files
        self._run = run
        self._in_use = dict(in_use or {})
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def called(self, method: str) -> list[Any]:
        """The first argument of each call of method, in order (the ref, the id, the image)."""
        return [args[0] if args else None for name, args in self.calls if name == method]

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))

    # -- images ---------------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        """By name, or by id as Docker also finds an image."""
        self._record("image", ref)
        if ref in self._images:
            return self._images[ref]
        return next((i for i in self._images.values() if i.id == ref), None)

    def _distinct(self) -> list[ImageInfo]:
        return list({i.id: i for i in self._images.values()}.values())

    def images(self, **labels: str) -> list[ImageInfo]:
        self._record("images", labels)
        wanted = [f"{LABEL}.{k}={v}" for k, v in labels.items()] or [LABEL_TOOL]
        return [i for i in self._distinct() if _matches(i.labels, wanted)]

    def image_list(self, label: str = LABEL_TOOL) -> list[ImageInfo]:
        self._record("image_list", label)
        return [i for i in self._distinct() if _matches(i.labels, [label])]

    def tag(self, image_id: str, ref: str) -> None:
        """Recorded, and the name added to that image, as the daemon would list it afterwards."""
        self._record("tag", image_id, ref)
        old = next((i for i in self._images.values() if i.id == image_id), None)
        if old is None:
            raise AssertionError(f"tag({image_id!r}, {ref!r}): no such image")
        new = replace(old, tags=(*(t for t in old.tags if t != ref), ref))
        for name, info in list(self._images.items()):
            if info.id == image_id:
                self._images[name] = new
        self._images[ref] = new

    def untag(self, ref: str) -> str | None:
        """Recorded, and the name gone from the image (the image too, with its last name or by
        id), as the daemon would list it afterwards; never refused."""
        self._record("untag", ref)
        info = self._images.get(ref) or next((i for i in self._images.values() if i.id == ref), None)
        if info is None:
            return None
        left = replace(info, tags=tuple(t for t in info.tags if t != ref))
        self._images.pop(ref, None)
        for name, held in list(self._images.items()):
            if held.id == info.id:
                if ref == info.id or not left.tags:  # by id, or its last name: the image goes
                    del self._images[name]
                else:
                    self._images[name] = left
        return None

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        """Recorded, and the image gone with every name it had (a forced remove); a missing
        one is no error, as Engine.remove_image says."""
        self._record("remove_image", ref)
        info = self.image(ref)
        if info is not None:
            for name, held in list(self._images.items()):
                if held.id == info.id:
                    del self._images[name]

    def pull(self, ref: str) -> ImageInfo:
        self._record("pull", ref)
        raise RemoteError(f"cannot pull {ref}: registry unreachable")

    # -- what is inside an image ------------------------------------------------------------
    def run_capture(self, image: str, command: list[str], *, entrypoint: list[str] | None = None,
                    user: str | None = None, network: bool = False) -> tuple[int, str]:
        self._record("run_capture", image, list(command))
        if self._run is None:
            raise AssertionError(f"unexpected run_capture({image!r}, {command!r}): no `run` given")
        return self._run(list(command))

    def read_files(self, image: str, files: list[str]) -> dict[str, bytes]:
        """Docker's archive API: a path the image lacks is absent from the answer."""
        self._record("read_files", image, list(files))
        if self._files is None:
            raise AssertionError(f"unexpected read_files({image!r}, {files!r}): no `files` given")
        return {p: self._files[p] for p in files if p in self._files}

    # -- containers -------------------------------------------------------------------------
    def containers(self, **labels: str) -> list[ContainerInfo]:
        self._record("containers", labels)
        wanted = _label_filter(labels)
        return [c for c in self._containers if _matches(c.labels, wanted)]

    def container_images(self) -> dict[str, list[str]]:
        """in_use as given: image id -> the names of the containers made from it."""
        self._record("container_images")
        return {k: list(v) for k, v in self._in_use.items()}

    def remove_container(self, ident: str) -> None:
        """Recorded only: the listing stays as given, so a test checks what sandman asked for,
        not what a daemon would list after it."""
        self._record("remove_container", ident)
