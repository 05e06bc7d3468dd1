"""The audit ledger: an append-only, hash-chained record of every run and decision.

Each entry holds the previous entry's hash, so an entry changed or removed after the fact breaks
the chain (:meth:`AuditLedger.verify` finds where). The database refuses UPDATE and DELETE on the
table (triggers on SQLite, PostgreSQL and MariaDB), so a mistake is corrected by a new entry,
never by rewriting history. The ledger lives beside the work store (the project's ``ledger`` URL).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from continuity import __version__
from continuity.domain.connect import MYSQL_FAMILY, engine_for, redact
from continuity.domain.errors import LedgerError, driver_message

metadata = MetaData()

audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("run_id", String(36)),
    Column("wave", String(80)),
    Column("operator", String(80), nullable=False),
    Column("tool_version", String(20), nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

GENESIS = "0" * 64

_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_entry_no_update BEFORE UPDATE ON audit_entry "
        "BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_entry_no_delete BEFORE DELETE ON audit_entry "
        "BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_entry_refuse() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'the audit ledger is append-only'; END $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry",
        "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        "ON audit_entry FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_refuse()",
    ],
    "mysql": [
        "DROP TRIGGER IF EXISTS audit_entry_no_update",
        "CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the audit ledger is append-only'",
        "DROP TRIGGER IF EXISTS audit_entry_no_delete",
        "CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the audit ledger is append-only'",
    ],
}


def operator() -> str:
    """Who is running Continuity: ``CONTINUITY_OPERATOR``, else the login name."""
    name = os.environ.get("CONTINUITY_OPERATOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


@dataclass(frozen=True)
class Entry:
    seq: int
    at: dt.datetime
    kind: str
    run_id: str | None
    wave: str | None
    operator: str
    tool_version: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    kind: str,
    run_id: str | None,
    wave: str | None,
    who: str,
    version: str,
    payload: str,
) -> str:
    """SHA-256 over the previous hash and every field of the entry."""
    fields = [prev_hash, str(seq), at.isoformat(), kind, run_id or "", wave or "", who, version]
    text_ = "\x1f".join([*fields, payload])
    return hashlib.sha256(text_.encode("utf-8")).hexdigest()


def sqlite_file_ready(url: str) -> None:
    """Create the folder of a SQLite database file (``.continuity/`` beside the project)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        from pathlib import Path

        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)


def open_store(url: str, tables: MetaData) -> Engine:
    """An engine on the ledger's database (the work store) with ``tables`` created on first
    use; a database that cannot be reached or written is a one-line :class:`LedgerError`."""
    sqlite_file_ready(url)
    engine = engine_for(url)
    try:
        tables.create_all(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(f"work store {redact(url)}: {driver_message(exc)}") from exc
    return engine


class AuditLedger:
    """Append entries, read them back, verify the chain."""

    def __init__(self, url: str) -> None:
        self.url = url
        sqlite_file_ready(url)
        self.engine: Engine = engine_for(url)
        if self.engine.dialect.name == "sqlite":
            # Appends from two processes must not interleave between reading the last hash and
            # writing the next entry: take the write lock at BEGIN.
            @event.listens_for(self.engine, "connect")
            def _no_autobegin(dbapi: Any, _: Any) -> None:
                dbapi.isolation_level = None

            @event.listens_for(self.engine, "begin")
            def _immediate(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            metadata.create_all(self.engine)
            dialect = self.engine.dialect.name
            family = "mysql" if dialect in MYSQL_FAMILY else dialect
            with self.engine.begin() as conn:
                for statement in _TRIGGERS.get(family, []):
                    conn.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise LedgerError(f"ledger {redact(url)}: {driver_message(exc)}") from exc

    def append(
        self,
        kind: str,
        payload: Mapping[str, Any],
        run_id: str | None = None,
        wave: str | None = None,
    ) -> Entry:
        """Add one entry at the end of the chain (in its own transaction)."""
        body = _canonical(payload)
        who, version = operator(), __version__
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        try:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("LOCK TABLE audit_entry IN EXCLUSIVE MODE"))
                elif self.engine.dialect.name in MYSQL_FAMILY:
                    conn.execute(
                        text("SELECT seq FROM audit_entry ORDER BY seq DESC LIMIT 1 FOR UPDATE")
                    )
                last = conn.execute(
                    select(audit_entry.c.seq, audit_entry.c.hash)
                    .order_by(audit_entry.c.seq.desc())
                    .limit(1)
                ).first()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                digest = entry_hash(prev, seq, at, kind, run_id, wave, who, version, body)
                conn.execute(
                    insert(audit_entry).values(
                        seq=seq,
                        at=at,
                        kind=kind,
                        run_id=run_id,
                        wave=wave,
                        operator=who,
                        tool_version=version,
                        payload=body,
                        prev_hash=prev,
                        hash=digest,
                    )
                )
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"ledger {redact(self.url)}: cannot append: {driver_message(exc)}"
            ) from exc
        return Entry(seq, at, kind, run_id, wave, who, version, dict(payload), prev, digest)

    def head(self) -> tuple[int, str]:
        """The last entry's sequence number and hash ((0, GENESIS) for an empty ledger)."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(audit_entry.c.seq, audit_entry.c.hash)
                .order_by(audit_entry.c.seq.desc())
                .limit(1)
            ).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def entries(self, kind: str | None = None, wave: str | None = None) -> Iterator[Entry]:
        """Entries in order, optionally of one kind or wave."""
        query = select(audit_entry).order_by(audit_entry.c.seq)
        if kind is not None:
            query = query.where(audit_entry.c.kind == kind)
        if wave is not None:
            query = query.where(audit_entry.c.wave == wave)
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                try:
                    payload = json.loads(r.payload)
                except (TypeError, ValueError):
                    raise LedgerError(
                        f"audit ledger: entry {r.seq}: its payload is not JSON (it was altered)"
                    ) from None
                yield Entry(
                    r.seq,
                    r.at,
                    r.kind,
                    r.run_id,
                    r.wave,
                    r.operator,
                    r.tool_version,
                    payload,
                    r.prev_hash,
                    r.hash,
                )

    def verify(self) -> int:
        """Check the whole chain; return its length or raise LedgerError at the first break."""
        prev, count = GENESIS, 0
        with self.engine.connect() as conn:
            for r in conn.execute(select(audit_entry).order_by(audit_entry.c.seq)):
                count += 1
                if r.seq != count:
                    raise LedgerError(f"audit ledger: entry {count} is missing (next is {r.seq})")
                if r.prev_hash != prev:
                    raise LedgerError(
                        f"audit ledger: entry {r.seq} does not follow entry {count - 1}"
                    )
                expected = entry_hash(
                    prev,
                    r.seq,
                    r.at,
                    r.kind,
                    r.run_id,
                    r.wave,
                    r.operator,
                    r.tool_version,
                    r.payload,
                )
                if r.hash != expected:
                    raise LedgerError(
                        f"audit ledger: entry {r.seq} was altered after it was written"
                    )
                prev = r.hash
        return count

    def close(self) -> None:
        self.engine.dispose()
