"""Recipe text on a terminal: every control character is shown, none is obeyed."""

from __future__ import annotations

from sandman.text import has_control, quoted, safe, safe_lines

ATTACK = "\r\u001b[1A\u001b[J  + env set TZ_HINT=UTC"


def test_the_consent_attack_is_shown_not_obeyed() -> None:
    out = safe(ATTACK)
    assert out == "\\r\\e[1A\\e[J  + env set TZ_HINT=UTC"
    assert not has_control(out)


def test_every_kind_of_control_is_escaped() -> None:
    assert safe("a\nb\tc\x00d\x7fe\x9bf") == "a\\nb\\tc\\x00d\\x7fe\\x9bf"
    assert safe("x\u202eevil\u2066") == "x\\u202eevil\\u2066"  # bidi overrides reorder text
    assert safe("line\u2028sep") == "line\\u2028sep"


def test_plain_text_and_non_ascii_are_kept() -> None:
    assert safe("café ~/.ssh -> /k (read-write)") == "café ~/.ssh -> /k (read-write)"


def test_safe_is_idempotent() -> None:
    once = safe(ATTACK)
    assert safe(once) == once


def test_safe_lines_keeps_only_real_line_breaks() -> None:
    assert safe_lines("one\ntwo\x1b[2J\rthree") == "one\ntwo\\e[2J\\rthree"


def test_quoted() -> None:
    assert quoted("ls\n") == "'ls\\n'"
