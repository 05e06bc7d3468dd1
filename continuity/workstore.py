"""The ledger's work store: what each reconciliation found, and the owners' acceptances.

The work store is rebuildable evidence (a re-run rewrites it); acceptances are decisions and are
kept across runs. Each run is written in one transaction, so a crash leaves either the whole run
or none of it. The hash-chained, append-only audit ledger comes with sign-off (issue 8); until
then acceptances live here, with who made them and when.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from continuity import __version__
from continuity.domain.connect import engine_for, redact
from continuity.domain.errors import LedgerError, driver_message
from reconcile.model import Reconciliation

metadata = MetaData()

reconcile_run = Table(
    "reconcile_run",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime, nullable=False),
    Column("as_of", String(10), nullable=False),
    Column("wave", String(60)),
    Column("operator", String(80), nullable=False),
    Column("tool_version", String(20), nullable=False),
    Column("target", String(200), nullable=False),
    Column("clean", Integer, nullable=False),
    Column("summary", Text, nullable=False),  # JSON: identities and spec digests per class
)
reconcile_finding = Table(
    "reconcile_finding",
    metadata,
    Column("run_id", Integer, nullable=False, index=True),
    Column("class", String(60), nullable=False),
    Column("side", String(6), nullable=False),
    Column("system", String(40)),
    Column("source_table", String(80), nullable=False),
    Column("record_key", String(200), nullable=False),
    Column("placement", String(20), nullable=False),
    Column("critical", Integer, nullable=False),
    Column("integrity", String(10)),
    Column("fields", Text),  # JSON list of field diffs
    Column("reason", Text),
    Column("target_key", String(200)),
    Column("signature", String(400), nullable=False),
    Column("candidates", Text),  # JSON: target records a MISSING person may be
)
acceptance = Table(
    "acceptance",
    metadata,
    Column("acceptance_id", Integer, primary_key=True, autoincrement=True),
    Column("class", String(60), nullable=False),
    Column("system", String(40), nullable=False),
    Column("record_key", String(200), nullable=False),
    # What was accepted, and where: a record that later fares worse, or the same key in another
    # target (a rehearsal's acceptance in production), is not covered.
    Column("signature", String(400), nullable=False),
    Column("target", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator", String(80), nullable=False),
    Column("accepted_at", DateTime, nullable=False),
    UniqueConstraint("class", "system", "record_key", "signature", "target"),
)


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container
        return "unknown"


class WorkStore:
    """One work store database (SQLite by default), created on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = engine_for(url)
        try:
            metadata.create_all(self.engine)
            self._check_layout()
        except SQLAlchemyError as exc:
            raise LedgerError(f"work store {redact(url)}: {driver_message(exc)}") from exc

    def close(self) -> None:
        """Close the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> WorkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_layout(self) -> None:
        """A store written by an older Continuity lacks columns: say so rather than fail later."""
        from sqlalchemy import inspect

        inspector = inspect(self.engine)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in present]
            if missing:
                raise LedgerError(
                    f"work store {redact(self.url)}: table {table.name} has an older layout "
                    f"(no {', '.join(missing)}): move the file aside and reconcile again"
                )

    def accepted(self, target: str) -> frozenset[tuple[str, str, str, str]]:
        """(class, system, key, signature) of every exception accepted on ``target``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    acceptance.c["class"],
                    acceptance.c.system,
                    acceptance.c.record_key,
                    acceptance.c.signature,
                ).where(acceptance.c.target == redact(target))
            )
            return frozenset((r[0], r[1], r[2], r[3]) for r in rows)

    @staticmethod
    def _acceptance_of(finding: dict[str, Any]) -> dict[str, Any]:
        return {
            "class": finding["class"],
            "system": finding["system"] or "",
            "record_key": finding["record_key"],
            "signature": finding["signature"],
            "target": finding["target"],
        }

    def is_accepted(self, finding: dict[str, Any]) -> bool:
        """Whether this finding, as it stands, is accepted already."""
        values = self._acceptance_of(finding)
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(acceptance.c.acceptance_id).where(
                        *(acceptance.c[k] == v for k, v in values.items())
                    )
                ).first()
                is not None
            )

    def accept(self, finding: dict[str, Any], reason: str) -> None:
        """Accept one finding of the last run (as :meth:`last_findings` returns it)."""
        if not reason.strip():
            raise LedgerError("an acceptance needs a reason (--reason)")
        values = self._acceptance_of(finding)
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(acceptance.c.acceptance_id).where(
                    *(acceptance.c[k] == v for k, v in values.items())
                )
            ).first()
            if exists:
                raise LedgerError(
                    f"{values['class']} {values['system']} {values['record_key']} is already "
                    "accepted as it stands"
                )
            conn.execute(
                insert(acceptance).values(
                    {
                        **values,
                        "reason": reason.strip(),
                        "operator": operator(),
                        "accepted_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    }
                )
            )

    def last_findings(self, cls: str, key: str) -> list[dict[str, Any]]:
        """The latest run's findings for one record key of a class, with the run's target."""
        with self.engine.connect() as conn:
            run = conn.execute(
                select(reconcile_run.c.run_id, reconcile_run.c.target).order_by(
                    reconcile_run.c.run_id.desc()
                )
            ).first()
            if run is None:
                return []
            rows = conn.execute(
                select(reconcile_finding).where(
                    reconcile_finding.c.run_id == run[0],
                    reconcile_finding.c["class"] == cls,
                    reconcile_finding.c.record_key == key,
                )
            )
            return [{**dict(r._mapping), "target": run[1]} for r in rows]

    def record(
        self, result: Reconciliation, target: str, accepted: frozenset[tuple[str, str, str, str]]
    ) -> int:
        """Write one run and all its findings in a single transaction; return its id."""
        summary = {
            c.name: {
                "title": c.title,
                "owner": c.owner,
                "severity": c.severity,
                "spec_digest": c.spec_digest,
                "source_digest": c.source_digest,
                "target_digest": c.target_digest,
                "source_identity": [s.to_dict() for s in c.sources],
                "target_identity": c.target.to_dict(),
                "clean": c.clean(accepted),
                "exceptions": len(c.exceptions(accepted)),
                "warnings": [
                    *c.warnings,
                    *(
                        f"{system} {year}: {n['expected']:,} expected in the target, "
                        f"{n['target']:,} there"
                        for system, year, n in c.years_differing()
                    ),
                ],
            }
            for c in result.classes
        }
        with self.engine.begin() as conn:
            run_id = conn.execute(
                insert(reconcile_run).values(
                    started_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    as_of=result.as_of,
                    wave=result.wave,
                    operator=operator(),
                    tool_version=__version__,
                    target=redact(target),
                    clean=int(result.clean(accepted)),
                    summary=json.dumps(summary, sort_keys=True),
                )
            ).inserted_primary_key
            assert run_id is not None
            run_id = run_id[0]
            for batch in _batches(
                (
                    {
                        "run_id": run_id,
                        "class": f.cls,
                        "side": f.side,
                        "system": f.system,
                        "source_table": f.table,
                        "record_key": f.key,
                        "placement": f.placement.value,
                        "critical": int(c.critical),
                        "integrity": f.integrity.value if f.integrity else None,
                        "fields": json.dumps([d.to_dict() for d in f.diffs]) if f.diffs else None,
                        "reason": f.reason,
                        "target_key": f.target_key,
                        "signature": f.signature,
                        "candidates": json.dumps(list(f.candidates)) if f.candidates else None,
                    }
                    for c in result.classes
                    for f in c.findings
                ),
                5000,
            ):
                conn.execute(insert(reconcile_finding), batch)
        return int(run_id)


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
