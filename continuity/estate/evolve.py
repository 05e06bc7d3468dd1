"""An estate that lives: ``continuity estate evolve DIR --days N`` (docs/estate.md).

The systems being migrated stay live for months of rehearsal waves. An *evolution* is a stream
of what a live system takes in ``days`` days: new PoliceWorks crimes (with new and known people,
bail and safeguarding referrals), outcomes recorded on open crimes, new warnings on people and
firearms certificates on premises, dates of birth corrected at source, legacy duplicate
nominals deleted (their links moved to the original), new intelligence and reviews of it.

The state of a chunk after evolutions 1..n is ``generate_chunk`` followed by each evolution in
turn, each from its own random stream, so it is reproducible in any order or process. Records
that came with an evolution draw their spellings from streams of their own (see
``Chunk.born_crimes``), so every record that was already there renders exactly as before: the
difference between a chunk rendered before and after the new evolution is what changed.
``evolve_estate`` writes that difference into every database: the legacy system, PoliceWorks,
the ideal target (what a perfect migration now leaves, deletions recorded in
``migration_deletion``) and the ground truth.

The evolved estate's records are dated after the estate's as-of date, which stays the date its
rules (MoPI review dates, warnings in force) are judged at.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import MetaData, Table

from continuity.domain.connect import MYSQL_FAMILY, check_reachable, engine_for, redact
from continuity.domain.errors import ContinuityError, EstateError
from continuity.estate import render, vocab
from continuity.estate.generate import METADATA, _chunks
from continuity.estate.index import ChunkIndex
from continuity.estate.schemas import KEYS
from continuity.estate.truth import (
    AS_OF,
    CHUNK_HUMANS,
    Chunk,
    Human,
    Intel,
    Rng,
    Warning,
    _add_years,
    _new_crime,
    _pnc,
    crime_roles,
    generate_chunk,
)

#: Expected events per 1,000 humans and day (a force of 2.8 million records about 1,000 crimes
#: a day: 0.36 per 1,000 people).
RATES = {
    "new_crimes": 0.40,
    "outcomes": 0.30,
    "warnings": 0.10,
    "premises_firearms": 0.01,
    "corrected_dobs": 0.06,
    "deleted_duplicates": 0.03,
    "intelligence": 0.15,
    "intelligence_reviewed": 0.10,
}
#: People born of an evolution get ids above every generated one (``hid`` of chunk humans).
NEW_HID_BASE = 1_000_000_000
#: Share of a new crime's people not known to either system before.
NEW_PERSON_SHARE = 0.35
SIDES = ("legacy", "policeworks", "target", "truth")


@dataclass(frozen=True)
class Evolution:
    """One ``estate evolve``: the ``step``-th, ``days`` days from ``first_day``."""

    step: int
    seed: int
    days: int
    first_day: dt.date

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Evolution:
        return cls(
            int(d["step"]), int(d["seed"]), int(d["days"]), dt.date.fromisoformat(d["first_day"])
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "first_day": self.first_day.isoformat()}


def _count(rng: Rng, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _day(rng: Rng, e: Evolution) -> dt.date:
    return e.first_day + dt.timedelta(days=rng.randrange(e.days))


def evolve_chunk(chunk: Chunk, e: Evolution, events: dict[str, int] | None = None) -> None:
    """Apply evolution ``e`` to ``chunk`` in place; count what happened into ``events``."""
    rng = Rng(f"continuity-evolve:{e.seed}:{e.step}:{chunk.index}")
    scale = len(chunk.humans) / CHUNK_HUMANS * e.days
    done = events if events is not None else {}

    def happened(kind: str) -> None:
        done[kind] = done.get(kind, 0) + 1

    # Outcomes on crimes open before this evolution (a crime a MoPI rule would dispose of once
    # closed stays open: disposal is the exclusion rules' business, not a live system's).
    open_crimes = [
        c
        for c in chunk.crimes
        if c.in_policeworks and c.status == "OPEN" and c.review_date >= AS_OF
    ]
    for _ in range(_count(rng, RATES["new_crimes"] * scale)):
        if _new_pw_crime(chunk, rng, e):
            happened("new_crimes")

    for _ in range(min(len(open_crimes), _count(rng, RATES["outcomes"] * scale))):
        c = open_crimes.pop(rng.randrange(len(open_crimes)))
        c.status = "CLOSED"
        c.outcome = rng.choice(vocab.OUTCOME_CODES)
        c.outcome_date = max(_day(rng, e), c.recorded.date())
        happened("outcomes")

    # New warnings on people (a code they do not hold yet), firearms on premises.
    for _ in range(_count(rng, RATES["warnings"] * scale)):
        h = chunk.humans[rng.randrange(len(chunk.humans))]
        held = {w.code for w in h.warnings}
        codes = [c for c in ("FI", "VI", "WE", "SU") if c not in held]
        if not codes:
            continue
        code = rng.choice(codes)
        start = _day(rng, e)
        h.warnings.append(
            Warning(
                code,
                start,
                _add_years(start, 1 + rng.randrange(3)),
                None,
                code == "FI" and rng.random() < 0.2,
            )
        )
        happened("warnings")
    idx = ChunkIndex(chunk)
    premises = [
        p
        for pid in sorted(idx.location_key)
        if (p := idx.place[pid]).firearms is None and p.uprn is not None
    ]
    for _ in range(min(len(premises), _count(rng, RATES["premises_firearms"] * scale))):
        p = premises.pop(rng.randrange(len(premises)))
        start = _day(rng, e)
        p.firearms = Warning("FI", start, _add_years(start, 5), None, rng.random() < 0.3)
        happened("premises_firearms")

    # Corrections and deletions at source, chosen among the records as they now stand.
    wrong = [
        r.key
        for recs in (*idx.legacy_records, *idx.pw_records)
        for r in recs
        if "dob" in r.variant and r.key not in chunk.corrected
    ]
    for _ in range(min(len(wrong), _count(rng, RATES["corrected_dobs"] * scale))):
        chunk.corrected.add(wrong.pop(rng.randrange(len(wrong))))
        happened("corrected_dobs")
    duplicates = [r.key for recs in idx.legacy_records for r in recs[1:]]
    for _ in range(min(len(duplicates), _count(rng, RATES["deleted_duplicates"] * scale))):
        chunk.deleted.add(duplicates.pop(rng.randrange(len(duplicates))))
        happened("deleted_duplicates")

    # Intelligence: new reports on people PoliceWorks holds, reviews of those already waiting.
    known = [hi for hi, recs in enumerate(idx.pw_records) if recs]
    waiting = [i for i in chunk.intel if i.review_state == "AWAITING_REVIEW"]
    base = chunk.index * CHUNK_HUMANS
    for _ in range(_count(rng, RATES["intelligence"] * scale)):
        if not known or len(chunk.intel) >= CHUNK_HUMANS:
            break  # the chunk's intelligence ids are used up
        day = _day(rng, e)
        chunk.intel.append(
            Intel(
                iid=base + len(chunk.intel),
                human=known[rng.randrange(len(known))],
                grading=f"{rng.choice('123')}{rng.choice('ABCDE')}{rng.choice('PC')}",
                created=dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60))),
                review_state="AWAITING_REVIEW",
                summary=rng.choice(vocab.MO_PHRASES).capitalize(),
            )
        )
        happened("intelligence")
    for _ in range(min(len(waiting), _count(rng, RATES["intelligence_reviewed"] * scale))):
        waiting.pop(rng.randrange(len(waiting))).review_state = "REVIEWED"
        happened("intelligence_reviewed")


def _new_pw_crime(chunk: Chunk, rng: Rng, e: Evolution) -> bool:
    """A crime recorded in PoliceWorks during ``e``, at a place the chunk knows, with people."""
    k = len(chunk.crimes)
    if k >= 2 * CHUNK_HUMANS or not chunk.places:
        return False  # the chunk's crime ids are used up
    places = chunk.places
    day = _day(rng, e)
    recorded = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)))
    crime = _new_crime(
        rng,
        chunk.index * CHUNK_HUMANS * 2 + k,
        recorded,
        places,
        lambda: places[rng.randrange(len(places))],
    )
    # Newly recorded: open, with an officer in charge, reviewed years from now.
    crime.status, crime.outcome, crime.outcome_date = "OPEN", None, None
    crime.oic = crime.oic or f"PC {rng.randrange(1000, 30000)}"
    crime.legal_hold = False
    if crime.review_date < day:
        crime.review_date = _add_years(day, 6)
    ci = len(chunk.crimes)
    chunk.crimes.append(crime)
    seen: set[int] = set()
    for role in crime_roles(crime, rng):
        if rng.random() < NEW_PERSON_SHARE:
            hi = _new_human(chunk, rng, day)
        else:
            hi = rng.randrange(len(chunk.humans))
        if hi in seen:
            continue
        seen.add(hi)
        crime.links.append((hi, role))
        chunk.humans[hi].links.append((ci, role))
        if role == "SUSPECT" and rng.random() < 0.4:
            crime.bail.append(
                (
                    hi,
                    rng.choice(vocab.BAIL_CONDITIONS),
                    day + dt.timedelta(days=rng.randrange(1, 91)),
                )
            )
        if (
            role == "VICTIM"
            and (crime.child_protection or crime.domestic_abuse)
            and rng.random() < 0.6
        ):
            crime.referrals.append(
                (
                    hi,
                    rng.choice(vocab.SAFEGUARDING_AGENCIES),
                    "SUBMITTED",
                    recorded + dt.timedelta(hours=rng.randrange(1, 72)),
                )
            )
    return True


def _new_human(chunk: Chunk, rng: Rng, day: dt.date) -> int:
    """A person neither system knew, first met in a crime on ``day``; their index in the chunk."""
    born = sum(1 for h in chunk.humans if h.hid >= NEW_HID_BASE)
    gender = "M" if rng.random() < 0.5 else "F"
    pool = vocab.MALE_FORENAMES if gender == "M" else vocab.FEMALE_FORENAMES
    h = Human(
        NEW_HID_BASE + chunk.index * CHUNK_HUMANS * 10 + born,
        rng.choice(pool),
        rng.choice(vocab.MIDDLE_NAMES) if rng.random() < 0.3 else None,
        rng.choice(vocab.SURNAMES),
        gender,
    )
    age = rng.randrange(14, 66)
    h.dob = day - dt.timedelta(days=age * 365 + rng.randrange(365))
    if rng.random() < 0.5:
        h.pnc = _pnc(rng, max(h.dob.year + 16, 1980))
    homes = [p.pid for p in chunk.places]
    h.home = homes[rng.randrange(len(homes))] if homes and rng.random() < 0.9 else None
    chunk.humans.append(h)
    return len(chunk.humans) - 1


def chunk_at(seed: int, index: int, size: int, evolutions: list[Evolution]) -> Chunk:
    """Chunk ``index`` after ``evolutions``."""
    chunk = generate_chunk(seed, index, size)
    for e in evolutions:
        evolve_chunk(chunk, e)
    return chunk


# --- writing the difference --------------------------------------------------------------------

Rows = dict[str, list[tuple[Any, ...]]]


def _render(chunk: Chunk, zero_dates: bool) -> dict[str, Rows]:
    idx = ChunkIndex(chunk)
    return {
        "legacy": render.render_legacy(chunk, idx),
        "policeworks": render.render_policeworks(chunk, idx, zero_dates),
        "target": render.render_ideal(chunk, idx),
        "truth": render.render_truth(chunk, idx),
    }


def _key_positions(table: Table) -> list[int]:
    """A table's key: its primary key, else the key the estate declares (``schemas.KEYS``)."""
    pk = [i for i, c in enumerate(table.columns) if c.primary_key]
    if pk:
        return pk
    names = [c.name for c in table.columns]
    declared = KEYS.get(table.name)
    return [names.index(k) for k in declared] if declared else list(range(len(names)))


@dataclass
class TableChange:
    """Rows of one table a chunk gained, changed and lost (changed rows in their new form).

    Source tables declare keys without enforcing them, and the estate holds duplicate keys on
    purpose: rows sharing a key change together (``replaced``: every row of the key deleted,
    the new ones inserted).
    """

    inserted: list[tuple[Any, ...]] = field(default_factory=list)
    updated: list[tuple[Any, ...]] = field(default_factory=list)
    deleted: list[tuple[Any, ...]] = field(default_factory=list)  # keys
    replaced: list[tuple[Any, ...]] = field(default_factory=list)  # keys, rows in ``inserted``


def diff_rows(table: Table, old: list[tuple[Any, ...]], new: list[tuple[Any, ...]]) -> TableChange:
    at = _key_positions(table)
    before: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for r in old:
        before.setdefault(tuple(r[i] for i in at), []).append(r)
    after: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for r in new:
        after.setdefault(tuple(r[i] for i in at), []).append(r)
    change = TableChange()
    for k, rows in after.items():
        was = before.pop(k, None)
        if was is None:
            change.inserted += rows
        elif was != rows:
            if len(was) == 1 and len(rows) == 1:
                change.updated += rows
            else:
                change.replaced.append(k)
                change.inserted += rows
    change.deleted = list(before)
    return change


def _chunk_change(
    seed: int, index: int, size: int, done: list[Evolution], new: Evolution, zero_dates: bool
) -> tuple[dict[str, dict[str, TableChange]], dict[str, int]]:
    chunk = chunk_at(seed, index, size, done)
    before = _render(chunk, zero_dates)
    events: dict[str, int] = {}
    evolve_chunk(chunk, new, events)
    after = _render(chunk, zero_dates)
    changes: dict[str, dict[str, TableChange]] = {}
    for side in SIDES:
        md = METADATA[side]
        for name in set(before[side]) | set(after[side]):
            change = diff_rows(
                md.tables[name], before[side].get(name, []), after[side].get(name, [])
            )
            if change.inserted or change.updated or change.deleted or change.replaced:
                changes.setdefault(side, {})[name] = change
    return changes, events


def _changes(
    seed: int,
    chunks: list[tuple[int, int]],
    done: list[Evolution],
    new: Evolution,
    zero_dates: bool,
) -> list[tuple[dict[str, dict[str, TableChange]], dict[str, int]]]:
    return [_chunk_change(seed, i, n, done, new, zero_dates) for i, n in chunks]


def _by_key(columns: list[Any]) -> list[Any]:
    """Conditions naming one row by ``k_<column>`` parameters; a declared key part may be null
    in a source table, and null matches null."""
    return [c.is_not_distinct_from(sa.bindparam(f"k_{c.name}")) for c in columns]


class _Writer:
    """One database's share of the difference, applied in one transaction at the end."""

    def __init__(self, url: str, metadata: MetaData) -> None:
        self.engine = engine_for(url)
        self.metadata = metadata
        self.changes: dict[str, TableChange] = {}

    def add(self, found: dict[str, TableChange]) -> None:
        for name, change in found.items():
            mine = self.changes.setdefault(name, TableChange())
            mine.inserted += change.inserted
            mine.updated += change.updated
            mine.deleted += change.deleted
            mine.replaced += change.replaced

    def apply(self) -> dict[str, dict[str, int]]:
        tables = self.metadata.sorted_tables
        counts: dict[str, dict[str, int]] = {}
        with self.engine.begin() as conn:
            if self.engine.dialect.name in MYSQL_FAMILY:
                conn.exec_driver_sql(  # zero dates are a PoliceWorks-on-MariaDB quirk
                    "SET SESSION sql_mode = "
                    "'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
                )
            for table in reversed(tables):  # children lose rows before their parents
                change = self.changes.get(table.name)
                gone = (change.deleted + change.replaced) if change else []
                if gone:
                    cols = [table.columns[i] for i in _key_positions(table)]
                    conn.execute(
                        table.delete().where(*_by_key(cols)),
                        [{f"k_{c.name}": v for c, v in zip(cols, k, strict=True)} for k in gone],
                    )
            for table in tables:  # parents gain rows before their children
                change = self.changes.get(table.name)
                if change is None:
                    continue
                names = [c.name for c in table.columns]
                if change.updated:
                    at = _key_positions(table)
                    rest = [i for i in range(len(names)) if i not in at]
                    stmt = (
                        table.update()
                        .where(*_by_key([table.columns[i] for i in at]))
                        .values({names[i]: sa.bindparam(f"v_{names[i]}") for i in rest})
                    )
                    conn.execute(
                        stmt,
                        [
                            {
                                **{f"k_{names[i]}": row[i] for i in at},
                                **{f"v_{names[i]}": row[i] for i in rest},
                            }
                            for row in change.updated
                        ],
                    )
                if change.inserted:
                    conn.execute(
                        table.insert(),
                        [dict(zip(names, row, strict=True)) for row in change.inserted],
                    )
                counts[table.name] = {
                    "inserted": len(change.inserted),
                    "updated": len(change.updated),
                    "deleted": len(change.deleted),
                }
        return counts

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class EvolveSummary:
    evolution: Evolution
    events: dict[str, int]
    changes: dict[str, dict[str, dict[str, int]]]  # side -> table -> inserted/updated/deleted
    seconds: float


def evolve_estate(
    out: Path,
    days: int,
    urls: dict[str, str],
    seed: int | None = None,
    processes: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvolveSummary:
    """Evolve the estate in ``out`` by ``days`` days: write what changed into every database.

    ``urls`` names the legacy, PoliceWorks, target and truth databases. Nothing is written
    until every chunk's difference is known; each database then takes its share in one
    transaction, and ``estate.json`` records the evolution last. The damaged target (``--defects``)
    is left as it was and no longer listed: its defects describe the estate before evolution.
    """
    started = time.perf_counter()
    if days < 1:
        raise EstateError(f"--days must be at least 1 (got {days})")
    manifest = out / "estate.json"
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        persons, estate_seed = int(info["persons"]), int(info["seed"])
    except (OSError, ValueError, KeyError) as exc:
        raise EstateError(
            f"{manifest}: not an estate made by `continuity estate generate` ({exc})"
        ) from exc
    if "evolving" in info:
        raise EstateError(
            f"{manifest}: an earlier estate evolve stopped part-way (evolution "
            f"{info['evolving'].get('step')}): its databases may disagree; generate it again"
        )
    done = [Evolution.from_json(d) for d in info.get("evolutions", [])]
    first = (
        done[-1].first_day + dt.timedelta(days=done[-1].days)
        if done
        else AS_OF + dt.timedelta(days=1)
    )
    new = Evolution(len(done) + 1, estate_seed if seed is None else seed, days, first)
    zero_dates = False
    for side in SIDES:
        engine = engine_for(urls[side])
        try:
            check_reachable(engine)
            missing = [t for t in METADATA[side].tables if not sa.inspect(engine).has_table(t)]
            if missing and not (side == "target" and missing == ["migration_deletion"]):
                raise EstateError(
                    f"{side} database {redact(urls[side])} holds no estate (no {missing[0]})"
                )
            if missing:  # made before deletions were recorded
                METADATA[side].tables["migration_deletion"].create(engine)
            if side == "policeworks":
                zero_dates = engine.dialect.name in MYSQL_FAMILY
        finally:
            engine.dispose()
    chunks = _chunks(persons)
    # Each database takes its share in a transaction of its own: until all have, the manifest
    # says an evolution is under way, and a second evolve refuses the estate.
    manifest.write_text(json.dumps({**info, "evolving": new.as_json()}, indent=1) + "\n")
    writers = {side: _Writer(urls[side], METADATA[side]) for side in SIDES}
    events: dict[str, int] = {}
    changes: dict[str, dict[str, dict[str, int]]] = {}
    try:
        for found, counted in _in_parallel(
            estate_seed, chunks, done, new, zero_dates, processes, on_progress
        ):
            for side, tables in found.items():
                writers[side].add(tables)
            for k, v in counted.items():
                events[k] = events.get(k, 0) + v
        for side, w in writers.items():
            changes[side] = w.apply()
    except BaseException as exc:
        if not changes:  # nothing written: the estate is as it was
            manifest.write_text(json.dumps(info, indent=1) + "\n")
        if isinstance(exc, ContinuityError | KeyboardInterrupt | SystemExit):
            raise
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EstateError(f"estate evolve failed: {type(exc).__name__}: {first_line}") from exc
    finally:
        for w in writers.values():
            w.close()
    info["evolutions"] = [*(d.as_json() for d in done), new.as_json()]
    info["evolved_to"] = (new.first_day + dt.timedelta(days=days - 1)).isoformat()
    if "damaged" in info.get("databases", {}):
        info.setdefault("stale", {})["damaged"] = info["databases"].pop("damaged")
    counts = info.setdefault("counts", {})
    for side in SIDES:
        counts[side] = _row_counts(urls[side], METADATA[side])
    manifest.write_text(json.dumps(info, indent=1) + "\n")
    return EvolveSummary(new, events, changes, time.perf_counter() - started)


def _row_counts(url: str, metadata: MetaData) -> dict[str, int]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _in_parallel(
    seed: int,
    chunks: list[tuple[int, int]],
    done: list[Evolution],
    new: Evolution,
    zero_dates: bool,
    processes: int,
    on_progress: Callable[[int, int], None] | None,
) -> Iterator[tuple[dict[str, dict[str, TableChange]], dict[str, int]]]:
    """Each chunk's difference, in chunk order, computed by ``processes`` workers."""
    batches = [chunks[i : i + 8] for i in range(0, len(chunks), 8)]
    finished = 0
    if processes < 2 or len(batches) < 2:
        for batch in batches:
            yield from _changes(seed, batch, done, new, zero_dates)
            finished += len(batch)
            if on_progress:
                on_progress(finished, len(chunks))
        return
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_changes, seed, b, done, new, zero_dates) for b in batches]
        for batch, future in zip(batches, futures, strict=True):
            yield from future.result()
            finished += len(batch)
            if on_progress:
                on_progress(finished, len(chunks))
