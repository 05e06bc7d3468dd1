"""Planted defects and decoys: a damaged copy of the ideal target, and its manifest.

Each defect kind is planted once, on the first chunk that has a suitable record not already
touched by another defect. Every row-level change is written to the manifest, so that
``ideal - changes == damaged`` can be checked, together with what reconciliation is expected to
report (``expect``) and, for decoys, why they are not losses.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from continuity import target_schema
from continuity.domain.dates import dob_evidence_agrees, dob_text
from continuity.domain.keys import target_key
from continuity.domain.names import name_key
from continuity.estate.index import LEGACY, POLICEWORKS, ChunkIndex
from continuity.estate.render import ROLE_LETTER, Rows, crime_disposition
from continuity.estate.truth import AS_OF, Chunk, legacy_crime_no

COLUMNS = {t.name: [c.name for c in t.columns] for t in target_schema.metadata.sorted_tables}
PRIMARY_KEYS = {
    t.name: [c.name for c in t.primary_key.columns] for t in target_schema.metadata.sorted_tables
}

DEFECT_KINDS = (
    "person_deleted",
    "dob_altered",
    "different_people_merged",
    "location_firearms_warning_dropped",
    "person_firearms_warning_end_dated",
    "flagged_location_missing",
    "crime_deleted",
    "offence_code_changed",
    "crime_duplicated",
    "victim_link_removed",
    "victim_turned_witness",
    "mo_text_truncated",
    "diacritics_mangled",
    "crosswalk_points_at_wrong_record",
    "orphan_record",
    "open_investigation_closed",
    "flagged_location_unmatched",
    "intelligence_marked_reviewed",
    "bail_return_date_moved",
    "safeguarding_referral_dropped",
)
#: Fields reconcile still compares on a legacy copy of a crime PoliceWorks took over in 2019
#: (the bundled specs' ``newer_copy.compare``; a test keeps the two in step).
COPY_COMPARED = {
    "crimes": frozenset(
        {
            "crime_reference",
            "committed_from",
            "committed_to",
            "reported_at",
            "recorded_at",
            "location",
            "domestic_abuse",
            "hate_strand",
            "child_protection",
            "division",
        }
    ),
    "open_investigations": frozenset({"crime_reference"}),
}
#: The persons spec's compared fields, in its order.
PERSON_FIELDS = ("forename", "middle_names", "surname", "dob", "gender", "pnc_id")
DECOY_KINDS = (
    "case_and_whitespace",
    "pilot_records",
    "reference_data",
    "declared_merges",
    "mopi_exclusions",
    "legal_hold_retained",
    "crosswalked_codes",
    "utc_timestamps",
)


def jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return value


class Damage:
    """Row edits on one chunk's copy of the ideal target, recorded as manifest changes."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.changes: list[dict[str, Any]] = []

    def _key(self, table: str, row: tuple[Any, ...]) -> dict[str, Any]:
        cols = COLUMNS[table]
        return {c: jsonable(row[cols.index(c)]) for c in PRIMARY_KEYS[table]}

    def delete(self, table: str, match: Callable[[tuple[Any, ...]], bool]) -> list[tuple[Any, ...]]:
        kept: list[tuple[Any, ...]] = []
        gone: list[tuple[Any, ...]] = []
        for row in self.rows.get(table, []):
            (gone if match(row) else kept).append(row)
        self.rows[table] = kept
        for row in gone:
            self.changes.append({"table": table, "op": "delete", "key": self._key(table, row)})
        return gone

    def insert(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows[table].append(row)
        cols = COLUMNS[table]
        self.changes.append(
            {
                "table": table,
                "op": "insert",
                "key": self._key(table, row),
                "row": {c: jsonable(v) for c, v in zip(cols, row, strict=True)},
            }
        )

    def update(self, table: str, match: Callable[[tuple[Any, ...]], bool], **new: Any) -> None:
        cols = COLUMNS[table]
        rows = self.rows[table]
        for i, row in enumerate(rows):
            if match(row):
                values = list(row)
                for col, value in new.items():
                    values[cols.index(col)] = value
                rows[i] = tuple(values)
                self.changes.append(
                    {
                        "table": table,
                        "op": "update",
                        "key": self._key(table, row),
                        "set": {c: jsonable(v) for c, v in new.items()},
                    }
                )


def col(table: str, name: str) -> int:
    return COLUMNS[table].index(name)


def column_is(table: str, column: str, value: Any) -> Callable[[tuple[Any, ...]], bool]:
    """A row predicate: ``table``'s ``column`` equals ``value``."""
    i = col(table, column)
    return lambda row: bool(row[i] == value)


def mojibake(text: str) -> str:
    """What a UTF-8 string looks like after a load that read it as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


class DefectPlanter:
    """Plants every defect kind once across the chunks it is given, in chunk order."""

    def __init__(self) -> None:
        self.pending = list(DEFECT_KINDS)
        self.defects: list[dict[str, Any]] = []
        self.decoys: list[dict[str, Any]] = []
        self._case_decoy_done = False

    def plant(self, chunk: Chunk, idx: ChunkIndex, ideal: Rows) -> Rows:
        """Return the damaged copy of one chunk's ideal rows."""
        rows: Rows = defaultdict(list, {k: list(v) for k, v in ideal.items()})
        if not self.pending and self._case_decoy_done:
            return rows
        ctx = _Context(chunk, idx, ideal, rows)
        for kind in list(self.pending):
            damage = Damage(rows)
            expect = getattr(self, f"_{kind}")(ctx, damage)
            if expect is None:
                continue
            self.pending.remove(kind)
            self.defects.append(
                {
                    "id": f"D{len(self.defects) + 1:02d}",
                    "kind": kind,
                    "chunk": chunk.index,
                    "changes": damage.changes,
                    "expect": expect,
                }
            )
        if not self._case_decoy_done:
            self._case_decoy(ctx, Damage(rows))
        return rows

    # Each planter returns the expected findings, or None when this chunk has no candidate.

    def _person_deleted(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        hi = ctx.take_simple_person()
        if hi is None:
            return None
        pk = ctx.idx.person_key[hi]
        for table in (
            "person_name",
            "person_dob",
            "person_identifier",
            "person_location",
            "event_person",
        ):
            d.delete(table, column_is(table, "person_id", pk))
        d.delete("migration_crosswalk", column_is("migration_crosswalk", "target_key", pk))
        d.delete("person", lambda r: r[0] == pk)
        return ctx.person_expect(hi, "persons", "MISSING") + ctx.link_expect(hi, "MISSING")

    def _dob_altered(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        hi = ctx.take_simple_person(with_dob=True)
        if hi is None:
            return None
        h = ctx.chunk.humans[hi]
        new = h.dob + dt.timedelta(days=400)
        d.update("person", lambda r: r[0] == ctx.idx.person_key[hi], dob=new)
        return ctx.person_expect(hi, "persons", "MIGRATED", "ALTERED", ["dob"])

    def _different_people_merged(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        a = ctx.take_simple_person(with_pnc=True)
        b = ctx.take_simple_person(with_pnc=True, other_than=a)
        if a is None or b is None:
            return None
        ka, kb = ctx.idx.person_key[a], ctx.idx.person_key[b]
        for table in ("person_name", "person_dob", "person_identifier", "person_location"):
            d.delete(table, column_is(table, "person_id", kb))
        d.delete("person", lambda r: r[0] == kb)
        a_links = {(r[0], r[2]) for r in d.rows["event_person"] if r[1] == ka}
        for row in d.delete("event_person", lambda r: r[1] == kb):
            if (row[0], row[2]) not in a_links:
                d.insert("event_person", (row[0], ka, row[2]))
        d.update(
            "migration_crosswalk",
            column_is("migration_crosswalk", "target_key", kb),
            target_key=ka,
            rule="merge:same_name_dob",
            score=91,
        )
        fields = ctx.person_differences(b, a, merged=True)
        return ctx.person_expect(b, "persons", "MERGED", "ALTERED", fields)

    def _location_firearms_warning_dropped(
        self, ctx: _Context, d: Damage
    ) -> list[dict[str, Any]] | None:
        pid = ctx.take_flagged_place(need_unused_by_events=False)
        if pid is None:
            return None
        wk = ctx.location_warning_key(pid)
        d.delete("warning_marker", lambda r: r[0] == wk)
        d.delete("migration_crosswalk", column_is("migration_crosswalk", "target_key", wk))
        return ctx.location_warning_expect(pid, "MISSING")

    def _person_firearms_warning_end_dated(
        self, ctx: _Context, d: Damage
    ) -> list[dict[str, Any]] | None:
        for hi, h in enumerate(ctx.chunk.humans):
            w = next((w for w in h.warnings if w.code == "FI" and w.end is None), None)
            if w is None or hi in ctx.used or ctx.idx.pw_first(hi) is None:
                continue
            ctx.used.add(hi)
            warning_id = ctx.idx.person_warning(hi, w)[0]  # type: ignore[index]
            d.update(
                "warning_marker",
                column_is("warning_marker", "warning_id", warning_id),
                end_date=AS_OF - dt.timedelta(days=30),
            )
            return ctx.person_warning_expect(hi, "FI", "ALTERED", ["end_date"])
        return None

    def _flagged_location_missing(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        pid = ctx.take_flagged_place(need_unused_by_events=True)
        if pid is None:
            return None
        lk = ctx.idx.location_key[pid]
        wk = ctx.location_warning_key(pid)
        d.delete("warning_marker", lambda r: r[0] == wk)
        d.delete("person_location", lambda r: r[1] == lk)
        d.delete(
            "migration_crosswalk", lambda r: r[col("migration_crosswalk", "target_key")] in (lk, wk)
        )
        d.delete("location", lambda r: r[0] == lk)
        return ctx.location_expect(pid, "MISSING") + ctx.location_warning_expect(pid, "MISSING")

    def _crime_deleted(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: not c.bail and not c.referrals)
        if ci is None:
            return None
        ek = ctx.idx.event_key[ci]
        d.delete("event_person", lambda r: r[0] == ek)
        d.delete("migration_crosswalk", column_is("migration_crosswalk", "target_key", ek))
        d.delete("event", lambda r: r[0] == ek)
        return ctx.crime_expect(ci, "crimes", "MISSING") + ctx.crime_links_expect(ci, "MISSING")

    def _offence_code_changed(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: c.offence.ho_code != "49")
        if ci is None:
            return None
        d.update("event", lambda r: r[0] == ctx.idx.event_key[ci], ho_offence_code="49")
        return ctx.crime_expect(ci, "crimes", "MIGRATED", "ALTERED", ["ho_offence_code"])

    def _crime_duplicated(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: not c.bail and not c.referrals)
        if ci is None:
            return None
        ek = ctx.idx.event_key[ci]
        copy_key = target_key("event", "defect-duplicate", ek)
        original = next(r for r in d.rows["event"] if r[0] == ek)
        d.insert("event", (copy_key, *original[1:]))
        for r in [r for r in d.rows["event_person"] if r[0] == ek]:
            d.insert("event_person", (copy_key, *r[1:]))
        copy = {"side": "target", "table": "event", "key": copy_key, "placement": "DUPLICATED"}
        # The copy's links join a crime no crosswalk entry leads to: nothing explains them.
        links = [
            {**ctx.target_link(r), "placement": "ORPHAN"}
            for r in d.rows["event_person"]
            if r[0] == copy_key
        ]
        is_open = ctx.chunk.crimes[ci].status == "OPEN"
        return [
            *ctx.crime_expect(ci, "crimes", "DUPLICATED"),
            {**copy, "class": "crimes"},
            *(ctx.crime_expect(ci, "open_investigations", "DUPLICATED") if is_open else []),
            {**copy, "class": "open_investigations"},
            *links,
        ]

    def _victim_link_removed(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: sum(1 for _, r in c.links if r == "VICTIM") == 1)
        if ci is None:
            return None
        hi = next(h for h, r in ctx.chunk.crimes[ci].links if r == "VICTIM")
        ek, pk = ctx.idx.event_key[ci], ctx.idx.person_key[hi]
        d.delete("event_person", lambda r: r == (ek, pk, "VICTIM"))
        return ctx.one_link_expect(ci, hi, "VICTIM", "MISSING")

    def _victim_turned_witness(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(
            lambda c: (
                sum(1 for _, r in c.links if r == "VICTIM") == 1
                and all(r != "WITNESS" for _, r in c.links)
            )
        )
        if ci is None:
            return None
        hi = next(h for h, r in ctx.chunk.crimes[ci].links if r == "VICTIM")
        ek, pk = ctx.idx.event_key[ci], ctx.idx.person_key[hi]
        d.delete("event_person", lambda r: r == (ek, pk, "VICTIM"))
        d.insert("event_person", (ek, pk, "WITNESS"))
        return ctx.one_link_expect(ci, hi, "VICTIM", "MIGRATED", "ALTERED", ["role"])

    def _mo_text_truncated(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: len(c.mo_text) > 60)
        if ci is None:
            return None
        text = ctx.chunk.crimes[ci].mo_text
        d.update("event", lambda r: r[0] == ctx.idx.event_key[ci], mo_text=text[: len(text) // 2])
        return ctx.crime_expect(ci, "crimes", "MIGRATED", "ALTERED", ["mo_text"])

    def _diacritics_mangled(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        hi = ctx.take_simple_person(accept=lambda h: not h.surname.isascii())
        if hi is None:
            return None
        h = ctx.chunk.humans[hi]
        d.update("person", lambda r: r[0] == ctx.idx.person_key[hi], surname=mojibake(h.surname))
        return ctx.person_expect(hi, "persons", "MIGRATED", "ALTERED", ["surname"])

    def _crosswalk_points_at_wrong_record(
        self, ctx: _Context, d: Damage
    ) -> list[dict[str, Any]] | None:
        a = ctx.take_simple_person()
        b = ctx.take_simple_person(other_than=a)
        if a is None or b is None:
            return None
        ka, kb = ctx.idx.person_key[a], ctx.idx.person_key[b]
        d.update(
            "migration_crosswalk",
            column_is("migration_crosswalk", "target_key", ka),
            target_key=kb,
        )
        fields = ctx.person_differences(a, b, merged=False)
        orphan = {
            "side": "target",
            "class": "persons",
            "table": "person",
            "key": ka,
            "placement": "ORPHAN",
        }
        # a's links stay on a's old person, which no crosswalk entry now leads to: each source
        # link is missing, and each target link is an orphan.
        return [
            *ctx.person_expect(a, "persons", "MIGRATED", "ALTERED", fields),
            orphan,
            *ctx.link_expect(a, "MISSING"),
            *(
                {**ctx.target_link(r), "placement": "ORPHAN"}
                for r in d.rows["event_person"]
                if r[1] == ka
            ),
        ]

    def _orphan_record(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ok = target_key("person", "defect-orphan", str(ctx.chunk.index))
        d.insert(
            "person",
            (
                ok,
                "Nobody",
                None,
                "Known",
                dt.date(1980, 5, 17),
                False,
                "M",
                None,
                "MIGRATION",
                3,
                AS_OF + dt.timedelta(days=100),
            ),
        )
        d.insert("person_name", (ok, 1, "PRIMARY", "Nobody", "Known", "legacy"))
        return [
            {
                "side": "target",
                "class": "persons",
                "table": "person",
                "key": ok,
                "placement": "ORPHAN",
            }
        ]

    def _open_investigation_closed(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: c.status == "OPEN" and c.oic is not None and not c.bail)
        if ci is None:
            return None
        d.update(
            "event",
            lambda r: r[0] == ctx.idx.event_key[ci],
            status="CLOSED",
            outcome_code="OC18",
            outcome_date=AS_OF,
        )
        fields = ["status", "outcome_code", "outcome_date"]
        return ctx.crime_expect(
            ci, "open_investigations", "MIGRATED", "ALTERED", fields
        ) + ctx.crime_expect(ci, "crimes", "MIGRATED", "ALTERED", fields)

    def _flagged_location_unmatched(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        # Legacy-only: a PoliceWorks location with a UPRN would also lose it (locations class).
        pid = ctx.take_flagged_place(need_unused_by_events=False, legacy_only=True)
        if pid is None:
            return None
        lk = ctx.idx.location_key[pid]
        d.update(
            "location",
            lambda r: r[0] == lk,
            uprn=None,
            match_status="UNMATCHED",
            easting=None,
            northing=None,
        )
        return ctx.location_warning_expect(pid, "MIGRATED", "ALTERED", ["address_matched"])

    def _intelligence_marked_reviewed(
        self, ctx: _Context, d: Damage
    ) -> list[dict[str, Any]] | None:
        """GMP's backlog: a report awaiting review arrives marked reviewed, so nobody reads it."""
        for intel in ctx.chunk.intel:
            if intel.review_state != "AWAITING_REVIEW" or intel.human in ctx.used:
                continue
            ik = target_key("intelligence_report", POLICEWORKS, ctx.chunk.guid("intel", intel.iid))
            d.update(
                "intelligence_report",
                column_is("intelligence_report", "intel_id", ik),
                review_state="REVIEWED",
            )
            return ctx.target_expect(ik, "intelligence", "MIGRATED", "ALTERED", ["review_state"])
        return None

    def _bail_return_date_moved(self, ctx: _Context, d: Damage) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: bool(c.bail))
        if ci is None:
            return None
        bail_key = next(r[0] for r in ctx.ideal["bail"] if r[2] == ctx.idx.event_key[ci])
        row = next(r for r in ctx.ideal["bail"] if r[0] == bail_key)
        moved = row[col("bail", "return_date")] + dt.timedelta(days=28)
        d.update("bail", lambda r: r[0] == bail_key, return_date=moved)
        return ctx.target_expect(bail_key, "bail", "MIGRATED", "ALTERED", ["return_date"])

    def _safeguarding_referral_dropped(
        self, ctx: _Context, d: Damage
    ) -> list[dict[str, Any]] | None:
        ci = ctx.take_crime(lambda c: bool(c.referrals))
        if ci is None:
            return None
        ek = ctx.idx.event_key[ci]
        rk = next(r[0] for r in ctx.ideal["safeguarding_referral"] if r[2] == ek)
        d.delete("safeguarding_referral", lambda r: r[0] == rk)
        d.delete("migration_crosswalk", column_is("migration_crosswalk", "target_key", rk))
        return ctx.target_expect(rk, "safeguarding", "MISSING")

    def _case_decoy(self, ctx: _Context, d: Damage) -> None:
        hi = ctx.take_simple_person()
        if hi is None:
            return
        pk = ctx.idx.person_key[hi]
        row = next(r for r in ctx.ideal["person"] if r[0] == pk)
        forename, surname = row[col("person", "forename")], row[col("person", "surname")]
        d.update("person", lambda r: r[0] == pk, surname=surname.upper(), forename=f" {forename}  ")
        self._case_decoy_done = True
        self.decoys.append(
            {
                "id": "C01",
                "kind": "case_and_whitespace",
                "chunk": ctx.chunk.index,
                "changes": d.changes,
                "why": "names compare case- and whitespace-insensitively: not a loss",
            }
        )

    def manifest_decoys(self, counts: dict[str, int]) -> list[dict[str, Any]]:
        """Decoys that are part of every estate rather than planted changes."""
        merges, excluded, held = (
            counts.get(k, 0) for k in ("merges", "mopi_excluded", "legal_hold")
        )
        notes = {
            "pilot_records": "3 persons with record_origin PILOT exist only in the target: "
            "a declared target-only population",
            "reference_data": "ref_offence_code exists only in the target: reference data",
            "declared_merges": f"{merges} source person records are merged into the person of "
            "their human (crosswalk rule merge:same_human)",
            "mopi_exclusions": f"{excluded} crimes are absent by MoPI disposal "
            "(see truth.sqlite table exclusion)",
            "legal_hold_retained": f"{held} crimes due for disposal are kept by a legal hold",
            "crosswalked_codes": "legacy offence codes (8/1, 8.1, 28A) appear as Home Office codes",
            "utc_timestamps": "legacy local times appear in the target in UTC (BST: an hour less)",
        }
        return [
            *self.decoys,
            *(
                {"id": f"C{n:02d}", "kind": k, "why": why}
                for n, (k, why) in enumerate(notes.items(), len(self.decoys) + 1)
            ),
        ]


class _Context:
    """Candidate finding for one chunk, keeping defects off each other's records."""

    def __init__(self, chunk: Chunk, idx: ChunkIndex, ideal: Rows, rows: Rows) -> None:
        self.chunk, self.idx, self.ideal, self.rows = chunk, idx, ideal, rows
        self._sources: dict[str, list[tuple[str, str, str]]] | None = None
        self.used: set[int] = set()  # humans, crimes and places already touched by a defect
        self.used_crimes: set[int] = set()
        self.used_places: set[int] = set()
        self.paired = {i for _, a, b in chunk.pairs for i in (a, b)}

    def take_simple_person(
        self,
        with_pnc: bool = False,
        with_dob: bool = False,
        other_than: int | None = None,
        accept: Callable[[Any], bool] = lambda h: True,
    ) -> int | None:
        for hi, h in enumerate(self.chunk.humans):
            if (
                hi in self.used
                or hi == other_than
                or hi in self.paired
                or h.warnings
                or h.handling
                or h.home is None
                or (with_pnc and not h.pnc)
                or not accept(h)
            ):
                continue
            records = self.idx.legacy_records[hi] + self.idx.pw_records[hi]
            if len(records) != 1 or (with_dob and records[0].dob is None):
                continue
            crimes = [self.chunk.crimes[ci] for ci, _ in h.links]
            if any(crime_disposition(c)[0] != "MIGRATED" or c.bail or c.referrals for c in crimes):
                continue
            if any(i.human == hi for i in self.chunk.intel):
                continue
            if other_than is not None and self.chunk.humans[other_than].dob == h.dob:
                continue
            self.used.add(hi)
            return hi
        return None

    def take_crime(self, accept: Callable[[Any], bool]) -> int | None:
        for ci, c in enumerate(self.chunk.crimes):
            if ci in self.used_crimes or crime_disposition(c)[0] != "MIGRATED" or not c.links:
                continue
            if any(h in self.used for h, _ in c.links) or not accept(c):
                continue
            self.used_crimes.add(ci)
            return ci
        return None

    def take_flagged_place(
        self, need_unused_by_events: bool, legacy_only: bool = False
    ) -> int | None:
        scenes = {c.place for c in self.chunk.crimes if crime_disposition(c)[0] == "MIGRATED"}
        for pid in sorted(self.idx.location_key):
            p = self.idx.place[pid]
            if (
                p.firearms is None
                or pid in self.used_places
                or (need_unused_by_events and pid in scenes)
                or (legacy_only and pid in self.idx.pw_places)
            ):
                continue
            self.used_places.add(pid)
            return pid
        return None

    def target_expect(
        self,
        target: str,
        cls: str,
        placement: str,
        integrity: str | None = None,
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Expectations on every source record the ideal crosswalk leads to ``target``."""
        return self._expect(cls, self._sources_of(target), placement, integrity, fields)

    def target_link(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """A target-side expectation on one event_person row."""
        return {
            "side": "target",
            "class": "crime_person_links",
            "table": "event_person",
            "key": "|".join(str(v) for v in row),
        }

    def location_warning_key(self, pid: int) -> str:
        return self.idx.location_warning(pid)[0]

    def person_differences(self, source: int, target: int, merged: bool) -> list[str]:
        """Fields the persons spec finds different between ``source``'s only record and the
        ideal target person of ``target`` (a merged record is judged on merge evidence)."""
        rec = (self.idx.legacy_records[source] + self.idx.pw_records[source])[0]
        cols = COLUMNS["person"]
        pk = self.idx.person_key[target]
        row = next(r for r in self.ideal["person"] if r[0] == pk)
        names = [r for r in self.ideal["person_name"] if r[0] == pk]
        fields = []
        for name, value, column in (
            ("forename", rec.forename, 3),
            ("surname", rec.surname, 4),
        ):
            wanted = (
                {name_key(r[column]) for r in names}
                if merged
                else {name_key(row[cols.index(name)])}
            )
            if name_key(value) not in wanted:
                fields.append(name)
        target_middle = name_key(row[cols.index("middle_names")] or "")
        if not merged and rec.middle and name_key(rec.middle) != target_middle:
            fields.append("middle_names")
        src_dob = dob_text(rec.dob, rec.dob_estimated)
        tgt_dob = dob_text(row[cols.index("dob")], row[cols.index("dob_estimated")])
        agrees = merged and None not in (src_dob, tgt_dob) and dob_evidence_agrees(src_dob, tgt_dob)  # type: ignore[arg-type]
        if src_dob is not None and src_dob != tgt_dob and not agrees:
            fields.append("dob")
        if self.chunk.humans[source].gender != row[cols.index("gender_code")]:
            fields.append("gender")
        src_pnc, tgt_pnc = self.chunk.humans[source].pnc, self.chunk.humans[target].pnc
        if src_pnc is not None and src_pnc != tgt_pnc and not (merged and tgt_pnc is None):
            fields.append("pnc_id")
        return sorted(fields, key=PERSON_FIELDS.index)

    def _sources_of(self, target: str) -> list[tuple[str, str, str]]:
        """Source records of a target record, from the *ideal* crosswalk (defects edit the copy)."""
        if self._sources is None:
            self._sources = defaultdict(list)
            for r in self.ideal["migration_crosswalk"]:
                self._sources[r[4]].append((r[0], r[1], r[2]))
        return self._sources.get(target, [])

    def _expect(
        self,
        cls: str,
        sources: list[tuple[str, str, str]],
        placement: str,
        integrity: str | None,
        fields: list[str] | None,
    ) -> list[dict[str, Any]]:
        return [
            {
                "side": "source",
                "class": cls,
                "system": s,
                "table": t,
                "key": k,
                "placement": placement,
                "integrity": integrity,
                "fields": fields or [],
            }
            for s, t, k in sources
        ]

    def person_expect(
        self,
        hi: int,
        cls: str,
        placement: str,
        integrity: str | None = None,
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        recs = self.idx.legacy_records[hi] + self.idx.pw_records[hi]
        return self._expect(
            cls, [(r.system, r.table, r.key) for r in recs], placement, integrity, fields
        )

    def link_expect(self, hi: int, placement: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ci, role in self.chunk.humans[hi].links:
            out += self.one_link_expect(ci, hi, role, placement)
        return out

    def one_link_expect(
        self,
        ci: int,
        hi: int,
        role: str,
        placement: str,
        integrity: str | None = None,
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        c = self.chunk.crimes[ci]
        sources = []
        if c.in_legacy:
            sources.append(
                (
                    LEGACY,
                    "CRIME_NOMINAL",
                    f"{legacy_crime_no(c)}|{self.idx.link_nominal[(ci, hi)]}|{ROLE_LETTER[role]}",
                )
            )
        if c.in_policeworks:
            sources.append((POLICEWORKS, "pw_link", self.chunk.guid("link", ci, hi, role)))
        return self._expect("crime_person_links", sources, placement, integrity, fields)

    def crime_links_expect(self, ci: int, placement: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for hi, role in self.chunk.crimes[ci].links:
            out += self.one_link_expect(ci, hi, role, placement)
        return out

    def crime_expect(
        self,
        ci: int,
        cls: str,
        placement: str,
        integrity: str | None = None,
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        sources = self._sources_of(self.idx.event_key[ci]) or []
        if self.chunk.crimes[ci].era == "both" and fields:
            compared = COPY_COMPARED[cls]
            sources = [s for s in sources if s[0] != LEGACY or set(fields) & compared]
        return self._expect(cls, sources, placement, integrity, fields)

    def location_expect(self, pid: int, placement: str) -> list[dict[str, Any]]:
        return self._expect(
            "locations", self._sources_of(self.idx.location_key[pid]), placement, None, None
        )

    def location_warning_expect(
        self,
        pid: int,
        placement: str,
        integrity: str | None = None,
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        sources = self._sources_of(self.location_warning_key(pid))
        return self._warning_expect("firearms_locations", sources, placement, integrity, fields)

    def _warning_expect(
        self,
        cls: str,
        sources: list[tuple[str, str, str]],
        placement: str,
        integrity: str | None,
        fields: list[str] | None,
    ) -> list[dict[str, Any]]:
        """A warning held by both systems: the PoliceWorks copy is merged into the legacy one."""
        if placement != "MIGRATED":
            return self._expect(cls, sources, placement, integrity, fields)
        both = any(s[0] == LEGACY for s in sources)
        return [
            *self._expect(
                cls, [s for s in sources if s[0] == LEGACY], placement, integrity, fields
            ),
            *self._expect(
                cls,
                [s for s in sources if s[0] != LEGACY],
                "MERGED" if both else "MIGRATED",
                integrity,
                fields,
            ),
        ]

    def person_warning_expect(
        self, hi: int, code: str, integrity: str, fields: list[str]
    ) -> list[dict[str, Any]]:
        w = next(w for w in self.chunk.humans[hi].warnings if w.code == code)
        wk = self.idx.person_warning(hi, w)[0]  # type: ignore[index]
        return self._warning_expect(
            "firearms_persons", self._sources_of(wk), "MIGRATED", integrity, fields
        )
