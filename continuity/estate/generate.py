"""Generate an estate: legacy and PoliceWorks databases, gazetteer, ideal target, ground truth.

Two worker processes each generate half of the chunks and write every output's rows for them,
one transaction per chunk and database. They write at once to a server; a SQLite file they
never share (see ``_worker_urls``): the second worker's rows go to part files appended at the
end. SQLite targets are staged unkeyed and copied once in key order, since random-key inserts
into a B-tree that outgrows the cache cost several times more than one sorted copy.
Nothing is written until every output has been checked; a failure removes what this run made.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import multiprocessing as mp
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import make_url

from continuity import target_schema
from continuity.db import (
    BulkWriter,
    append_from,
    create_indexes,
    create_tables,
    database_digests,
    existing_tables,
    load_sorted_from,
    unconstrained,
)
from continuity.domain.connect import MYSQL_FAMILY, check_reachable, engine_for, redact
from continuity.domain.errors import ContinuityError, EstateError
from continuity.estate import render, schemas, vocab
from continuity.estate.defects import DECOY_KINDS, DEFECT_KINDS, DefectPlanter
from continuity.estate.index import ChunkIndex
from continuity.estate.truth import AS_OF, CHUNK_HUMANS, generate_chunk

GENERATOR_VERSION = 1
GAZETTEER_COLUMNS = (
    "uprn",
    "building_name",
    "building_number",
    "street",
    "locality",
    "town",
    "postcode",
    "easting",
    "northing",
)


@dataclass(frozen=True)
class EstateOptions:
    """What to generate and where. URLs left as None become SQLite files in ``out``."""

    out: Path
    persons: int = 1000
    seed: int = 1
    defects: bool = False
    legacy_url: str | None = None
    policeworks_url: str | None = None
    target_url: str | None = None
    damaged_url: str | None = None
    processes: int = 2

    def urls(self) -> dict[str, str]:
        def default(url: str | None, name: str) -> str:
            return url or f"sqlite:///{(self.out / name).resolve()}"

        urls = {
            "legacy": default(self.legacy_url, "legacy.sqlite"),
            "policeworks": default(self.policeworks_url, "policeworks.sqlite"),
            "target": default(self.target_url, "target.sqlite"),
            "truth": f"sqlite:///{(self.out / 'truth.sqlite').resolve()}",
        }
        if self.defects:
            urls["damaged"] = default(self.damaged_url, "target_defects.sqlite")
        return urls


METADATA: dict[str, MetaData] = {
    "legacy": schemas.legacy,
    "policeworks": schemas.policeworks,
    "target": target_schema.metadata,
    "damaged": target_schema.metadata,
    "truth": schemas.truth,
}


@dataclass
class EstateSummary:
    out: Path
    urls: dict[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    defects_planted: int = 0
    defects_missing: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def _chunks(persons: int) -> list[tuple[int, int]]:
    full, rest = divmod(persons, CHUNK_HUMANS)
    return [(i, CHUNK_HUMANS) for i in range(full)] + ([(full, rest)] if rest else [])


class _Stopped(EstateError):
    """A worker stopped because the other one failed."""


_progress: Any = None
_abort: Any = None


def _init_worker(counter: Any, abort: Any) -> None:
    global _progress, _abort
    _progress, _abort = counter, abort


def _tick() -> None:
    """Count a finished chunk; stop if the other worker has failed."""
    if _progress is not None:
        with _progress.get_lock():
            _progress.value += 1
    if _abort is not None and _abort.is_set():
        raise _Stopped("stopped: the other worker failed")


SOURCE_SIDES = ("legacy", "policeworks", "truth")
#: Chunks per transaction: few enough to keep a server's transactions short, enough to make
#: commits cheap (a failed run removes everything it wrote, so nothing depends on them).
COMMIT_EVERY = 8
TARGET_SIDES = ("target", "damaged")


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def _worker_urls(urls: dict[str, str], worker: int) -> dict[str, str]:
    """Where worker ``worker`` writes each side's rows while chunks are generated.

    A server takes every worker's writes at once. A SQLite file is written by one process at a
    time, so workers never share one: worker 0 writes the source and truth files themselves,
    the others private part files appended afterwards; every worker stages target rows, unkeyed,
    in a file of its own, copied into the keyed target in key order at the end.
    """
    out = {}
    for side, url in urls.items():
        path = _sqlite_path(url)
        if path is None or (worker == 0 and side not in TARGET_SIDES):
            out[side] = url
        elif side in TARGET_SIDES:
            out[side] = f"sqlite:///{path}.staging{worker}"
        else:
            out[side] = f"sqlite:///{path}.part{worker}"
    return out


def _scratch(urls: dict[str, str], workers: int, side: str) -> list[Path]:
    """The scratch files the workers wrote for ``side`` (empty for a server)."""
    files = []
    for worker in range(workers):
        url = _worker_urls(urls, worker)[side]
        if url != urls[side]:
            files.append(Path(make_url(url).database or ""))
    return files


def _worker(
    opts: EstateOptions, urls: dict[str, str], worker: int, first: int, last: int, plant_below: int
) -> dict[str, Any]:
    """Generate chunks ``first`` to ``last`` - 1 and write every output's rows for them.

    Each chunk is one transaction per database, written where :func:`_worker_urls` says.
    """
    write_urls = _worker_urls(urls, worker)
    with ExitStack() as stack:
        writers: dict[str, BulkWriter] = {}
        for side, url in write_urls.items():
            engine = engine_for(url)
            stack.callback(engine.dispose)
            metadata = unconstrained(METADATA[side]) if url != urls[side] else METADATA[side]
            # Appends to unkeyed tables touch only the last pages: a small cache is enough.
            writers[side] = stack.enter_context(
                BulkWriter(engine, metadata, scratch=True, cache_mb=8)
            )
        zero_dates = writers["policeworks"].dialect in MYSQL_FAMILY
        planter = DefectPlanter() if "damaged" in writers and first < plant_below else None
        stats = {"merges": 0, "mopi_excluded": 0, "legal_hold": 0, "quarantine": 0}
        gazetteer_rows = 0
        part = opts.out / f"gazetteer.part{first:06d}.csv"
        gazetteer = csv.writer(stack.enter_context(part.open("w", newline="", encoding="utf-8")))
        for index, size in _chunks(opts.persons)[first:last]:
            chunk = generate_chunk(opts.seed, index, size)
            idx = ChunkIndex(chunk)
            ideal = render.render_ideal(chunk, idx)
            truth_rows = render.render_truth(chunk, idx)
            rows = {
                "legacy": render.render_legacy(chunk, idx),
                "policeworks": render.render_policeworks(chunk, idx, zero_dates),
                "truth": truth_rows,
                "target": ideal,
            }
            if "damaged" in writers:
                planting = planter is not None and index < plant_below
                rows["damaged"] = planter.plant(chunk, idx, ideal) if planting else ideal  # type: ignore[union-attr]
            for side, writer in writers.items():
                writer.write_all(rows[side])
                if index % COMMIT_EVERY == 0:
                    writer.commit()
            gazetteer_part = render.render_gazetteer(chunk)
            gazetteer.writerows(gazetteer_part)
            gazetteer_rows += len(gazetteer_part)
            stats["merges"] += sum(
                len(idx.legacy_records[i]) + len(idx.pw_records[i]) - 1
                for i in range(len(chunk.humans))
            )
            stats["mopi_excluded"] += sum(1 for r in truth_rows["crime"] if r[5] == "EXCLUDED")
            stats["legal_hold"] += sum(
                1
                for c in chunk.crimes
                if c.legal_hold and render.crime_disposition(c)[0] == "MIGRATED"
            )
            stats["quarantine"] += len(truth_rows["quarantine"])
            _tick()
        for writer in writers.values():
            writer.commit()
        return {
            "counts": {side: writer.counts for side, writer in writers.items()},
            "gazetteer": gazetteer_rows,
            "stats": stats,
            "planter": planter,
        }


def _finish_sources(urls: dict[str, str], workers: int) -> None:
    """Append the other workers' part files, then index the declared keys (after the load)."""
    for side in SOURCE_SIDES:
        engine = engine_for(urls[side])
        try:
            parts = _scratch(urls, workers, side)
            if parts:
                append_from(engine, [str(p) for p in parts], METADATA[side])
                for part in parts:
                    part.unlink()
            create_indexes(engine, METADATA[side])
        finally:
            engine.dispose()
        _tick()


def _finish_targets(urls: dict[str, str], workers: int) -> None:
    """Build keyed SQLite targets from the staging files in key order, then their indexes."""
    for side in TARGET_SIDES:
        if side not in urls:
            continue
        engine = engine_for(urls[side])
        try:
            staging = _scratch(urls, workers, side)
            if staging:
                load_sorted_from(engine, [str(p) for p in staging], target_schema.metadata)
                for path in staging:
                    path.unlink()
            create_indexes(engine, target_schema.metadata)
        finally:
            engine.dispose()
        _tick()


def _prepare(opts: EstateOptions) -> tuple[dict[str, str], bool, list[Path]]:
    """Check every argument and output before anything is written.

    Returns the URLs, whether the output directory was created, and the SQLite files that did
    not exist before (to delete if the run fails).
    """
    if opts.persons < 1:
        raise EstateError(f"--persons must be at least 1 (got {opts.persons})")
    if opts.seed < 0:
        raise EstateError(f"--seed must not be negative (got {opts.seed})")
    if opts.out.exists() and not opts.out.is_dir():
        raise EstateError(f"output {opts.out} exists and is not a directory")
    if opts.out.is_dir() and any(opts.out.iterdir()):
        raise EstateError(f"output directory {opts.out} is not empty: choose a new one or empty it")
    urls = opts.urls()
    seen: dict[str, str] = {}
    for side, url in urls.items():
        if url in seen and side != "truth":
            raise EstateError(
                f"--{side}-url and --{seen[url]}-url are the same database: {redact(url)}"
            )
        seen[url] = side
    for url in urls.values():
        engine_for(url).dispose()  # a malformed URL fails here, before anything exists
    created = not opts.out.exists()
    new_files = [
        p for url in urls.values() if (p := _sqlite_path(url)) is not None and not p.exists()
    ]
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EstateError(f"cannot create output directory {opts.out}: {exc.strerror}") from exc
    try:
        for side, url in urls.items():
            engine = engine_for(url)
            try:
                check_reachable(engine)
                present = existing_tables(engine, METADATA[side])
                if present:
                    raise EstateError(
                        f"{side} database {redact(url)} already holds estate tables "
                        f"({', '.join(present[:4])}{' ...' if len(present) > 4 else ''}): "
                        "use an empty database"
                    )
            finally:
                engine.dispose()
    except ContinuityError:
        _remove_new_files(new_files)
        _remove_out(opts.out, created)
        raise
    return urls, created, new_files


def _remove_new_files(paths: list[Path]) -> None:
    """Delete the SQLite files this run created (connecting to a SQLite URL creates its file)."""
    for path in paths:
        path.unlink(missing_ok=True)


def _remove_out(out: Path, created: bool) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif out.is_dir():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)


def _drop_created(urls: dict[str, str]) -> None:
    """Drop the tables this run created, in every database (SQLite files it made go too)."""
    for side, url in urls.items():
        try:
            engine = engine_for(url)
            METADATA[side].drop_all(engine)
            engine.dispose()
        except Exception:
            pass


def generate_estate(
    opts: EstateOptions, on_progress: Callable[[int, int], None] | None = None
) -> EstateSummary:
    """Generate the estate described by ``opts``; see docs/estate.md for what it contains.

    Args:
        opts: what to generate and where.
        on_progress: called with (steps done, steps total): chunks, then finishing steps.
    """
    started = time.perf_counter()
    urls, created, new_files = _prepare(opts)
    workers = 1 if opts.processes < 2 or len(_chunks(opts.persons)) < 4 else 2
    try:
        for side, url in urls.items():
            for path in _scratch(urls, workers, side):  # unkeyed copies of the tables
                path.unlink(missing_ok=True)  # left by a run that was killed
                scratch = engine_for(f"sqlite:///{path}")
                create_tables(scratch, unconstrained(METADATA[side]))
                scratch.dispose()
            engine = engine_for(url)
            if side in TARGET_SIDES and _sqlite_path(url) is not None:
                with engine.begin() as conn:  # before the first table: larger pages, fewer to fill
                    conn.exec_driver_sql("PRAGMA page_size=16384")
            create_tables(engine, METADATA[side], with_indexes=False)
            engine.dispose()
        results = _run(opts, urls, workers, on_progress)
        _join_gazetteer(opts.out)
        _write_reference(opts.out)
        stats = {k: sum(r["stats"][k] for r in results) for k in results[0]["stats"]}
        _write_estate_meta(urls["truth"], opts, stats)
        summary = EstateSummary(opts.out, urls, seconds=0.0)
        for r in results:
            for side, counts in r["counts"].items():
                merged = summary.counts.setdefault(side, {})
                for table, n in counts.items():
                    merged[table] = merged.get(table, 0) + n
        summary.counts["gazetteer"] = {"gazetteer.csv": sum(r["gazetteer"] for r in results)}
        planter: DefectPlanter | None = results[0]["planter"]
        if planter is not None:
            manifest: dict[str, Any] = {
                "version": 1,
                "seed": opts.seed,
                "persons": opts.persons,
                "defect_kinds": list(DEFECT_KINDS),
                "decoy_kinds": list(DECOY_KINDS),
                "not_planted": planter.pending,
                "defects": planter.defects,
                "decoys": planter.manifest_decoys(stats),
            }
            summary.defects_planted = len(planter.defects)
            summary.defects_missing = list(planter.pending)
            (opts.out / "defects.json").write_text(
                json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
            )
        summary.seconds = time.perf_counter() - started
        (opts.out / "estate.json").write_text(
            json.dumps(
                {
                    "generator_version": GENERATOR_VERSION,
                    "seed": opts.seed,
                    "persons": opts.persons,
                    "as_of": AS_OF.isoformat(),
                    "defects": opts.defects,
                    "databases": {side: redact(url) for side, url in urls.items()},
                    "counts": summary.counts,
                    "stats": stats,
                    "seconds": round(summary.seconds, 2),
                    "phase_seconds": {k: round(v, 2) for k, v in results[0]["phases"].items()},
                },
                indent=1,
            )
            + "\n"
        )
        return summary
    except BaseException as exc:
        _drop_created(urls)
        _remove_new_files(new_files)
        for side in urls:
            for path in _scratch(urls, workers, side):
                path.unlink(missing_ok=True)
        _remove_out(opts.out, created)
        if isinstance(exc, ContinuityError):
            raise
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EstateError(
            f"estate generation failed, nothing kept: {type(exc).__name__}: {first}"
        ) from exc


def _run(
    opts: EstateOptions,
    urls: dict[str, str],
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Generate in one or two processes, then finish (keys and indexes); return worker results."""
    started = time.perf_counter()
    chunks = len(_chunks(opts.persons))
    half = (chunks + 1) // 2  # defects are planted in the first half, however many processes
    total = chunks + len(SOURCE_SIDES) + sum(1 for side in TARGET_SIDES if side in urls)
    if workers == 1:
        results = [_worker(opts, urls, 0, 0, chunks, half)]
        generated = time.perf_counter()
        if on_progress:
            on_progress(chunks, total)
        _finish_sources(urls, workers)
        _finish_targets(urls, workers)
        if on_progress:
            on_progress(total, total)
        results[0]["phases"] = {
            "generate": generated - started,
            "finish": time.perf_counter() - generated,
        }
        return results
    ctx = mp.get_context("fork")
    counter, abort = ctx.Value("i", 0), ctx.Event()
    with cf.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=_init_worker, initargs=(counter, abort)
    ) as pool:

        def run_all(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
            futures = [pool.submit(fn, *args) for fn, args in calls]
            while True:
                done, _ = cf.wait(futures, timeout=0.25, return_when=cf.FIRST_EXCEPTION)
                if on_progress:
                    on_progress(counter.value, total)
                if any(f.exception() for f in done):
                    abort.set()  # the other worker stops at its next chunk
                    cf.wait(futures)
                    break
                if len(done) == len(futures):
                    break
            # Report the failure that caused the stop, not the stop itself.
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
            return [f.result() for f in futures]

        results = run_all(
            [
                (_worker, (opts, urls, 0, 0, half, half)),
                (_worker, (opts, urls, 1, half, chunks, half)),
            ]
        )
        generated = time.perf_counter()
        run_all([(_finish_sources, (urls, workers)), (_finish_targets, (urls, workers))])
    results[0]["phases"] = {
        "generate": generated - started,
        "finish": time.perf_counter() - generated,
    }
    return results


def _join_gazetteer(out: Path) -> None:
    """Concatenate the workers' gazetteer parts, in chunk order, under one header."""
    parts = sorted(out.glob("gazetteer.part*.csv"))
    with (out / "gazetteer.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(GAZETTEER_COLUMNS)
        for part in parts:
            with part.open(encoding="utf-8") as src:
                shutil.copyfileobj(src, fh)
            part.unlink()


def _write_estate_meta(truth_url: str, opts: EstateOptions, stats: dict[str, int]) -> None:
    engine = engine_for(truth_url)
    meta = [
        ("generator_version", str(GENERATOR_VERSION)),
        ("seed", str(opts.seed)),
        ("persons", str(opts.persons)),
        ("chunk_humans", str(CHUNK_HUMANS)),
        ("as_of", AS_OF.isoformat()),
        *((f"stat_{k}", str(v)) for k, v in stats.items()),
    ]
    with BulkWriter(engine, schemas.truth) as writer:
        writer.write("estate", meta)
        writer.commit()
    engine.dispose()


def _write_reference(out: Path) -> None:
    """The versioned offence crosswalk the estate's codes follow."""
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    with (ref / "offence_crosswalk_v1.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            (
                "legacy_code",
                "vendor_class_code",
                "ho_offence_code",
                "description",
                "mopi_group",
                "needs_victim",
            )
        )
        for o in vocab.OFFENCES:
            for code in o.legacy_codes:
                w.writerow(
                    (
                        code,
                        o.vendor_class,
                        o.ho_code,
                        o.description,
                        o.mopi_group,
                        int(o.needs_victim),
                    )
                )


def estate_digests(urls: dict[str, str]) -> dict[str, dict[str, tuple[int, str]]]:
    """Row count and content digest of every table of the legacy, PoliceWorks and target DBs."""
    return {
        side: database_digests(urls[side], METADATA[side])
        for side in ("legacy", "policeworks", "target", "damaged")
        if side in urls
    }
