"""A wave in miniature, run as a subprocess by the SIGKILL tests: batches of rows, checkpointed.

    python load_loop.py KIND LOCATION [--resume] [--batches N]

Batch ``i`` upserts locations and events (some replacing rows of the previous batch, so the
order of batches matters), deletes a few events of earlier batches, and checkpoints step
``loop`` at ``{"batch": i}``, all in one transaction; then prints ``i``. With ``--resume`` it
starts after the last checkpointed batch. :func:`expected` replays batches in memory: the target
after batch ``i`` committed must hold exactly that.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from continuity.domain.keys import target_key
from continuity.loaders import open_loader
from continuity.target_schema import metadata

STEP = "loop"
ROWS = 120  # events per batch; each batch also rewrites half of the previous batch's events


def _event(n: int, batch: int) -> tuple[Any, ...]:
    recorded = dt.datetime(2010, 1, 1) + dt.timedelta(minutes=7 * n + batch)
    return (
        target_key("event", "loop", str(n)),
        f"CR/{n}/{batch}",
        None,
        "8N",
        "2024",
        None,
        None,
        recorded,
        recorded,
        target_key("location", "loop", str(n % 50)),
        f"MO of event {n} as of batch {batch} — é",
        "OPEN" if (n + batch) % 3 else "CLOSED",
        None,
        None,
        None,
        batch % 2 == 0,
        None,
        False,
        n % 7,
        1,
        dt.date(2030, 1, 1),
    )


def _location(n: int, batch: int) -> tuple[Any, ...]:
    return (
        target_key("location", "loop", str(n)),
        None,
        "unmatched",
        f"{n} High Street",
        f"batch {batch}",
        None,
        None,
        None,
        "M1 1AA",
        None,
        None,
        2,
        None,
    )


def batch_writes(i: int) -> list[tuple[str, str, list[tuple[Any, ...]]]]:
    """Batch ``i``'s operations, in order: (op, table, rows or keys)."""
    first = i * ROWS - ROWS // 2 if i else 0  # half of the previous batch's events again
    events = [_event(n, i) for n in range(first, (i + 1) * ROWS)]
    # All locations first (events refer to them), then a fifth of them again per batch.
    locations = [_location(n, i) for n in range(50) if i == 0 or n % 5 == i % 5]
    gone = [(target_key("event", "loop", str(n)),) for n in range(0, i * ROWS, 97) if i % 4 == 3]
    return [
        ("upsert", "location", locations),
        ("upsert", "event", events),
        ("delete", "event", gone),
    ]


def expected(last: int) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every table's rows by key after batches ``0..last`` (none if ``last`` is -1)."""
    tables: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {"location": {}, "event": {}}
    for i in range(last + 1):
        for op, table, rows in batch_writes(i):
            for row in rows:
                if op == "upsert":
                    tables[table][row[:1]] = row
                else:
                    tables[table].pop(row, None)
    return tables


def _check_columns() -> None:
    for table, row in (("event", _event(0, 0)), ("location", _location(0, 0))):
        assert len(row) == len(metadata.tables[table].columns), table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("location")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batches", type=int, default=10_000)
    args = parser.parse_args(argv)
    _check_columns()
    loader = open_loader(args.kind, args.location, metadata)
    loader.check()
    loader.prepare()
    done = loader.checkpoint(STEP) if args.resume else None
    start = done["batch"] + 1 if done else 0
    for i in range(start, args.batches):
        with loader.transaction() as batch:
            for op, table, rows in batch_writes(i):
                if op == "upsert":
                    batch.upsert(table, rows)
                else:
                    batch.delete(table, rows)
            batch.set_checkpoint(STEP, {"batch": i})
        print(i, flush=True)
    loader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
