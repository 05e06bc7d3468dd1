"""Running suites: compile them against GX (every problem at once), then validate each table.

A suite's table is read by its own database (a SQL source or the target: GX turns each
expectation into queries), or, for a source that is not a database, batch by batch as in-flight
rows, where only row-level expectations make sense and their counts are summed.

Nothing here knows a project: the caller says where each suite's data is
(:class:`Data`, by :func:`validate`'s ``locate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from continuity.domain.errors import ValidationError
from continuity.domain.yamlsource import raise_all
from validators import gx
from validators.model import Finding, Outcome, ValidationResult
from validators.suite import ExpectationSpec, Suite


@dataclass(frozen=True)
class Data:
    """Where a suite's rows are: a table (or query) of a database, or batches of rows."""

    url: str | None = None
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    columns: Sequence[str] = ()
    batches: Callable[[], Iterable[Sequence[tuple[Any, ...]]]] | None = None
    #: a query of the rows the row-level expectations judge (a delta's rows: those it migrates
    #: or wrote), and how many; None: every row. Others judge the whole table all the same
    #: (see ``_judges_rows``).
    rows_query: str | None = None
    rows: int = 0
    #: a delta's, for a critical expectation whose verdict on a row changes only with the row
    #: and with the rows of another table holding its value (a reference): by (column, other
    #: table, other column), the query of the rows that may have changed verdict (those the
    #: delta wrote, and those whose value names a row it removed from the other table) and
    #: how many values it names. One not named here judges every row.
    reaching: Mapping[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Compiled:
    """A suite with its expectations built (GX objects, opaque outside :mod:`validators.gx`)."""

    suite: Suite
    expectations: tuple[tuple[ExpectationSpec, Any, bool], ...]  # spec, GX object, row level


#: Expectations that judge rows against each other: on rows arriving in batches they would
#: judge each batch alone.
_ACROSS_ROWS = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_select_column_values_to_be_unique_within_record",
    }
)


def compile_suites(
    suites: Sequence[Suite], in_flight: Collection[str] = frozenset()
) -> list[Compiled]:
    """Build every expectation of every suite; raise ValidationError naming each unknown
    expectation and bad argument with its file and line, before any data is read.

    Args:
        in_flight: source systems whose rows arrive in batches (files): only expectations
            that judge a row on its own apply to them.
    """
    errors: list[str] = []
    out = []
    for suite in suites:
        built = []
        for i, spec in enumerate(suite.expectations):
            where = f"{suite.file}:{spec.line}: expectations.{i}"
            try:
                cls = gx.expectation_class(spec.name)
            except KeyError:
                errors.append(f"{where}.expect: unknown expectation {spec.name!r}")
                continue
            try:
                expectation = gx.build(spec.name, spec.arguments)
            except ValueError as exc:
                errors.append(f"{where}: {spec.name}: {exc}")
                continue
            row_level = gx.is_row_level(cls)
            if suite.source in in_flight and (not row_level or spec.name in _ACROSS_ROWS):
                errors.append(
                    f"{where}.expect: {spec.name} judges the table as a whole: source "
                    f"{suite.source!r} is read in batches (files); validate it in a database"
                )
            if spec.severity == "quarantine" and "mostly" in spec.arguments:
                errors.append(
                    f"{where}.mostly: a quarantine expectation judges every row: rows it finds "
                    "unexpected are quarantined whatever their share (no mostly)"
                )
            if spec.severity == "quarantine" and not row_level:
                errors.append(
                    f"{where}.severity: {spec.name} judges the whole table, not rows: "
                    "it cannot quarantine (critical or warning)"
                )
            if spec.severity == "quarantine" and spec.result_format != "COMPLETE":
                errors.append(
                    f"{where}.result_format: quarantine needs the COMPLETE result format "
                    "(the keys of every unexpected row)"
                )
            built.append((spec, expectation, row_level))
        out.append(Compiled(suite, tuple(built)))
    raise_all(errors, ValidationError)
    return out


def validate(
    compiled: Sequence[Compiled],
    locate: Callable[[Suite], Data],
    side: str,
    on_expectation: Callable[[Suite, ExpectationSpec], None] | None = None,
    engine: gx.GX | None = None,
) -> ValidationResult:
    """Validate each suite's table; every expectation gives one finding."""
    own = engine is None
    engine = engine or gx.GX()
    result = ValidationResult(side)
    started = time.perf_counter()
    try:
        for c in compiled:
            data = locate(c.suite)
            if data.batches is not None:
                found = _in_flight(engine, c, data, on_expectation)
            else:
                where = f"{c.suite.source or side}.{c.suite.table}"
                found = _in_database(engine, c, data, on_expectation, result.scope, where)
                if data.rows_query is not None:
                    result.scope[where] = data.rows
            result.findings += found
    finally:
        if own:
            engine.close()
    result.seconds = time.perf_counter() - started
    return result


def _finding(
    c: Compiled, spec: ExpectationSpec, row_level: bool, outcome: Outcome, seconds: float = 0.0
) -> Finding:
    s = c.suite
    return Finding(
        suite=s.name,
        file=str(s.file),
        line=spec.line,
        side=s.side,
        source=s.source,
        table=s.table,
        expectation=spec.name,
        column=spec.column,
        severity=spec.severity,
        row_level=row_level,
        outcome=outcome,
        notes=spec.notes,
        key=s.key,
        seconds=seconds,
    )


def _in_database(
    engine: gx.GX,
    c: Compiled,
    data: Data,
    on_expectation: Callable[[Suite, ExpectationSpec], None] | None,
    scope: dict[str, int],
    where: str,
) -> list[Finding]:
    """Each expectation judged by the database; a reference judging only ``Data.reaching``'s
    rows says so in ``scope`` (``where.column`` -> values)."""
    assert data.url is not None
    try:
        if data.query is not None:
            batch = engine.query(data.url, data.query)
        else:
            batch = engine.table(data.url, data.table or c.suite.table, data.schema)
        some = engine.query(data.url, data.rows_query) if data.rows_query and data.rows else None
    except Exception as exc:  # GX checks the table exists: a table gone fails every expectation
        missing = Outcome(False, error=f"cannot read {c.suite.table}: {gx.first_problem(exc)}")
        return [_finding(c, spec, row, missing) for spec, _, row in c.expectations]
    found = []
    nothing = Outcome(True, element_count=0, unexpected_count=0, missing_count=0, keys=())
    for spec, expectation, row_level in c.expectations:
        if on_expectation is not None:
            on_expectation(c.suite, spec)
        started = time.perf_counter()
        reach = _reach(spec, row_level)
        if data.rows_query is not None and _judges_rows(spec, expectation, row_level):
            outcome = (
                engine.validate(some, expectation, spec.result_format, c.suite.key)
                if some is not None
                else nothing
            )
        elif reach is not None and reach in data.reaching:
            query, values = data.reaching[reach]
            scope[f"{where}.{reach[0]}"] = values
            outcome = (
                engine.validate(
                    engine.query(data.url, query), expectation, spec.result_format, c.suite.key
                )
                if values
                else nothing
            )
        else:
            outcome = engine.validate(batch, expectation, spec.result_format, c.suite.key)
        found.append(_finding(c, spec, row_level, outcome, time.perf_counter() - started))
    return found


def _judges_rows(spec: ExpectationSpec, expectation: Any, row_level: bool) -> bool:
    """Whether an expectation may judge only some rows (``Data.rows_query``: the rows a delta
    wrote or migrates; the others met it before, with the same suites, and have not changed).

    Only one judging each row on its own, not a quarantine (it holds back every row it finds,
    whatever a run migrates), and not a critical one whose verdict on a row changes with
    another table's rows (a dangling link an unchanged row has now must stop the run)."""
    if not row_level or spec.name in _ACROSS_ROWS or spec.severity == "quarantine":
        return False
    return spec.severity == "warning" or not getattr(type(expectation), "judges_other_rows", False)


def reach_of(spec: ExpectationSpec) -> tuple[str, str, str] | None:
    """(column, other table, other column) of an expectation whose verdict on a row changes
    only with the row and with the rows of the other table holding its value (its class's
    ``reaches``, a reference): None for any other."""
    try:
        cls = gx.expectation_class(spec.name)
    except KeyError:
        return None
    names = getattr(cls, "reaches", None)
    if names is None:
        return None
    column, table, other = (spec.arguments.get(n) for n in names)
    if not (isinstance(column, str) and isinstance(table, str) and isinstance(other, str)):
        return None
    return column, table, other


def _reach(spec: ExpectationSpec, row_level: bool) -> tuple[str, str, str] | None:
    """:func:`reach_of` of an expectation that judges the rows of ``Data.reaching``: not a
    quarantine (it holds back every row it finds), nor one with ``mostly`` (a share of some
    rows is not the share of all)."""
    if not row_level or spec.severity == "quarantine":
        return None
    if spec.arguments.get("mostly", 1) not in (1, 1.0):
        return None
    return reach_of(spec)


def _in_flight(
    engine: gx.GX,
    c: Compiled,
    data: Data,
    on_expectation: Callable[[Suite, ExpectationSpec], None] | None,
) -> list[Finding]:
    """Row-level expectations batch by batch, their counts and keys summed; a table-level one
    cannot be judged on part of a table and says so."""
    assert data.batches is not None
    totals: dict[int, dict[str, Any]] = {
        i: {"elements": 0, "unexpected": 0, "missing": 0, "keys": [], "examples": [], "error": None}
        for i in range(len(c.expectations))
    }
    seconds = [0.0] * len(c.expectations)
    for rows in data.batches():
        batch = engine.frame(data.columns, rows)
        for i, (spec, expectation, row_level) in enumerate(c.expectations):
            t = totals[i]
            if not row_level or t["error"]:
                continue
            started = time.perf_counter()
            o = engine.validate(batch, expectation, spec.result_format, c.suite.key)
            seconds[i] += time.perf_counter() - started
            if o.error:
                t["error"] = o.error
                continue
            t["elements"] += o.element_count or 0
            t["unexpected"] += o.unexpected_count or 0
            t["missing"] += o.missing_count or 0
            t["keys"] += list(o.keys or ())
            t["examples"] += list(o.examples)[: 10 - len(t["examples"])]
    found = []
    for i, (spec, _, row_level) in enumerate(c.expectations):
        if on_expectation is not None:
            on_expectation(c.suite, spec)
        t = totals[i]
        if not row_level:
            outcome = Outcome(
                False, error="a table-level expectation needs a SQL source (rows arrive in batches)"
            )
        elif t["error"]:
            outcome = Outcome(False, error=t["error"])
        else:
            elements, unexpected = t["elements"], t["unexpected"]
            mostly = float(spec.arguments.get("mostly", 1.0))
            judged = elements - t["missing"]
            ok = unexpected == 0 or (judged > 0 and (judged - unexpected) / judged >= mostly)
            outcome = Outcome(
                ok,
                element_count=elements,
                unexpected_count=unexpected,
                missing_count=t["missing"],
                examples=tuple(t["examples"]),
                keys=tuple(t["keys"]) if spec.result_format == "COMPLETE" else None,
            )
        found.append(_finding(c, spec, row_level, outcome, seconds[i]))
    return found
