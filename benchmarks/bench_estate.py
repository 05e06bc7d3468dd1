"""Issue #2: ``continuity estate generate --persons 1000000`` on SQLite in under 2 minutes, peak
memory under 1 GB, flat in N.

Runs the real CLI at two sizes so flatness shows: peak memory should not grow with N.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from measure import continuity

TARGET_SECONDS = 120.0
TARGET_PEAK_MB = 1024.0


def main() -> int:
    persons = int(os.environ.get("BENCH_PERSONS", "1000000"))
    sizes = sorted({max(persons // 10, 1000), persons})
    failed = False
    print(
        f"estate generate (SQLite): target {TARGET_SECONDS:.0f} s, {TARGET_PEAK_MB:.0f} MB "
        "at 1,000,000 persons"
    )
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix="continuity-bench-"))
        try:
            out = work / "estate"
            m = continuity(
                "estate", "generate", "--out", str(out), "--persons", str(n), "--seed", "1"
            )
            if m.returncode != 0:
                print(m.output)
                return 1
            summary = json.loads((out / "estate.json").read_text())
            rows = sum(sum(c.values()) for c in summary["counts"].values())
            verdict = ""
            if n == 1_000_000:
                ok = m.seconds < TARGET_SECONDS and m.peak_rss_mb < TARGET_PEAK_MB
                failed |= not ok
                verdict = "  MET" if ok else "  NOT MET"
            print(
                f"  {n:>9,} persons: {m.seconds:7.1f} s  {rows:>11,} rows  "
                f"{rows / m.seconds:>9,.0f} rows/s  {n / m.seconds:>8,.0f} persons/s  "
                f"peak {m.peak_rss_mb:6.0f} MB{verdict}"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
