"""A person no crosswalk entry leads to is MISSING, with the target persons it may have become.

Planted on a copy of the small estate's ideal target: one nominal loses its crosswalk entry (its
target person stays), and that person's date of birth is stored with day and month swapped.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

from reconcile.engine import Connections, reconcile_class
from reconcile.model import Placement
from reconcile.spec import bundled_specs_dir, load_spec


def test_a_missing_person_comes_with_its_likely_target_person(
    small_estate: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.sqlite"
    shutil.copy(small_estate / "target.sqlite", target)
    with sqlite3.connect(target) as conn:
        # A legacy nominal that is its person's only record, with a full date of birth that
        # still reads as a date when day and month are swapped.
        nominal, person, dob = conn.execute(
            "SELECT x.source_key, p.person_id, p.dob FROM migration_crosswalk x "
            "JOIN person p ON p.person_id = x.target_key "
            "WHERE x.source_table = 'NOMINAL' AND x.rule = 'anchor' AND NOT p.dob_estimated "
            "AND CAST(substr(p.dob, 9, 2) AS INTEGER) <= 12 "
            "AND substr(p.dob, 6, 2) <> substr(p.dob, 9, 2) "
            "AND (SELECT COUNT(*) FROM migration_crosswalk y WHERE y.target_key = p.person_id) = 1 "
            "LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM migration_crosswalk WHERE source_key = ?", (nominal,))
        swapped = f"{dob[:4]}-{dob[8:10]}-{dob[5:7]}"
        conn.execute("UPDATE person SET dob = ? WHERE person_id = ?", (swapped, person))
    info = json.loads((small_estate / "estate.json").read_text())
    dbs = info["databases"]
    spec = load_spec(bundled_specs_dir() / "persons.yml")
    result = reconcile_class(
        spec,
        Connections(
            {"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}, f"sqlite:///{target}"
        ),
        dt.date.fromisoformat(info["as_of"]),
    )
    missing = next(f for f in result.findings if f.key == nominal)
    assert missing.placement is Placement.MISSING
    assert missing.candidates, "the person is still in the target: it must be offered"
    best = missing.candidates[0]
    assert best["target_key"] == person and 0.75 <= best["score"] < 1.0  # swapped DOB costs
    orphan = next(f for f in result.findings if f.key == person)
    assert orphan.placement is Placement.ORPHAN
