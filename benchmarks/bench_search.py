"""Issue #5, item 4: person search over every source record and the target.

On an estate of ``BENCH_PERSONS`` persons (default 1,000,000) on SQLite, the index is built
against the estate's ideal target (``target.sqlite``: no wave is needed) by ``continuity search
--reindex``, and its time and peak memory printed. Then, in this process, calling the search
engine (:class:`continuity.search.Searcher`, not the command line):

- **latency**: 1,000 queries, the most common (forename, surname) combinations of the estate's
  truth (half of them with the date of birth of one of their records); p95 < 200 ms;
- **recall**: for ~500 humans with two or more source records, one of the human's records is
  searched for as it was spelled (forename surname, and its date of birth when it has one), and
  every one of the human's source records must be among the first (their count + 5) results;
  the share of humans for whom that holds must be at least 98%.

``BENCH_SEARCH_ESTATE`` names an estate already generated (with ``--seed 1``) to use instead of
generating one (it is left in place).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import PROJECT, bundled_env, continuity, generate_estate

TARGET_P95_MS = 200.0
TARGET_RECALL = 0.98
QUERIES = 1000
HUMANS = 500
SLACK = 5


def _latency(searcher: Any, truth: sqlite3.Connection) -> tuple[list[float], int]:
    from continuity.search import parse_query

    combos = truth.execute(
        "SELECT min(forename), min(surname), count(*), max(dob) FROM person_record "
        "GROUP BY lower(forename), lower(surname) ORDER BY count(*) DESC, 1, 2 LIMIT ?",
        (QUERIES,),
    ).fetchall()
    seconds = []
    found = 0
    for i, (forename, surname, _count, dob) in enumerate(combos):
        query = parse_query(f"{forename} {surname}", dob if i % 2 and dob else None)
        started = time.perf_counter()
        result = searcher.find(query)
        seconds.append(time.perf_counter() - started)
        found += len(result.candidates)
    return seconds, found


def _recall(searcher: Any, truth: sqlite3.Connection) -> tuple[int, int, list[str]]:
    from continuity.search import parse_query

    rng = random.Random(1)
    many = [
        h
        for (h,) in truth.execute(
            "SELECT human_id FROM person_record GROUP BY human_id HAVING count(*) >= 2 "
            "ORDER BY human_id"
        )
    ]
    sample = set(rng.sample(many, min(HUMANS, len(many))))
    records: dict[int, list[tuple[Any, ...]]] = {}
    marks = ",".join("?" * len(sample))
    for row in truth.execute(
        "SELECT system, source_table, source_key, human_id, forename, surname, dob, variant "
        f"FROM person_record WHERE human_id IN ({marks}) ORDER BY system, source_key",
        sorted(sample),
    ):
        records.setdefault(row[3], []).append(row)
    held = 0
    failures: list[str] = []
    for human in sorted(records):
        mine = records[human]
        asked = rng.choice(mine)
        query = parse_query(f"{asked[4]} {asked[5]}", asked[6], limit=len(mine) + SLACK)
        result = searcher.find(query)
        got = {(c.system, c.table, c.key) for c in result.candidates}
        missed = [r for r in mine if (r[0], r[1], r[2]) not in got]
        if not missed:
            held += 1
            continue
        wide = searcher.find(parse_query(query.name, query.dob, limit=500))
        rank = {(c.system, c.table, c.key): c.rank for c in wide.candidates}
        failures.append(
            f"    {query.name} {query.dob or ''} (human {human}, {len(mine)} records): missed "
            + "; ".join(
                f"{r[4]} {r[5]} {r[6] or 'no DOB'} [{r[7] or 'as truth'}] "
                f"rank {rank.get((r[0], r[1], r[2]), 'none')}"
                for r in missed
            )
        )
    return held, len(records), failures


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> int:
    persons = int(os.environ.get("BENCH_PERSONS", "1000000"))
    given = os.environ.get("BENCH_SEARCH_ESTATE")
    print(
        f"person search at {persons:,} persons (SQLite): p95 < {TARGET_P95_MS:.0f} ms over "
        f"{QUERIES:,} common names, recall >= {TARGET_RECALL:.0%} of humans whole in the first "
        f"(records + {SLACK})"
    )
    work = Path(tempfile.mkdtemp(prefix="continuity-bench-search-"))
    try:
        estate = Path(given) if given else work / "estate"
        if not given and not generate_estate(estate, persons):
            return 1
        env = bundled_env(estate, f"sqlite:///{estate / 'target.sqlite'}", work / "ledger.sqlite")
        built = continuity("search", "--reindex", "--project", str(PROJECT), env=env)
        if built.returncode != 0:
            print(built.output[-2000:])
            return 1
        summary = [line for line in built.output.splitlines() if "index built" in line]
        print(f"  index: {built.seconds:.1f} s, peak {built.peak_rss_mb:.0f} MB")
        print(f"    {summary[-1].strip() if summary else built.output[-300:]}")

        from continuity.project import load_project
        from continuity.search import Searcher

        project = load_project(PROJECT, {**os.environ, **env})
        truth = sqlite3.connect(estate / "truth.sqlite")
        with Searcher(project) as searcher:
            seconds, shown = _latency(searcher, truth)
            p50, p95, p99 = (_percentile(seconds, s) * 1000 for s in (0.5, 0.95, 0.99))
            print(
                f"  latency over {len(seconds):,} queries: p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
                f"p99 {p99:.1f} ms  max {max(seconds) * 1000:.1f} ms  ({shown:,} candidates shown)"
            )
            held, asked, failures = _recall(searcher, truth)
        truth.close()
        share = held / asked if asked else 0.0
        print(
            f"  recall: {held}/{asked} humans whole in the first (records + {SLACK}): {share:.1%}"
        )
        for line in failures[:10]:
            print(line)
        ok = p95 < TARGET_P95_MS and share >= TARGET_RECALL
        print(f"  {'MET' if ok else 'NOT MET'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
