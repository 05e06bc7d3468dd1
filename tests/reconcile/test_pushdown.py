"""The target side fingerprinted in PostgreSQL: the database computes exactly what Python would,
or poisons the row (its segment is then compared in Python); never a different equal text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from continuity.domain.connect import engine_for
from reconcile import pushdown
from reconcile.columns import SEP, text
from reconcile.engine import Connections, reconcile_class
from reconcile.sides import Fingerprinter, located_statement, segment_of
from reconcile.spec import load_spec
from reconcile.sql import fetch_all

pytestmark = pytest.mark.postgres

AS_OF = dt.date(2026, 6, 30)

SPEC = """\
version: 1
class: shapes
owner: Tester
severity: normal
segments: 8
target:
  table: shape
  key: uid
locate:
  crosswalk: {table: xw, target_table: shape}
fields:
  code: {target: s, normalise: [trim, upper]}
  officer: {target: s2, normalise: [trim, upper, {null_if: [UNKNOWN]}]}
  lower: {target: s3, normalise: [lower]}
  raw: {target: s3}
  flag: {target: b, normalise: [{boolean: {empty: false}}]}
  flag_raw: {target: b}
  number: {target: i, normalise: [integer]}
  number_flag: {target: i, normalise: [boolean]}
  day: {target: d, normalise: [date]}
  stamp: {target: ts, normalise: [datetime]}
  stamp_day: {target: ts, normalise: [date]}
  stamp_raw: {target: ts}
  text: {target: m, normalise: [text_digest]}
sources:
  - system: old
    table: src
    key: [k]
    fields: {code: a, officer: a, lower: a, raw: a, flag: a, flag_raw: a, number: a,
             number_flag: a, day: a, stamp: a, stamp_day: a, stamp_raw: a, text: a}
"""

ROWS = [
    # uid, s, s2, s3, b, i, d, ts, m
    (
        "U1",
        "ab12",
        "UNKNOWN",
        "MiXeD",
        True,
        3,
        dt.date(2020, 2, 29),
        dt.datetime(2020, 3, 29, 1, 30, 59),
        "plain",
    ),
    (
        "U2",
        "  two   spaces ",
        " unknown ",
        "a b",
        False,
        0,
        dt.date(999, 1, 1),
        dt.datetime(1970, 1, 1),
        "Zoë’s café",
    ),
    ("U3", None, None, None, None, None, None, None, None),
    (
        "U4",
        "",
        "",
        "",
        True,
        -7,
        dt.date(2024, 12, 31),
        dt.datetime(2024, 12, 31, 23, 59, 1),
        "",
    ),
    ("U5", "straße", "ok", "ÀB", False, 1, dt.date(2001, 1, 1), dt.datetime(2001, 1, 1, 0, 0), "x"),
    ("U6", "tab\there", "ok", "x", True, 2, dt.date(2001, 1, 1), dt.datetime(2001, 1, 1), "y"),
    ("U7", "a b c", "unknown", "x y", None, 5, None, dt.datetime(1999, 12, 31, 23, 59), "Zoë"),
]
#: Rows translated exactly; the others (spaces to trim, non-ASCII, a tab) are poisoned.
EXACT_ROWS = {"U1", "U3", "U4", "U7"}


@pytest.fixture
def shapes(pg_database: Callable[[], str], tmp_path: Path):  # type: ignore[no-untyped-def]
    url = pg_database()
    engine = engine_for(url)
    with engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE shape (uid varchar(10) PRIMARY KEY, s varchar(40), s2 text, s3 text, "
            "b boolean, i integer, d date, ts timestamp, m text)"
        )
        c.exec_driver_sql(
            "CREATE TABLE xw (source_system text, source_table text, source_key text, "
            "target_table text, target_key text, rule text)"
        )
        c.execute(
            sa.text("INSERT INTO shape VALUES (:u, :s, :s2, :s3, :b, :i, :d, :ts, :m)"),
            [
                dict(zip(("u", "s", "s2", "s3", "b", "i", "d", "ts", "m"), r, strict=True))
                for r in ROWS
            ],
        )
        c.execute(
            sa.text("INSERT INTO xw VALUES ('old', 'src', :k, 'shape', :u, 'migrate')"),
            [{"k": r[0].lower(), "u": r[0]} for r in ROWS],
        )
    (tmp_path / "shapes.yml").write_text(SPEC, encoding="utf-8")
    yield load_spec(tmp_path / "shapes.yml"), engine, url
    engine.dispose()


def _python_canon(spec, row: tuple) -> str:  # type: ignore[no-untyped-def]
    binding = spec.sources[0].fields
    values = dict(zip(("uid", "s", "s2", "s3", "b", "i", "d", "ts", "m"), row, strict=True))
    texts = []
    for f in spec.fields.values():
        norm = f.target_normaliser(binding[f.name]).build(AS_OF)
        texts.append(text(norm(values[f.target[0]])))
    return SEP.join(texts)


def test_each_translation_is_exact_or_poisons_the_row(shapes) -> None:  # type: ignore[no-untyped-def]
    spec, engine, _ = shapes
    loc = pushdown.Located(spec, spec.sources[0], engine)
    got = {
        str(tk): canon
        for tk, canon in fetch_all(
            engine, sa.select(loc.target_key, loc.canon).select_from(loc.from_)
        )
    }
    assert set(got) == {r[0] for r in ROWS}
    fields = len(spec.fields)
    for row in ROWS:
        python = _python_canon(spec, row)
        assert python.count(SEP) == fields - 1
        if row[0] in EXACT_ROWS:
            assert got[row[0]] == python, row[0]  # translated exactly
        else:
            # Poisoned: one separator more than any canonical text holds.
            assert got[row[0]].count(SEP) == fields and got[row[0]] != python


def test_segment_and_fingerprint_are_pythons(shapes) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = shapes
    key = b"a key that is longer than sixty-four bytes, to be hashed first by HMAC-MD5 itself!!"
    fp = Fingerprinter(key, 1)
    cases = [
        ("old\x1fC1", "A\x1fB"),
        ("old\x1fZoë", "caf\u00e9\x1f\x00*\x1f\\N"),  # the wildcard and a NULL
        ("pw\x1f" + "9" * 70, ""),
    ]
    for match_key, canon in cases:
        message = (match_key + "\x1e" + canon).replace("\x00", "\x1d")
        stmt = sa.select(
            pushdown.segment_sql(sa.literal(match_key), 1000),
            pushdown.fingerprint_sql(sa.literal(message), key),
        )
        segment, value = fetch_all(engine, stmt)[0]
        assert segment == segment_of(match_key, 1000)
        assert int(value) & ((1 << 64) - 1) == fp.value(match_key, canon)


def test_the_same_result_with_and_without_pushdown(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, _engine, url = shapes
    src = tmp_path / "src.db"
    with sa.create_engine(f"sqlite:///{src}").begin() as c:
        c.exec_driver_sql("CREATE TABLE src (k TEXT, a TEXT)")
        # u1 equal in every field but one; u2 absent from the target's crosswalk's system...
        c.exec_driver_sql("INSERT INTO src VALUES ('u1', 'x'), ('u2', 'y'), ('u9', 'z')")
    conns = Connections({"old": f"sqlite:///{src}"}, url)
    on = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=True)
    off = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=False)
    assert sorted(map(repr, on.findings)) == sorted(map(repr, off.findings))
    assert repr(on.sources) == repr(off.sources) and repr(on.target) == repr(off.target)
    assert on.source_digest == off.source_digest and on.target_digest == off.target_digest
    assert any(f.placement.value == "MISSING" for f in on.findings)  # u9 has no target record


def test_a_normaliser_without_translation_leaves_the_python_side(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, engine, _ = shapes
    other = tmp_path / "other.yml"
    other.write_text(SPEC.replace("normalise: [lower]", "normalise: [name_key]"), encoding="utf-8")
    with pytest.raises(pushdown.NotPushable, match="name_key"):
        pushdown.Located(load_spec(other), load_spec(other).sources[0], engine)
    assert located_statement(spec, spec.sources[0])  # the Python side's statement still serves
