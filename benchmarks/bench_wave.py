"""Issue #4: the 1,000,000-person estate migrated SQLite -> SQLite by one wave at >= 100,000
source rows/s (rows read from all source tables / wall time of the wave), peak memory < 1.5 GB;
the same into PostgreSQL, printed.

Source rows are the estate's rows in the legacy and PoliceWorks databases, each counted once
(a table several mappings read is read several times; those re-reads are printed apart).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from measure import bundled_env, continuity, generate_estate, phases, run_bundled

TARGET_ROWS_PER_SECOND = 100_000.0
TARGET_PEAK_MB = 1536.0


def _pg_url() -> str | None:
    """A fresh PostgreSQL database for the target, or None when no server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = os.environ.get("CONTINUITY_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS continuity_bench_wave WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE continuity_bench_wave"))
        engine.dispose()
    except Exception as exc:  # a benchmark without the server still reports SQLite
        print(f"  PostgreSQL: skipped ({type(exc).__name__})")
        return None
    url = make_url(admin).set(database="continuity_bench_wave")
    return url.render_as_string(hide_password=False)


def _wave(estate: Path, target: str, work: Path, label: str, source_rows: int) -> bool | None:
    init = continuity("target", "init", target)
    if init.returncode != 0:
        print(init.output)
        return None
    env = bundled_env(estate, target, work / f"ledger-{label}.sqlite")
    m, run = run_bundled(work, env, f"run-{label}")
    if not run:
        return None
    rate = source_rows / m.seconds
    ok = rate >= TARGET_ROWS_PER_SECOND and m.peak_rss_mb < TARGET_PEAK_MB
    print(
        f"  {label:<10} {m.seconds:7.1f} s  {source_rows:>11,} source rows  {rate:>9,.0f} rows/s"
        f"  ({run['rows_read']:,} rows read, re-reads included)  peak {m.peak_rss_mb:6.0f} MB"
    )
    print(f"  {'':<10} {phases(run)}")
    return ok


def main() -> int:
    persons = int(os.environ.get("BENCH_PERSONS", "1000000"))
    print(
        f"migration wave, bundled project: target {TARGET_ROWS_PER_SECOND:,.0f} source rows/s "
        f"and {TARGET_PEAK_MB:.0f} MB (SQLite -> SQLite) at {persons:,} persons"
    )
    work = Path(tempfile.mkdtemp(prefix="continuity-bench-wave-"))
    try:
        estate = work / "estate"
        if not generate_estate(estate, persons):
            return 1
        counts = json.loads((estate / "estate.json").read_text())["counts"]
        source_rows = sum(sum(counts[side].values()) for side in ("legacy", "policeworks"))
        ok = _wave(estate, f"sqlite:///{work / 'product.sqlite'}", work, "sqlite", source_rows)
        verdict = "MET" if ok else "NOT MET"
        print(f"  SQLite -> SQLite: {verdict}")
        pg = _pg_url()
        if pg is not None:
            _wave(estate, pg, work, "postgresql", source_rows)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
