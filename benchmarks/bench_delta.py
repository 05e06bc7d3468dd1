"""Issue #6: after evolving the 1,000,000-person estate by 30 days, the delta wave takes under
10% of the full wave's time (SQLite -> SQLite, the bundled project).

Prints the full wave's and the delta's wall time, the delta's records changed and source rows
migrated, its peak memory, and the ratio. ``BENCH_DELTA_PERSONS`` sizes the estate (default
``BENCH_PERSONS``, else 1,000,000).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from measure import bundled_env, continuity, generate_estate, phases, run_bundled

TARGET_RATIO = 0.10
DAYS = 30


def main() -> int:
    persons = int(os.environ.get("BENCH_DELTA_PERSONS", os.environ.get("BENCH_PERSONS", "1000000")))
    print(
        f"delta wave after {DAYS} days of live use, {persons:,} persons, SQLite -> SQLite: "
        f"target under {TARGET_RATIO:.0%} of the full wave's time"
    )
    work = Path(tempfile.mkdtemp(prefix="continuity-bench-delta-"))
    try:
        estate = work / "estate"
        if not generate_estate(estate, persons):
            return 1
        target = f"sqlite:///{work / 'product.sqlite'}"
        env = {
            **bundled_env(estate, target, work / "ledger.sqlite"),
            "CONTINUITY_FINGERPRINT_KEY": "benchmark",
        }
        init = continuity("target", "init", target)
        if init.returncode != 0:
            print(init.output)
            return 1
        full, full_run = run_bundled(work, env, "full")
        if not full_run:
            return 1
        evolved = continuity("estate", "evolve", str(estate), "--days", str(DAYS))
        if evolved.returncode != 0:
            print(evolved.output[-2000:])
            return 1
        delta, delta_run = run_bundled(work, env, "delta", "--delta")
        if not delta_run:
            return 1
        changes = sum(
            c["added"] + c["changed"] + c["related"] + c["deleted"]
            for c in delta_run["changes"].values()
        )
        ratio = delta.seconds / full.seconds
        ok = ratio < TARGET_RATIO
        print(
            f"  full wave: {full.seconds:8.1f} s  {full_run['rows_read']:>11,} rows  "
            f"peak {full.peak_rss_mb:6.0f} MB"
        )
        print(f"  evolve:    {evolved.seconds:8.1f} s  ({DAYS} days)")
        print(
            f"  delta:     {delta.seconds:8.1f} s  {delta_run['rows_read']:>11,} rows  "
            f"{changes:,} records changed  peak {delta.peak_rss_mb:6.0f} MB"
        )
        for label, summary in (("full wave", full_run), ("delta", delta_run)):
            print(f"  {label}: {phases(summary)}")
        print(
            f"  delta / full = {ratio:.1%} (target < {TARGET_RATIO:.0%})"
            f"{'  MET' if ok else '  NOT MET'}"
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
