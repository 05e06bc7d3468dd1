"""Validation of a project's sources and target with its suites, written down in the ledger.

The stage (:mod:`validators`) knows suites and GX; this module knows the project: where each
suite's source system lives (a SQL source is validated by its database, a file source batch by
batch), the target's URL, and the ledger. Every validation appends one ``validation`` entry to
the audit ledger (suites digest, counts, every finding without its keys, and a SHA-256 over the
keys) and writes the keys of every unexpected row to the work store's ``validation_unexpected``
table, so the entry proves which rows were judged and the table says which.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert
from sqlalchemy.exc import SQLAlchemyError

from continuity.domain.connect import redact
from continuity.domain.errors import ConfigError, LedgerError, driver_message
from continuity.ledger import AuditLedger, open_store
from continuity.project import Project
from extractors.base import Selection
from extractors.registry import open_extractor
from validators.model import ValidationResult
from validators.profile import TableProfile, profile_rows
from validators.runner import Data, compile_suites, reach_of, validate
from validators.suite import ExpectationSpec, Suite, load_suites, suites_digest

#: Rows per in-flight batch of a file source.
IN_FLIGHT_BATCH = 50_000

metadata = MetaData()
validation_unexpected = Table(
    "validation_unexpected",
    metadata,
    Column("validation_id", String(36), nullable=False, index=True),
    Column("run_id", String(36)),
    Column("side", String(6), nullable=False),
    Column("source_system", String(40)),
    Column("source_table", String(80), nullable=False),
    Column("expectation", String(120), nullable=False),
    Column("suite_line", Integer, nullable=False),
    Column("severity", String(12), nullable=False),
    Column("record_key", Text, nullable=False),  # JSON list of the key's values
)


@dataclass(frozen=True)
class Validation:
    """A validation done: its id, what it found and the ledger entry that records it."""

    validation_id: str
    result: ValidationResult
    suites: int
    digest: str


def project_suites(project: Project, side: str | None = None) -> list[Suite]:
    """The project's suites (of one side), checked; none when it declares no ``suites``."""
    if project.suites is None:
        return []
    suites = load_suites(project.suites, side)
    for s in suites:
        if s.side == "source" and s.source not in project.sources:
            known = ", ".join(sorted(project.sources))
            raise ConfigError(
                f"{s.file}:{s.lines.get('source', 1)}: source: no source {s.source!r} in "
                f"{project.file} (sources: {known})"
            )
    return suites


def _reachable(project: Project, suites: Sequence[Suite], target_url: str | None) -> None:
    """Every database the suites read answers (an ExtractError naming it otherwise): a
    validation that cannot read its data must fail, not report findings that say so."""
    checked: set[str] = set()
    for suite in suites:
        if suite.side == "target":
            if target_url is None:
                raise ConfigError(f"{suite.file}: the target is not a database: cannot validate")
            if "target" not in checked:
                checked.add("target")
                extractor = open_extractor("sql", "target", target_url, {})
                try:
                    extractor.check()
                finally:
                    extractor.close()
        elif suite.source not in checked:
            assert suite.source is not None
            checked.add(suite.source)
            cfg = project.sources[suite.source]
            extractor = cfg.extractor()
            try:
                extractor.check()
            finally:
                extractor.close()


#: (source, table) -> (key column, the keys of the rows a delta migrates); ("target", table)
#: -> the same of the rows it wrote (a key column of several: the rows sharing its values)
Rows = Mapping[tuple[str, str], tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class TargetChanges:
    """What a delta did to the target, for its critical references
    (``validators.runner.Data.reaching``): a row's reference can only have broken if the
    delta wrote the row, or removed the row it names."""

    #: table -> column -> the values of the rows the delta wrote (the columns it kept)
    written: Mapping[str, Mapping[str, Collection[str]]]
    #: table -> keys of the rows the delta deleted (tables keyed by one column)
    removed: Mapping[str, Collection[str]]
    #: table -> its one key column (tables keyed by one column)
    keyed_by: Mapping[str, str]
    #: every table the run writes or may delete from
    tables: Collection[str]

    def reach(self, table: str, column: str, other: str, other_column: str) -> set[str] | None:
        """The values of ``table.column`` whose rows a reference to ``other.other_column``
        must judge again; None: every row. A row the delta did not write, naming a row that
        is still there, is as it was when it met the suites. The named rows stay if the
        delta removed none, and ``other_column`` is the other table's one key (an update of
        another column could change the value a row names) or the run does not write it."""
        values = self.written.get(table, {}).get(column)
        if values is None:
            return None
        if other not in self.tables:
            return set(values)
        if self.keyed_by.get(other) != other_column:
            return None
        return set(values) | set(self.removed.get(other, ()))


def rows_query(url: str, table: str, schema: str | None, key: str, keys: Sequence[str]) -> str:
    """``SELECT *`` of a table's rows with these keys, as the database at ``url`` writes it
    (the keys as literals: GX reads a query as text)."""
    from sqlalchemy import column, literal_column, select
    from sqlalchemy import table as table_of

    from continuity.domain.connect import engine_for

    engine = engine_for(url)
    try:
        query: Any = (
            select(literal_column("*"))
            .select_from(table_of(table, schema=schema))
            .where(column(key).in_(list(keys)))
        )
        return str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    finally:
        engine.dispose()


def _locator(
    project: Project,
    target_url: str | None,
    rows: Rows | None = None,
    changed: TargetChanges | None = None,
) -> Callable[[Suite], Data]:
    def reaching(suite: Suite, url: str) -> dict[tuple[str, str, str], tuple[str, int]]:
        found: dict[tuple[str, str, str], tuple[str, int]] = {}
        if changed is None or suite.side != "target":
            return found
        for spec in suite.expectations:
            reach = reach_of(spec)
            values = None if reach is None else changed.reach(suite.table, *reach)
            if reach is not None and values is not None:
                query = rows_query(url, suite.table, None, reach[0], sorted(values))
                found[reach] = (query, len(values))
        return found

    def scoped(suite: Suite, url: str, schema: str | None) -> Data:
        some = (rows or {}).get((suite.source or "target", suite.table))
        if some is None or (
            tuple(suite.key) != (some[0],) and not (suite.side == "target" and some[0] in suite.key)
        ):
            return Data(url=url, table=suite.table, schema=schema, reaching=reaching(suite, url))
        key, keys = some
        return Data(
            url=url,
            table=suite.table,
            schema=schema,
            rows_query=rows_query(url, suite.table, schema, key, keys),
            rows=len(keys),
            reaching=reaching(suite, url),
        )

    def locate(suite: Suite) -> Data:
        if suite.side == "target":
            assert target_url is not None
            return scoped(suite, target_url, None)
        assert suite.source is not None
        cfg = project.sources[suite.source]
        if cfg.kind == "sql":
            return scoped(suite, cfg.location, cfg.options.get("schema"))
        extractor = cfg.extractor()
        selection = Selection(table=suite.table)
        try:
            columns = extractor.columns(selection)
        except BaseException:
            extractor.close()
            raise

        def batches() -> Iterator[list[tuple[Any, ...]]]:
            try:
                yield from extractor.batches(selection, IN_FLIGHT_BATCH)
            finally:
                extractor.close()

        return Data(columns=columns, batches=batches)

    return locate


def run_validation(
    project: Project,
    side: str,
    *,
    target_url: str | None = None,
    run_id: str | None = None,
    wave: str | None = None,
    ledger: bool = True,
    on_expectation: Callable[[Suite, ExpectationSpec], None] | None = None,
    suites: Sequence[Suite] | None = None,
    rows: Rows | None = None,
    changed: TargetChanges | None = None,
) -> Validation | None:
    """Validate one side of ``project`` with its suites (None when it has none for that side).

    Args:
        target_url: the target database (default the project's, when its loader is ``sql``).
        run_id: the wave run this validation belongs to, if any.
        ledger: write the audit entry and the unexpected keys (a dry run does not).
        rows: a delta's: of each table, the rows it migrates (or wrote, on the target), which
            alone its row-level expectations judge (see ``validators.runner._judges_rows``;
            the ledger entry's ``scope`` says how many).
        changed: a delta's, on the target: what it wrote and removed, of which its critical
            references judge the rows that may have broken (see :class:`TargetChanges`).
    """
    chosen = list(suites) if suites is not None else project_suites(project, side)
    chosen = [s for s in chosen if s.side == side]
    if not chosen:
        return None
    in_flight = {name for name, cfg in project.sources.items() if cfg.kind != "sql"}
    compiled = compile_suites(chosen, in_flight)
    if target_url is None and project.target.loader == "sql":
        target_url = project.target.location
    _reachable(project, chosen, target_url)
    result = validate(compiled, _locator(project, target_url, rows, changed), side, on_expectation)
    validation = Validation(str(uuid.uuid4()), result, len(chosen), suites_digest(chosen))
    if ledger:
        record(project, validation, run_id, wave)
    return validation


def _unexpected_rows(validation: Validation, run_id: str | None) -> Iterator[dict[str, Any]]:
    for f in validation.result.findings:
        for key in f.outcome.keys or ():
            yield {
                "validation_id": validation.validation_id,
                "run_id": run_id,
                "side": f.side,
                "source_system": f.source,
                "source_table": f.table,
                "expectation": f.expectation,
                "suite_line": f.line,
                "severity": f.severity,
                "record_key": json.dumps(list(key), default=str),
            }


def record(project: Project, validation: Validation, run_id: str | None, wave: str | None) -> None:
    """Write the unexpected keys to the work store, then the audit entry naming their digest."""
    keys_digest = hashlib.sha256()
    engine = open_store(project.ledger, metadata)
    try:
        with engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for row in _unexpected_rows(validation, run_id):
                keys_digest.update(
                    f"{row['source_table']}\x1f{row['expectation']}\x1f{row['suite_line']}"
                    f"\x1f{row['record_key']}\x1e".encode()
                )
                batch.append(row)
                if len(batch) >= 10_000:
                    conn.execute(insert(validation_unexpected), batch)
                    batch = []
            if batch:
                conn.execute(insert(validation_unexpected), batch)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(
            f"ledger {redact(project.ledger)}: cannot write validation keys: {driver_message(exc)}"
        ) from exc
    result = validation.result
    payload = {
        "validation_id": validation.validation_id,
        "side": result.side,
        "ok": result.ok,
        "suites": validation.suites,
        "suites_digest": validation.digest,
        "counts": dict(result.counts()),
        "seconds": round(result.seconds, 3),
        **({"scope": dict(result.scope)} if result.scope else {}),
        "findings": [
            {k: v for k, v in f.to_dict().items() if k not in ("examples", "notes")}
            for f in result.findings
        ],
        "unexpected_keys_sha256": keys_digest.hexdigest(),
    }
    audit = AuditLedger(project.ledger)
    try:
        audit.append("validation", payload, run_id, wave)
    except LedgerError:
        # keys without the entry that vouches for them are not evidence: take them back
        with engine.begin() as conn:
            conn.execute(
                validation_unexpected.delete().where(
                    validation_unexpected.c.validation_id == validation.validation_id
                )
            )
        raise
    finally:
        audit.close()
        engine.dispose()


def stop_message(result: ValidationResult) -> str:
    """One line naming the critical failures that stop a wave (or fail a run)."""
    stops = result.stops
    first = stops[0]
    what = first.outcome.error or _observed(first)
    more = f" (and {len(stops) - 1} more)" if len(stops) > 1 else ""
    return (
        f"{first.where}: {first.expectation} on {first.table}"
        f"{'.' + first.column if first.column else ''} failed: {what}{more}"
    )


def _observed(f: Any) -> str:
    o = f.outcome
    if o.unexpected_count is not None:
        return f"{o.unexpected_count:,} of {o.element_count or 0:,} rows unexpected"
    return f"observed {o.observed!r}"


#: Expectations named as the slowest after a validation.
SLOWEST = 3


def format_result(result: ValidationResult, show: int = 5) -> str:
    """A readable table of findings: failed ones first (critical, quarantine, warning), then a
    count of those that passed; up to ``show`` example values of each failure."""
    order = {"critical": 0, "quarantine": 1, "warning": 2}
    failed = sorted(result.failed, key=lambda f: (order[f.severity], f.suite, f.line))
    lines = [f"Validation of the {result.side} ({result.seconds:.1f} s):"]
    for f in failed:
        column = f".{f.column}" if f.column else ""
        lines.append(
            f"  FAILED  {f.severity:<10} {f.source + '.' if f.source else ''}{f.table}{column}: "
            f"{f.expectation}: {f.outcome.error or _observed(f)}  ({f.where})"
        )
        if f.outcome.examples and show:
            sample = ", ".join(repr(v) for v in f.outcome.examples[:show])
            lines.append(f"          e.g. {sample}")
    passed = len(result.findings) - len(failed)
    c = result.counts()
    lines.append(
        f"  {passed} of {len(result.findings)} expectations met; {c['critical']} critical, "
        f"{c['quarantine']} quarantine ({c['quarantined_rows']:,} rows), {c['warning']} warning "
        "failures."
    )
    slow = sorted(result.findings, key=lambda f: -f.seconds)[:SLOWEST]
    if slow:
        lines.append(
            "  Slowest: "
            + "; ".join(
                f"{f.source + '.' if f.source else ''}{f.table}"
                f"{'.' + f.column if f.column else ''} {f.expectation} {f.seconds:.1f} s"
                for f in slow
            )
        )
    lines.append("  Result: " + ("OK" if result.ok else "FAILED (critical expectations not met)"))
    return "\n".join(lines)


def profile_project_source(
    project: Project, source: str, tables: Sequence[str] = ()
) -> list[TableProfile]:
    """Profile every table of a project's source (or those named): see
    :mod:`validators.profile`."""
    if source not in project.sources:
        known = ", ".join(sorted(project.sources))
        raise ConfigError(f"{project.file}: no source {source!r} (sources: {known})")
    cfg = project.sources[source]
    names = list(tables) or _table_names(cfg.kind, cfg.location)
    extractor = cfg.extractor()
    try:
        out = []
        for name in names:
            selection = Selection(table=name)
            columns = extractor.columns(selection)
            out.append(
                profile_rows(source, name, columns, extractor.batches(selection, IN_FLIGHT_BATCH))
            )
        return out
    finally:
        extractor.close()


def _table_names(kind: str, location: str) -> list[str]:
    if kind == "sql":
        from sqlalchemy import inspect

        from continuity.domain.connect import engine_for

        engine = engine_for(location)
        try:
            return sorted(inspect(engine).get_table_names())
        except SQLAlchemyError as exc:
            raise ConfigError(f"{redact(location)}: {driver_message(exc)}") from exc
        finally:
            engine.dispose()
    from pathlib import Path

    return sorted(p.stem for p in Path(location).glob("*.csv"))
