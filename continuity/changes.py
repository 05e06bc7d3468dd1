"""Change detection for delta waves (``continuity run WAVE --delta``).

Legacy systems rarely keep modified timestamps anyone can trust, so every run fingerprints the
source records it covers before it moves a row: per source table, one read of every column any
mapping takes from it, each record's fingerprint a keyed BLAKE2b of its values (the key from
``CONTINUITY_FINGERPRINT_KEY``: fingerprints of personal data cannot be reversed by guessing).
Compared with the fingerprints the target's ``migration_fingerprint`` holds from earlier runs, a
record is *added*, *changed*, *unchanged*, or, held there but no longer at source, *deleted*.
A delta also migrates *related* records again: the record a changed child row belongs to (an
alias, a warning, a link: the one its mapping's first ``ref`` names), the other records of the
target records changed ones make (:func:`co_members`), and records resolution moved.

What a run finds goes to ``migration_fingerprint_pending`` under its run id, and becomes the
baseline only in the transaction that marks the wave finished. A run killed half-way leaves the
baseline as the last finished run left it, and its resumption reads its own findings back
instead of looking again: what changed after a run began is the next delta's to migrate.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import BigInteger, Column, MetaData, String, Table

from continuity import target_schema
from continuity.domain.connect import engine_for
from continuity.domain.digest import fingerprint_key
from continuity.domain.errors import ConfigError, ExtractError
from continuity.processes import scan_processes, worker_started
from extractors.base import Extractor, Selection
from mappings.compiler import key_text

if TYPE_CHECKING:
    from continuity.project import SourceConfig
    from continuity.waves import Step, WaveRunner

FINGERPRINTS = "migration_fingerprint"
PENDING = "migration_fingerprint_pending"
HISTORY = "migration_fingerprint_replaced"
ADDED, CHANGED, DELETED, RELATED = "added", "changed", "deleted", "related"
MOVED = "moved"  # resolved into another target record than the one holding it
#: Rows written to the pending table per transaction.
WRITE_EVERY = 20_000

Progress = Callable[[str, int, int], None]


def _baseline_columns() -> list[Column[Any]]:
    """A baseline fingerprint's columns (in the baseline, and where a promotion keeps those it
    replaced)."""
    return [
        Column("source_system", String(20), primary_key=True),
        Column("source_table", String(60), primary_key=True),
        Column("source_key", String(200), primary_key=True),
        Column("key_hash", BigInteger, nullable=False),
        Column("fingerprint", BigInteger, nullable=False),
        Column("wave", String(60), nullable=False),  # the wave that last recorded it
        Column("run_id", String(36), nullable=False),
    ]


def add_tables(metadata: MetaData) -> None:
    """Add the fingerprint tables to ``metadata`` (a run's copy of the product's)."""
    if FINGERPRINTS in metadata.tables:
        return
    Table(FINGERPRINTS, metadata, *_baseline_columns())
    Table(
        PENDING,
        metadata,
        Column("run_id", String(36), primary_key=True),
        Column("source_system", String(20), primary_key=True),
        Column("source_table", String(60), primary_key=True),
        Column("source_key", String(200), primary_key=True),
        Column("key_hash", BigInteger, nullable=False),
        Column("fingerprint", BigInteger),  # None: deleted, or a parent marked by a child
        # A record changed and moved by the resolution has a row for each.
        Column("change_kind", String(8), primary_key=True),  # "change" is reserved in MariaDB
    )
    Table(
        HISTORY,
        metadata,
        Column("replaced_by", String(36), primary_key=True),  # the run whose promotion did
        *_baseline_columns(),
    )


def _signed(digest: bytes) -> int:
    return int.from_bytes(digest, "big", signed=True)


def key_hash(key: str) -> int:
    return _signed(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest())


def key_hashes(keys: Sequence[str]) -> np.ndarray[Any, Any]:
    """:func:`key_hash` of each key, as an array (one join and one conversion, not one per
    key)."""
    b2 = hashlib.blake2b
    digests = b"".join([b2(k.encode("utf-8"), digest_size=8).digest() for k in keys])
    return np.frombuffer(digests, dtype=">i8").astype(np.int64)


class Fingerprinter:
    """A record's fingerprint: keyed BLAKE2b of its values as the source's driver returns them.

    ``repr`` of the row (in C, several times faster than a canonical text per value) is the
    same from run to run for the same source and driver; a driver that starts returning other
    types makes every record read as changed, which costs a full migration, never a loss.
    """

    def __init__(self, key: bytes | None = None, rules: str = "") -> None:
        """``rules``: what else decides a record's migration (see WaveRunner.rules_digest)."""
        self.key = key if key is not None else fingerprint_key()
        self.rules = rules

    def __call__(self, row: Sequence[Any]) -> int:
        text = (self.rules + repr(tuple(row))).encode("utf-8", "surrogatepass")
        return _signed(hashlib.blake2b(text, key=self.key, digest_size=8).digest())

    def many(self, rows: Sequence[Sequence[Any]]) -> np.ndarray[Any, Any]:
        """The fingerprint of each row, as an array: the same as calling this for each, from
        one keyed hash (with the rules) copied per row instead of keyed again."""
        base = hashlib.blake2b(key=self.key, digest_size=8)
        base.update(self.rules.encode("utf-8", "surrogatepass"))
        copy = base.copy
        parts: list[bytes] = []
        append = parts.append
        for row in rows:
            h = copy()
            h.update(repr(tuple(row)).encode("utf-8", "surrogatepass"))
            append(h.digest())
        return np.frombuffer(b"".join(parts), dtype=">i8").astype(np.int64)


@dataclass
class TableRead:
    """One source table as a run fingerprints it: every column its mappings read."""

    source: str
    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # the key first, then the rest by name
    where: str | None  # any mapping's filter in this wave (None: the whole table)
    own_where: str | None  # the same without the wave's scope: is a record still a source's
    scoped: bool
    #: (parent source, parent table, positions of the parent's key in ``columns``)
    parents: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    #: the older copies this table's records are newer copies of (``copy_of``), as parents
    copies: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    #: each of its mappings' filters in this wave (``where`` is any of them)
    filters: frozenset[str | None] = frozenset()


@dataclass
class Changes:
    """What changed in each source table since the fingerprints of earlier runs."""

    #: (source, table) -> keys a delta migrates: added, changed, and related (parents of changed
    #: children, other records of the target records changed ones make, moved records)
    wanted: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    deleted: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: (source, table) -> records the resolution moved to another target record
    moved: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: "source.table" -> {added, changed, related, deleted, unchanged}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: (source, table) -> (key, its mappings' filters) of the tables read in which every row's
    #: key had no null part and a text no other row's had: nor has any mapping's selection of
    #: them, all read (:meth:`WaveRunner._key_problems` asks the database no more)
    unique: dict[tuple[str, str], tuple[tuple[str, ...], frozenset[str | None]]] = field(
        default_factory=dict
    )

    def count(self, source: str, table: str, what: str, n: int = 1) -> None:
        found = self.counts.setdefault(
            f"{source}.{table}", dict.fromkeys((ADDED, CHANGED, RELATED, DELETED, "unchanged"), 0)
        )
        found[what] += n

    def covers(self, source: str, table: str | None) -> bool:
        """Whether the run fingerprinted this table (a query's records it cannot key)."""
        return table is not None and f"{source}.{table}" in self.counts

    def keys(self, source: str, table: str) -> set[str]:
        return self.wanted.get((source, table), set())


def _any(filters: Sequence[str | None]) -> str | None:
    """Records any of ``filters`` takes (None: a filter taking everything)."""
    if any(f is None for f in filters):
        return None
    unique = list(dict.fromkeys(f for f in filters if f is not None))
    return " OR ".join(f"({f})" for f in unique) if len(unique) > 1 else unique[0]


def table_reads(runner: WaveRunner) -> list[TableRead]:
    """Every source table the wave's mappings read, once each, with its children's parents."""
    groups: dict[tuple[str, str], list[Step]] = {}
    physical: dict[tuple[str, str], str] = {}
    for step in runner.steps:
        m = step.mapping
        if m.table is None:
            continue  # a query's records have no table to be fingerprinted in
        groups.setdefault((m.source, m.table), []).append(step)
        physical[(m.source, m.as_table)] = m.table
    reads = []
    for (source, table), steps in groups.items():
        keys = {s.mapping.key for s in steps}
        if len(keys) > 1:
            raise ConfigError(
                f"{steps[0].mapping.at}: mappings read {source}.{table} with different keys "
                f"({' and '.join('/'.join(k) for k in sorted(keys))}): a delta needs one"
            )
        key = steps[0].mapping.key
        selections = [runner.selection(s) for s in steps]
        copy_cols = {c for s in steps if s.mapping.copy_of for c in s.mapping.copy_of.key}
        rest = sorted(({c for sel in selections for c in sel.columns or ()} | copy_cols) - set(key))
        columns = (*key, *rest)
        read = TableRead(
            source,
            table,
            key,
            columns,
            _any([sel.where for sel in selections]),
            _any([s.mapping.where for s in steps]),
            any(runner.scope_of(s) for s in steps),
            filters=frozenset(sel.where for sel in selections),
        )
        for s in steps:
            c = s.mapping.copy_of
            if c is not None:
                entry = (c.source, c.table, tuple(columns.index(k) for k in c.key))
                if entry not in read.copies:
                    read.copies.append(entry)
            refs = s.mapping.refs()
            if not refs:
                continue
            ref = refs[0]  # the record this mapping's records belong to
            parent = (ref.source, physical.get((ref.source, ref.table), ref.table))
            positions = tuple(columns.index(c) for c in ref.key)
            if parent != (source, table) or positions != tuple(range(len(key))):
                entry = (*parent, positions)
                if entry not in read.parents:
                    read.parents.append(entry)
        reads.append(read)
    # Older copies first: a newer copy is wanted when its older copy changed (see Detector).
    older = {(c[0], c[1]) for r in reads for c in r.copies}
    return sorted(reads, key=lambda r: (r.source, r.table) not in older)


def _baseline(
    engine: sa.Engine, source: str, table: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The baseline's key hashes (sorted) and fingerprints of one source table."""
    t = sa.table(
        FINGERPRINTS,
        *(sa.column(c) for c in ("source_system", "source_table", "key_hash", "fingerprint")),
    )
    stmt = sa.select(t.c.key_hash, t.c.fingerprint).where(
        t.c.source_system == source, t.c.source_table == table
    )
    # Straight from the driver's cursor: a million SQLAlchemy rows cost seconds by themselves.
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    chunks: list[np.ndarray[Any, Any]] = []
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        while rows := cur.fetchmany(100_000):
            chunks.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
        cur.close()
    finally:
        raw.close()
    both = np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.int64)
    h_arr, f_arr = both[:, 0].copy(), both[:, 1].copy()
    order = np.argsort(h_arr, kind="stable")
    return h_arr[order], f_arr[order]


def _unseen(
    engine: sa.Engine, source: str, table: str, hashes: set[int]
) -> Iterator[tuple[str, int]]:
    """Baseline keys of ``table`` among ``hashes``, whatever wave recorded them."""
    t = sa.table(
        FINGERPRINTS,
        *(sa.column(c) for c in ("source_system", "source_table", "source_key", "key_hash")),
    )
    stmt = sa.select(t.c.source_key, t.c.key_hash).where(
        t.c.source_system == source, t.c.source_table == table
    )
    with engine.connect() as conn:
        for rows in conn.execution_options(yield_per=100_000).execute(stmt).partitions():
            for k, h in rows:
                if h in hashes:
                    yield k, h


class Detector:
    """Fingerprint a wave's source tables and compare them with the baseline."""

    def __init__(
        self,
        runner: WaveRunner,
        run_id: str,
        write: Callable[[list[tuple[Any, ...]]], None] | None,
        keep: bool,
    ) -> None:
        """``write`` takes the pending rows (None: a dry run writes nothing); ``keep`` keeps
        the keys to migrate in memory (a delta needs them, a full run does not)."""
        self.runner = runner
        self.run_id = run_id
        self.write = write
        self.keep = keep
        self.fingerprint = Fingerprinter(rules=runner.rules_digest())
        self.changes = Changes()
        self._pending: list[tuple[Any, ...]] = []
        self.baseline = True

    def _add(self, source: str, table: str, key: str, h: int, fp: int | None, change: str) -> None:
        self.changes.count(source, table, change)
        if change != DELETED and self.keep:
            self.changes.wanted.setdefault((source, table), set()).add(key)
        self._pending.append((self.run_id, source, table, key, h, fp, change))
        if len(self._pending) >= WRITE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.write is not None and self._pending:
            self.write(self._pending)
        self._pending = []

    def run(self, progress: Progress | None = None) -> Changes:
        engine = engine_for(self.runner.project.target.location)
        parents: list[tuple[str, str, str]] = []
        try:
            # A dry run on a target no run has written to yet has no baseline at all.
            self.baseline = sa.inspect(engine).has_table(FINGERPRINTS)
            for read, scan in self._scans(table_reads(self.runner), progress):
                parents += self._apply(engine, read, scan)
            # Parents of changed children, unless changed themselves (or read by no mapping
            # here). Only a delta needs them: a full run migrates every record anyway.
            for source, table, key in dict.fromkeys(parents):
                if self.changes.covers(source, table) and key not in self.changes.keys(
                    source, table
                ):
                    self._add(source, table, key, key_hash(key), None, RELATED)
            if self.keep:
                self._co_members(engine)
        finally:
            engine.dispose()
        self.flush()
        return self.changes

    def _co_members(self, engine: sa.Engine) -> None:
        for source, table, key in co_members(
            self.runner, self.changes, engine, self.changes.wanted
        ):
            self._add(source, table, key, key_hash(key), None, RELATED)

    def _scans(
        self, reads: list[TableRead], progress: Progress | None
    ) -> Iterator[tuple[TableRead, TableScan]]:
        """Each table's scan, in ``reads``' order. Tables are read and fingerprinted by as many
        worker processes as the machine has cores (``CONTINUITY_PROCESSES``; 1 reads them here),
        a newer copy's table once its older copies are known (it needs what changed there)."""
        job = _ScanJob(
            self.runner.project.target.location,
            self.baseline,
            self.fingerprint.key,
            self.fingerprint.rules,
            self.keep,
        )
        workers = min(scan_processes(), len(reads))
        if workers < 2 or "fork" not in mp.get_all_start_methods():
            for read in reads:
                scan = job.scan(self.runner.extractor(read.source), read, self._older(read))
                if progress is not None:
                    progress(f"changes {read.source}.{read.table}", scan.rows, scan.rows)
                yield read, scan
            return
        # Forked workers open their own connections: none of this process's may cross.
        for extractor in self.runner.extractors.values():
            extractor.close()
        self.runner.extractors.clear()
        sources = self.runner.project.sources
        pool = cf.ProcessPoolExecutor(
            workers, mp_context=mp.get_context("fork"), initializer=worker_started
        )
        futures: dict[int, cf.Future[TableScan]] = {}
        older: dict[tuple[str, str], set[str]] | None = None

        def submit(i: int) -> None:
            read = reads[i]
            futures[i] = pool.submit(_scan_in_worker, job, sources[read.source], read, older)

        # As many tables in flight as workers: findings wait to be taken in order, and a first
        # run's (every record added) are whole tables of keys.
        waiting = [i for i, read in enumerate(reads) if not read.copies]
        try:
            for i, read in enumerate(reads):
                while waiting and len(futures) < workers:
                    submit(waiting.pop(0))
                if i not in futures:  # a newer copy: what changed in its older copies is known
                    older = self._older(read)
                    submit(i)
                try:
                    scan = futures.pop(i).result()
                except cf.BrokenExecutor:
                    raise ExtractError(
                        f"change detection: the process reading {read.source}.{read.table} "
                        "died (out of memory?); CONTINUITY_PROCESSES=1 reads the tables in "
                        "the run's own process"
                    ) from None
                if progress is not None:
                    progress(f"changes {read.source}.{read.table}", scan.rows, scan.rows)
                yield read, scan
        except BaseException:
            # a table failed (or the run was stopped): read no more, wait for nothing
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _older(self, read: TableRead) -> dict[tuple[str, str], set[str]] | None:
        """What changed in a newer copy's older copies (None: not a newer copy, or not kept)."""
        if not read.copies or not self.keep:
            return None
        return {(cs, ct): self.changes.keys(cs, ct) for cs, ct, _ in read.copies}

    def _apply(
        self, engine: sa.Engine, read: TableRead, scan: TableScan
    ) -> list[tuple[str, str, str]]:
        """Count and write one table's findings; return the parents of its changed records."""
        source, table = read.source, read.table
        self.changes.count(source, table, "unchanged", scan.unchanged)
        if scan.unique:
            self.changes.unique[(source, table)] = (read.key, read.filters)
        for key, h, fp, found in zip(
            scan.keys, scan.hashes.tolist(), scan.prints.tolist(), scan.found.tolist(), strict=True
        ):
            self._add(source, table, key, h, fp, CHANGED if found else ADDED)
        if len(scan.unseen):
            self._deleted(engine, read, set(scan.unseen.tolist()))
        return scan.parents

    def _deleted(self, engine: sa.Engine, read: TableRead, unseen: set[int]) -> None:
        """Baseline records the wave did not read: deleted, unless the source still holds them
        outside the wave's scope (a scoped wave looks only at records it recorded itself)."""
        # Whatever wave recorded them: a record another wave migrated is deleted just the same.
        gone = dict(_unseen(engine, read.source, read.table, unseen))
        if gone and read.scoped:
            width = len(read.key)
            still = Selection(
                table=read.table, key=read.key, columns=read.key, where=read.own_where
            )
            for batch in self.runner.extractor(read.source).batches(still, 50_000):
                for row in batch:
                    gone.pop(key_text(row[:width]), None)
        for key, h in sorted(gone.items()):
            self.changes.deleted.setdefault((read.source, read.table), []).append(key)
            self._add(read.source, read.table, key, h, None, DELETED)


@dataclass
class TableScan:
    """One source table read and compared with its baseline (what a worker sends back)."""

    rows: int  # read
    unchanged: int
    keys: list[str]  # of added and changed records, in the order read
    hashes: np.ndarray[Any, Any]  # their key hashes
    prints: np.ndarray[Any, Any]  # their fingerprints
    found: np.ndarray[Any, Any]  # in the baseline (changed), or not (added)
    parents: list[tuple[str, str, str]]  # of changed records, and newer copies of changed ones
    unseen: np.ndarray[Any, Any]  # key hashes of the baseline the read did not meet
    #: every row's key had no null part and a text no other row's had
    unique: bool = False


@dataclass(frozen=True)
class _ScanJob:
    """What reading any table of a run needs (sent to each worker)."""

    target: str
    baseline: bool
    key: bytes
    rules: str
    keep: bool

    def scan(
        self,
        extractor: Extractor,
        read: TableRead,
        older: dict[tuple[str, str], set[str]] | None,
    ) -> TableScan:
        """Read ``read``'s table once, fingerprint each record and compare with the baseline.
        ``older``: what changed in its older copies (a newer copy of one is a parent)."""
        source, table = read.source, read.table
        if self.baseline:
            engine = engine_for(self.target)
            try:
                hashes, prints = _baseline(engine, source, table)
            finally:
                engine.dispose()
        else:
            hashes = prints = np.zeros(0, dtype=np.int64)
        n = len(hashes)
        seen = np.zeros(n, dtype=bool)
        width = len(read.key)
        selection = Selection(table=table, key=read.key, columns=read.columns, where=read.where)
        fingerprint = Fingerprinter(self.key, self.rules)
        rows = unchanged = 0
        keys: list[str] = []
        parts: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        parents: list[tuple[str, str, str]] = []
        every: list[np.ndarray[Any, Any]] = []  # every row's key hash (8 bytes a row)
        nulls = False
        for batch in extractor.batches(selection, 10_000):
            if width == 1:
                firsts = [row[0] for row in batch]
                nulls = nulls or None in firsts
                batch_keys = ["" if v is None else str(v) for v in firsts]
            else:
                batch_keys = [key_text(row[:width]) for row in batch]
                nulls = nulls or any(v is None for row in batch for v in row[:width])
            kh = key_hashes(batch_keys)
            every.append(kh)
            fp = fingerprint.many(batch)
            if n:
                # (the keys looked for in order: each search starts where the last ended, and
                # the baseline's pages are met in order; half the time of a search in any order)
                order = np.argsort(kh)
                at = np.empty(len(kh), dtype=np.intp)
                at[order] = np.searchsorted(hashes, kh[order])
                at = np.minimum(at, n - 1)
                found = hashes[at] == kh
                seen[at[found]] = True
                differs = found & (prints[at] != fp)
            else:
                found = np.zeros(len(batch_keys), dtype=bool)
                differs = found
            rows += len(batch)
            unchanged += int((found & ~differs).sum())
            picked = np.flatnonzero(~found | differs)
            keys += [batch_keys[i] for i in picked]
            for part, values in zip(parts, (kh, fp, found), strict=True):
                part.append(values[picked])
            if self.keep:
                for i in picked:
                    row = batch[i]
                    for ps, pt, positions in (*read.parents, *read.copies):
                        parents.append((ps, pt, key_text([row[p] for p in positions])))
            # A newer copy of a changed older one is migrated with it: the newer copy decides.
            for cs, ct, positions in read.copies:
                changed_older = (older or {}).get((cs, ct))
                if not changed_older:
                    continue
                for key, row in zip(batch_keys, batch, strict=True):
                    if row[positions[0]] is not None and (
                        key_text([row[p] for p in positions]) in changed_older
                    ):
                        parents.append((source, table, key))
        kh_all, fp_all, found_all = (
            np.concatenate(p) if p else np.zeros(0, dtype=t)
            for p, t in zip(parts, (np.int64, np.int64, bool), strict=True)
        )
        unseen = hashes[~seen] if n else hashes
        met = np.sort(np.concatenate(every)) if every else np.zeros(0, dtype=np.int64)
        unique = not nulls and not bool((met[1:] == met[:-1]).any())
        return TableScan(rows, unchanged, keys, kh_all, fp_all, found_all, parents, unseen, unique)


def _scan_in_worker(
    job: _ScanJob,
    config: SourceConfig,
    read: TableRead,
    older: dict[tuple[str, str], set[str]] | None,
) -> TableScan:
    """:meth:`_ScanJob.scan` in a worker process, with an extractor of its own."""
    extractor = config.extractor()
    try:
        return job.scan(extractor, read, older)
    finally:
        extractor.close()


def co_members(
    runner: WaveRunner,
    changes: Changes,
    engine: sa.Engine,
    start: dict[tuple[str, str], set[str]],
) -> list[tuple[str, str, str]]:
    """The other source records of the target records that ``start``'s records make (a warning
    both systems hold, a person's other records, a crime's older copy), and theirs in turn:
    migrated again with them, in step order, so that the record that decides a field still
    does. Each is added to ``changes`` (wanted) and returned: (source, table, key)."""
    steps = runner.steps
    physical = {
        (s.mapping.source, s.mapping.as_table): s.mapping.table
        for s in steps
        if s.mapping.table is not None and s.spec.key_column is not None
    }
    # A mapping with ``each`` makes several records of one row: key + "|" + the value.
    widths = {
        (s.mapping.source, s.mapping.as_table): len(s.mapping.key)
        for s in steps
        if s.mapping.each is not None
    }
    xw = target_schema.migration_crosswalk
    added: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    frontier = {k: set(v) for k, v in start.items() if v}
    with engine.connect() as conn:
        if not sa.inspect(engine).has_table(xw.name):
            return added
        while frontier:
            targets: set[tuple[str, str]] = set()
            for (source, as_table), table in physical.items():
                keys = sorted(frontier.get((source, table), ()))
                if not keys:
                    continue
                width = widths.get((source, as_table))
                if width is not None:
                    wanted = set(keys)
                    stmt = sa.select(xw.c.source_key, xw.c.target_table, xw.c.target_key).where(
                        xw.c.source_system == source, xw.c.source_table == as_table
                    )
                    for row in conn.execution_options(yield_per=50_000).execute(stmt):
                        if "|".join(str(row[0]).split("|")[:width]) in wanted:
                            targets.add((str(row[1]), str(row[2])))
                    continue
                for at in range(0, len(keys), 500):
                    stmt = sa.select(xw.c.target_table, xw.c.target_key).where(
                        xw.c.source_system == source,
                        xw.c.source_table == as_table,
                        xw.c.source_key.in_(keys[at : at + 500]),
                    )
                    targets.update((str(r[0]), str(r[1])) for r in conn.execute(stmt))
            targets -= seen
            seen |= targets
            frontier = {}
            by_table: dict[str, list[str]] = {}
            for t, k in sorted(targets):
                by_table.setdefault(t, []).append(k)
            for t, keys in by_table.items():
                for at in range(0, len(keys), 500):
                    stmt = sa.select(xw.c.source_system, xw.c.source_table, xw.c.source_key).where(
                        xw.c.target_table == t, xw.c.target_key.in_(keys[at : at + 500])
                    )
                    for row in conn.execute(stmt):
                        source, as_table, key = str(row[0]), str(row[1]), str(row[2])
                        found = physical.get((source, as_table))
                        if (source, as_table) in widths:  # the row's key: the record's first parts
                            key = "|".join(key.split("|")[: widths[(source, as_table)]])
                        if (
                            found is not None
                            and changes.covers(source, found)
                            and key not in changes.keys(source, found)
                        ):
                            changes.wanted.setdefault((source, found), set()).add(key)
                            frontier.setdefault((source, found), set()).add(key)
                            added.append((source, found, key))
    return added


def read_pending(url: str, run_id: str, wanted: bool = True) -> Changes:
    """A resumed run's findings, as it recorded them when it began (without ``wanted``: only
    the deletions, all a full run needs)."""
    changes = Changes()
    engine = engine_for(url)
    t = sa.table(
        PENDING,
        *(
            sa.column(c)
            for c in ("run_id", "source_system", "source_table", "source_key", "change_kind")
        ),
    )
    stmt = sa.select(t.c.source_system, t.c.source_table, t.c.source_key, t.c.change_kind).where(
        t.c.run_id == run_id
    )
    if not wanted:
        stmt = stmt.where(t.c.change_kind == DELETED)
    try:
        with engine.connect() as conn:
            for rows in conn.execution_options(yield_per=100_000).execute(stmt).partitions():
                for source, table, key, change in rows:
                    if change == MOVED:
                        changes.moved.setdefault((source, table), set()).add(key)
                        changes.wanted.setdefault((source, table), set()).add(key)
                        continue
                    changes.count(source, table, change)
                    if change == DELETED:
                        changes.deleted.setdefault((source, table), []).append(key)
                    else:
                        changes.wanted.setdefault((source, table), set()).add(key)
    finally:
        engine.dispose()
    return changes


#: The keys of the baseline rows a run replaces (added too: another wave may have recorded the
#: record since this run began). Asked by key (the baseline's primary key), from the run's few
#: findings: not a probe of them for each of the baseline's millions of rows.
_REPLACED = (
    f"(source_system, source_table, source_key) IN (SELECT source_system, source_table, "
    f"source_key FROM {PENDING} WHERE run_id = ? AND change_kind IN ('{ADDED}', '{CHANGED}', "
    f"'{DELETED}'))"
)
PROMOTE = (
    # The baseline rows the run replaces, kept so that a rollback can put them back.
    f"INSERT INTO {HISTORY} (replaced_by, source_system, source_table, source_key, key_hash, "
    f"fingerprint, wave, run_id) SELECT ?, source_system, source_table, source_key, key_hash, "
    f"fingerprint, wave, run_id FROM {FINGERPRINTS} WHERE {_REPLACED}",
    f"DELETE FROM {FINGERPRINTS} WHERE {_REPLACED}",
    f"INSERT INTO {FINGERPRINTS} (source_system, source_table, source_key, key_hash, fingerprint, "
    f"wave, run_id) SELECT source_system, source_table, source_key, key_hash, fingerprint, ?, "
    f"run_id FROM {PENDING} WHERE run_id = ? AND change_kind IN ('{ADDED}', '{CHANGED}')",
    f"DELETE FROM {PENDING} WHERE run_id = ?",
)
UNPROMOTE = (
    f"DELETE FROM {FINGERPRINTS} WHERE run_id = ?",
    f"INSERT INTO {FINGERPRINTS} (source_system, source_table, source_key, key_hash, fingerprint, "
    f"wave, run_id) SELECT source_system, source_table, source_key, key_hash, fingerprint, wave, "
    f"run_id FROM {HISTORY} WHERE replaced_by = ?",
    f"DELETE FROM {HISTORY} WHERE replaced_by = ?",
)


def forget_pending(tx: Any, run_id: str) -> None:
    """Drop what a run's change detection wrote (a pass killed half-way starts again)."""
    tx.execute(PROMOTE[3], [run_id])


def forget_abandoned(tx: Any, keep: set[str]) -> None:
    """Drop the pending findings of runs that will never finish (only ``keep``'s stay)."""
    marks = ", ".join("?" for _ in keep)
    tx.execute(f"DELETE FROM {PENDING} WHERE run_id NOT IN ({marks})", sorted(keep))


def promote(tx: Any, run_id: str, wave: str) -> None:
    """Make a finished run's findings the baseline (in the transaction that finishes it)."""
    tx.execute(PROMOTE[0], [run_id, run_id])
    tx.execute(PROMOTE[1], [run_id])
    tx.execute(PROMOTE[2], [wave, run_id])
    tx.execute(PROMOTE[3], [run_id])


def unpromote(tx: Any, run_id: str) -> int:
    """Undo a rolled-back run's promotion: its fingerprints go, those it replaced come back
    (a record it found deleted is one again, for the next run to find)."""
    gone = int(tx.execute(UNPROMOTE[0], [run_id]))
    tx.execute(UNPROMOTE[1], [run_id])
    tx.execute(UNPROMOTE[2], [run_id])
    return gone
