"""Issue #3: reconcile a 1,000,000-record class (crimes, with its normalisers), SQLite sources
-> PostgreSQL target, at >= 250,000 source records/s (400,000 aimed for), peak memory < 1 GB,
and at least 3x faster than datacompy comparing the same two tables loaded from the same
databases.

``BENCH_RECONCILE_PERSONS`` sizes the estate (default 1,000,000 persons, which gives about
1,000,000 crime records across the legacy system and PoliceWorks). The PostgreSQL server is
``CONTINUITY_PG_URL``'s; a scratch database is made there and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from measure import continuity, run
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REQUIRED_RATE = 250_000
AIMED_RATE = 400_000
TARGET_PEAK_MB = 1024.0
TARGET_RATIO = 3.0
PG_URL = os.environ.get("CONTINUITY_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# datacompy's side: both tables read whole into pandas, compared on the crime reference.
DATACOMPY = """
import sys, pandas as pd
from datacompy.pandas import PandasCompare as Compare
from sqlalchemy import create_engine
legacy, pw, target = sys.argv[1:4]
cols = "crime_reference, ho_offence_code, committed_from, committed_to, reported_at, " \\
       "recorded_at, mo_text, status, officer_in_charge, outcome_code, outcome_date, " \\
       "domestic_abuse, hate_strand, child_protection, division"
src = pd.concat([
    pd.read_sql('SELECT "CRIME_NO" AS crime_reference, "OFFENCE_CODE" AS ho_offence_code, '
                '"COMMITTED_FROM" AS committed_from, "COMMITTED_TO" AS committed_to, '
                '"REPORTED" AS reported_at, "RECORDED" AS recorded_at, "MO_TEXT" AS mo_text, '
                '"STATUS" AS status, "OIC" AS officer_in_charge, "OUTCOME" AS outcome_code, '
                '"OUTCOME_DATE" AS outcome_date, "DA_FLAG" AS domestic_abuse, '
                '"HATE_STRAND" AS hate_strand, "CP_FLAG" AS child_protection, '
                '"DIVISION" AS division FROM "CRIME"', create_engine(legacy)),
    pd.read_sql("SELECT crime_reference, ho_offence_code, committed_from_utc AS committed_from, "
                "committed_to_utc AS committed_to, reported_utc AS reported_at, "
                "recorded_utc AS recorded_at, mo_text, status, oic AS officer_in_charge, "
                "outcome_code, outcome_date, da_flag AS domestic_abuse, hate_strand, "
                "cp_flag AS child_protection, division FROM pw_occurrence", create_engine(pw)),
])
tgt = pd.read_sql(f"SELECT {cols} FROM event", create_engine(target))
cmp = Compare(src, tgt, join_columns="crime_reference", df1_name="source",
                        df2_name="target")
print(len(src), len(tgt), cmp.matches(), len(cmp.all_mismatch()))
"""


def main() -> int:
    persons = int(os.environ.get("BENCH_RECONCILE_PERSONS", "1000000"))
    admin_url = make_url(PG_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ct_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    target_url = admin_url.set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="continuity-bench-"))
    try:
        return _bench(persons, work, target_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _bench(persons: int, work: Path, target_url: str) -> int:
    estate = work / "estate"
    made = continuity(
        "estate",
        "generate",
        "--out",
        str(estate),
        "--persons",
        str(persons),
        "--seed",
        "5",
        "--target-url",
        target_url,
    )
    if made.returncode != 0:
        print(made.output)
        return 1
    info = json.loads((estate / "estate.json").read_text())
    records = info["counts"]["legacy"]["CRIME"] + info["counts"]["policeworks"]["pw_occurrence"]
    print(
        f"reconcile crimes class, SQLite sources -> PostgreSQL target: {records:,} source "
        f"records (estate of {persons:,} persons made in {made.seconds:.0f} s)"
    )
    ours = continuity(
        "reconcile",
        "--estate",
        str(estate),
        "--class",
        "crimes",
        "--show",
        "0",
        "--store",
        f"sqlite:///{work / 'work.sqlite'}",
        env={"CONTINUITY_FINGERPRINT_KEY": "benchmark"},
    )
    if ours.returncode != 0:
        print(ours.output)
        return 1
    dbs = info["databases"]
    theirs = run([sys.executable, "-c", DATACOMPY, dbs["legacy"], dbs["policeworks"], target_url])
    if theirs.returncode != 0:
        print(theirs.output[-2000:])
        return 1
    rate = records / ours.seconds
    ratio = theirs.seconds / ours.seconds
    ok = rate >= REQUIRED_RATE and ours.peak_rss_mb < TARGET_PEAK_MB and ratio >= TARGET_RATIO
    print(
        f"  continuity: {ours.seconds:6.1f} s  {rate:>10,.0f} records/s  "
        f"peak {ours.peak_rss_mb:6.0f} MB  (required {REQUIRED_RATE:,}/s, aimed "
        f"{AIMED_RATE:,}/s, < {TARGET_PEAK_MB:.0f} MB)"
    )
    print(
        f"  datacompy:  {theirs.seconds:6.1f} s  {records / theirs.seconds:>10,.0f} records/s  "
        f"peak {theirs.peak_rss_mb:6.0f} MB  (no normalisers: it reports every format quirk)"
    )
    print(
        f"  continuity is {ratio:.1f}x datacompy's speed (required {TARGET_RATIO:.0f}x)"
        f"{'  MET' if ok else '  NOT MET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
