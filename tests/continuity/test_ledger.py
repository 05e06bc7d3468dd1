"""The audit ledger: append-only in the database itself, hash-chained, tampering found."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from continuity.domain.errors import LedgerError
from continuity.ledger import GENESIS, AuditLedger


def check_append_only(url: str) -> None:
    ledger = AuditLedger(url)
    try:
        first = ledger.append("run-started", {"wave": "all", "n": 1}, "r1", "all")
        second = ledger.append("run-finished", {"rows": 10}, "r1", "all")
        assert first.prev_hash == GENESIS
        assert second.prev_hash == first.hash
        assert ledger.verify() == 2
        assert [e.kind for e in ledger.entries(wave="all")] == ["run-started", "run-finished"]
        assert next(ledger.entries(kind="run-finished")).payload == {"rows": 10}
        for statement in (
            "UPDATE audit_entry SET payload = '{}' WHERE seq = 1",
            "DELETE FROM audit_entry WHERE seq = 2",
        ):
            with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
                conn.execute(text(statement))
        assert ledger.verify() == 2
    finally:
        ledger.close()


def test_sqlite_ledger_is_append_only_and_chained(tmp_path: Path) -> None:
    check_append_only(f"sqlite:///{tmp_path / 'ledger' / 'audit.sqlite'}")


@pytest.mark.postgres
def test_postgresql_ledger_is_append_only(pg_database: Callable[[], str]) -> None:
    check_append_only(pg_database())


@pytest.mark.mariadb
def test_mariadb_ledger_is_append_only(mariadb_database: Callable[[], str]) -> None:
    check_append_only(mariadb_database())


def test_tampering_with_a_copy_is_found(tmp_path: Path) -> None:
    """Someone with the file drops the triggers and edits an entry: verify names it."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ledger = AuditLedger(url)
    for n in range(3):
        ledger.append("run-finished", {"n": n}, f"r{n}", "all")
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_entry_no_update"))
        conn.execute(text("UPDATE audit_entry SET payload = '{\"n\": 9}' WHERE seq = 2"))
    with pytest.raises(LedgerError, match="entry 2 was altered"):
        ledger.verify()
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_entry_no_delete"))
        conn.execute(text("DELETE FROM audit_entry WHERE seq = 2"))
    with pytest.raises(LedgerError, match="entry 2 is missing"):
        ledger.verify()
    ledger.close()


def test_an_unreachable_ledger_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as err:
        AuditLedger("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "\n" not in str(err.value)
    assert "secret" not in str(err.value)
