"""A tool built from a source tarball, for the tests of recipe `sources` (test_sources.py) and
of bundles that carry them (test_bundle_sources.py): both build the same tarball, so one
definition says what "the source" is, and a test module never imports another.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

RECIPE = """\
schema = 1
tool = "{tool}"
description = "a tool built from a source tarball (sandman's own tests)"
entrypoint = ["h7hello"]
commands = ["h7hello"]
version_check = {{ command = ["h7hello", "--version"], expect = '^h7hello ({{version}}\\.\\d+)$' }}

[versions."1.0"]
base = "debian:bookworm-slim"
sources = [{{ url = "{url}", sha256 = "{sha}" }}]
run = ["tar -xzf /tmp/sources/h7hello-1.0.3.tar.gz -C /tmp && sh /tmp/h7hello-1.0.3/install.sh /usr/local && rm -rf /tmp/h7hello-1.0.3"]
"""


def source_tarball() -> bytes:
    """h7hello 1.0.3 as upstream would ship it: a folder with the program and an install script."""
    files = {
        "h7hello-1.0.3/h7hello": '#!/bin/sh\ncase "$1" in\n  --version) echo "h7hello 1.0.3" ;;\n'
                                 '  *) echo "hello from source: $*" ;;\nesac\n',
        "h7hello-1.0.3/install.sh": 'set -e\ninstall -m 0755 "$(dirname "$0")/h7hello" "$1/bin/h7hello"\n',
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARBALL = source_tarball()
SHA = hashlib.sha256(TARBALL).hexdigest()
NAME = "h7hello-1.0.3.tar.gz"


def write_recipe(root: Path, url: str, *, tool: str = "h7src", sha: str = SHA) -> Path:
    d = root / tool
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(RECIPE.format(tool=tool, url=url, sha=sha))
    return d / "recipe.toml"
