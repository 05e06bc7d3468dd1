"""Undoing a wave: a journal of what each batch changed, and ``continuity rollback WAVE``.

Before a batch's rows are upserted, the journal records, in the same transaction, which of
their keys were new to the target and the rows they replace, as they were. Rolling a run back
replays its journal backwards: replaced rows are put back, new ones deleted, children before
parents (they were written after them). Rows a run wrote twice come back in two steps, so the
target returns to exactly what it was before the run. The journal lives in the target
(``continuity_journal``), so rows and journal commit or fail together.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, Text, func, inspect, select
from sqlalchemy.dialects.mysql import LONGTEXT

from continuity import target_schema
from continuity.changes import FINGERPRINTS, HISTORY, unpromote
from continuity.domain.connect import engine_for
from continuity.domain.errors import ConfigError
from continuity.ledger import AuditLedger
from continuity.loaders.base import LoadBatch, primary_key_indexes
from continuity.loaders.registry import open_loader
from continuity.project import Project
from continuity.runs import runs

#: The checkpoint saying which target suites every target row met (see continuity.waves).
VALIDATED_TARGET = "validated:target"
JOURNAL = "continuity_journal"


def next_seq(url: str, run_id: str) -> int:
    """Where a run's journal goes on: one past its last entry (0 for a new run)."""
    journal = with_journal(MetaData()).tables[JOURNAL]
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            last = conn.execute(
                select(func.max(journal.c.seq)).where(journal.c.run_id == run_id)
            ).scalar()
    finally:
        engine.dispose()
    return 0 if last is None else int(last) + 1


def empty_tables(url: str, metadata: MetaData) -> list[str]:
    """The tables of ``metadata`` (the journal aside) that hold no row."""
    engine = engine_for(url)
    found = []
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                if table.name == JOURNAL:
                    continue
                if conn.execute(select(table.c[0]).limit(1)).first() is None:
                    found.append(table.name)
    finally:
        engine.dispose()
    return found


def with_journal(product: MetaData, journal: bool = True) -> MetaData:
    """A copy of the product's tables, with the journal for a loader that journals."""
    metadata = MetaData()
    for table in product.sorted_tables:
        table.to_metadata(metadata)
    if not journal:
        return metadata
    Table(
        JOURNAL,
        metadata,
        Column("run_id", String(36), primary_key=True),
        Column("seq", String(40), primary_key=True),
        Column("table_name", String(60), nullable=False),
        Column("kind", String(10), nullable=False),  # inserted | replaced
        # JSON list of keys or rows: a batch's can outgrow MariaDB's TEXT (64 KB).
        Column("payload", Text().with_variant(LONGTEXT(), "mysql", "mariadb"), nullable=False),
    )
    return metadata


def to_json(value: Any) -> Any:
    """A value as JSON with its type kept: checkpoints (a resume binds the key again) and the
    journal's before-images (a rollback writes them back) both need it. As ``json.dumps``'s
    ``default``, it writes the same text in a fraction of the time (JSON's own types stay as
    they are; the encoder asks only for the others)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    return {"$text": str(value)}


def from_json(value: Any) -> Any:
    """A value written by :func:`to_json`, in its own type again."""
    if not isinstance(value, dict) or len(value) != 1:
        return value  # (a JSON column's object is written as it is, and read back so)
    ((tag, text),) = value.items()
    readers: dict[str, Callable[[str], Any]] = {
        "$datetime": dt.datetime.fromisoformat,
        "$date": dt.date.fromisoformat,
        "$decimal": decimal.Decimal,
        "$uuid": uuid.UUID,
        "$bytes": base64.b64decode,
        "$text": str,
    }
    reader = readers.get(tag)
    return value if reader is None or not isinstance(text, str) else reader(text)


class Journal:
    """Records, inside a batch's transaction, what the batch's upserts are about to change."""

    def __init__(
        self,
        metadata: MetaData,
        run_id: str,
        start: int = 0,
        fresh: frozenset[str] = frozenset(),
    ) -> None:
        """Args:
        fresh: tables that were empty when the run began: every row in them is the run's own,
            so undoing it needs their keys alone, never a before-image (a first load).
        """
        self.metadata = metadata
        self.run_id = run_id
        self.fresh = fresh
        self._counter = itertools.count(start)

    def _seq(self) -> str:
        # A number, not a clock: a resumed run goes on from the last entry the run wrote
        # (next_seq), whatever the time on the machine that resumes it.
        return f"{next(self._counter):012d}"

    def record(self, tx: LoadBatch, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        fetch = getattr(tx, "fetch", None)
        if fetch is None:
            raise ConfigError("this loader cannot read the target: a journal needs one that can")
        key_at = primary_key_indexes(self.metadata.tables[table])
        keys = list(dict.fromkeys(tuple(r[i] for i in key_at) for r in rows))
        if table in self.fresh:
            payload = json.dumps(keys, default=to_json)
            tx.upsert(JOURNAL, [(self.run_id, self._seq(), table, "inserted", payload)])
            return
        before = fetch(table, keys)
        present = {tuple(r[i] for i in key_at) for r in before}
        entries = []
        new = [k for k in keys if k not in present]
        if new:
            payload = json.dumps(new, default=to_json)
            entries.append((self.run_id, self._seq(), table, "inserted", payload))
        if before:
            payload = json.dumps(list(map(tuple, before)), default=to_json)
            entries.append((self.run_id, self._seq(), table, "replaced", payload))
        tx.upsert(JOURNAL, entries)

    def record_delete(
        self, tx: LoadBatch, table: str, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Journal the rows about to be deleted by key; return the keys that exist."""
        if table in self.fresh:
            return list(keys)  # the run's own rows: undone by deleting what it inserted
        fetch = getattr(tx, "fetch", None)
        if fetch is None or not keys:
            return []
        key_at = primary_key_indexes(self.metadata.tables[table])
        before = fetch(table, list(dict.fromkeys(keys)))
        if before:
            payload = json.dumps(list(map(tuple, before)), default=to_json)
            tx.upsert(JOURNAL, [(self.run_id, self._seq(), table, "replaced", payload)])
        return [tuple(r[i] for i in key_at) for r in before]


def rollback_wave(project: Project, wave: str) -> dict[str, int]:
    """Undo the last run of ``wave``: the target returns to what it was before that run."""
    project.wave(wave)  # an unknown wave is an error naming the declared ones
    target = project.target
    if target.loader != "sql":
        raise ConfigError(f"rollback needs the sql loader (the target's loader is {target.loader})")
    ledger = AuditLedger(project.ledger)
    try:
        history = runs(ledger)
        mine = [r for r in history if r.wave == wave and r.rolled_back is None]
        if not mine:
            raise ConfigError(f"wave {wave}: no run to roll back")
        last = mine[-1]
        if last.ended is None or last.ended.kind != "run-finished":
            raise ConfigError(
                f"wave {wave}: its last run (run {last.run_id[:8]}) did not finish: "
                "resume it (or start it again) before rolling it back"
            )
        later = [
            r
            for r in history
            if r.run_id != last.run_id and r.last_seq > last.started.seq and r.rolled_back is None
        ]
        if later:
            raise ConfigError(
                f"wave {later[-1].wave} ran after wave {wave} (run {later[-1].run_id[:8]}): "
                "roll that back first"
            )
        if not last.started.payload.get("journal"):
            raise ConfigError(f"wave {wave}: its last run kept no journal (--no-journal)")
        metadata = with_journal(target_schema.metadata)
        entries = _entries(target.location, metadata, last.run_id)
        counts: dict[str, int] = {}
        loader = open_loader(target.loader, target.location, metadata, target.options)
        try:
            loader.check()
            states = [n for n in loader.checkpoints() if n.startswith("resolution:")]
            with loader.transaction() as tx:
                for _seq, table, kind, payload in reversed(entries):
                    values = [tuple(from_json(v) for v in item) for item in json.loads(payload)]
                    if kind == "inserted":
                        tx.delete(table, values)
                        counts[f"{table} deleted"] = counts.get(f"{table} deleted", 0) + len(values)
                    else:
                        tx.upsert(table, values)
                        counts[f"{table} restored"] = counts.get(f"{table} restored", 0) + len(
                            values
                        )
                tx.delete(JOURNAL, [(last.run_id, seq) for seq, *_ in entries])
                # The fingerprints go back to what they were before the run: what it migrated is
                # migrated again by the next run, what it found deleted is found deleted again.
                if inspect(loader.engine).has_table(HISTORY):  # type: ignore[attr-defined]
                    counts[f"{FINGERPRINTS} deleted"] = unpromote(tx, last.run_id)
                tx.set_checkpoint(
                    f"wave:{wave}", {"run_id": last.run_id, "finished": True, "rolled_back": True}
                )
                # The resolution state described the target as the run left it: the next run
                # resolves every record again (see continuity.resolution_state).
                for name in states:
                    tx.set_checkpoint(name, {"kept": False})
                # Nor did the target validation judge what it puts back: the next judges all.
                tx.set_checkpoint(VALIDATED_TARGET, {})
        finally:
            loader.close()
        ledger.append("rollback", {"rolled_back": last.run_id, "counts": counts}, last.run_id, wave)
        return counts
    finally:
        ledger.close()


def _entries(url: str, metadata: MetaData, run_id: str) -> list[tuple[str, str, str, str]]:
    journal = metadata.tables[JOURNAL]
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(journal.c.seq, journal.c.table_name, journal.c.kind, journal.c.payload)
                .where(journal.c.run_id == run_id)
                .order_by(journal.c.seq)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows]
    finally:
        engine.dispose()
