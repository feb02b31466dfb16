"""What the engine says about images, and a way to ask it without the Docker SDK.

The everyday commands (`list`, `doctor`, `upgrade` with nothing to do, `reshim --all`) only
read: one listing of sandman's images and an inspect of a few names. Importing the SDK for that
(docker, requests, urllib3, charset_normalizer, certifi) took ~85 ms of every such command,
a quarter of its time (issue 24). SocketReads asks the same two questions with the standard
library over the engine's local socket; anything else, and any engine that is not a local
socket (a DOCKER_HOST over TCP or with TLS), still goes through engine.Engine and the SDK.

Both turn the engine's answers into the same ImageInfo here, and its connection failures into
the same sandman errors, so which one answered changes nothing a caller can see.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sandman.errors import (
    DaemonPermissionError,
    DaemonUnavailableError,
    EngineError,
    SandmanError,
)
from sandman.names import LABEL_TOOL


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int
    created: str
    env: tuple[str, ...] = ()  # the image's configured environment (NAME=value), PATH included
    platform: str = ""  # os/architecture[/variant] from the image config: linux/arm64
    parent: str = ""  # the image it was built from on this engine; "" for a pull, a load, an import


# Podman names every image in full (localhost/sandman/x:1, docker.io/library/debian:...), Docker
# the way it was tagged: sandman compares names as Docker writes them.
_DEFAULT_PREFIXES = ("localhost/", "docker.io/library/", "docker.io/")


def short_tag(tag: str) -> str:
    for prefix in _DEFAULT_PREFIXES:
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return tag


def _tags(names: list[str] | None) -> tuple[str, ...]:
    """An answer's RepoTags as sandman compares names (short_tag), without the untagged mark."""
    return tuple(short_tag(t) for t in names or () if t != "<none>:<none>")


def from_inspect(attrs: dict[str, Any]) -> ImageInfo:
    """An image inspect's answer (GET /images/NAME/json)."""
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs.get("Id", "")),
        tags=_tags(attrs.get("RepoTags")),
        labels=dict(config.get("Labels") or {}),
        size=int(attrs.get("Size") or 0),
        created=str(attrs.get("Created", "")),
        env=tuple(config.get("Env") or ()),
        platform="/".join(x for x in (attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant")) if x),
        parent=str(attrs.get("Parent") or ""),
    )


def from_listing(entry: dict[str, Any]) -> ImageInfo:
    """One entry of an image listing (GET /images/json): fewer facts than an inspect."""
    created = datetime.fromtimestamp(int(entry.get("Created") or 0), UTC)
    return ImageInfo(id=str(entry["Id"]), tags=_tags(entry.get("RepoTags")),
                     labels=dict(entry.get("Labels") or {}),
                     size=int(entry.get("Size") or 0),
                     created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     parent=str(entry.get("ParentId") or ""))


def connection_error(e: BaseException) -> SandmanError:
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


def lost(action: str) -> DaemonUnavailableError:
    """The daemon went away in the middle of an answer (killed or restarted mid-build)."""
    return DaemonUnavailableError(
        f"{action}: the connection to the Docker daemon was lost; nothing was kept. Check that "
        "it runs (docker info), then try again")


class Reads(Protocol):
    """What a command that only looks asks the engine (engine.Engine and SocketReads)."""

    def image(self, ref: str) -> ImageInfo | None: ...

    def image_list(self, label: str = LABEL_TOOL) -> list[ImageInfo]: ...

    def version(self) -> dict[str, Any]: ...


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class SocketReads:
    """engine.Engine's `image` and `image_list`, over a local socket, on one kept-alive
    connection for the command. Names are quoted as the SDK quotes them; the API path has no
    version, so the engine answers in its own, as the SDK's negotiated one would."""

    def __init__(self, socket_path: str, timeout: float = 600) -> None:
        self._conn = _UnixConnection(socket_path, timeout)

    def _get(self, path: str, action: str) -> tuple[int, Any]:
        try:
            try:
                self._conn.request("GET", path)
                resp = self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._conn.close()  # a kept-alive connection the engine had closed: once more
                self._conn.request("GET", path)
                resp = self._conn.getresponse()
            body = resp.read()
        except http.client.HTTPException as e:
            self._conn.close()
            raise lost(action) from e
        except OSError as e:
            self._conn.close()
            raise connection_error(e) from e
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if resp.status >= 400 and resp.status != 404:
            said = data.get("message") if isinstance(data, dict) else body.decode(errors="replace")
            raise EngineError(f"{action}: the engine said: {said}")
        return resp.status, data

    def image(self, ref: str) -> ImageInfo | None:
        name = urllib.parse.quote(ref, safe="/:")
        status, data = self._get(f"/images/{name}/json", f"looking up image {ref}")
        return None if status == 404 or not isinstance(data, dict) else from_inspect(data)

    def image_list(self, label: str = LABEL_TOOL) -> list[ImageInfo]:
        query = urllib.parse.urlencode({"filters": json.dumps({"label": [label]})})
        _, data = self._get(f"/images/json?{query}", "listing images")
        return [from_listing(e) for e in data or []]

    def version(self) -> dict[str, Any]:
        _, data = self._get("/version", "asking Docker for its version")
        return data if isinstance(data, dict) else {}
