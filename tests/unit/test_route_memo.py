"""The warm fast path (issue 22 item 1) takes a route only when every variable the runtime reads
is as it was when the route was written down: the list the runtime records must name them all."""

from __future__ import annotations

import re

from sandman.shims import front_text, runtime_text

# Read by the runtime but not part of a route: they choose the path itself (checked before the
# fast path, or make a call skip it), are bash's own, or belong to completion mode.
NOT_ROUTE = {"SANDMAN_WARM", "SANDMAN_AGENT_SKIP", "SANDMAN_ROUTE_SKIP", "SANDMAN_DRY_RUN",
             "SANDMAN_NO_REFRESH", "SANDMAN_COMPLETE", "SANDMAN_COMPLETE_CWORD",
             "SANDMAN_COMPLETE_LINE", "SANDMAN_COMPLETE_POINT", "BASH_REMATCH", "COMPREPLY",
             "COMP_WORDS", "EUID", "PWD", "RANDOM"}


def route_names(text: str) -> set[str]:
    m = re.search(r"sm_route_env=\(([^)]*)\)", text)
    assert m, "the runtime lists the variables a route depends on (sm_route_env)"
    return set(m.group(1).split())


def test_every_variable_the_runtime_reads_is_part_of_a_route() -> None:
    text = runtime_text()
    read = {n for n in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text) if not n.startswith("SM_")}
    # and the ones read by name in its loops (`for sm_v in USER LOGNAME ...`)
    for loop in re.findall(r"for sm_v in ([A-Z_ ]+);", text):
        read |= set(loop.split())
    assert read - NOT_ROUTE <= route_names(text)


def test_what_the_front_reads_chooses_the_path_or_is_part_of_a_route() -> None:
    """The front (shims/front.sh) decides whether to try the route at all: what it reads
    chooses the path (or is bash's own), or the client compares it with the route."""
    read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", front_text()))
    allowed = NOT_ROUTE | {"BASH_VERSION"} | route_names(runtime_text())
    assert {n for n in read if not n.startswith("SM_")} <= allowed
