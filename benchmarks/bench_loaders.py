"""Loaders: upsert 200,000 ``event`` rows in batches of 10,000, each batch one transaction with
its checkpoint, as a wave does; then the same rows again (a resumed or re-run wave: nothing
changes). SQLite and the staging files always; PostgreSQL and MariaDB when reachable.

Each load runs in its own process (``--worker``) so that its peak memory is its own. Reference
(docs/DESIGN.md §5, this machine): DB-API ``executemany`` into SQLite ~710k rows/s, ``COPY`` into
PostgreSQL ~480k rows/s, both plain appends without upsert.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from measure import run

ROWS = int(os.environ.get("BENCH_LOADER_ROWS", "200000"))
BATCH = 10_000
PG_URL = os.environ.get("CONTINUITY_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CONTINUITY_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def events(start: int, count: int) -> list[tuple[Any, ...]]:
    """``count`` event rows shaped like a real load (keys, references, timestamps, MO text)."""
    from continuity.domain.keys import target_key

    base = dt.datetime(1995, 1, 1)
    rows = []
    for n in range(start, start + count):
        recorded = base + dt.timedelta(minutes=11 * n, microseconds=n % 1000)
        rows.append(
            (
                target_key("event", "legacy", f"CRIME-{n}"),
                f"06/{100000 + n}/{n % 30:02d}",
                f"INC-{n}" if n % 3 else None,
                "8N",
                "2024/25",
                recorded - dt.timedelta(hours=n % 48),
                recorded - dt.timedelta(hours=n % 24) if n % 2 else None,
                recorded,
                recorded,
                None,
                f"Offender entered premises at {n} and removed property. " * (1 + n % 4),
                "OPEN" if n % 5 else "CLOSED",
                f"PC{n % 9000}",
                "OC1" if n % 5 == 0 else None,
                recorded.date() if n % 5 == 0 else None,
                n % 7 == 0,
                None,
                n % 11 == 0,
                n % 12 + 1,
                1 + n % 4,
                dt.date(2030, 1, 1),
            )
        )
    return rows


def batches() -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, ROWS, BATCH):
        yield events(start, min(BATCH, ROWS - start))


def worker(kind: str, location: str) -> int:
    """Load the rows twice into ``location``; print the load's wall and CPU seconds per pass."""
    from continuity.loaders import open_loader
    from continuity.target_schema import metadata

    loader = open_loader(kind, location, metadata)
    loader.check()
    loader.prepare()
    for label in ("new", "unchanged"):
        seconds = cpu = 0.0
        for number, rows in enumerate(batches()):
            # The load only: making the rows is the mapping's cost.
            started, cpu_started = time.perf_counter(), time.process_time()
            with loader.transaction() as batch:
                batch.upsert("event", rows)
                batch.set_checkpoint("bench", {"batch": number})
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
        print(f"{label} {seconds:.3f} {cpu:.3f}", flush=True)
    loader.close()
    return 0


def _server_database(admin_url: str) -> str | None:
    """A new empty database on the server, or None if it is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ct_bench_{uuid.uuid4().hex[:10]}"
    charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if "mysql" in admin_url else ""
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}{charset}"))
        admin.dispose()
    except Exception:  # unreachable or no driver: skip this dialect
        return None
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop(url: str, admin_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {parsed.database}{force}"))
    admin.dispose()


def _create_schema(url: str) -> None:
    from sqlalchemy import create_engine

    from continuity.target_schema import metadata

    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="continuity-bench-"))
    targets: list[tuple[str, str, str]] = [
        ("SQLite", "sql", f"sqlite:///{work / 'target.sqlite'}"),
        ("staging files", "staging", str(work / "staging")),
    ]
    servers: dict[str, str] = {}  # database URL -> the admin URL that created it
    for label, admin in (("PostgreSQL", PG_URL), ("MariaDB", MARIADB_URL)):
        url = _server_database(admin)
        if url is None:
            print(f"  {label}: unreachable, skipped")
        else:
            targets.append((label, "sql", url))
            servers[url] = admin
    print(f"loaders: upsert {ROWS:,} event rows in batches of {BATCH:,}, then the same again")
    status = 0
    try:
        for label, kind, location in targets:
            if kind == "sql":
                _create_schema(location)
            m = run([sys.executable, __file__, "--worker", kind, location])
            if m.returncode != 0:
                print(m.output)
                status = 1
                continue
            passes = {
                name: (float(wall), float(cpu))
                for name, wall, cpu in (line.split() for line in m.output.splitlines() if line)
            }
            (new, new_cpu), (same, same_cpu) = passes["new"], passes["unchanged"]
            # Client CPU per row apart: on a busy machine the wall time says little alone.
            us_new, us_same = new_cpu / ROWS * 1e6, same_cpu / ROWS * 1e6
            print(
                f"  {label:<14} new {ROWS / new:>9,.0f} rows/s ({us_new:4.1f} µs CPU/row here)"
                f"   unchanged {ROWS / same:>9,.0f} rows/s ({us_same:4.1f} µs)"
                f"   peak {m.peak_rss_mb:5.0f} MB"
            )
    finally:
        for url, admin in servers.items():
            _drop(url, admin)
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.exit(main())
