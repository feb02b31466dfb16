"""errors.EXIT_GROUPS is the one table of exit codes, and reads in order.

Each code appears once, with one name, in one group; within a group the codes rise, so the
table, `sandman exit-codes` and the generated docs (tests/unit/test_cli_docs.py) list them the
same way. The error classes take their code from the table by name.
"""

from __future__ import annotations

from sandman import errors


def test_each_code_and_name_is_in_the_table_once() -> None:
    rows = [e for g in errors.EXIT_GROUPS for e in g.codes]
    assert len({e.code for e in rows}) == len(rows)
    assert len({e.name for e in rows}) == len(rows)
    assert all(e.name.isupper() and e.name.isidentifier() for e in rows)  # $SM_EXIT_<NAME> in bash
    assert all(e.meaning and "\n" not in e.meaning for e in rows)


def test_groups_are_in_numeric_order_within() -> None:
    assert len({g.title for g in errors.EXIT_GROUPS}) == len(errors.EXIT_GROUPS)
    for g in errors.EXIT_GROUPS:
        codes = [e.code for e in g.codes]
        assert codes and codes == sorted(codes), g.title


def test_the_views_follow_the_table() -> None:
    rows = [e for g in errors.EXIT_GROUPS for e in g.codes]
    assert list(errors.EXIT_CODES.items()) == [(e.code, e.meaning) for e in rows]
    assert {e.name: e.code for e in rows} == errors.CODE
    assert [errors.CODE["USAGE"], errors.CODE["CHECK_FAILED"]] == [errors.USAGE, errors.CHECK_FAILED]


def test_each_error_class_has_a_code_of_the_table() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SandmanError)]
    assert classes
    for c in classes:
        assert c.exit_code in errors.EXIT_CODES, c.__name__
