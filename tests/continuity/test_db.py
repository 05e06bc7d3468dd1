"""continuity.db: the driver's rows of a SELECT (stream), on every database the work store
may live on."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from continuity.db import stream

from ..conftest import EVERY_DATABASE


@pytest.mark.parametrize("kind", EVERY_DATABASE)
def test_stream_reads_every_row_a_select_names_in_batches(kind: str, any_database: str) -> None:
    url = any_database
    meta = sa.MetaData()
    t = sa.Table(
        "keys", meta, sa.Column("key", sa.String(20), primary_key=True), sa.Column("n", sa.Integer)
    )
    engine = sa.create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"key": f"k{i:03d}", "n": i} for i in range(250)])
        with engine.connect() as conn:

            def wanted(query: sa.Select[Any]) -> list[tuple[Any, ...]]:
                return list(stream(conn, query, size=7))

            rows = wanted(sa.select(t.c.key, t.c.n).where(t.c.n >= 10, t.c.key != "k100"))
            assert sorted(rows) == [(f"k{i:03d}", i) for i in range(10, 250) if i != 100]
            assert all(type(r) is tuple or isinstance(r, tuple) for r in rows)
            # a list of values bound (as an IN list), and a second read on the same connection
            picked = wanted(sa.select(t.c.n).where(t.c.key.in_(["k001", "k002", "k999"])))
            assert sorted(r[0] for r in picked) == [1, 2]
            # a statement the database refuses raises, and the connection still works
            with pytest.raises(Exception, match=r"(?i)no such|does not exist|doesn.t exist"):
                wanted(sa.select(sa.table("nowhere", sa.column("x")).c.x))
            if kind != "sqlite":
                conn.rollback()
            assert wanted(sa.select(sa.func.count()).select_from(t)) == [(250,)]
    finally:
        engine.dispose()
