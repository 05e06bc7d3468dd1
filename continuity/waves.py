"""Running a migration wave: extract, map, load, with checkpoints, quarantine and the crosswalk.

A wave is a list of *steps*, one per source of each mapping, ordered so that a record is loaded
after every record it refers to (a crime after its location, a link after its crime and person).
Each step streams its source in key order, maps a batch, and loads the batch's target rows,
crosswalk entries, quarantined records and its checkpoint in one transaction. A run killed at
any moment therefore resumes (``--resume``) from the last committed batch of the step it was in,
and re-running a finished wave upserts the same rows with the same keys: it changes nothing.

Every run is written to the audit ledger when it starts and when it ends (operator, version,
digests of the project and of every mapping, counts by entity and outcome); a run that never
wrote its end was interrupted, and ``continuity status`` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import MetaData, inspect, select

from continuity import changes, resolution_state, target_schema
from continuity.db import stream
from continuity.domain.connect import engine_for
from continuity.domain.errors import ConfigError, MappingError, ValidationError
from continuity.domain.yamlsource import raise_all
from continuity.ledger import AuditLedger
from continuity.loaders.base import Loader, primary_key_indexes
from continuity.loaders.registry import open_loader
from continuity.processes import Aside, ProcessDied, can_fork
from continuity.project import Project
from continuity.rollback import (
    JOURNAL,
    VALIDATED_TARGET,
    Journal,
    empty_tables,
    from_json,
    next_seq,
    to_json,
    with_journal,
)
from continuity.wave_scope import wave_scopes
from extractors.base import Extractor, Selection
from mappings.compiler import BatchOut, CompiledSource, compile_source, key_text, needed_columns
from mappings.spec import MappingSpec, SourceMapping, load_mappings, mapping_files

CROSSWALK = "migration_crosswalk"
QUARANTINE = "migration_quarantine"
DELETION = "migration_deletion"
#: Keys asked for per read by a delta (bound parameters: SQLite allows 32,766 in a statement).
KEYS_PER_READ = 5_000
#: Moved keys asked for per read of the rows referring to them, over all the references a
#: step reads: each such read scans the table (the referring column has no index), so it asks
#: for about as many as a statement can bind.
MOVED_PER_READ = 30_000
EXCLUSION = "migration_exclusion"
#: The gazetteer's columns as ``Gazetteer.add`` takes them, and their default names.
GAZETTEER_COLUMNS = {
    "uprn": "uprn",
    "building": "building_name",
    "number": "building_number",
    "street": "street",
    "locality": "locality",
    "town": "town",
    "postcode": "postcode",
    "easting": "easting",
    "northing": "northing",
}
#: Rows read and mapped per transaction. Larger batches load faster and lose more on a crash.
BATCH_SIZE = 10_000

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Step:
    """One source of one mapping, as the wave reads it."""

    spec: MappingSpec
    mapping: SourceMapping

    @property
    def name(self) -> str:
        m = self.mapping
        name = f"{self.spec.entity}<-{m.source}.{m.as_table}"
        twins = [s for s in self.spec.sources if (s.source, s.as_table) == (m.source, m.as_table)]
        if len(twins) > 1:  # one table read twice (two filters): number the reads
            name += f"#{twins.index(m) + 1}"
        return name


@dataclass
class StepCounts:
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    excluded: int = 0
    unchanged: int = 0  # a delta: read, unchanged since the last run, not migrated again
    skipped: bool = False  # finished by the run being resumed
    seconds: float = 0.0

    def add(self, other: StepCounts) -> None:
        self.read += other.read
        self.loaded += other.loaded
        self.quarantined += other.quarantined
        self.excluded += other.excluded
        self.unchanged += other.unchanged
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "excluded": self.excluded,
            "unchanged": self.unchanged,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class RunSummary:
    run_id: str
    wave: str
    dry_run: bool
    resumed: bool
    steps: dict[str, StepCounts] = field(default_factory=dict)
    entities: dict[str, StepCounts] = field(default_factory=dict)
    would_insert: dict[str, int] = field(default_factory=dict)
    would_update: dict[str, int] = field(default_factory=dict)
    resolution: dict[str, dict[str, Any]] = field(default_factory=dict)
    delta: bool = False
    #: "source.table" -> records added, changed, related (see continuity.changes), deleted and
    #: unchanged since the fingerprints of earlier runs
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)  # deletions: target record kept
    retired: dict[str, Any] = field(default_factory=dict)  # merged after the fact
    #: per side ("source", "target"): the validation's counts and whether it was ok
    validation: dict[str, Any] = field(default_factory=dict)
    #: why a run that loaded everything is nonetheless failed (the target's validation)
    failed: str | None = None
    seconds: float = 0.0
    #: where the time went: phase -> seconds, in the order the phases ran (what a freeze
    #: window is planned from: change detection, validation, resolution, the steps ...)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rows_read(self) -> int:
        return sum(c.read for c in self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "wave": self.wave,
            "dry_run": self.dry_run,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "rows_read": self.rows_read,
            "steps": {k: v.as_dict() for k, v in self.steps.items()},
            "entities": {k: v.as_dict() for k, v in self.entities.items()},
            **({"resolution": self.resolution} if self.resolution else {}),
            "delta": self.delta,
            **({"changes": self.changes} if self.changes else {}),
            **({"deleted_at_source": self.moved} if self.moved else {}),
            **({"retired": self.retired} if self.retired else {}),
            **({"validation": self.validation} if self.validation else {}),
            **({"failed": self.failed} if self.failed else {}),
            **(
                {"would_insert": self.would_insert, "would_update": self.would_update}
                if self.dry_run
                else {}
            ),
        }


class RunKeys:
    """The crosswalk as far as a run needs it: where referenced source records went.

    Only (source, table) pairs some ``ref`` names are kept, so memory grows with what is
    referenced, not with everything migrated. Records loaded by earlier runs are read back from
    the target's crosswalk; quarantined and excluded ones are remembered with their reason, so
    a record that follows them (a link to a quarantined crime) follows them with that reason.
    """

    def __init__(
        self, wanted: Mapping[tuple[str, str], str], superseded: set[tuple[str, str]] | None = None
    ) -> None:
        self.wanted = dict(wanted)  # (source, table) -> the entity whose records they are
        self.superseded = superseded or set()
        self.copies: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
            pair: {} for pair in self.superseded
        }
        self.keys: dict[tuple[str, str], dict[str, str]] = {pair: {} for pair in wanted}
        self.fates: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
            pair: {} for pair in wanted
        }

    def target_of(self, source: str, table: str, key: str) -> str | None:
        known = self.keys.get((source, table))
        return None if known is None else known.get(key)

    def table(self, source: str, table: str) -> dict[str, str] | None:
        """The live key -> target key dictionary of a wanted pair (for batch lookups)."""
        return self.keys.get((source, table))

    def fate_of(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        known = self.fates.get((source, table))
        return None if known is None else known.get(key)

    def copy_fate(self, source: str, table: str, key: str) -> tuple[str, str] | None:
        known = self.copies.get((source, table))
        return None if known is None else known.get(key)

    def record(self, out: BatchOut, entity: str) -> None:
        """Remember where a batch of ``entity``'s records went, for the pairs wanted."""
        for source, table, key, how, detail in out.copies:
            copies = self.copies.get((source, table))
            # Of several copies of one record, one that loaded decides, whatever the order.
            if copies is not None and copies.get(key, ("",))[0] != "loaded":
                copies[key] = (how, detail)
        if entity not in self.wanted.values():
            return
        wanted = self.wanted
        for system, table, key, target_table, target, _, _ in out.crosswalk:
            if wanted.get((system, table)) == target_table:
                self.keys[(system, table)][key] = target
        for fate, rows in (("rejected", out.quarantine), ("excluded", out.excluded)):
            for system, table, key, reason in rows:
                if wanted.get((system, table)) == entity:
                    self.fates[(system, table)][key] = (fate, reason)

    def preload(self, url: str) -> None:
        """Read what earlier runs loaded and quarantined for the wanted pairs."""
        if not self.wanted:
            return
        xw = target_schema.migration_crosswalk
        qt = target_schema.migration_quarantine
        ex = target_schema.migration_exclusion
        engine = engine_for(url)
        try:
            with engine.connect() as conn:
                for (system, table), entity in sorted(self.wanted.items()):
                    keys = self.keys[(system, table)]
                    # (the whole crosswalk of a table: the driver's rows, see stream)
                    keys.update(
                        stream(
                            conn,
                            select(xw.c.source_key, xw.c.target_key).where(
                                xw.c.source_system == system,
                                xw.c.source_table == table,
                                xw.c.target_table == entity,
                            ),
                        )
                    )
                    fates = self.fates[(system, table)]
                    for key, reason in stream(
                        conn,
                        select(qt.c.source_key, qt.c.reason).where(
                            qt.c.source_system == system, qt.c.source_table == table
                        ),
                    ):
                        fates[key] = ("rejected", reason)
                    for key, reason in stream(
                        conn,
                        select(ex.c.source_key, ex.c.reason).where(
                            ex.c.source_system == system, ex.c.source_table == table
                        ),
                    ):
                        fates[key] = ("excluded", reason)
        finally:
            engine.dispose()


def producers_of(specs: Sequence[MappingSpec]) -> dict[tuple[str, str], list[str]]:
    """Which keyed entities' crosswalk entries record where each (source, table) went."""
    producers: dict[tuple[str, str], list[str]] = {}
    for spec in specs:
        if spec.key_column is None:
            continue  # no key of its own: no crosswalk entries (links, names)
        for m in spec.sources:
            found = producers.setdefault((m.source, m.as_table), [])
            if spec.entity not in found:
                found.append(spec.entity)
    return producers


def referenced(specs: Sequence[MappingSpec]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Every (source, table) some ``ref`` looks up, with the entity it resolves through."""
    producers = producers_of(specs)
    wanted: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    for spec in specs:
        for m in spec.sources:
            for source, table, entity, _ in m.refs():
                candidates = producers.get((source, table), [])
                if entity is not None and entity not in candidates:
                    errors.append(
                        f"{m.at}: refers to {source}.{table} through {entity!r}, whose "
                        f"mapping does not read it (read by: {', '.join(candidates) or 'none'})"
                    )
                    continue
                if entity is None and len(candidates) != 1:
                    errors.append(
                        f"{m.at}: refers to {source}.{table}, which "
                        + (
                            f"several keyed entities read ({', '.join(candidates)}): name one "
                            "with entity"
                            if candidates
                            else "no keyed mapping reads (its records can never be found)"
                        )
                    )
                    continue
                wanted[(source, table)] = entity or candidates[0]
    return wanted, errors


def plan_steps(specs: Sequence[MappingSpec]) -> list[Step]:
    """Every source of every mapping, parents first; a cycle of references is an error."""
    wanted, errors = referenced(specs)
    # A source record's quarantine and exclusion entries belong to one mapping: two entities
    # reading one table name their reads apart (as_table: NOMINAL.DOB), or one entity's run
    # would take another's rejections out of quarantine.
    readers: dict[tuple[str, str], str] = {}
    for spec in specs:
        for m in spec.sources:
            other = readers.setdefault((m.source, m.as_table), spec.entity)
            if other != spec.entity:
                errors.append(
                    f"{m.at}: {m.source}.{m.as_table} is also read by the {other} mapping: "
                    "give one of them an as_table of its own (as_table: "
                    f"{m.as_table}.{spec.entity.upper()})"
                )
    needs: dict[str, set[str]] = {spec.entity: set() for spec in specs}
    for spec in specs:
        for m in spec.sources:
            for source, table, entity, _ in m.refs():
                producer = entity or wanted.get((source, table))
                if producer is not None and producer != spec.entity and producer in needs:
                    needs[spec.entity].add(producer)
    for spec in specs:  # a field reading another entity's resolution comes after it
        for m in spec.sources:
            for f in m.fields:
                for step in f.steps:
                    if step.op == "resolved":
                        owner = str(step.args).rpartition(".")[0]
                        if owner and owner != spec.entity and owner in needs:
                            needs[spec.entity].add(owner)
    raise_all(errors, MappingError)
    ordered: list[str] = []
    state: dict[str, int] = {}

    def visit(entity: str, path: list[str]) -> None:
        if state.get(entity) == 2:
            return
        if state.get(entity) == 1:
            cycle = " -> ".join([*path[path.index(entity) :], entity])
            raise MappingError(f"mappings refer to each other in a cycle: {cycle}")
        state[entity] = 1
        for parent in sorted(needs[entity]):
            visit(parent, [*path, entity])
        state[entity] = 2
        ordered.append(entity)

    for spec in sorted(specs, key=lambda s: s.entity):
        visit(spec.entity, [])
    by_entity = {spec.entity: spec for spec in specs}
    steps: list[Step] = []
    for entity in ordered:
        spec = by_entity[entity]
        for m in spec.sources:
            if m.superseded_by is None:
                continue
            newer = [
                o
                for o in spec.sources
                if (o.source, o.as_table) == (m.superseded_by.source, m.superseded_by.table)
            ]
            if not newer or newer[0].copy_of is None:
                errors.append(
                    f"{m.at}: superseded_by names {m.superseded_by.source}."
                    f"{m.superseded_by.table}, which is not a source of this mapping with copy_of"
                )
        # A record follows its newer copy, so the newer copies are read first.
        ordered_sources = sorted(spec.sources, key=lambda m: m.superseded_by is not None)
        steps += [Step(spec, m) for m in ordered_sources]
    raise_all(errors, MappingError)
    return steps


#: Set to 0, runs keep no resolution state (a delta resolves part of the persons from it).
RESOLUTION_STATE_ENV = "CONTINUITY_RESOLUTION_STATE"

#: The checkpoints naming the suites every source row, and every target row, last met.
VALIDATED = "validated:sources"


def phases_text(phases: Mapping[str, float]) -> str:
    """Where a run's time went, as ``phase 1.2 s, ...`` (the run's summary, the benchmarks)."""
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())


class _Clock:
    """Adds the time spent in each phase of a run to ``phases``."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self._open: list[str] = []

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Time a phase; one entered within another is its own, not the outer one's."""
        began = time.perf_counter()
        self._open.append(phase)
        try:
            yield
        finally:
            self._open.pop()
            spent = time.perf_counter() - began
            self.add(phase, spent)
            if self._open:
                self.add(self._open[-1], -spent)


def _portable(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """An expectation's arguments as a digest should see them: a file argument by its content,
    not its path, so that a project folder moved between runs still resumes."""
    from validators.suite import PATH_ARGUMENTS

    found = dict(arguments)
    for name in PATH_ARGUMENTS & set(found):
        # unreadable: its path stands (and the suite fails where it reads it)
        with contextlib.suppress(OSError):
            found[name] = hashlib.sha256(Path(str(found[name])).read_bytes()).hexdigest()
    return found


def _combine(*filters: str | None) -> str | None:
    parts = [f"({f})" for f in filters if f]
    return " AND ".join(parts) or None


class Looked(NamedTuple):
    """The lookups as read aside (:meth:`WaveRunner._read_lookups`): each relation, by
    resource name; and, by entity, what :meth:`WaveRunner._lookup_state` found of them."""

    tables: dict[str, Any]
    states: dict[str, dict[str, tuple[dict[int, int], resolution_state.LookupChanges | None]]]


class WaveRunner:
    """Runs one wave of a project (see :func:`run_wave`)."""

    def __init__(
        self,
        project: Project,
        wave: str,
        as_of: dt.date | None = None,
        batch_size: int = BATCH_SIZE,
        metadata: MetaData | None = None,
        journal: bool = True,
        delta: bool = False,
        validate: bool = True,
    ) -> None:
        self.project = project
        self.delta = delta
        #: validate sources before loading and the target after, with the project's suites
        self.validate = validate and project.suites is not None
        #: (source, table) -> (the suite's key columns, {key: reason}) to quarantine
        self._invalid: dict[tuple[str, str], tuple[tuple[str, ...], dict[Any, str]]] = {}
        self.journal = journal and project.target.loader == "sql"
        self.wave = project.wave(wave)
        self.as_of = as_of or project.as_of or dt.date.today()
        self.batch_size = batch_size
        product = metadata if metadata is not None else target_schema.metadata
        # The journal (what each batch replaced) is what `continuity rollback` replays; change
        # detection keeps its fingerprints in the target, beside the checkpoints.
        self.fingerprints = project.target.loader == "sql"
        self.metadata = product
        if self.fingerprints:
            self.metadata = with_journal(product, journal=self.journal)
            changes.add_tables(self.metadata)
            resolution_state.add_tables(self.metadata)
        if delta and not self.fingerprints:
            raise ConfigError(
                f"--delta needs the sql loader, which keeps fingerprints in the target "
                f"(this project's target uses {project.target.loader!r})"
            )
        self._changes: changes.Changes | None = None
        self.specs = load_mappings(mapping_files(project.mappings))
        self.steps = plan_steps(self.specs)
        self._scopes = wave_scopes(self.specs, self.wave, self._quoters())
        for step in self.steps:
            if step.mapping.source not in project.sources:
                raise ConfigError(
                    f"{step.mapping.at}: no source {step.mapping.source!r} in {project.file} "
                    f"(sources: {', '.join(project.sources)})"
                )
            if step.spec.entity not in self.metadata.tables:
                raise MappingError(
                    f"{step.spec.file}:1: entity: no target table {step.spec.entity!r}"
                )
        self.extractors: dict[str, Extractor] = {}
        self._dry: _Existing | None = None
        self._needed: set[tuple[str, str]] = set()
        self._resources: dict[str, Any] = {}
        self._decisions: dict[str, dict[tuple[str, str], str]] = {}
        self.resolution_stats: dict[str, Any] = {}
        #: per resolved entity: (its resolver, record -> (digest, lookup keys, values as
        #: JSON), the part a delta resolved again or None): written as the state when the run
        #: finishes
        self._states: dict[str, tuple[Any, dict[str, resolution_state.Kept], Any]] = {}
        self._lookup_digests: dict[str, Any] = {}
        #: per resolved entity: (anchor kept, other anchor) of clusters joining two target
        #: records made earlier (a merge after the fact; see Resolver.pin)
        self.merged_after: dict[str, list[tuple[str, str]]] = {}
        #: a delta: records the resolution moved to another target record, by (source, table);
        #: and the target records all of whose records moved (retired after the steps)
        self._moved: dict[tuple[str, str], set[str]] = {}
        self._retired: dict[str, list[str]] = {}
        self._loader: Loader | None = None  # the run's, while it runs
        self._checkpoints: Loader | None = None  # the same, in a dry run too (to read)
        #: a delta's: entity -> column -> the values the rows it wrote hold (see _watched)
        self._written: dict[str, dict[str, set[str]]] = {}
        #: table -> keys of the rows a run deleted from it (tables keyed by one column)
        self._removed: dict[str, set[str]] = {}
        #: the checkpoint validated:target as the run found it (the run clears it meanwhile)
        self._target_validated: dict[str, Any] | None = None
        self._scoped = any(self._scopes.values())
        self._journal: Journal | None = None
        self._fresh: frozenset[str] = frozenset()
        self._stale_pairs: set[tuple[str, str]] = set()
        self._problems: dict[Any, Any] = {}
        self._summary = RunSummary("", self.wave.name, False, False)
        self._suites = self._wave_suites() if self.validate else []
        self._digests: dict[tuple[str, str | None, tuple[str, ...] | None], str | None] = {}
        #: the sources' validation running aside, and what to do with its verdict
        self._checking_sources: tuple[Aside[Any], Callable[[Any], None], _Clock] | None = None
        #: the process that validated the sources, waiting to validate the target
        self._validator: Aside[Any] | None = None
        #: the process reading the lookups while change detection reads the sources
        self._reading: Aside[Looked] | None = None

    # -- pieces ------------------------------------------------------------------------------

    def _quoters(self) -> dict[str, Callable[[str], str]]:
        """How each SQL source's database quotes a name (for the scopes' subqueries)."""
        from sqlalchemy.engine import make_url

        found: dict[str, Callable[[str], str]] = {}
        for name, cfg in self.project.sources.items():
            if cfg.kind != "sql":
                continue
            try:
                dialect = make_url(cfg.location).get_dialect()()
            except Exception:  # an unknown driver is reported when the source is opened
                continue
            found[name] = dialect.identifier_preparer.quote
        return found

    def extractor(self, source: str) -> Extractor:
        if source not in self.extractors:
            cfg = self.project.sources[source]
            ex = cfg.extractor()
            ex.check()
            self.extractors[source] = ex
        return self.extractors[source]

    def scope_of(self, step: Step) -> str | None:
        """The wave's filter on a step's records (None: the wave takes them all)."""
        m = step.mapping
        if m.table is not None:
            return self._scopes.get(id(m))
        return self.wave.filter_for(m.source, m.as_table)

    def selection(self, step: Step, after: Sequence[Any] | None = None) -> Selection:
        m = step.mapping
        return Selection(
            table=m.table,
            query=m.query,
            key=m.key,
            columns=tuple(needed_columns(m)),
            where=_combine(m.where, self.scope_of(step)),
            order_by_key=True,
            after=tuple(after) if after is not None else None,
        )

    def resources(
        self, only: MappingSpec | None = None, lookups: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What operations look up: every gazetteer and lookup a mapping names (``only``'s),
        read once (``lookups``: the lookups, read already by :meth:`lookups`)."""
        found = self.lookups(only) if lookups is None else dict(lookups)
        for name, source, selection in self._gazetteers(only):
            if name not in found:
                found[name] = self._gazetteer(source, selection)
        return found

    def lookups(self, only: MappingSpec | None = None) -> dict[str, Any]:
        """Every lookup a mapping names (``only``'s), read (see :meth:`_load_lookup`)."""
        found: dict[str, Any] = {}
        for step in self.steps:
            if only is not None and step.spec is not only:
                continue
            for f in step.mapping.fields:
                for s in f.steps:
                    if s.op == "lookup":
                        self._load_lookup(s, found)
        return found

    def _lookups_aside(self) -> Aside[Looked] | None:
        """The lookups, read in a forked process while change detection reads the sources
        (a delta's lookups read two whole relations and parse a million addresses' postcodes:
        the run's own process waits for the detection's workers meanwhile). None where the
        run works in one process, or no mapping looks anything up."""
        if not can_fork() or not any(
            s.op == "lookup" for step in self.steps for f in step.mapping.fields for s in f.steps
        ):
            return None
        # The forked process opens its own connections: none of this one's may cross.
        for extractor in self.extractors.values():
            extractor.close()
        self.extractors.clear()
        return Aside(self._read_lookups, "lookups")

    def _read_lookups(self) -> Looked:
        """The lookups (:meth:`lookups`), with what resolution keeps of those its resolved
        mappings make (:meth:`_lookup_state`: their digests and, in a delta, how they changed
        since the state an earlier run kept). Each relation's million entries are hashed
        where they were read, beside change detection."""
        tables = self.lookups()
        for spec in self.specs:
            if spec.resolve is None or not self._state_kept(spec):
                continue
            prior = (
                resolution_state.Prior(self.project.target.location, spec.entity)
                if self.delta
                else None
            )
            if prior is not None and not prior.kept():
                prior.close()  # (no state: a dry run on a target no run has written to)
                prior = None
            try:
                self._lookup_state(spec, prior, tables)
            finally:
                if prior is not None:
                    prior.close()
        return Looked(tables, self._lookup_digests)

    def _gazetteers(self, only: MappingSpec | None = None) -> Iterator[tuple[str, str, Selection]]:
        """Each gazetteer a mapping searches (``only``'s): its name, source and selection."""
        for step in self.steps:
            if only is not None and step.spec is not only:
                continue
            for f in step.mapping.fields:
                for s in f.steps:
                    if s.op != "gazetteer":
                        continue
                    if s.args["source"] not in self.project.sources:
                        raise ConfigError(f"{s.at}: no source {s.args['source']!r}")
                    columns = {**GAZETTEER_COLUMNS, **s.args.get("columns", {})}
                    selection = Selection(
                        table=s.args["table"], columns=tuple(columns[k] for k in GAZETTEER_COLUMNS)
                    )
                    yield (
                        f"gazetteer:{s.args['source']}.{s.args['table']}",
                        s.args["source"],
                        selection,
                    )

    def _content_digest(self, source: str, selection: Selection) -> str | None:
        """:meth:`Extractor.content_digest`, once per run and table."""
        at = (source, selection.table, selection.columns)
        if at not in self._digests:
            self._digests[at] = self.extractor(source).content_digest(selection)
        return self._digests[at]

    def _gazetteer(self, source: str, selection: Selection) -> Any:
        """A gazetteer, read from its source; or, for a file read before, from the project's
        cache (``.continuity/cache/``), which holds it as it was built from the same bytes: a
        rehearsal wave, and every delta, do not build it again. ``CONTINUITY_CACHE=off``
        turns the cache off."""
        import pickle

        import continuity.domain.addresses as addresses

        Gazetteer = addresses.Gazetteer
        extractor = self.extractor(source)
        folder = self.project.folder / ".continuity" / "cache"
        digest = None
        if os.environ.get("CONTINUITY_CACHE", "on") != "off":
            digest = self._content_digest(source, selection)
        cached = None
        if digest is not None:
            table = hashlib.sha256(f"{source}|{selection.table}".encode()).hexdigest()
            # what is built from the bytes depends on the code that builds it (postcodes,
            # text keys): its source is part of the name, as the layout's version is
            code = hashlib.sha256(Path(addresses.__file__).read_bytes()).hexdigest()
            content = hashlib.sha256(f"{Gazetteer.FORMAT}|{code}|{digest}".encode()).hexdigest()
            cached = folder / f"gazetteer-{table[:12]}-{content[:32]}.pickle"
            try:
                with open(cached, "rb") as handle:
                    held = pickle.load(handle)
                if isinstance(held, Gazetteer):
                    return held
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                pass  # none, or unreadable (a write cut short): built again below
        gazetteer = Gazetteer()
        for batch in extractor.batches(selection):
            for row in batch:
                gazetteer.add(*row)
        if cached is not None and extractor.content_digest(selection) == digest:
            # (the file did not change while it was read: what was built is what it holds)
            with contextlib.suppress(OSError):  # a read-only project folder: no cache
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.glob(f"gazetteer-{table[:12]}-*.pickle"):
                    old.unlink(missing_ok=True)  # the same table's, as its file was before
                part = cached.with_suffix(f".{os.getpid()}.part")
                with open(part, "wb") as handle:
                    pickle.dump(gazetteer, handle, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(part, cached)
        return gazetteer

    def _load_lookup(self, s: Any, found: dict[str, Any]) -> None:
        """Read a ``lookup``'s relation into memory once: key text -> value (or values).

        Where a key appears more than once the least value wins (of a person's HOME links,
        whatever order the database returns them in), so a run always reads the same value.
        ``then: postcode`` keeps only the postcode written in the values (memory holds a
        postcode, not five address lines).
        """
        from mappings.compiler import lookup_resource
        from mappings.parsing import postcode_step

        name = lookup_resource(s.args)
        if name in found:
            return
        if s.args["source"] not in self.project.sources:
            raise ConfigError(f"{s.at}: no source {s.args['source']!r}")
        key = tuple(s.args["key"])
        value = s.args["value"]
        values = (value,) if isinstance(value, str) else tuple(value)
        selection = Selection(
            table=s.args.get("table"), query=s.args.get("query"), columns=key + values
        )
        then = postcode_step({"invalid": None}) if s.args.get("then") == "postcode" else None
        table: dict[str, Any] = {}
        width = len(key)
        for batch in self.extractor(s.args["source"]).batches(selection):
            for row in batch:
                k = key_text(row[:width])
                got = row[width] if isinstance(value, str) else tuple(row[width:])
                got = got if then is None else then(got)
                if k not in table or _before(got, table[k]):
                    table[k] = got
        found[name] = table

    def _resolve(self, keys: RunKeys, progress: Progress | None, run_id: str | None) -> None:
        """Resolve the records of every mapping that declares ``resolve`` (persons).

        All of the mapping's records are read, whatever the wave, so that a human's cluster and
        its anchor are the same in every wave; only the wave's records are then loaded. The
        reviewers' decisions are applied; the pairs near the threshold are written to the work
        store for review (not by a dry run).
        """
        from continuity import people
        from mappings.resolution import Resolver

        for spec in self.specs:
            if spec.resolve is None:
                continue
            decisions = self._decisions.get(spec.entity, {})
            part = self._resolve_part(spec, keys, progress)
            resolver = (
                part.resolver if part is not None else Resolver(spec.resolve.settings, decisions)
            )
            resolver.keep_dependencies = part is None and self._state_kept(spec)
            # record -> its digest, lookup keys and values (kept as its resolution state)
            read: dict[str, resolution_state.Kept] = {}
            if part is None:
                kept = self._state_kept(spec)  # (else nothing is held beyond the resolver)
                for identity, values, looked in self._person_records(spec, keys, progress):
                    resolver.add(identity, values)
                    if kept:
                        digest = resolution_state.digest_of(values, looked)
                        seen = resolution_state.seen_text(values)
                        read[identity] = (digest, tuple(looked), seen)
            else:
                read = part.read
            resolution: Any = part if part is not None else resolver
            held: dict[str, str] = {}
            anchor_of: dict[str, str] = {}
            if self.project.target.loader == "sql":
                # Persons keep their keys: their anchors stay anchors, and the records of one
                # whose anchor is gone from the source keep it as theirs.
                held, anchor_of = self._held(
                    spec, set(resolver.identities()) if part is not None else None
                )
                present = part.present if part is not None else resolver.__contains__
                resolver.pin(
                    [a for a in anchor_of.values() if a in resolver],
                    {
                        record: anchor
                        for record, target in held.items()
                        if record in resolver
                        and (anchor := anchor_of.get(target)) is not None
                        and not present(anchor)
                    },
                )
            resolver.finish()
            try:
                self._sources_checked()  # (nothing is written before the sources' verdict)
            except BaseException:
                if part is not None:
                    part.prior.close()
                raise
            if resolver.merged_after:
                self.merged_after[spec.entity] = list(resolver.merged_after)
            if self._changes is not None and not self._scoped:
                # (A wave with a scope cannot remake the rows outside it: an unscoped wave
                # merges what resolution joins after the fact.)
                self._moved_records(spec, resolution, run_id, held, anchor_of)
            stats = resolver.stats
            if part is not None:
                stats.records = part.total
                stats.incremental = {
                    "resolved_again": len(resolver),
                    "changed": len(part.changed),
                    "gone": len(part.gone),
                }
            self.resolution_stats[spec.entity] = stats
            if run_id is not None:
                if part is None:
                    people.save_review(self.project.ledger, spec.entity, run_id, resolver.review)
                else:
                    people.save_review(
                        self.project.ledger,
                        spec.entity,
                        run_id,
                        resolver.review,
                        only=set(resolver.identities()) | part.gone,
                        stale=part.changed | part.gone,
                    )
            self._resources[f"resolution:{spec.entity}"] = resolution
            self._states[spec.entity] = (resolver, read, part)

    def _moved_records(
        self,
        spec: MappingSpec,
        resolver: Any,
        run_id: str | None,
        held: Mapping[str, str],
        anchor_of: Mapping[str, str],
    ) -> None:
        """Records the resolution now puts with another anchor than the target holds them under
        (a corrected date of birth, a new record joining two persons): a delta migrates them
        again, with the rows that refer to them; a target record left with none of its records
        is retired after the steps of any run (:meth:`_retire`), merged into the one they went
        to.

        Found once per run, when the crosswalk is still as earlier runs left it, and kept with
        the run's changes (a resumed run reads them back: by then it has moved some itself)."""
        assert self._changes is not None
        loader = self._loader
        name = f"moved:{self.wave.name}:{spec.entity}"
        state = loader.checkpoint(name) if loader is not None and run_id is not None else None
        if state is not None and state.get("run_id") == run_id:
            self._moved = self._changes.moved
            if state.get("retired"):
                self._retired[spec.entity] = list(state["retired"])
            return
        retired: set[str] = set()
        holding: Counter[str] = Counter()  # target -> records it holds, and those that left
        leaving: Counter[str] = Counter()
        # (A delta's part: the records outside it resolve as they did, and stay.)
        present = getattr(resolver, "present", resolver.__contains__)
        for identity, target in held.items():
            holding[target] += 1
            if identity not in resolver:
                continue
            now = resolver.resolved(identity)
            if now is None:
                continue  # not resolved any more (quarantined or excluded): its step says so
            was = anchor_of.get(target)
            if was is None or now.anchor == was:
                # (No anchor on record: the person was made by a stand-in, its anchor not yet
                # migrated; it is where resolution put it.)
                continue
            leaving[target] += 1
            system, table, key = identity.split("|", 2)
            self._changes.wanted.setdefault((system, table), set()).add(key)
            self._moved.setdefault((system, table), set()).add(key)
            if identity == was:
                retired.add(target)  # its anchor went elsewhere: so do all its records
        for target, n in leaving.items():
            # An anchor gone from the source, and every record went to another person.
            if not present(anchor_of[target]) and n == holding[target]:
                retired.add(target)
        if retired:
            self._retired[spec.entity] = sorted(retired)
        # A delta: the other records of the target records the moved ones leave or join.
        related: list[tuple[str, str, str]] = []
        if self.delta:
            engine = engine_for(self.project.target.location)
            try:
                related = changes.co_members(self, self._changes, engine, self._moved)
            finally:
                engine.dispose()
        if loader is not None and run_id is not None:
            pending = [
                (run_id, system, table, key, changes.key_hash(key), None, changes.MOVED)
                for (system, table), found in self._moved.items()
                for key in sorted(found)
            ] + [
                (run_id, system, table, key, changes.key_hash(key), None, changes.RELATED)
                for system, table, key in related
            ]
            with loader.transaction() as tx:
                if pending:
                    tx.upsert(changes.PENDING, pending)
                tx.set_checkpoint(name, {"run_id": run_id, "retired": sorted(retired)})

    def _retire(self, loader: Loader, run_id: str, dry_run: bool) -> dict[str, int]:
        """Delete the target records whose records all went to others (merged after the fact),
        with the rows that refer to them: the moved records' rows were made again under the
        records they went to. Journaled, so a rollback puts them back."""
        counts: dict[str, int] = {}
        if dry_run or not self._retired:
            return counts
        engine = engine_for(self.project.target.location)
        try:
            for entity, targets in self._retired.items():
                parent = self.metadata.tables[entity]
                (pk,) = [c for c in parent.columns if c.primary_key]
                referring = [
                    (t, c)
                    for t in self.metadata.sorted_tables
                    for c in t.columns
                    for fk in c.foreign_keys
                    if fk.column is pk
                ]
                for start in range(0, len(targets), 500):
                    chunk = targets[start : start + 500]
                    doomed: list[tuple[str, list[tuple[Any, ...]]]] = []
                    with engine.connect() as conn:
                        for t, c in referring:
                            keys_of = [k for k in t.columns if k.primary_key]
                            found = conn.execute(select(*keys_of).where(c.in_(chunk))).all()
                            doomed.append((t.name, [tuple(r) for r in found]))
                    doomed.append((entity, [(k,) for k in chunk]))
                    with loader.transaction() as tx:
                        journal = self._journal_for(run_id)
                        for name, keys_of_rows in doomed:
                            gone = self._delete(tx, journal, name, keys_of_rows)
                            if gone:
                                counts[name] = counts.get(name, 0) + gone
        finally:
            engine.dispose()
        return counts

    def _held(
        self, spec: MappingSpec, only: set[str] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Where a resolved mapping's records are in the target now, as the resolution names
        them (``source|table|key``): record -> target key, and target key -> its anchor record
        (one deleted at source since, from the deletions table, included). ``only``: of these
        records (and the anchors of their target records) alone."""
        physical = {(m.source, m.as_table): m.table or m.as_table for m in spec.sources}
        held: dict[str, str] = {}
        anchor_of: dict[str, str] = {}
        targets: list[str] = []
        engine = engine_for(self.project.target.location)
        try:
            present = set(inspect(engine).get_table_names())
            with engine.connect() as conn:
                for table, live in (
                    (target_schema.migration_crosswalk, True),
                    (target_schema.migration_deletion, False),
                ):
                    if table.name not in present:
                        continue  # a target not made yet (resolve_people alone) holds nothing
                    c = table.c
                    columns = (c.source_system, c.source_table, c.source_key, c.target_key, c.rule)
                    mine = c.target_table == spec.entity
                    if only is None:
                        found: Iterator[Any] = stream(conn, select(*columns).where(mine))
                    elif live:
                        entries = self._entries_of(conn, table, only, physical)
                        targets = sorted({r[3] for r in entries})
                        found = iter(entries + self._anchors_of(conn, table, spec, targets))
                    else:  # the anchors of those target records gone from the source
                        found = iter(self._anchors_of(conn, table, spec, targets))
                    for system, as_table, key, target, rule in found:
                        if (system, as_table) not in physical:
                            continue
                        identity = f"{system}|{physical[(system, as_table)]}|{key}"
                        if live:
                            held[identity] = target
                        if rule == "anchor":
                            anchor_of.setdefault(target, identity)
        finally:
            engine.dispose()
        return held, anchor_of

    @staticmethod
    def _entries_of(
        conn: Any, table: Any, only: set[str], physical: Mapping[tuple[str, str], str]
    ) -> list[tuple[Any, ...]]:
        """``table``'s entries of the records ``only`` names."""
        c = table.c
        columns = (c.source_system, c.source_table, c.source_key, c.target_key, c.rule)
        rows: list[tuple[Any, ...]] = []
        for (system, as_table), phys in physical.items():
            prefix = f"{system}|{phys}|"
            keys = sorted(i[len(prefix) :] for i in only if i.startswith(prefix))
            for start in range(0, len(keys), 500):
                query = select(*columns).where(
                    c.source_system == system,
                    c.source_table == as_table,
                    c.source_key.in_(keys[start : start + 500]),
                )
                rows += stream(conn, query)
        return rows

    @staticmethod
    def _anchors_of(
        conn: Any, table: Any, spec: MappingSpec, targets: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """``table``'s anchor entries of these target records."""
        c = table.c
        columns = (c.source_system, c.source_table, c.source_key, c.target_key, c.rule)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(targets), 500):
            query = select(*columns).where(
                c.target_table == spec.entity,
                c.target_key.in_(targets[start : start + 500]),
                c.rule == "anchor",
            )
            rows += stream(conn, query)
        return rows

    def _person_records(
        self,
        spec: MappingSpec,
        keys: RunKeys,
        progress: Progress | None = None,
        dropped: bool = False,
        only: Mapping[str, Sequence[str]] | None = None,
    ) -> Iterator[tuple[str, list[Any], set[int]]]:
        """Every record of a resolved mapping, whatever the wave: ``source|table|key``, its
        values for resolution's ``ROLES`` (None where the mapping names no field) and the
        dependency keys of what it looks up (see :mod:`continuity.resolution_state`).
        Quarantined and excluded records only with ``dropped`` (search finds them; resolution
        does not cluster what will not load), a value that could not be read as None.

        ``only``: of each step (by name), just the records with these keys (read by key, in
        no set order)."""
        assert spec.resolve is not None
        fields = spec.resolve.fields
        named = [f for f in fields if f is not None]
        where = [named.index(f) if f is not None else None for f in fields]
        done = 0
        for step in (s for s in self.steps if s.spec is spec):
            if only is not None and step.name not in only:
                continue
            source = self.compile(step, keys, resolving=True)
            m = step.mapping
            prefix = f"{m.source}|{m.table or m.as_table}|"  # by the physical table
            out = BatchOut()
            whole = dataclasses.replace(self.selection(step), where=m.where)
            bad, _ = self._key_problems(step, whole)
            looks = [
                (name, [source.columns.index(c) for c in on]) for name, on in self._lookups_of(step)
            ]
            if not self._state_kept(spec):
                looks = []  # only the resolution state keeps what a record looked up
            key_at = [source.columns.index(k) for k in m.key]
            if only is not None:
                batches: Iterator[Sequence[tuple[Any, ...]]] = (
                    rows
                    for _, rows in self._keyed_reads(
                        step, sorted(only[step.name]), 0, key_index=key_at
                    )
                )
            else:
                batches = iter(self.extractor(m.source).batches(whole, self.batch_size))
            for batch in batches:
                out.clear()
                self._map(step, source, batch, bad, out, collect=named, collect_dropped=dropped)
                rows = {key_text([r[i] for i in key_at]): r for r in batch} if looks else {}
                for key, values in out.collected:
                    row = rows.get(key)
                    looked = {
                        resolution_state.lookup_dependency(
                            name, key_text([row[i] for i in at]) if row is not None else None
                        )
                        for name, at in looks
                    }
                    yield prefix + key, [None if w is None else values[w] for w in where], looked
                done += len(out.collected)
            if progress is not None:
                progress(f"resolve {step.name}", done, done)

    def _state_kept(self, spec: MappingSpec) -> bool:
        """Whether a run keeps ``spec``'s resolution state (and a delta uses it): not turned
        off (``CONTINUITY_RESOLUTION_STATE=0``, see docs/delta.md), fingerprints kept (the
        sql loader), an unscoped wave, every source a table read by a
        one-column key, one record per row."""
        return (
            os.environ.get(RESOLUTION_STATE_ENV, "1") != "0"
            and self.fingerprints
            and not self._scoped
            and all(
                s.mapping.table is not None and len(s.mapping.key) == 1 and s.mapping.each is None
                for s in self.steps
                if s.spec is spec
            )
        )

    def _resolve_part(
        self, spec: MappingSpec, keys: RunKeys, progress: Progress | None
    ) -> resolution_state.Part | None:
        """A delta: resolve again only the part of ``spec``'s records a change can reach (see
        :mod:`continuity.resolution_state`); None when the state an earlier run kept cannot
        say (none kept, another mapping, settings or decisions, too much changed)."""
        assert spec.resolve is not None
        found = self._changes
        loader = self._checkpoints
        if not self.delta or found is None or loader is None or not self._state_kept(spec):
            return None
        steps = [s for s in self.steps if s.spec is spec]
        if not all(found.covers(s.mapping.source, s.mapping.table) for s in steps):
            return None
        decisions = self._decisions.get(spec.entity, {})
        meta = loader.checkpoint(resolution_state.checkpoint_name(spec.entity)) or {}
        expected = self._state_meta(spec)
        if {k: meta.get(k) for k in expected} != expected:
            return None
        prefixes = [(s, f"{s.mapping.source}|{s.mapping.table}|") for s in steps]
        wanted: set[str] = set()
        deleted: set[str] = set()
        for s, prefix in prefixes:
            table = (s.mapping.source, s.mapping.table or "")
            wanted |= {prefix + k for k in found.keys(*table)}
            deleted |= {prefix + k for k in found.deleted.get(table, ())}
        prior = resolution_state.Prior(self.project.target.location, spec.entity, meta)
        total = prior.count()
        if total == 0 or len(wanted) + len(deleted) > resolution_state.WHOLE_ABOVE * total:
            prior.close()
            return None
        lookup_changes: set[int] = set()
        for name, (now, since) in self._lookup_state(spec, prior).items():
            if since is None:  # (not asked of a state: none)
                since = resolution_state.lookup_changes(now, {})
            lookup_changes |= resolution_state.changed_lookups(name, since)

        def by_step(identities: set[str]) -> dict[str, list[str]]:
            grouped: dict[str, list[str]] = {}
            for s, prefix in prefixes:
                picked = [i[len(prefix) :] for i in identities if i.startswith(prefix)]
                if picked:
                    grouped[s.name] = picked
            return grouped

        def read(identities: set[str]) -> dict[str, tuple[list[Any], set[int]]]:
            return {
                identity: (values, looked)
                for identity, values, looked in self._person_records(
                    spec, keys, progress, only=by_step(identities)
                )
            }

        def order(identities: set[str]) -> list[str]:
            """In the order a full run reads them: by step, each in the source's key order."""
            ordered: list[str] = []
            for s, prefix in prefixes:
                m = s.mapping
                selection = dataclasses.replace(
                    self.selection(s), where=m.where, columns=tuple(m.key)
                )
                for batch in self.extractor(m.source).batches(selection, 50_000):
                    for row in batch:
                        identity = prefix + key_text(row[:1])
                        if identity in identities:
                            ordered.append(identity)
            return ordered

        try:
            part: resolution_state.Part | None = resolution_state.resolve_part(
                prior,
                spec.resolve.settings,
                decisions,
                wanted,
                deleted,
                read,
                order,
                lookup_changes,
            )
        except BaseException:
            prior.close()  # (its connection, and a SQLite state's mapping)
            raise
        if part is None:
            prior.close()
        return part

    def _state_meta(self, spec: MappingSpec) -> dict[str, Any]:
        """What a resolution state was kept under: a delta uses it only under the same."""
        from continuity.people import decisions_digest

        assert spec.resolve is not None
        return {
            "settings": resolution_state.settings_digest(
                spec.resolve.settings, f"{spec.digest}|{self.rules_digest()}"
            ),
            "decisions": decisions_digest(self._decisions.get(spec.entity, {})),
        }

    def _lookup_state(
        self,
        spec: MappingSpec,
        prior: resolution_state.Prior | None = None,
        tables: Mapping[str, Any] | None = None,
    ) -> dict[str, tuple[dict[int, int], resolution_state.LookupChanges | None]]:
        """Each lookup ``spec``'s records make: its digests now and (given the state an
        earlier run kept) how they changed since. Found once per run (``tables``: the
        lookups, where not yet among the run's resources)."""
        found = self._lookup_digests.get(spec.entity)
        if found is None:
            read = self._resources if tables is None else tables
            found = {}
            for name in self._lookup_names(spec):
                now = resolution_state.lookup_digests(read[name])
                since = None
                if prior is not None:
                    since = resolution_state.lookup_changes(now, prior.lookup_digests(name))
                found[name] = (now, since)
            self._lookup_digests[spec.entity] = found
        return found

    def _lookup_names(self, spec: MappingSpec) -> list[str]:
        """The lookups ``spec``'s fields make, by resource name."""
        return sorted({n for s in self.steps if s.spec is spec for n, _ in self._lookups_of(s)})

    def _keep_states(self, tx: Any) -> None:
        """Write each resolved entity's resolution state (in the transaction finishing the
        run, beside the fingerprints): what the next delta resolves from."""
        for spec in self.specs:
            if spec.resolve is None:
                continue
            name = resolution_state.checkpoint_name(spec.entity)
            kept = self._states.get(spec.entity)
            if kept is None or not self._state_kept(spec):
                tx.set_checkpoint(name, {"kept": False})
                continue
            resolver, read, part = kept
            held = resolution_state.write(
                tx, spec.entity, resolver, read, part, self._lookup_state(spec)
            )
            tx.set_checkpoint(name, {**self._state_meta(spec), **held})

    def _lookups_of(self, step: Step) -> list[tuple[str, list[str]]]:
        """The lookups a step's fields make: (resource name, the columns looked up by)."""
        from mappings.compiler import lookup_resource

        return [
            (lookup_resource(s.args), list(s.args["on"]))
            for f in step.mapping.fields
            for s in f.steps
            if s.op == "lookup"
        ]

    def _ready_to_read(self, entity: str) -> tuple[MappingSpec, RunKeys]:
        """Outside a run: the resolved mapping of ``entity`` with what its operations look up
        loaded, and an empty crosswalk (nothing is loaded, so nothing is referenced yet)."""
        spec = next((s for s in self.specs if s.entity == entity and s.resolve), None)
        if spec is None:
            raise ConfigError(f"no mapping of {entity!r} declares resolve:")
        self._resources = self.resources(only=spec)
        return spec, RunKeys(referenced(self.specs)[0])

    def _load_decisions(self) -> None:
        """The reviewers' decisions on each resolved entity's pairs (from the work store)."""
        from continuity import people

        self._decisions = {
            spec.entity: people.decisions(self.project.ledger, spec.entity)
            for spec in self.specs
            if spec.resolve is not None
        }

    def compile(self, step: Step, keys: RunKeys, resolving: bool = False) -> CompiledSource:
        table = self.metadata.tables[step.spec.entity]
        ex = self.extractor(step.mapping.source)
        columns = ex.columns(self.selection(step))
        required = {c.name for c in table.columns if not c.nullable}
        return compile_source(
            step.spec,
            step.mapping,
            columns,
            [c.name for c in table.columns],
            required,
            keys,
            self.as_of,
            resources={**self._resources, "resolving": resolving},
        )

    def digests(self) -> dict[str, Any]:
        return {
            "project": self.project.digest,
            "mappings": {s.entity: s.digest for s in self.specs},
        }

    def close(self) -> None:
        if self._checking_sources is not None:  # the run failed before it needed the verdict
            self._checking_sources[0].cancel()
            self._checking_sources = None
        if self._validator is not None:  # (a dry run, or one that failed, asks nothing)
            self._validator.cancel()
            self._validator = None
        if self._reading is not None:  # (the run failed before it needed the lookups)
            self._reading.cancel()
            self._reading = None
        for ex in self.extractors.values():
            ex.close()
        self.extractors.clear()
        for _, _, part in self._states.values():
            if part is not None:
                part.prior.close()

    # -- the run -----------------------------------------------------------------------------

    def run(
        self,
        resume: bool = False,
        restart: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> RunSummary:
        started = time.perf_counter()
        wanted, _ = referenced(self.specs)
        superseded = {
            (step.mapping.source, step.mapping.as_table)
            for step in self.steps
            if step.mapping.superseded_by is not None
        }
        keys = RunKeys(wanted, superseded)
        self._needed = set(wanted) | {
            (s.mapping.source, s.mapping.as_table)
            for s in self.steps
            if s.mapping.copy_of is not None
            and (s.mapping.copy_of.source, s.mapping.copy_of.table) in superseded
        }
        if resume and restart:
            raise ConfigError("--resume and --restart contradict each other: choose one")
        if dry_run and (resume or restart):
            raise ConfigError("a dry run writes nothing: it neither resumes nor restarts")
        target = self.project.target
        if (self.journal or self.fingerprints) and not dry_run:
            engine = engine_for(target.location)
            try:
                for name in (
                    JOURNAL,
                    changes.FINGERPRINTS,
                    changes.PENDING,
                    changes.HISTORY,
                ):
                    if name in self.metadata.tables:
                        self.metadata.tables[name].create(engine, checkfirst=True)
                if self.fingerprints:
                    resolution_state.create_tables(engine, self.metadata)
            finally:
                engine.dispose()
        loader = open_loader(target.loader, target.location, self.metadata, target.options)
        ledger = None if dry_run else AuditLedger(self.project.ledger)
        try:
            loader.check()
            if not dry_run:
                loader.prepare()
            wave_step = f"wave:{self.wave.name}"
            previous = loader.checkpoint(wave_step) if not dry_run else None
            if ledger is not None and previous is not None and previous.get("finished"):
                self._recover(ledger, previous)
            # Decided before anything is read: a refused --resume says so at once.
            run_id, resumed = self._run_id(previous, resume, restart)
            self._load_decisions()
            settings = self._settings()
            if resumed and previous is not None:
                self._same_settings(previous, settings)
            # Tables empty when the run first began: their rows are all the run's own.
            if resumed and previous is not None:
                self._fresh = frozenset(previous.get("fresh", ()))
            elif self.journal and not dry_run:
                self._fresh = frozenset(empty_tables(target.location, self.metadata))
            started_state = {**settings, "fresh": sorted(self._fresh)}
            # The sources' suites, before anything moves: a critical failure stops the wave
            # here, with nothing loaded; rows failing a quarantine expectation are marked.
            # What changed since earlier runs, looked at once, before any row moves (a delta's
            # validation judges the rows it migrates).
            phases: dict[str, float] = {}
            clock = _Clock(phases)
            if self.fingerprints:
                self._reading = self._lookups_aside()
                with clock("change detection"):
                    self._changes = self._detect(loader, run_id, dry_run, progress)
            validation: dict[str, Any] = {}
            if self.validate:
                self._check_sources(
                    run_id, dry_run, self._validation_scope(loader), validation, clock
                )
            # Compile everything before the first row moves: a bad mapping or a missing column
            # fails the run here, with nothing written.
            with clock("lookups and gazetteers"):
                reading, self._reading = self._reading, None
                looked = reading.result() if reading is not None else None
                if looked is not None:
                    self._lookup_digests.update(looked.states)
                self._resources = self.resources(
                    lookups=looked.tables if looked is not None else None
                )
            self._loader = None if dry_run else loader
            self._checkpoints = loader
            if self.delta and not dry_run and not resumed:
                # The rows a delta writes: the target's row-level expectations judge those
                # (a resumed run wrote others before); see _watched.
                self._written = {
                    step.spec.entity: {column: set() for column in self._watched(step.spec)}
                    for step in self.steps
                }
            if self._quarantine_reaches_resolution():
                # (what resolution reads leaves out the records the suites hold back)
                self._sources_checked()
            with clock("person resolution"):
                self._resolve(keys, progress, None if dry_run else run_id)
            self._sources_checked()
            compiled = [self.compile(step, keys) for step in self.steps]
            summary = RunSummary(run_id, self.wave.name, dry_run, resumed, delta=self.delta)
            summary.phases = phases
            summary.validation = validation
            if self._changes is not None:
                summary.changes = self._changes.counts
            summary.resolution = {
                entity: dataclasses.asdict(stats) for entity, stats in self.resolution_stats.items()
            }
            for entity, pairs in self.merged_after.items():
                summary.resolution.setdefault(entity, {})["merged_after"] = [list(p) for p in pairs]
            self._summary = summary
            if target.loader == "sql":
                keys.preload(target.location)
                self._stale_pairs = self._stale(target.location)
                self._dry = _Existing(target.location) if dry_run else None
            if ledger is not None:
                ledger.append(
                    "run-started",
                    {
                        "resumed": resumed,
                        "as_of": self.as_of.isoformat(),
                        "journal": self.journal,
                        **self.digests(),
                    },
                    run_id,
                    self.wave.name,
                )
                self._target_validated = loader.checkpoint(VALIDATED_TARGET)
                with loader.transaction() as tx:
                    tx.set_checkpoint(wave_step, {"run_id": run_id, "finished": False, **settings})
                    # A run that does not finish leaves rows its target validation never judged:
                    # the next judges every row (a delta judges its own only after a run that
                    # validated the target whole, or its own).
                    tx.set_checkpoint(VALIDATED_TARGET, {})
            try:
                for step, source in zip(self.steps, compiled, strict=True):
                    began = time.perf_counter()
                    counts = self._step(step, source, loader, keys, run_id, dry_run, progress)
                    counts.seconds = time.perf_counter() - began
                    summary.steps[step.name] = counts
                    summary.entities.setdefault(step.spec.entity, StepCounts()).add(counts)
                    clock.add("mapping steps", counts.seconds)
                if self._changes is not None:  # a full run finds deletions too
                    with clock("deletions"):
                        summary.moved = self._deletions(loader, run_id, dry_run)
                        retired = self._retire(loader, run_id, dry_run)
                    if self._retired:
                        summary.retired = {
                            "merged_after_the_fact": {e: len(t) for e, t in self._retired.items()},
                            "rows_deleted": retired,
                        }
                if self._validates_target(dry_run):
                    self._ask_target(loader)
                if not dry_run:
                    with clock("finishing"), loader.transaction() as tx:
                        tx.set_checkpoint(
                            wave_step, {"run_id": run_id, "finished": True, **started_state}
                        )
                        if self.fingerprints:  # the baseline moves with the finished wave
                            changes.promote(tx, run_id, self.wave.name)
                            self._keep_states(tx)
                            if self.validate:  # the suites every source row has met
                                tx.set_checkpoint(VALIDATED, {"suites": self._validated_digest()})
                if self._validates_target(dry_run):
                    # (the time waited for it, where it ran beside finishing)
                    with clock("target validation"):
                        self._validate_target(summary, run_id, loader)
            except BaseException as exc:
                if ledger is not None:
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    ledger.append(
                        "run-failed",
                        {"error": message, "counts": summary.as_dict()["steps"]},
                        run_id,
                        self.wave.name,
                    )
                raise
            summary.seconds = time.perf_counter() - started
            if ledger is not None:
                ledger.append("run-finished", summary.as_dict(), run_id, self.wave.name)
            return summary
        finally:
            loader.close()
            if self._dry is not None:
                self._dry.close()
            if ledger is not None:
                ledger.close()
            self.close()

    def _wave_suites(self) -> list[Any]:
        """The project's suites this wave uses, checked now (a bad suite fails the run before
        anything is read): target suites, and source suites of tables the wave reads. A
        quarantine suite must name its table by a key some mapping reads it with, or the rows
        it names could not be held back."""
        from continuity.validation import project_suites

        reads: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        for step in self.steps:
            m = step.mapping
            reads.setdefault((m.source, m.table or m.as_table), set()).add(tuple(m.key))
        chosen = []
        for suite in project_suites(self.project):
            if suite.side == "target":
                chosen.append(suite)
                continue
            keys = reads.get((suite.source or "", suite.table))
            if keys is None:
                continue  # a table this wave does not read
            quarantines = [e for e in suite.expectations if e.severity == "quarantine"]
            if quarantines and tuple(suite.key) not in keys:
                known = " or ".join(str(list(k)) for k in sorted(keys))
                raise ConfigError(
                    f"{suite.file}:{suite.lines.get('key', 1)}: key: {list(suite.key)} is not "
                    f"how the mappings key {suite.source}.{suite.table} ({known}): its "
                    "quarantine could not name their rows"
                )
            chosen.append(suite)
        return chosen

    def _suites_digest(self, quarantine_only: bool = False) -> str | None:
        if not self._suites:
            return None
        h = hashlib.sha256()
        for s in self._suites:
            for e in s.expectations:
                if quarantine_only and (s.side != "source" or e.severity != "quarantine"):
                    continue
                args = json.dumps(_portable(e.arguments), sort_keys=True, default=str)
                h.update(f"{s.source}|{s.table}|{s.key}|{e.name}|{e.severity}|{args}\n".encode())
        return h.hexdigest()

    def _validation_scope(self, loader: Loader) -> dict[tuple[str, str], tuple[str, list[str]]]:
        """A delta's: of each source table change detection covers (keyed by one column), the
        rows the delta migrates, which alone its row-level warnings judge. None for a full
        run, or when the suites changed since the last finished run (every row is judged by
        them then)."""
        found = self._changes
        if not self.delta or found is None:
            return {}
        if (loader.checkpoint(VALIDATED) or {}).get("suites") != self._validated_digest():
            return {}
        return {
            (read.source, read.table): (read.key[0], sorted(found.keys(read.source, read.table)))
            for read in changes.table_reads(self)
            if len(read.key) == 1 and found.covers(read.source, read.table)
        }

    def _validated_digest(self, side: str = "source") -> str:
        """The suites' files of one side (wherever the project lies)."""
        from validators.suite import suites_digest

        return suites_digest([s for s in self._suites if s.side == side])

    def _watched(self, spec: MappingSpec) -> list[str]:
        """The columns of an entity's table whose values a delta keeps of the rows it writes:
        its key columns, and those its target suites name (a reference judges the rows holding
        the values written: see continuity.validation.TargetChanges)."""
        table = self.metadata.tables[spec.entity]
        named = {
            column
            for s in self._suites
            if s.side == "target" and s.table == spec.entity
            for e in s.expectations
            if isinstance(column := e.arguments.get("column"), str) and column in table.columns
        }
        return [c.name for c in table.columns if c.primary_key or c.name in named]

    def _check_sources(
        self,
        run_id: str,
        dry_run: bool,
        rows: Mapping[tuple[str, str], Any],
        into: dict[str, Any],
        clock: _Clock,
    ) -> None:
        """Validate the sources, their verdict going ``into["source"]``.

        When the run may use more than one process, the suites run in a forked one while the
        run builds its lookups and resolves persons, which read and write nothing; the run
        waits for the verdict (:meth:`_sources_checked`) before it writes anything of its own.
        Else they run here and now."""

        def verdict(done: Any) -> None:
            into["source"] = self._judge_sources(done, run_id, dry_run)

        if can_fork() and any(s.side == "source" for s in self._suites):
            # The forked process opens its own connections: none of this one's may cross.
            for extractor in self.extractors.values():
                extractor.close()
            self.extractors.clear()
            # It then waits to validate the target, which the run asks of it once the wave's
            # rows are in and finishes the run meanwhile; Great Expectations is imported
            # there already, and the process holds the memory of the run as it is now, not
            # as it has grown by then (see _ask_target).
            then = None
            if self._validates_target(dry_run) and any(s.side == "target" for s in self._suites):
                then = self._target_suites_aside(run_id)
            aside = Aside(
                lambda: self._run_source_suites(run_id, dry_run, rows), "source validation", then
            )
            self._checking_sources = (aside, verdict, clock)
        else:
            with clock("source validation"):
                verdict(self._run_source_suites(run_id, dry_run, rows))

    def _quarantine_reaches_resolution(self) -> bool:
        """Whether a source suite holds back rows of a table persons are resolved from: the
        records resolution reads leave those out, so it waits for the sources' verdict."""
        resolved = {
            (s.mapping.source, s.mapping.table or s.mapping.as_table)
            for s in self.steps
            if s.spec.resolve is not None
        }
        return any(
            s.side == "source"
            and (s.source, s.table) in resolved
            and any(e.severity == "quarantine" for e in s.expectations)
            for s in self._suites
        )

    def _sources_checked(self) -> None:
        """Wait for the sources' verdict, if they are validated aside: raise ValidationError
        on a critical failure (nothing loaded), else know the rows to quarantine. The phase
        ``source validation`` is the time waited (the validation's own is in its summary)."""
        if self._checking_sources is None:
            return
        aside, verdict, clock = self._checking_sources
        self._checking_sources = None
        with clock("source validation"):
            value = aside.result()
            if aside.waiting:  # (it validates the target later)
                self._validator = aside
            else:
                aside.cancel()  # (none asked for, or gone: the target is validated here)
            verdict(value)

    def _run_source_suites(
        self, run_id: str, dry_run: bool, rows: Mapping[tuple[str, str], Any]
    ) -> Any:
        """The sources' validation (a ``continuity.validation.Validation``, None without
        suites), recorded in the work store unless a dry run."""
        from continuity.validation import run_validation

        return run_validation(
            self.project,
            "source",
            run_id=run_id,
            wave=self.wave.name,
            ledger=not dry_run,
            suites=self._suites,
            rows=rows,
        )

    def _judge_sources(self, done: Any, run_id: str, dry_run: bool) -> dict[str, Any]:
        """Raise ValidationError (nothing loaded) on a critical failure, else remember the
        rows to quarantine. The ledger records a refusal (not in a dry run)."""
        from continuity.validation import stop_message

        if done is None:
            return {}
        result = done.result
        if not result.ok:
            message = (
                f"wave {self.wave.name} stopped before loading: {stop_message(result)} "
                "(continuity validate --side source lists every finding)"
            )
            if not dry_run:
                ledger = AuditLedger(self.project.ledger)
                try:
                    ledger.append(
                        "run-refused",
                        {"error": message, "validation_id": done.validation_id},
                        run_id,
                        self.wave.name,
                    )
                finally:
                    ledger.close()
            raise ValidationError(message)
        self._invalid = result.quarantine()
        scope = {"scope": dict(result.scope)} if result.scope else {}
        return {
            "ok": True,
            **result.counts(),
            **scope,
            "seconds": round(result.seconds, 3),
            "validation_id": done.validation_id,
        }

    def _validates_target(self, dry_run: bool) -> bool:
        """Whether the run validates the target after the wave (a SQL target, not dry)."""
        return self.validate and not dry_run and self.project.target.loader == "sql"

    def _target_suites_aside(self, run_id: str) -> Callable[[Any], Any]:
        """The target's validation, as the source validation's process runs it when asked
        (or this one, where none does): ``request`` is :meth:`_target_scope`'s (rows,
        changed). Not recorded: the run records the verdict once it has finished (a run that
        fails to finish records none)."""

        def validate(request: Any) -> Any:
            from continuity.validation import run_validation

            rows, changed = request
            return run_validation(
                self.project,
                "target",
                run_id=run_id,
                wave=self.wave.name,
                ledger=False,
                suites=self._suites,
                rows=rows,
                changed=changed,
            )

        return validate

    def _ask_target(self, loader: Loader) -> None:
        """Once every row of the wave is written: the target's validation begins in the
        process that validated the sources, if it waits for it, while this one finishes
        the run (each on a core of its own; the suites read the wave's tables, finishing
        writes the run's checkpoints and states). Not where a reader waits for a writer (a
        SQLite target not in WAL mode): it is asked once the run has finished. A process
        gone meanwhile (killed) leaves the validation to this one."""
        if self._validator is None or loader.readers_wait_for_writers:
            return
        try:
            self._validator.ask(self._target_scope())
        except ProcessDied:
            self._validator = None

    def _target_scope(self) -> tuple[dict[tuple[str, str], tuple[str, list[str]]], Any]:
        """What the target's row-level expectations judge (``rows``) and what the wave
        changed (``changed``); see :meth:`_validate_target`."""
        from continuity.validation import TargetChanges

        digest = self._validated_digest("target")
        rows: dict[tuple[str, str], tuple[str, list[str]]] = {}
        changed: TargetChanges | None = None
        if self._written and (self._target_validated or {}).get("suites") == digest:
            for entity, written in self._written.items():
                table = self.metadata.tables[entity]
                at = primary_key_indexes(table)
                if not at:
                    continue  # (no key: every row is judged)
                # (of a table keyed by several columns, the rows sharing the first key column's
                # values with the rows written: more rows than those, which met the suites)
                first = table.columns[at[0]].name
                rows[("target", entity)] = (first, sorted(written[first]))
            changed = TargetChanges(
                written=self._written,
                removed=self._removed,
                keyed_by={
                    t.name: t.columns[at[0]].name
                    for t in self.metadata.sorted_tables
                    if len(at := primary_key_indexes(t)) == 1
                },
                tables=frozenset(self.metadata.tables),
            )
        return rows, changed

    def _validate_target(self, summary: RunSummary, run_id: str, loader: Loader) -> None:
        """Validate the target after the wave: a critical failure marks the run failed.

        A delta's row-level expectations judge the rows it wrote, when every other row met
        the same suites after the last run (the checkpoint ``validated:target``, kept only
        while the target passes). Where the process that validated the sources was asked
        to (:meth:`_ask_target`), its verdict is awaited; else the suites run here."""
        from continuity.validation import record, stop_message

        digest = self._validated_digest("target")
        validator, self._validator = self._validator, None
        done = None
        try:
            if validator is not None:
                if validator.waiting:  # (not asked while the run finished)
                    validator.ask(self._target_scope())
                done = validator.answer("target validation")
        except ProcessDied:
            validator = None  # (killed: validated here instead)
        if validator is None:
            done = self._target_suites_aside(run_id)(self._target_scope())
        if done is None:
            return
        record(self.project, done, run_id, self.wave.name)
        result = done.result
        summary.validation["target"] = {
            "ok": result.ok,
            **result.counts(),
            **({"scope": dict(result.scope)} if result.scope else {}),
            "seconds": round(result.seconds, 3),
            "validation_id": done.validation_id,
        }
        with loader.transaction() as tx:
            tx.set_checkpoint(VALIDATED_TARGET, {"suites": digest} if result.ok else {})
        if not result.ok:
            summary.failed = f"target validation: {stop_message(result)}"

    def rules_digest(self) -> str:
        """What the run does to a record besides its values: the mappings, and the date their
        rules compare with where one does. Part of every fingerprint, so that a delta after
        either changed migrates every record again (as a full run would)."""
        mappings = self._settings()["mappings"]
        dated = any("$as_of" in spec.file.read_text(encoding="utf-8") for spec in self.specs)
        # the expectations that hold rows back decide, like the mappings, what a record becomes
        held = self._suites_digest(quarantine_only=True) or ""
        text = f"{mappings}|{self.as_of.isoformat() if dated else ''}{'|' + held if held else ''}"
        # so does a gazetteer addresses are resolved against, where its content is known
        # cheaply (a file's bytes): a new one makes the next delta migrate every record again
        for name, source, selection in self._gazetteers():
            text += f"|{name}:{self._content_digest(source, selection) or ''}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pending_changes(self, progress: Progress | None = None) -> dict[str, dict[str, int]]:
        """What a delta of this wave would find now, per source table (nothing is written)."""
        if not self.fingerprints:
            raise ConfigError("change detection needs the sql loader (fingerprints in the target)")
        return changes.Detector(self, "pending", None, keep=False).run(progress).counts

    def _detect(
        self, loader: Loader, run_id: str, dry_run: bool, progress: Progress | None
    ) -> changes.Changes:
        """What changed since earlier runs (see :mod:`continuity.changes`), found once per run:
        a resumed run reads back what it found when it began."""
        name = f"changes:{self.wave.name}"
        state = None if dry_run else loader.checkpoint(name)
        if state is not None and state.get("run_id") == run_id and state.get("done"):
            found = changes.read_pending(self.project.target.location, run_id, self.delta)
            found.counts = state.get("counts", {})  # with the tables where nothing changed
            return found

        def write(rows: list[tuple[Any, ...]]) -> None:
            with loader.transaction() as tx:
                tx.upsert(changes.PENDING, rows)

        if not dry_run:  # what a pass killed half-way wrote, and runs never to be resumed
            unfinished = {
                str(v.get("run_id"))
                for k, v in loader.checkpoints().items()
                if k.startswith("wave:") and not v.get("finished", False)
            }
            with loader.transaction() as tx:
                changes.forget_pending(tx, run_id)
                changes.forget_abandoned(tx, unfinished | {run_id})
        found = changes.Detector(self, run_id, None if dry_run else write, self.delta).run(progress)
        if not dry_run:
            with loader.transaction() as tx:
                tx.set_checkpoint(name, {"run_id": run_id, "done": True, "counts": found.counts})
        return found

    def _deletions(self, loader: Loader, run_id: str, dry_run: bool) -> dict[str, int]:
        """Records deleted at source since an earlier run: each crosswalk entry moves to the
        deletions table, its target record kept (other records may still make it); a
        quarantine or exclusion entry goes. Journaled, so a rollback puts them back."""
        assert self._changes is not None
        moved: dict[str, int] = {}
        if dry_run:
            return moved
        for (source, table), keys in sorted(self._changes.deleted.items()):
            steps = [
                s for s in self.steps if (s.mapping.source, s.mapping.table) == (source, table)
            ]
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                for step in steps:
                    ids = [(source, step.mapping.as_table, k) for k in chunk]
                    with loader.transaction() as tx:
                        fetch = getattr(tx, "fetch", None)
                        entries = fetch(CROSSWALK, ids) if fetch is not None else []
                        journal = self._journal_for(run_id)
                        rows = [
                            (s, t, k, tt, tk, rule, "kept", run_id)
                            for s, t, k, tt, tk, rule, _score in entries
                        ]
                        gone = [tuple(e[:3]) for e in entries]
                        for name, keys_of in (
                            (CROSSWALK, gone),
                            (QUARANTINE, ids),
                            (EXCLUSION, ids),
                        ):
                            self._delete(tx, journal, name, keys_of)
                        if rows:
                            if journal is not None:
                                journal.record(tx, DELETION, rows)
                            tx.upsert(DELETION, rows)
                            moved[step.spec.entity] = moved.get(step.spec.entity, 0) + len(rows)
        return moved

    def _journal_for(self, run_id: str) -> Journal | None:
        if self.journal and self._journal is None:
            start = next_seq(self.project.target.location, run_id)
            self._journal = Journal(self.metadata, run_id, start, self._fresh)
        return self._journal

    def _recover(self, ledger: AuditLedger, previous: Mapping[str, Any]) -> None:
        """The target says the wave's last run finished (or was rolled back) but the ledger
        never heard: the process stopped between the two. Say so in the ledger now."""
        from continuity.runs import runs

        run_id = str(previous.get("run_id"))
        for record in runs(ledger):
            if record.run_id == run_id and record.ended is None and record.rolled_back is None:
                what = "rolled back" if previous.get("rolled_back") else "finished"
                ledger.append(
                    "run-recovered",
                    {"state": what, "note": "the target's checkpoint is ahead of the ledger"},
                    run_id,
                    self.wave.name,
                )

    def _settings(self) -> dict[str, Any]:
        """What a run must keep from start to end, resumed or not."""
        mappings = hashlib.sha256(
            "".join(f"{s.entity}:{s.digest};" for s in self.specs).encode()
        ).hexdigest()
        from continuity.people import decisions_digest

        return {
            "as_of": self.as_of.isoformat(),
            "journal": self.journal,
            "delta": self.delta,
            "project": self.project.digest,
            "mappings": mappings,
            "validate": self.validate,
            "suites": self._suites_digest(),
            "decisions": decisions_digest(
                {
                    (f"{entity}|{a}", b): d
                    for entity, found in sorted(self._decisions.items())
                    for (a, b), d in found.items()
                }
            ),
        }

    def _same_settings(self, previous: Mapping[str, Any], now: Mapping[str, Any]) -> None:
        """A resumed run goes on as it began: same date, journal, project and mappings."""
        changed = [
            name
            for name in (
                "as_of",
                "journal",
                "delta",
                "project",
                "mappings",
                "decisions",
                "validate",
                "suites",
            )
            if name in previous and previous[name] != now[name]
        ]
        if changed:
            detail = ", ".join(f"{n} was {previous[n]!s:.16} now {now[n]!s:.16}" for n in changed)
            raise ConfigError(
                f"wave {self.wave.name}: the interrupted run began with other settings "
                f"({detail}): resume it with those, or start it again with --restart"
            )

    def _run_id(
        self, previous: Mapping[str, Any] | None, resume: bool, restart: bool
    ) -> tuple[str, bool]:
        unfinished = previous is not None and not previous.get("finished", False)
        if resume:
            if not unfinished:
                raise ConfigError(
                    f"wave {self.wave.name}: nothing to resume (no interrupted run of it)"
                )
            return str(previous["run_id"]), True  # type: ignore[index]
        if unfinished and not restart:
            raise ConfigError(
                f"wave {self.wave.name} was interrupted (run {previous['run_id']}): "  # type: ignore[index]
                "continue it with --resume, or start it again with --restart"
            )
        return str(uuid.uuid4()), False

    def _step(
        self,
        step: Step,
        source: CompiledSource,
        loader: Loader,
        keys: RunKeys,
        run_id: str,
        dry_run: bool,
        progress: Progress | None,
    ) -> StepCounts:
        counts = StepCounts()
        ckpt_name = f"step:{self.wave.name}:{step.name}"
        state = None if dry_run else loader.checkpoint(ckpt_name)
        after = None
        if state is not None and state.get("run_id") == run_id:
            if state.get("done"):
                if (step.mapping.source, step.mapping.as_table) in self._needed:
                    # Later steps need to know where its records went (references, newer
                    # copies): map it again, writing nothing.
                    self._replay(step, source, keys)
                return StepCounts(**state["counts"], skipped=True)
            after = state.get("after")
            if after is not None:
                after = [from_json(v) for v in after]
            counts = StepCounts(**state["counts"])
            resumed_within = after is not None or bool(state.get("chunk"))
            if resumed_within and (step.mapping.source, step.mapping.as_table) in self._needed:
                # What the interrupted run knew of its records (newer copies, exclusions) died
                # with it: map them again, writing nothing, before going on from the checkpoint.
                self._replay(step, source, keys)
        ex = self.extractor(step.mapping.source)
        selection = self.selection(step, after)
        m = step.mapping
        key_index = [source.columns.index(k) for k in m.key]
        wanted = None  # a delta: the keys to migrate again (None: every record)
        moved_refs = self._moved_refs(step, source.columns)  # rows referring to moved records
        if self.delta and self._changes is not None and self._changes.covers(m.source, m.table):
            wanted = self._changes.keys(m.source, m.table or "")
            if not wanted and not moved_refs and after is None:  # nothing changed: not read
                if not dry_run:
                    with loader.transaction() as tx:
                        tx.set_checkpoint(
                            ckpt_name, {"run_id": run_id, "done": True, "counts": counts.as_dict()}
                        )
                return counts
        bad, nulls = self._key_problems(step, selection)
        out = BatchOut()
        # A delta asks the source for the records that changed, a batch of keys at a time
        # (its checkpoint counts batches; a key of several columns by its first), then for the
        # rows referring to records resolution moved; a full run, or a delta with rows
        # referring to moved records by a key of more than one column, reads the whole
        # selection in key order.
        keyed = wanted is not None and all(len(at) == 1 for at, _ in moved_refs)
        done_chunks = (
            int(state.get("chunk", 0))
            if state and state.get("run_id") == run_id and state.get("reads") == _reads()
            else 0
        )
        if after is None and done_chunks == 0:
            # Rows with a null key part, which neither the key-ordered read nor a read by keys
            # delivers, are quarantined under the key they show (once: a resumed step is past
            # them).
            out.quarantine += nulls
        if progress is None:
            total = 0
        elif keyed:
            total = len(wanted or ())
        else:
            total = ex.count(selection) + counts.read + counts.unchanged
        if out.quarantine:
            self._commit(loader, step, out, counts, keys, ckpt_name, run_id, None, dry_run)
        reads = (
            self._keyed_reads(
                step, sorted(wanted or ()), done_chunks, moved_refs, source.columns, key_index
            )
            if keyed
            else ((None, b) for b in ex.batches(selection, self.batch_size))
        )
        for chunk, batch in reads:
            last = [batch[-1][i] for i in key_index] if chunk is None and batch else None
            if wanted is not None:
                kept = [
                    r
                    for r in batch
                    if key_text([r[i] for i in key_index]) in wanted
                    or any(key_text([r[i] for i in at]) in moved for at, moved in moved_refs)
                ]
                counts.unchanged += len(batch) - len(kept)
                batch = kept
            counts.read += len(batch)
            out.clear()
            self._map(step, source, batch, bad, out)
            position = None if chunk is None else {"chunk": chunk, "reads": _reads()}
            self._commit(
                loader, step, out, counts, keys, ckpt_name, run_id, last, dry_run, position
            )
            if progress is not None:
                progress(step.name, counts.read + counts.unchanged, total)
        if not dry_run:
            with loader.transaction() as tx:
                tx.set_checkpoint(
                    ckpt_name, {"run_id": run_id, "done": True, "counts": counts.as_dict()}
                )
        return counts

    def _keyed_reads(
        self,
        step: Step,
        ordered: list[str],
        done: int,
        moved_refs: Sequence[tuple[list[int], set[str]]] = (),
        columns: Sequence[str] = (),
        key_index: Sequence[int] = (),
    ) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
        """A delta's reads of a step's changed records: (batches done, rows), from batch
        ``done`` on (a resumed step is past those). Then, a batch of moved keys at a time, the
        other rows referring to records resolution moved (``moved_refs``: one-column
        references), which the database finds (one scan a batch, not every row brought here)."""
        size = min(self.batch_size, KEYS_PER_READ)
        ex = self.extractor(step.mapping.source)
        chunks = (len(ordered) + size - 1) // size
        key = step.mapping.key
        if len(key) > 1 and not key_index:
            raise ValueError("a key of several columns is kept by its positions: key_index")
        for number in range(done, chunks):
            these = ordered[number * size : (number + 1) * size]
            if len(key) == 1:
                selection = dataclasses.replace(self.selection(step), keys=tuple(these))
                yield number + 1, [row for batch in ex.batches(selection, size) for row in batch]
                continue
            # A key of several columns: the rows holding one of the keys' first parts, of
            # which those with one of the keys are kept.
            selection = dataclasses.replace(
                self.selection(step), matching=((key[0], _first_parts(these, len(key))),)
            )
            keep = set(these)
            yield (
                number + 1,
                [
                    row
                    for batch in ex.batches(selection, size)
                    for row in batch
                    if key_text([row[i] for i in key_index]) in keep
                ],
            )
        if not moved_refs:
            return
        # The moved keys a batch at a time too (a statement binds so many values at most), each
        # batch a chunk of its own; only the rows referring to moved records are kept, whatever
        # the extractor could filter, so memory holds those rows alone.
        wanted = set(ordered)  # read above already
        moved = [(at[0], sorted(keys)) for at, keys in moved_refs]
        size = max(1, MOVED_PER_READ // len(moved))
        # each moved key's batch; a row is read in the first batch naming any key it refers to
        part_of = [(at, {k: i // size for i, k in enumerate(keys)}) for at, keys in moved]
        parts = max((len(keys) + size - 1) // size for _, keys in moved)
        for part in range(max(done - chunks, 0), parts):
            asked = dataclasses.replace(
                self.selection(step),
                matching=tuple(
                    (columns[at], tuple(keys[part * size : (part + 1) * size]))
                    for at, keys in moved
                ),
            )
            found = []
            for batch in ex.batches(asked, self.batch_size):
                for row in batch:
                    first = min(
                        (
                            p
                            for at, parts_of in part_of
                            if (p := parts_of.get(key_text([row[at]]))) is not None
                        ),
                        default=None,
                    )
                    if first == part and key_text([row[i] for i in key_index]) not in wanted:
                        found.append(row)
            yield chunks + part + 1, found

    def _moved_refs(self, step: Step, columns: Sequence[str]) -> list[tuple[list[int], set[str]]]:
        """A delta: (positions of a ``ref``'s key, the moved keys of the table it names)."""
        if not self._moved:
            return []
        physical = {
            (s.mapping.source, s.mapping.as_table): s.mapping.table or s.mapping.as_table
            for s in self.steps
        }
        found = []
        for ref in step.mapping.refs():
            keys = self._moved.get((ref.source, physical.get((ref.source, ref.table), ref.table)))
            if keys and all(c in columns for c in ref.key):
                found.append(([columns.index(c) for c in ref.key], keys))
        return found

    def _absent(self, tx: Any, entity: str, out: BatchOut) -> list[tuple[Any, ...]]:
        """The fallback rows whose key no row holds yet, in the target or in this batch."""
        fetch = getattr(tx, "fetch", None)
        if not out.fallback_rows or fetch is None:
            return []  # a loader that cannot read the target cannot tell: no stand-ins
        at = primary_key_indexes(self.metadata.tables[entity])
        taken = {tuple(r[i] for i in at) for r in out.rows}
        wanted: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for r in out.fallback_rows:
            k = tuple(r[i] for i in at)
            if k not in taken:
                wanted.setdefault(k, r)  # the first of a cluster's records stands in
        if wanted:
            for row in fetch(entity, list(wanted)):
                wanted.pop(tuple(row[i] for i in at), None)
        return list(wanted.values())

    def _unquarantine(self, tx: Any, out: BatchOut, journal: Journal | None) -> None:
        """A record is in one place at a time: one an earlier run quarantined (or excluded) that
        now reaches the target, or is now excluded (or quarantined), leaves its old place."""
        if not self._stale_pairs:
            return
        stale = self._stale_pairs
        placed = [k for k in out.placed if (k[0], k[1]) in stale]
        excluded = [tuple(r[:3]) for r in out.excluded if (r[0], r[1]) in stale]
        rejected = [tuple(r[:3]) for r in out.quarantine if (r[0], r[1]) in stale]
        for table, keys in ((QUARANTINE, placed + excluded), (EXCLUSION, placed + rejected)):
            self._delete(tx, journal, table, keys)

    def _delete(
        self, tx: Any, journal: Journal | None, table: str, keys: Sequence[tuple[Any, ...]]
    ) -> int:
        """:func:`_delete`, the keys of a table keyed by one column kept (``_removed``: a
        delta's validation judges the rows that named them)."""
        if keys and len(primary_key_indexes(self.metadata.tables[table])) == 1:
            self._removed.setdefault(table, set()).update(str(k[0]) for k in keys)
        return _delete(tx, journal, table, keys)

    def _stale(self, url: str) -> set[tuple[str, str]]:
        """(source, table) pairs with records in the target's quarantine or exclusions."""
        engine = engine_for(url)
        found: set[tuple[str, str]] = set()
        try:
            with engine.connect() as conn:
                for table in (
                    target_schema.migration_quarantine,
                    target_schema.migration_exclusion,
                ):
                    query = select(table.c.source_system, table.c.source_table).distinct()
                    found |= {(r[0], r[1]) for r in conn.execute(query)}
        finally:
            engine.dispose()
        return found

    def _replay(self, step: Step, source: CompiledSource, keys: RunKeys) -> None:
        out = BatchOut()
        selection = self.selection(step)
        bad, nulls = self._key_problems(step, selection)
        out.quarantine += nulls
        for batch in self.extractor(step.mapping.source).batches(selection, self.batch_size):
            self._map(step, source, batch, bad, out)
            keys.record(out, step.spec.entity)
            out.clear()

    def _key_problems(
        self, step: Step, selection: Selection
    ) -> tuple[dict[tuple[Any, ...], str], list[tuple[str, str, str, str]]]:
        """Keys that do not name exactly one row of a step's selection: duplicates (every row
        sharing one is quarantined: a duplicate cannot be told from its twin) and null key
        parts, as quarantine rows. Asked of the database once per selection and run."""
        m = step.mapping
        memo_key = (m.source, selection.table, selection.query, selection.key, selection.where)
        found = self._problems.get(memo_key)
        if found is None and self._keys_unique(step, selection):
            found = self._problems[memo_key] = ({}, [])
        if found is None:
            bad: dict[tuple[Any, ...], str] = {}
            nulls: list[tuple[str, str, str, str]] = []
            plain = dataclasses.replace(selection, after=None)
            for problem in self.extractor(m.source).key_problems(plain):
                if any(v is None for v in problem.key):
                    nulls.append((m.source, m.as_table, key_text(problem.key), problem.reason))
                else:
                    bad[tuple(problem.key)] = problem.reason
            found = self._problems[memo_key] = (bad, nulls)
        bad, nulls = found
        invalid = self._invalid.get((m.source, m.table or m.as_table))
        if invalid is not None and tuple(invalid[0]) == tuple(m.key):
            bad = {**invalid[1], **bad}  # a duplicate key's reason is the more basic one
        # The quarantine rows name this step's table (as_table): rebuilt for it.
        return bad, [(m.source, m.as_table, k, r) for _, _, k, r in nulls]

    def _keys_unique(self, step: Step, selection: Selection) -> bool:
        """Whether change detection, reading every row of this selection (and maybe more),
        met every key once and none with a null part: then the database has no key problem to
        tell (as of that read, as a grouping query would have been as of its own)."""
        m = step.mapping
        found = self._changes
        if found is None or selection.table is None or selection.query is not None:
            return False
        key, filters = found.unique.get((m.source, selection.table), ((), frozenset()))
        return (
            key == tuple(selection.key)
            and selection.where in filters
            and self.extractor(m.source).keys_equal_as_text(selection)
        )

    def _map(
        self,
        step: Step,
        source: CompiledSource,
        batch: Sequence[tuple[Any, ...]],
        bad: Mapping[tuple[Any, ...], str],
        out: BatchOut,
        collect: Sequence[str] | None = None,
        collect_dropped: bool = False,
    ) -> None:
        """Map a batch, rows whose key is a duplicate going to quarantine instead."""
        if not bad:
            source.map_batch(batch, out, collect, collect_dropped)
            return
        m = step.mapping
        key_index = [source.columns.index(k) for k in m.key]
        good = []
        for row in batch:
            k = tuple(row[i] for i in key_index)
            if k in bad:
                out.quarantine.append((m.source, m.as_table, key_text(k), bad[k]))
            else:
                good.append(row)
        source.map_batch(good, out, collect, collect_dropped)

    def _commit(
        self,
        loader: Loader,
        step: Step,
        out: BatchOut,
        counts: StepCounts,
        keys: RunKeys,
        ckpt_name: str,
        run_id: str,
        last: list[Any] | None,
        dry_run: bool,
        position: Mapping[str, Any] | None = None,
    ) -> None:
        counts.loaded += len(out.rows)  # fallback rows stand in for others: not counted
        counts.quarantined += len(out.quarantine)
        counts.excluded += len(out.excluded)
        if not dry_run:
            journal = self._journal_for(run_id)
            with loader.transaction() as tx:
                rows_now = out.rows + self._absent(tx, step.spec.entity, out)
                written = self._written.get(step.spec.entity)
                if written is not None:  # a delta's, for the target's validation
                    columns = self.metadata.tables[step.spec.entity].columns
                    for column, values in written.items():
                        at = columns.keys().index(column)
                        values.update(str(r[at]) for r in rows_now if r[at] is not None)
                for table, rows in (
                    (step.spec.entity, rows_now),
                    (CROSSWALK, out.crosswalk),
                    (QUARANTINE, out.quarantine),
                ):
                    if rows:
                        if journal is not None:
                            journal.record(tx, table, rows)
                        tx.upsert(table, rows)
                state: dict[str, Any] = {"run_id": run_id, "done": False}
                state["counts"] = counts.as_dict()
                if last is not None:
                    state["after"] = [to_json(v) for v in last]
                if position is not None:
                    state.update(position)
                tx.set_checkpoint(ckpt_name, state)
                self._unquarantine(tx, out, journal)
                if out.excluded:
                    if journal is not None:
                        journal.record(tx, EXCLUSION, out.excluded)
                    tx.upsert(EXCLUSION, out.excluded)
        else:
            self._would_change(out, step.spec.entity)
        keys.record(out, step.spec.entity)

    def _would_change(self, out: BatchOut, entity: str) -> None:
        """Dry run: count the batch's records already in the target (updated) and new ones."""
        if self._dry is None or not out.crosswalk:
            return
        insert, update = self._dry.classify(out.crosswalk)
        summary = self._summary
        summary.would_insert[entity] = summary.would_insert.get(entity, 0) + insert
        summary.would_update[entity] = summary.would_update.get(entity, 0) + update


class _Existing:
    """Which source records the target's crosswalk already holds (for a dry run's counts)."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        self.conn = self.engine.connect()

    def classify(self, crosswalk: Sequence[tuple[Any, ...]]) -> tuple[int, int]:
        xw = target_schema.migration_crosswalk
        groups: dict[tuple[str, str], list[str]] = {}
        for system, table, key, *_ in crosswalk:
            groups.setdefault((system, table), []).append(key)
        found = 0
        for (system, table), keys in groups.items():
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                found += len(
                    self.conn.execute(
                        select(xw.c.source_key).where(
                            xw.c.source_system == system,
                            xw.c.source_table == table,
                            xw.c.source_key.in_(chunk),
                        )
                    ).all()
                )
        return len(crosswalk) - found, found

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _reads() -> str:
    """The batch sizes a keyed read's checkpoint counts in (read when asked: tests change
    them)."""
    return f"{KEYS_PER_READ}/{MOVED_PER_READ}"


def _first_parts(keys: Sequence[str], width: int) -> tuple[str, ...]:
    """The first parts of keys of ``width`` columns written as ``key_text`` (parts joined by
    ``|``): every one a key could have where a part itself holds a ``|``."""
    found: set[str] = set()
    for k in keys:
        parts = k.split("|")
        found.update("|".join(parts[:i]) for i in range(1, len(parts) - width + 2))
    return tuple(sorted(found))


def run_wave(
    project: Project,
    wave: str,
    *,
    resume: bool = False,
    restart: bool = False,
    dry_run: bool = False,
    as_of: dt.date | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    journal: bool = True,
    delta: bool = False,
    validate: bool = True,
) -> RunSummary:
    """Run ``wave`` of ``project``: every mapping's sources, parents first.

    Args:
        resume: continue the wave's interrupted run from its last committed batch.
        restart: start an interrupted wave again from the beginning (upserts make this safe).
        dry_run: read and map everything, write nothing; report what would be loaded.
        as_of: the date rules compare with (``$as_of``); default the project's, else today.
        batch_size: rows per transaction.
        progress: called as ``progress(step, rows_done, rows_total)``.
        journal: keep the journal ``continuity rollback`` replays (sql loader only).
        validate: validate the sources before loading (a critical failure stops the wave;
            rows failing a quarantine expectation are quarantined) and the target after (a
            critical failure marks the run failed), with the project's suites.
        delta: migrate only what changed since earlier runs (added, changed and related
            records); records deleted at source leave the crosswalk for the deletions table
            (see :mod:`continuity.changes`).
    """
    runner = WaveRunner(
        project, wave, as_of, batch_size, journal=journal, delta=delta, validate=validate
    )
    return runner.run(resume=resume, restart=restart, dry_run=dry_run, progress=progress)


def iter_steps(project: Project) -> Iterator[Step]:
    """The steps a wave of ``project`` runs, in order (for ``continuity plan``)."""
    yield from plan_steps(load_mappings(mapping_files(project.mappings)))


def _delete(tx: Any, journal: Journal | None, table: str, keys: Sequence[tuple[Any, ...]]) -> int:
    """Delete the rows of ``table`` with these keys, journaled first (those that exist);
    return how many there were."""
    if not keys:
        return 0
    existing = journal.record_delete(tx, table, keys) if journal is not None else keys
    if existing:
        tx.delete(table, existing)
    return len(existing)


def _before(a: Any, b: Any) -> bool:
    """A fixed order over looked-up values: any value before none, then by text."""
    if a is None:
        return False
    return b is None or repr(a) < repr(b)


def person_records(
    project: Project,
    entity: str = "person",
    progress: Progress | None = None,
    dropped: bool = False,
) -> Iterator[tuple[str, list[Any]]]:
    """Every source record of ``entity``'s resolved mapping, read as resolution reads it:
    ``(source|table|key, [forename, surname, dob, ...])`` (``ROLES`` order); with ``dropped``,
    the records a wave quarantines or excludes too.

    Streams: nothing is kept. For the search index and for scoring resolution.
    """
    runner = WaveRunner(project, next(iter(project.waves), "all"), None, BATCH_SIZE, journal=False)
    try:
        spec, keys = runner._ready_to_read(entity)
        for identity, values, _ in runner._person_records(spec, keys, progress, dropped):
            yield identity, values
    finally:
        runner.close()


def resolve_people(
    project: Project, wave: str, entity: str = "person", progress: Progress | None = None
) -> Any:
    """The resolution a run of ``wave`` would make of ``entity`` (nothing is loaded or saved).

    For scoring a resolution against the ground truth (``make bench``).
    """
    runner = WaveRunner(project, wave, None, BATCH_SIZE, journal=False)
    try:
        runner._load_decisions()
        _, keys = runner._ready_to_read(entity)
        runner._resolve(keys, progress, None)
        return runner._resources[f"resolution:{entity}"]
    finally:
        runner.close()
