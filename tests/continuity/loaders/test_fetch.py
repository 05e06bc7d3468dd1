"""SqlBatch.fetch: rows by key inside the batch's transaction, typed as they were written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from continuity.loaders.base import primary_key_indexes
from continuity.loaders.sql import SqlLoader
from continuity.target_schema import metadata


def test_fetch_reads_what_the_transaction_wrote_by_single_and_composite_keys(
    target: str, dialect: str, rows: Callable[..., list[tuple[Any, ...]]]
) -> None:
    loader = SqlLoader(target, metadata)
    try:
        loader.prepare()
        events = rows("event", 5)
        links = rows("event_person", 5)
        with loader.transaction() as tx:
            tx.upsert("location", rows("location", 5))  # the parents foreign keys name
            tx.upsert("person", rows("person", 5))
            tx.upsert("event", events)
            tx.upsert("event_person", links)
            for table, written in (("event", events), ("event_person", links)):
                at = primary_key_indexes(metadata.tables[table])
                wanted = [tuple(r[i] for i in at) for r in written[1:4]]
                missing = tuple("no-such-key" for _ in at)
                got = tx.fetch(table, [*wanted, missing])
                assert sorted(got, key=repr) == sorted(written[1:4], key=repr)
            assert tx.fetch("event", []) == []
    finally:
        loader.close()


def test_fetch_of_many_keys_goes_in_chunks(
    target: str, rows: Callable[..., list[tuple[Any, ...]]]
) -> None:
    loader = SqlLoader(target, metadata)
    try:
        loader.prepare()
        written = rows("migration_crosswalk", 1200)
        with loader.transaction() as tx:
            tx.upsert("migration_crosswalk", written)
            at = primary_key_indexes(metadata.tables["migration_crosswalk"])
            got = tx.fetch("migration_crosswalk", [tuple(r[i] for i in at) for r in written])
        assert len(got) == 1200
    finally:
        loader.close()
