"""The target side fingerprinted in PostgreSQL: the database computes exactly what Python would,
or poisons the row (its segment is then compared in Python); never a different equal text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        _create_crosswalk(c)
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


def _sources(tmp_path: Path, target: str, rows: list[tuple[str, str]]) -> Connections:
    """The ``old`` system's ``src`` table (key, value) in SQLite, and the target's URL."""
    src = tmp_path / "src.db"
    engine = sa.create_engine(f"sqlite:///{src}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE src (k TEXT, a TEXT)")
        c.execute(sa.text("INSERT INTO src VALUES (:k, :a)"), [{"k": k, "a": a} for k, a in rows])
    engine.dispose()
    return Connections({"old": f"sqlite:///{src}"}, target)


def test_the_same_result_with_and_without_pushdown(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, _engine, url = shapes
    # u1 and u2 differ from their target records; u9 has none
    conns = _sources(tmp_path, url, [("u1", "x"), ("u2", "y"), ("u9", "z")])
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


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("normalise: [lower]", "normalise: [trim, text_digest, upper]"),  # after a digest
        ("normalise: [{boolean: {empty: false}}]", "normalise: [{boolean: {empty: 'N'}}]"),
    ],
)
def test_chains_the_database_would_read_otherwise_are_not_pushed(
    shapes, tmp_path: Path, change: str, why: str
) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = shapes
    other = tmp_path / "other.yml"
    other.write_text(SPEC.replace(change, why, 1), encoding="utf-8")
    assert why in other.read_text()
    spec = load_spec(other)
    with pytest.raises(pushdown.NotPushable):
        pushdown.Located(spec, spec.sources[0], engine)


def _create_crosswalk(conn: Any) -> None:
    conn.exec_driver_sql(
        "CREATE TABLE xw (source_system text, source_table text, source_key text, "
        "target_table text, target_key text, rule text)"
    )


def test_what_python_reads_otherwise_is_poisoned(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """Text trimmed before its digest, dates PostgreSQL holds and Python cannot, and a char(n)
    column: each poisons its row or keeps the class in Python; a key with a tab is escaped."""
    url = pg_database()
    engine = engine_for(url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE shape (uid text PRIMARY KEY, m text, d date, p char(5))")
        _create_crosswalk(c)
        c.exec_driver_sql(
            "INSERT INTO shape VALUES ('A', ' ab', '2020-01-01', 'x'), "
            "('B', 'ab', 'infinity', 'x'), ('C', 'ab', '0001-01-01 BC', 'x'), "
            "('D', 'ab', '2020-01-01', 'x')"
        )
        c.exec_driver_sql(
            "INSERT INTO xw VALUES ('old', 'src', 'a', 'shape', 'A', 'm'), "
            "('old', 'src', 'b', 'shape', 'B', 'm'), ('old', 'src', 'c', 'shape', 'C', 'm'), "
            "('old', 'src', E'd\\tkey', 'shape', 'D', 'm')"
        )
    spec_text = """\
version: 1
class: more
owner: Tester
severity: normal
segments: 8
target: {table: shape, key: uid}
locate:
  crosswalk: {table: xw, target_table: shape}
fields:
  text: {target: m, normalise: [trim, text_digest]}
  day: {target: d, normalise: [date]}
sources:
  - system: old
    table: src
    key: [k]
    fields: {text: a, day: a}
"""
    (tmp_path / "more.yml").write_text(spec_text, encoding="utf-8")
    spec = load_spec(tmp_path / "more.yml")
    try:
        loc = pushdown.Located(spec, spec.sources[0], engine)
        rows = dict(fetch_all(engine, sa.select(loc.target_key, loc.canon).select_from(loc.from_)))
        poisoned = {k for k, canon in rows.items() if canon.count(SEP) == len(spec.fields)}
        assert poisoned == {"A", "B", "C"}  # untrimmed text, infinity, a BC date
        (match,) = fetch_all(
            engine,
            sa.select(loc.match).select_from(loc.from_).where(loc.target_key == "D"),
        )[0]
        assert match == "old" + SEP + "d\\tkey"  # as the Python side escapes it
        char = tmp_path / "char.yml"
        char.write_text(spec_text.replace("target: m,", "target: p,"), encoding="utf-8")
        with pytest.raises(pushdown.NotPushable, match="column type"):
            pushdown.Located(load_spec(char), load_spec(char).sources[0], engine)
    finally:
        engine.dispose()


def test_target_keys_read_out_after_a_pushdown_keep_how_the_database_holds_them(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """A target key holding a tab, read out of a segment that differed after the pushdown: the
    engine's later look-ups need the key as the database holds it, not as findings write it."""
    from reconcile.sides import Task, run_target_side, spill_target_segments

    url = pg_database()
    engine = engine_for(url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE tabbed (uid text PRIMARY KEY, m text)")
        _create_crosswalk(c)
        c.exec_driver_sql("INSERT INTO tabbed VALUES (E'E\\tx', 'ab'), ('F', 'cd')")
        c.exec_driver_sql(
            "INSERT INTO xw VALUES ('old', 'src', 'e', 'tabbed', E'E\\tx', 'm'), "
            "('old', 'src', 'f', 'tabbed', 'F', 'm')"
        )
    engine.dispose()
    (tmp_path / "tabbed.yml").write_text(
        """\
version: 1
class: tabbed
owner: Tester
severity: normal
segments: 4
target: {table: tabbed, key: uid}
locate:
  crosswalk: {table: xw, target_table: tabbed}
fields:
  text: {target: m, normalise: [trim]}
sources:
  - system: old
    table: src
    key: [k]
    fields: {text: a}
""",
        encoding="utf-8",
    )
    spec = load_spec(tmp_path / "tabbed.yml")
    task = Task(spec, {"target": url}, AS_OF, b"key", tmp_path)
    summary = run_target_side(task)
    assert summary.pushed and summary.raw_keys == {}
    assert spill_target_segments(task, summary, list(range(spec.segments)))
    assert summary.raw_keys == {"E\\tx": {"E\tx"}}


def test_a_row_the_database_places_elsewhere_sends_the_class_to_python(
    shapes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Should the database ever put a row in another segment than Python does, the read-out
    notices and the target side is read whole: the result is Python's."""
    _, _engine, url = shapes
    many = tmp_path / "many.yml"  # many segments: a misplaced row lands outside those read
    many.write_text(SPEC.replace("segments: 8", "segments: 4096"), encoding="utf-8")
    spec = load_spec(many)
    conns = _sources(tmp_path, url, [("u1", "x"), ("u3", "y")])
    off = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=False)
    real = pushdown.match_key
    monkeypatch.setattr(
        pushdown, "match_key", lambda system, key: real(system, key) + sa.literal("~")
    )
    import reconcile.engine as engine_module

    read_whole = []
    target_side = engine_module.run_target_side

    def spy(task):  # type: ignore[no-untyped-def]
        read_whole.append(task.pushdown)
        return target_side(task)

    monkeypatch.setattr(engine_module, "run_target_side", spy)
    on = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=True)
    assert read_whole == [True, False]  # pushed down, then read whole in Python
    assert sorted(map(repr, on.findings)) == sorted(map(repr, off.findings))
    assert repr(on.target) == repr(off.target) and on.target_digest == off.target_digest


def test_sessions_get_their_work_mem(pg_database: Callable[[], str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = pg_database()

    def shown(engine: sa.Engine) -> str:
        try:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql("SHOW work_mem").scalar())
        finally:
            engine.dispose()

    server = shown(sa.create_engine(url))  # the server's own setting
    assert shown(engine_for(url)) == "64MB" != server
    # Raised, never lowered: a session asking for more keeps it.
    assert shown(engine_for(f"{url}?options=-c%20work_mem%3D1GB")) == "1GB"
    monkeypatch.setenv("CONTINUITY_PG_WORK_MEM", "")
    assert shown(engine_for(url)) == server


def test_a_query_the_database_refuses_leaves_the_class_to_python(
    shapes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    spec, _engine, url = shapes
    conns = _sources(tmp_path, url, [("u1", "x"), ("u3", "y")])
    off = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=False)
    monkeypatch.setattr(pushdown, "fingerprint_sql", lambda message, key: sa.func.no_such_fn())
    on = reconcile_class(spec, conns, AS_OF, b"k", parallel=False, pushdown=True)
    assert sorted(map(repr, on.findings)) == sorted(map(repr, off.findings))
    assert repr(on.target) == repr(off.target) and on.target_digest == off.target_digest
