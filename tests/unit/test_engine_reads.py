"""engine_reads.SocketReads against a small HTTP server on a unix socket: the questions it asks,
how it reads the answers, and the errors it gives (the SDK's, word for word)."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandman.engine_reads import SocketReads, from_inspect
from sandman.errors import DaemonUnavailableError, EngineError

IMAGE = {"Id": "sha256:" + "a" * 64, "RepoTags": ["localhost/sandman/t:1-abc", "<none>:<none>"],
         "Config": {"Labels": {"io.sandman.tool": "t"}, "Env": ["PATH=/bin"]}, "Size": 7,
         "Created": "2026-12-07T10:00:00Z", "Os": "linux", "Architecture": "arm64",
         "Variant": "v8", "Parent": "sha256:" + "b" * 64}


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    seen: list[str]
    answers: dict[str, tuple[int, Any]]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive, as the engine does
    server: Server

    def do_GET(self) -> None:  # (the name http.server calls)
        self.server.seen.append(self.path)
        status, body = self.server.answers.get(self.path, (404, {"message": "no such image"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Server]:
    server = Server(str(tmp_path / "engine.sock"), Handler)
    server.seen, server.answers = [], {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_inspect_a_listing_and_the_version_on_one_connection(engine: Server) -> None:
    listing = [{"Id": IMAGE["Id"], "RepoTags": ["sandman/t:1-abc"], "Labels": {"io.sandman.tool": "t"},
                "Size": 7, "Created": 1765101600, "ParentId": IMAGE["Parent"]}]
    engine.answers = {
        "/images/sandman/t:1-abc/json": (200, IMAGE),
        '/images/json?filters=%7B%22label%22%3A+%5B%22io.sandman.tool%22%5D%7D': (200, listing),
        "/version": (200, {"Version": "20.10.24", "ApiVersion": "1.41"}),
    }
    reads = SocketReads(engine.server_address)  # type: ignore[arg-type]
    info = reads.image("sandman/t:1-abc")
    assert info == from_inspect(IMAGE)
    assert (info.id, info.tags, info.platform, info.parent, info.env) == (
        IMAGE["Id"], ("sandman/t:1-abc",), "linux/arm64/v8", IMAGE["Parent"], ("PATH=/bin",))
    assert reads.image("debian:bookworm-slim") is None  # 404: not here
    [listed] = reads.image_list()
    assert (listed.id, listed.tags, listed.parent, listed.created) == (
        IMAGE["Id"], ("sandman/t:1-abc",), IMAGE["Parent"], "2025-12-07T10:00:00Z")
    assert reads.version()["ApiVersion"] == "1.41"
    assert engine.seen[1] == "/images/debian:bookworm-slim/json"  # quoted as the SDK quotes


def test_the_engines_refusal_and_no_engine_at_all_are_the_sdks_errors(engine: Server,
                                                                        tmp_path: Path) -> None:
    engine.answers = {"/images/x/json": (500, {"message": "layer store is broken"})}
    with pytest.raises(EngineError, match="looking up image x: the engine said: layer store is broken"):
        SocketReads(engine.server_address).image("x")  # type: ignore[arg-type]
    with pytest.raises(DaemonUnavailableError, match="cannot reach the Docker daemon"):
        SocketReads(str(tmp_path / "none.sock")).image_list()
