"""Reconcile one class: both sides in parallel, then segment aggregates, then record drill-down.

1. The source side and the target side each run in their own process (:mod:`reconcile.sides`),
   streaming their rows once and spilling keyed fingerprints into hash segments.
2. Segments whose count and fingerprint sum agree on both sides hold only records that are
   placed and equal: they are never opened (``segments`` is the spec's documented parameter).
3. The other segments are compared record by record; pairs whose fingerprints differ are
   compared field by field, with the spec's rules for merged records and alternative values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import multiprocessing
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from continuity.domain.connect import check_reachable, engine_for
from continuity.domain.dates import dob_evidence_agrees
from continuity.domain.digest import fingerprint_key
from continuity.domain.errors import ReconcileError
from reconcile.candidates import find_candidates, missing_people
from reconcile.columns import SEP, text
from reconcile.model import (
    ClassResult,
    FieldDiff,
    Finding,
    Integrity,
    Placement,
    Reconciliation,
    SourceIdentity,
    TargetIdentity,
)
from reconcile.sides import (
    NULL,
    WILDCARD,
    SideSummary,
    Task,
    crosswalk_table,
    escaped,
    located_statement,
    read_spill,
    run_source_side,
    run_target_side,
    segment_of,
    spill_target_segments,
    year_of,
)
from reconcile.spec import FieldSpec, SurvivalSpec
from reconcile.sql import Relation, fetch_all

LANDED_TWICE = "the target holds this record more than once"


@dataclass(frozen=True)
class Connections:
    """Database URLs: one per source system, and the target."""

    sources: dict[str, str]
    target: str

    def for_spec(self, spec: SurvivalSpec) -> dict[str, str]:
        needed = set(spec.systems) | {
            s.newer_copy.system for s in spec.sources if s.newer_copy is not None
        }
        missing = sorted(needed - set(self.sources))
        if missing:
            raise ReconcileError(
                f"{spec.file}: class {spec.name} reads source system(s) {', '.join(missing)}, "
                f"but no URL was given for them "
                f"(known: {', '.join(sorted(self.sources)) or 'none'})"
            )
        return {**{s: self.sources[s] for s in needed}, "target": self.target}


def reconcile_class(
    spec: SurvivalSpec,
    connections: Connections,
    as_of: dt.date,
    key: bytes | None = None,
    parallel: bool = True,
    pushdown: bool = True,
) -> ClassResult:
    """Reconcile one class; return its identities and every finding.

    ``pushdown`` lets a PostgreSQL target fingerprint its rows itself (:mod:`reconcile.pushdown`);
    the result is the same either way."""
    started = time.perf_counter()
    urls = connections.for_spec(spec)
    with tempfile.TemporaryDirectory(prefix="continuity-reconcile-") as directory:
        task = Task(spec, urls, as_of, key or fingerprint_key(), Path(directory), pushdown)
        if parallel:
            context = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            )
            try:
                with ProcessPoolExecutor(2, mp_context=context) as pool:
                    source_future = pool.submit(run_source_side, task)
                    target_future = pool.submit(run_target_side, task)
                    try:
                        source, target = source_future.result(), target_future.result()
                    except BaseException:
                        # Interrupted (SIGTERM, Ctrl-C) or failed: stop the other side now, so
                        # the spill directory (personal data) is removed without waiting.
                        for process in list(getattr(pool, "_processes", {}).values()):
                            process.terminate()
                        raise
            except BrokenProcessPool as exc:
                raise ReconcileError(
                    f"class {spec.name}: a reconciliation worker died (killed, or out of memory)"
                ) from exc
        else:
            source, target = run_source_side(task), run_target_side(task)
        result = _Comparison(spec, task, source, target).run()
    result.seconds = time.perf_counter() - started
    return result


class _Comparison:
    def __init__(self, spec: SurvivalSpec, task: Task, source: SideSummary, target: SideSummary):
        self.spec, self.task, self.src = spec, task, source
        self.fields = list(spec.fields.values())
        self.table_of = {s.system: s.crosswalk_table for s in spec.sources}
        self.source_of = {s.system: s for s in spec.sources}
        self.findings: list[Finding] = []
        self.placed: Counter[tuple[str, Placement]] = Counter()
        self.altered: Counter[str] = Counter()
        self.resolved: set[str] = set()  # match keys placed while comparing segments
        self._use_target(target)
        # Keyed by match key and source key: several source records can share a match key (a
        # link's roles for one crime and person, or a key the source holds twice).
        self.flagged = {(f[0], f[1]): f for f in source.flagged}
        self.flagged_rows = source.flagged  # one per row: a key held twice is two records
        self.drills: list[tuple[list[str], list[str], Placement]] = []
        self._spill_keys: dict[int, set[str]] = {}
        self.missing_texts: list[tuple[int, str, str]] = []
        self.credited: set[str] = set()  # merged records placed from the merge list
        self.paired: set[str] = set()  # target keys paired with a source record
        # Only records found through their parents can be "further" records under a match key
        # (a crosswalk names one target record per source record): only they need the set.
        self.track_pairs = bool(spec.locate.parents)
        self.extra: dict[str, str] = {}  # unpaired target key -> the match key it came under
        self.year_index = (
            list(spec.fields).index(spec.count_by_year) if spec.count_by_year else None
        )
        self.target_years: Counter[tuple[str, str]] = Counter()
        self.unfiltered = {s.system for s in spec.sources if s.population.where is None}
        self.gone: Counter[str] = Counter()  # records deleted at source since a wave, per system

    # -- the comparison --------------------------------------------------------------------

    @functools.cached_property
    def target_engine(self) -> Engine:
        """One engine for every lookup the comparison makes in the target (disposed by run)."""
        return engine_for(self.task.urls["target"])

    def run(self) -> ClassResult:
        try:
            return self._run()
        finally:
            if "target_engine" in self.__dict__:
                self.target_engine.dispose()

    def _run(self) -> ClassResult:
        differing = self._differing_segments()
        if self.tgt.pushed and not spill_target_segments(self.task, self.tgt, differing):
            # The database put a row in another segment than Python does: read the target
            # side whole, in Python, as if there had been no pushdown.
            for path in self.task.directory.glob("target-*"):
                path.unlink()
            self._use_target(run_target_side(dataclasses.replace(self.task, pushdown=False)))
            differing = self._differing_segments()
        self.differing = set(differing)
        stale: list[tuple[str, str]] = []
        for s in differing:
            stale += self._segment(s)
        self._drill_down()
        self._equal_segments()
        self._duplicated_sources()
        self._deleted()
        orphans = self._stale(stale)
        self._candidates()
        return self._result(orphans, len(differing))

    def _use_target(self, target: SideSummary) -> None:
        """Take ``target`` as the target side, with what the comparison derives from it."""
        self.tgt = target
        # Target records landed more than once: a source record leading to either copy is
        # DUPLICATED (an unreached copy has no crosswalk entry; a reached one has its own).
        self.duplicate_originals = set(target.landed_twice)
        self.merged = {mk: (tk, rule) for mk, tk, rule in target.merged}

    def _raw(self, keys: list[str]) -> list[str]:
        """Keys as findings write them, as the databases may hold them (to ask for them): the
        key itself, and every form the sides read that is written so. Asking for more keys
        than needed is harmless: what comes back is written escaped and compared so."""
        sides = (self.src.raw_keys, self.tgt.raw_keys)
        if not any(sides):
            return keys
        found: dict[str, None] = {}
        for k in keys:
            found[k] = None
            for raw in sides:
                found.update(dict.fromkeys(sorted(raw.get(k, ()))))
        return list(found)

    def _differing_segments(self) -> list[int]:
        """Segments whose count or fingerprint sum differ between the two sides."""
        src, tgt = self.src, self.tgt
        return [
            s
            for s in range(self.spec.segments)
            if (src.counts[s], src.sums[s]) != (tgt.counts[s], tgt.sums[s])
        ]

    def _deleted(self) -> None:
        """Records deleted at source since a wave migrated them (the target's deletions table
        says so and the source agrees): DELETED_AT_SOURCE if the target record was kept or
        retired as declared; MISSING if it was declared kept and is gone."""
        entries = self.src.deleted
        if not entries:
            return
        present = self._target_keys_present(sorted({e[2] for e in entries}))
        for system, key, target_key, action in entries:
            here = target_key in present
            if system not in self.unfiltered and not here:
                # The source's filter cannot be applied to a record the source no longer holds:
                # only a target record in this class's population says it belonged here.
                continue
            self.gone[system] += 1
            placement = Placement.DELETED_AT_SOURCE
            if action == "retired" and here:
                # The target record is left unexplained: it shows as ORPHAN on the target side.
                reason = "deleted at source; declared retired, but the target still holds it"
            elif action == "retired" or here:
                reason = f"deleted at source; its target record {action}, as declared"
            else:
                placement = Placement.MISSING
                reason = f"deleted at source and declared {action}, but the target record is gone"
            self._place(system, key, placement, reason=reason, target_key=target_key)

    def _target_keys_present(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` the class's target population holds (one-column keys)."""
        target = self.spec.target
        if len(target.key_columns) != 1:
            return set(keys)  # a composite key cannot be named by one text: not checked
        rel = Relation(target.population, list(target.key_columns))
        col = rel.col(target.key_columns[0])
        found: set[str] = set()
        asked = self._raw(keys)
        for start in range(0, len(asked), 500):
            stmt = sa.select(col).select_from(rel.from_).where(col.in_(asked[start : start + 500]))
            if rel.filter is not None:
                stmt = stmt.where(rel.filter)
            found.update(escaped(str(r[0])) for r in fetch_all(self.target_engine, stmt))
        return found

    def _candidates(self) -> None:
        """Likely target persons for each MISSING person (a diagnostic, not a placement)."""
        if not self.missing_texts or self.spec.candidates is None:
            return
        people = missing_people(self.spec, [(str(i), canon) for i, _, canon in self.missing_texts])
        found = find_candidates(self.spec, self.target_engine, people, self.spec.candidates.limit)
        for i, _key, _canon in self.missing_texts:
            if str(i) in found:
                self.findings[i] = dataclasses.replace(
                    self.findings[i], candidates=tuple(found[str(i)])
                )

    def _segment(self, segment: int) -> list[tuple[str, str]]:
        d = self.task.directory
        smap: dict[str, list[list[str]]] = defaultdict(list)
        for row in read_spill(d / f"source-{segment:05d}"):
            smap[row[0]].append(row)
        tmap: dict[str, list[list[str]]] = defaultdict(list)
        for row in read_spill(d / f"target-{segment:05d}"):
            tmap[row[0]].append(row)
        stale: list[tuple[str, str]] = []
        if self.year_index is not None:
            # Distinct records per year (a translated reference can give one record many rows),
            # of the source's population only (a wave's run sees other waves' target rows).
            for match_key, trows in tmap.items():
                if match_key not in smap:
                    continue
                text = trows[0][1].split(SEP)[self.year_index]
                if text == WILDCARD:  # a superseded copy not compared on it: the source's year
                    text = smap[match_key][0][1].split(SEP)[self.year_index]
                year = year_of(text)
                self.target_years[(match_key.split(SEP, 1)[0], year)] += 1
        for match_key, srows in smap.items():
            self.resolved.add(match_key)
            trows = tmap.get(match_key, [])
            remaining = list(trows)
            pending = []
            for sr in srows:
                hit = next((t for t in remaining if t[1] == sr[1]), None)
                if hit is not None:
                    remaining.remove(hit)
                    if self.track_pairs:
                        self.paired.add(hit[2])
                    self._found(sr, hit, ())
                else:
                    pending.append(sr)
            # Unflagged records first: a quarantined twin must not take the record's target row.
            pending.sort(key=lambda r: r[3] not in ("|||", "||S|"))
            for sr in pending:
                if remaining:
                    # Of several target rows (a reference translated to several source keys),
                    # compare with the closest: the differences shown are then the real ones.
                    tr = min(remaining, key=lambda t: _distance(sr[1], t[1]))
                    remaining.remove(tr)
                    if self.track_pairs:
                        self.paired.add(tr[2])
                    self.drills.append((sr, tr, self._placement(tr)))
                elif trows:
                    self._absent(sr, "the source holds this key more than once; one landed")
                else:
                    self._absent(sr, None)
            # A further target record for the same source record(s) (a victim also recorded
            # as a suspect) is unexplained; rows of a record already paired are fan-out.
            done = {t[2] for t in trows if t not in remaining}
            for t in remaining:
                if t[2] not in done:
                    self.extra.setdefault(t[2], match_key)
        if self.spec.locate.crosswalk is not None:
            for match_key, trows in tmap.items():
                # A filtered population (open crimes only) leaves target rows of records outside
                # it: only an unfiltered one can prove the crosswalk names a record that is gone.
                if match_key not in smap and match_key.split(SEP, 1)[0] in self.unfiltered:
                    stale += [(match_key, t[2]) for t in trows]
        return stale

    def _placement(self, tr: list[str]) -> Placement:
        if tr[2] in self.duplicate_originals:
            return Placement.DUPLICATED
        if tr[3] and self.spec.locate.is_merge(tr[3]):
            return Placement.MERGED
        return Placement.MIGRATED

    def _system_key(self, sr: list[str]) -> tuple[str, str]:
        return sr[0].split(SEP, 1)[0], sr[2]

    def _place(
        self,
        system: str,
        key: str,
        placement: Placement,
        integrity: Integrity | None = None,
        diffs: tuple[FieldDiff, ...] = (),
        reason: str | None = None,
        target_key: str | None = None,
    ) -> None:
        """Count one source record in its placement and list it as a finding."""
        self.placed[(system, placement)] += 1
        self.findings.append(
            Finding(
                self.spec.name,
                "source",
                system,
                self.table_of[system],
                key,
                placement,
                integrity,
                diffs,
                reason,
                target_key=target_key,
            )
        )

    def _found(self, sr: list[str], tr: list[str], diffs: tuple[FieldDiff, ...]) -> None:
        self._record(sr, tr, self._placement(tr), diffs)

    def _record(
        self, sr: list[str], tr: list[str], placement: Placement, diffs: tuple[FieldDiff, ...]
    ) -> None:
        system, key = self._system_key(sr)
        if diffs:
            self.altered[system] += 1
        excluded, deferred, _superseded, rejected = sr[3].split("|")
        flag = (
            "quarantined"
            if rejected
            else f"rule {excluded or deferred}"
            if excluded or deferred
            else ""
        )
        if placement is Placement.MIGRATED and not diffs and not flag:
            self.placed[(system, placement)] += 1  # the complement: no finding
            return
        reason = None
        if placement is Placement.MERGED:
            reason = f"declared merge ({tr[3]})"
        elif placement is Placement.DUPLICATED:
            reason = LANDED_TWICE
        if flag:  # e.g. a crime due for MoPI disposal that was migrated all the same
            reason = f"in the target although {flag} says it should not be" + (
                f"; {reason}" if reason else ""
            )
        integrity = Integrity.ALTERED if diffs else Integrity.EQUAL
        self._place(system, key, placement, integrity, diffs, reason, target_key=tr[2])

    def _absent(self, sr: list[str], note: str | None) -> None:
        system, key = self._system_key(sr)
        excluded, deferred, _superseded, rejected = sr[3].split("|")
        flagged = self.flagged.get((sr[0], sr[2]))
        if rejected and flagged is not None:
            placement, reason = Placement.REJECTED, flagged[3]
        elif excluded:
            placement, reason = Placement.EXCLUDED, flagged[3] if flagged else excluded
        elif deferred:
            placement, reason = Placement.DEFERRED, flagged[3] if flagged else deferred
        elif (system, key) in self.src.still_held:
            placement = Placement.MISSING
            reason = "declared deleted at source by the migration, but the source still holds it"
        else:
            placement = Placement.MISSING
            reason = note or (
                "no target record links these parents"
                if self.spec.locate.crosswalk is None
                else "no crosswalk entry leads to a target record"
                if self.spec.target.population.where is None
                else "no crosswalk entry leads to a target record of this class's population"
            )
        if placement is Placement.MISSING and self.spec.candidates is not None:
            self.missing_texts.append((len(self.findings), key, sr[1]))
        self._place(system, key, placement, reason=reason)

    # -- field by field --------------------------------------------------------------------

    def _drill_down(self) -> None:
        pending_alternatives: list[tuple[int, int, str, str, str]] = []
        rows: list[tuple[list[str], list[str], Placement, list[FieldDiff]]] = []
        for sr, tr, placement in self.drills:
            s_texts, t_texts = sr[1].split(SEP), tr[1].split(SEP)
            merged = placement is Placement.MERGED
            diffs: list[FieldDiff] = []
            for i, f in enumerate(self.fields):
                a, b = s_texts[i], t_texts[i]
                if a in (b, WILDCARD) or (f.null_source == "ignore" and a == NULL):
                    continue
                if merged:
                    if f.merged == "skip":
                        continue
                    if f.merged in ("both_known", "dob_evidence") and NULL in (a, b):
                        continue
                    if f.merged == "dob_evidence" and dob_evidence_agrees(a, b):
                        continue
                    if f.alternatives is not None:
                        system = sr[0].split(SEP, 1)[0]
                        pending_alternatives.append((len(rows), i, system, tr[2], a))
                diffs.append(FieldDiff(f.name, _show(a), _show(b)))
            rows.append((sr, tr, placement, diffs))
        for row_index, field_index, name in self._alternatives_held(pending_alternatives):
            diffs = rows[row_index][3]
            rows[row_index] = (*rows[row_index][:3], [d for d in diffs if d.field != name])
            del field_index
        for sr, tr, placement, diffs in rows:
            self._record(sr, tr, placement, tuple(diffs))

    def _alternatives_held(
        self, pending: list[tuple[int, int, str, str, str]]
    ) -> list[tuple[int, int, str]]:
        """Which pending (row, field) pairs match one of the target record's other values."""
        if not pending:
            return []
        engine = self.target_engine
        held: list[tuple[int, int, str]] = []
        by_field: dict[int, list[tuple[int, int, str, str, str]]] = defaultdict(list)
        for p in pending:
            by_field[p[1]].append(p)
        for field_index, items in by_field.items():
            f = self.fields[field_index]
            values = self._alternative_values(engine, f, items)
            for row_index, _, system, target_key, a in items:
                if a in values.get((system, target_key), ()):
                    held.append((row_index, field_index, f.name))
        return held

    def _alternative_values(
        self, engine: Any, f: FieldSpec, items: list[tuple[int, int, str, str, str]]
    ) -> dict[tuple[str, str], set[str]]:
        alt = f.alternatives
        assert alt is not None
        from reconcile.spec import Population

        rel = Relation(Population(alt.table, None, (), alt.where), [alt.key, *alt.columns])
        systems = {i[2] for i in items}
        keys = self._raw(sorted({i[3] for i in items}))
        out: dict[tuple[str, str], set[str]] = defaultdict(set)
        norms: dict[str, Callable[[Any], Any]] = {}
        for system in systems:
            binding = self.source_of[system].fields[f.name]
            spec = f.target_normaliser(binding)
            norms[system] = spec.build(self.task.as_of)
        for start in range(0, len(keys), 500):
            stmt = (
                sa.select(rel.col(alt.key), *(rel.col(c) for c in alt.columns))
                .select_from(rel.from_)
                .where(rel.col(alt.key).in_(keys[start : start + 500]))
            )
            if rel.filter is not None:
                stmt = stmt.where(rel.filter)
            for row in fetch_all(engine, stmt):
                raw = row[1] if len(alt.columns) == 1 else tuple(row[1:])
                for system, norm in norms.items():
                    out[(system, escaped(str(row[0])))].add(text(norm(raw)))
        return out

    # -- records never opened, and records found elsewhere ----------------------------------

    def _equal_segments(self) -> None:
        """Flagged and merged records in segments whose aggregates agreed."""
        for f in self.flagged_rows:
            match_key, key, placement, reason, system = f
            if match_key in self.resolved:
                continue
            self._place(system, key, Placement(placement), reason=reason)
        for match_key, (target_key, rule) in self.merged.items():
            # Only agreeing segments: in an opened one a merge row whose source record is gone
            # (or outside the population) was no pairing, and must not be credited.
            if match_key in self.resolved or self._opened(match_key):
                continue
            system, key = match_key.split(SEP, 1)
            if self.spec.locate.crosswalk is None:
                continue
            duplicated = target_key in self.duplicate_originals
            placement = Placement.DUPLICATED if duplicated else Placement.MERGED
            self.credited.add(match_key)
            reason = LANDED_TWICE if duplicated else f"declared merge ({rule})"
            self._place(system, key, placement, Integrity.EQUAL, (), reason, target_key)

    def _opened(self, match_key: str) -> bool:
        return segment_of(match_key, self.spec.segments) in self.differing

    def _crosswalk_entries(self, target_keys: list[str]) -> list[tuple[str, str, str, str]]:
        """(system, source table, source key, target key) of crosswalk entries for target keys."""
        if not target_keys or self.spec.locate.crosswalk is None:
            return []
        xw, c = crosswalk_table(self.spec, "xq")
        engine = self.target_engine
        out = []
        target_keys = self._raw(target_keys)
        for start in range(0, len(target_keys), 500):
            stmt = sa.select(
                xw.c[c["source_system"]],
                xw.c[c["source_table"]],
                xw.c[c["source_key"]],
                xw.c[c["target_key"]],
            ).where(
                xw.c[c["target_table"]] == self.spec.locate.crosswalk.target_table,
                xw.c[c["target_key"]].in_(target_keys[start : start + 500]),
            )
            out += [
                (str(system), str(table), escaped(str(key)), escaped(str(target_key)))
                for system, table, key, target_key in fetch_all(engine, stmt)
            ]
        return out

    def _duplicated_sources(self) -> None:
        """Source records of a duplicated target record, in segments never opened."""
        originals = sorted(self.duplicate_originals)
        for system, table, key, target_key in self._crosswalk_entries(originals):
            if system not in self.table_of or self.table_of[system] != table:
                continue
            match_key = f"{system}{SEP}{key}"
            if (
                match_key in self.resolved
                or match_key in self.credited
                or not self._in_source(match_key)
            ):
                continue  # placed already, or outside the population
            self._place(
                system, key, Placement.DUPLICATED, Integrity.EQUAL, (), LANDED_TWICE, target_key
            )

    def _paired_elsewhere(self, target_keys: list[str]) -> set[str]:
        """Of these target records, those some source record leads to under another match key
        in a segment that agreed (so it was paired there, unseen)."""
        if not target_keys:
            return set()
        engine = self.target_engine
        found: set[str] = set()
        target_keys = self._raw(target_keys)
        for source in self.spec.sources:
            for start in range(0, len(target_keys), 500):
                chunk = target_keys[start : start + 500]
                width = len(self.spec.target.key_columns)
                batch = [(k,) if width == 1 else tuple(k.split("|")) for k in chunk]
                stmt, names = located_statement(self.spec, source, only=batch)
                match_idx = [i for i, n in enumerate(names) if n.startswith("match")]
                key_idx = [i for i, n in enumerate(names) if n.startswith("key")]
                for row in fetch_all(engine, stmt):
                    match = escaped("|".join(str(row[i]) for i in match_idx))
                    if not self._opened(source.system + SEP + match):  # agreed: paired there
                        found.add(escaped("|".join(str(row[i]) for i in key_idx)))
        return found

    def _in_source(self, match_key: str) -> bool:
        """Whether the source side read a record with this match key (from its spill)."""
        segment = segment_of(match_key, self.spec.segments)
        if segment not in self._spill_keys:
            rows = read_spill(self.task.directory / f"source-{segment:05d}")
            self._spill_keys[segment] = {r[0] for r in rows}
        return match_key in self._spill_keys[segment]

    def _stale(self, stale: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Target records the crosswalk credits only to source records the source does not hold."""
        if not stale:
            return []
        claimed = sorted({tk for _, tk in stale})
        present: set[str] = set()
        for system, table, key, target_key in self._crosswalk_entries(claimed):
            if self.table_of.get(system) == table and self._in_source(f"{system}{SEP}{key}"):
                present.add(target_key)
        by_key: dict[str, list[str]] = defaultdict(list)
        for match_key, tk in stale:
            by_key[tk].append(match_key)
        return [(tk, ", ".join(mks)) for tk, mks in by_key.items() if tk not in present]

    # -- the result ------------------------------------------------------------------------

    def _result(self, stale_orphans: list[tuple[str, str]], compared: int) -> ClassResult:
        spec = self.spec
        # Records in agreeing segments are placed and equal: MIGRATED unless already counted.
        sources = []
        for s in spec.sources:
            counts = self.src.system_counts.get(s.system, [0] * spec.segments)
            in_equal = sum(c for i, c in enumerate(counts) if i not in self.differing)
            implicit_others = sum(
                1
                for f in self.findings
                if f.system == s.system
                and f.placement in (Placement.MERGED, Placement.DUPLICATED)
                and segment_of(f"{s.system}{SEP}{f.key}", spec.segments) not in self.differing
            )
            # The source as the last wave knew it: what it holds now, and what it deleted since.
            identity = SourceIdentity(
                s.system, s.crosswalk_table, self.src.read.get(s.system, 0) + self.gone[s.system]
            )
            identity.terms.update(
                {p: n for (system, p), n in self.placed.items() if system == s.system}
            )
            identity.terms[Placement.MIGRATED] += in_equal - implicit_others
            identity.altered = self.altered[s.system]
            sources.append(identity)
        target_table = spec.target.population.table or "query"
        tid = TargetIdentity(target_table, self.tgt.target_total)
        for key, placement, note in self.tgt.unreached:
            p = Placement(placement)
            if p is Placement.TARGET_ONLY:
                tid.target_only[note or ""] += 1
                continue
            if p is Placement.DUPLICATED:
                tid.duplicated += 1
                reason = f"a copy of target record {note}"
            else:
                tid.orphan += 1
                reason = "no source record of this class leads to it"
            self.findings.append(
                Finding(spec.name, "target", None, target_table, key, p, None, (), reason)
            )
        # Each target record gets one term: a reached copy is DUPLICATED, even if stale too.
        reached_copies = self.tgt.reached_copies
        orphans = [
            (
                key,
                "the crosswalk credits it to source records the source does not hold: "
                + claims.replace(SEP, " "),
            )
            for key, claims in stale_orphans
            if key not in reached_copies
        ]
        stale_keys = {k for k, _ in orphans}
        extra = {
            key: match_key
            for key, match_key in self.extra.items()
            if key not in self.paired
            and key not in stale_keys
            and key not in self.duplicate_originals
        }
        for key in self._paired_elsewhere(sorted(extra)):
            extra.pop(key, None)
        orphans += [
            (
                key,
                f"a further target record for source record(s) {match_key.replace(SEP, ' ')} "
                "that are already placed",
            )
            for key, match_key in sorted(extra.items())
        ]
        for key, reason in orphans:
            tid.orphan += 1
            stale_keys.add(key)
            self.findings.append(
                Finding(
                    spec.name, "target", None, target_table, key, Placement.ORPHAN, None, (), reason
                )
            )
        # Counted, not derived: the identity then checks that every unreached record was classed.
        tid.explained = self.tgt.target_reached - len(stale_keys) - len(reached_copies)

        # Segments whose aggregates agreed hold, per year, what the source counted into them.
        for (system, year, segment), n in self.src.years_counted.items():
            if segment not in self.differing:
                self.target_years[(system, year)] += n
        years: dict[str, dict[str, dict[str, int]]] = {}
        for (system, year), n in self.src.years.items():
            flagged = self.src.years_flagged[(system, year)]
            years.setdefault(system, {})[year] = {
                "source": n,
                "expected": n - flagged,
                "target": self.target_years[(system, year)],
            }
        for (system, year), n in self.target_years.items():
            years.setdefault(system, {}).setdefault(year, {"source": 0, "expected": 0, "target": n})
        warnings = [
            f"{s.system} {s.table} read no records: check its table and filters"
            + (
                f" (the target holds {self.tgt.read[s.system]:,} records located from it)"
                if self.tgt.read.get(s.system)
                else ""
            )
            for s in sources
            if s.read == 0
        ]
        return ClassResult(
            warnings=warnings,
            years=years,
            name=spec.name,
            title=spec.title,
            owner=spec.owner,
            severity=spec.severity,
            spec_digest=spec.digest,
            sources=sources,
            target=tid,
            findings=self.findings,
            segments_compared=compared,
            segments=spec.segments,
            source_digest=_side_digest(self.src.counts, self.src.sums),
            target_digest=_side_digest(self.tgt.counts, self.tgt.sums),
        )


def _side_digest(counts: Any, sums: Any) -> str:
    """One side's content digest: SHA-256 over its per-segment counts and sums of keyed
    fingerprints (match key and every compared field, normalised). Equal digests on two runs
    mean the same records with the same compared values; computed from what the comparison
    gathered anyway, at no cost."""
    import hashlib

    h = hashlib.sha256()
    for segment in range(len(counts)):
        h.update(f"{int(counts[segment])}:{int(sums[segment])};".encode())
    return h.hexdigest()


def _distance(a: str, b: str) -> int:
    """How many fields differ between two canonical texts."""
    return sum(x != y for x, y in zip(a.split(SEP), b.split(SEP), strict=True))


def _show(value: str) -> str:
    if value == NULL:
        return "(none)"
    if value.startswith("\x00!"):
        return f"<unreadable: {value[2:]}>"
    return value


def reconcile_all(
    specs: list[SurvivalSpec],
    connections: Connections,
    as_of: dt.date,
    classes: tuple[str, ...] = (),
    progress: Callable[[str, int, int], None] | None = None,
    wave: str | None = None,
) -> Reconciliation:
    """Reconcile every spec (or the named classes), critical classes first.

    With ``wave``, each source that declares that wave reads only its records (the wave's
    filter is pushed down as SQL); classes none of whose sources declare it are reconciled whole.
    """
    known = [s.name for s in specs]
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise ReconcileError(f"unknown class {unknown[0]!r}; classes: {', '.join(sorted(known))}")
    declared = {w for s in specs for w in s.waves}
    if wave is not None and wave not in declared:
        raise ReconcileError(
            f"no spec declares wave {wave!r}; waves: {', '.join(sorted(declared)) or 'none'}"
        )
    chosen = [s.for_wave(wave) for s in specs if not classes or s.name in classes]
    chosen.sort(key=lambda s: (SEVERITY_ORDER[s.severity], s.name))
    urls: set[str] = set()
    for spec in chosen:  # every URL is named, and every database answers, before data is read
        urls.update(connections.for_spec(spec).values())
    for url in sorted(urls):
        engine = engine_for(url)
        try:
            check_reachable(engine)
        finally:
            engine.dispose()
    results = []
    for n, spec in enumerate(chosen):
        if progress is not None:
            progress(spec.name, n, len(chosen))
        results.append(reconcile_class(spec, connections, as_of))
    if progress is not None:
        progress("", len(chosen), len(chosen))
    return Reconciliation(as_of.isoformat(), results, wave)


SEVERITY_ORDER = {"critical": 0, "high": 1, "normal": 2}
