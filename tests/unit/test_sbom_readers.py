"""The sbom readers: a dpkg status file and the image labels, without a daemon."""

from __future__ import annotations

import json

from sandman.commands import sbom
from sandman.commands.sbom import Bom, Input, Package

STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc (2.36-9)
Version: 2.36-9+deb12u4
Description: GNU C Library
 Contains the standard libraries.
 .
 More text: with a colon.

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
"""


def test_installed_packages_only_with_their_source_package():
    assert sbom.parse_dpkg_status(STATUS) == (
        Package("bash", "5.2.15-2+b2", "amd64", ""),
        Package("libc6", "2.36-9+deb12u4", "amd64", "glibc"),
    )


def test_inputs_label_read_or_reported_missing():
    raw = json.dumps({"kits": [["k.bin", "a" * 64]], "sources": [["s.tgz", "b" * 64, "https://x/s.tgz"]]})
    assert sbom.parse_inputs(raw) == ((Input("s.tgz", "b" * 64, "https://x/s.tgz"),),
                                      (Input("k.bin", "a" * 64),), True)
    assert sbom.parse_inputs(None) == ((), (), False)
    assert sbom.parse_inputs("not json") == ((), (), False)
    assert sbom.parse_bases('{"debian:bookworm-slim": "sha256:1"}') == {"debian:bookworm-slim": "sha256:1"}
    assert sbom.parse_bases("[1]") == {}


def test_text_says_what_the_image_does_not_record():
    bom = Bom("t@1", "t", "1", "sha256:" + "a" * 64, "", inputs_recorded=False, dpkg=False)
    out = sbom.text(bom)
    assert "base: not recorded in the image" in out
    assert "sources and kits: not recorded in the image" in out
    assert "packages: none (/var/lib/dpkg/status is not in the image)" in out
