"""Generate an estate: legacy and PoliceWorks databases, gazetteer, ideal target, ground truth.

Two processes share the work, one per side: *sources* (legacy, PoliceWorks, gazetteer) and
*target* (ideal target, damaged copy, ground truth). Each regenerates the same chunks from the
seed, which costs less than shipping rows between processes, and each writes only its own
databases. Nothing is written until every output has been checked; a failure removes what
this run created.
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

from sqlalchemy import Engine, MetaData

from continuity import target_schema
from continuity.db import (
    BulkWriter,
    check_reachable,
    create_indexes,
    create_tables,
    engine_for,
    existing_tables,
    redact,
    table_digest,
)
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
#: Chunks between commits: bounds the work lost to a crash without slowing the bulk path.
COMMIT_EVERY = 50


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
    def source_rows(self) -> int:
        return sum(sum(self.counts.get(side, {}).values()) for side in ("legacy", "policeworks"))

    @property
    def total_rows(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def _chunks(persons: int) -> list[tuple[int, int]]:
    full, rest = divmod(persons, CHUNK_HUMANS)
    return [(i, CHUNK_HUMANS) for i in range(full)] + ([(full, rest)] if rest else [])


class _Stopped(EstateError):
    """A side stopped because the other one failed."""


_progress: Any = None
_abort: Any = None


def _init_worker(counter: Any, abort: Any) -> None:
    global _progress, _abort
    _progress, _abort = counter, abort


def _tick() -> None:
    """Count a finished chunk; stop if the other side has failed."""
    if _progress is not None:
        with _progress.get_lock():
            _progress.value += 1
    if _abort is not None and _abort.is_set():
        raise _Stopped("stopped: the other side of the estate failed")


def _engines(stack: ExitStack, urls: dict[str, str], sides: tuple[str, ...]) -> dict[str, Engine]:
    engines = {side: engine_for(urls[side]) for side in sides if side in urls}
    for engine in engines.values():
        stack.callback(engine.dispose)
    return engines


def _sources_side(opts: EstateOptions, urls: dict[str, str]) -> dict[str, Any]:
    """Legacy, PoliceWorks, gazetteer and ground truth (the lighter writes: no enforced keys)."""
    with ExitStack() as stack:
        engines = _engines(stack, urls, ("legacy", "policeworks", "truth"))
        zero_dates = engines["policeworks"].dialect.name == "mysql"
        writers = {
            side: stack.enter_context(BulkWriter(engine, METADATA[side], scratch=True))
            for side, engine in engines.items()
        }
        legacy, pw, truth = writers["legacy"], writers["policeworks"], writers["truth"]
        stats = {"merges": 0, "mopi_excluded": 0, "legal_hold": 0, "quarantine": 0}
        gazetteer_rows = 0
        fh = stack.enter_context(
            (opts.out / "gazetteer.csv").open("w", newline="", encoding="utf-8")
        )
        gazetteer = csv.writer(fh)
        gazetteer.writerow(GAZETTEER_COLUMNS)
        for n, (index, size) in enumerate(_chunks(opts.persons), 1):
            chunk = generate_chunk(opts.seed, index, size)
            idx = ChunkIndex(chunk)
            legacy.write_all(render.render_legacy(chunk, idx))
            pw.write_all(render.render_policeworks(chunk, idx, zero_dates))
            rows = render.render_gazetteer(chunk)
            gazetteer.writerows(rows)
            gazetteer_rows += len(rows)
            truth_rows = render.render_truth(chunk, idx)
            truth.write_all(truth_rows)
            stats["merges"] += sum(
                len(idx.legacy_records[i]) + len(idx.pw_records[i]) - 1
                for i in range(len(chunk.humans))
            )
            stats["mopi_excluded"] += sum(1 for r in truth_rows["crime"] if r[5] == "EXCLUDED")
            stats["legal_hold"] += sum(1 for c in chunk.crimes if c.legal_hold)
            stats["quarantine"] += len(truth_rows["quarantine"])
            if n % COMMIT_EVERY == 0:
                for writer in writers.values():
                    writer.commit()
            _tick()
        meta = [
            ("generator_version", str(GENERATOR_VERSION)),
            ("seed", str(opts.seed)),
            ("persons", str(opts.persons)),
            ("chunk_humans", str(CHUNK_HUMANS)),
            ("as_of", AS_OF.isoformat()),
            *((f"stat_{k}", str(v)) for k, v in stats.items()),
        ]
        truth.write("estate", meta)
        for writer in writers.values():
            writer.commit()
            writer.close()
        for side, engine in engines.items():
            create_indexes(engine, METADATA[side])
        return {
            "legacy": legacy.counts,
            "policeworks": pw.counts,
            "truth": truth.counts,
            "gazetteer": {"gazetteer.csv": gazetteer_rows},
            "stats": stats,
        }


def _target_side(opts: EstateOptions, urls: dict[str, str]) -> dict[str, Any]:
    """The ideal target and, with defects, its damaged copy and the manifest."""
    with ExitStack() as stack:
        engines = _engines(stack, urls, ("target", "damaged"))
        # Random-key inserts into the target's primary keys are its cost; a larger cache keeps
        # them off the disk for longer (the sources side declares no keys and needs none).
        writers = {
            side: stack.enter_context(
                BulkWriter(
                    engine,
                    target_schema.metadata,
                    scratch=True,
                    cache_mb=256 if side == "target" else 128,
                )
            )
            for side, engine in engines.items()
        }
        target, damaged = writers["target"], writers.get("damaged")
        planter = DefectPlanter() if damaged else None
        for n, (index, size) in enumerate(_chunks(opts.persons), 1):
            chunk = generate_chunk(opts.seed, index, size)
            idx = ChunkIndex(chunk)
            ideal = render.render_ideal(chunk, idx)
            target.write_all(ideal)
            if damaged is not None and planter is not None:
                damaged.write_all(planter.plant(chunk, idx, ideal))
            if n % COMMIT_EVERY == 0:
                for writer in writers.values():
                    writer.commit()
            _tick()
        for writer in writers.values():
            writer.commit()
            writer.close()
        for engine in engines.values():
            create_indexes(engine, target_schema.metadata)
        result: dict[str, Any] = {side: writer.counts for side, writer in writers.items()}
        if planter is not None:
            result["planter"] = planter
        return result


def _prepare(opts: EstateOptions) -> tuple[dict[str, str], bool]:
    """Check every argument and output before anything is written; returns (urls, out created)."""
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
    created = not opts.out.exists()
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
        _remove_out(opts.out, created)
        raise
    return urls, created


def _remove_out(out: Path, created: bool) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)
    elif out.is_dir():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)


def _drop_created(urls: dict[str, str]) -> None:
    for side, url in urls.items():
        if url.startswith("sqlite:"):
            continue  # files go with the output directory
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
        on_progress: called with (chunks done, chunks total) summed over both sides.
    """
    started = time.perf_counter()
    urls, created = _prepare(opts)
    chunks = len(_chunks(opts.persons))
    try:
        for side, url in urls.items():
            engine = engine_for(url)
            create_tables(engine, METADATA[side], with_indexes=False)
            engine.dispose()
        sources, target = _run_sides(opts, urls, chunks, on_progress)
        _write_reference(opts.out)
        summary = EstateSummary(opts.out, urls, seconds=0.0)
        stats = sources.pop("stats")
        summary.counts = {**sources, "target": target["target"]}
        if "damaged" in target:
            summary.counts["damaged"] = target["damaged"]
            planter: DefectPlanter = target["planter"]
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
                },
                indent=1,
            )
            + "\n"
        )
        return summary
    except BaseException as exc:
        _drop_created(urls)
        _remove_out(opts.out, created)
        if isinstance(exc, ContinuityError):
            raise
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EstateError(
            f"estate generation failed, nothing kept: {type(exc).__name__}: {first}"
        ) from exc


def _run_sides(
    opts: EstateOptions,
    urls: dict[str, str],
    chunks: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    total = 2 * chunks
    if opts.processes < 2 or chunks < 4:
        sources = _sources_side(opts, urls)
        if on_progress:
            on_progress(chunks, total)
        target = _target_side(opts, urls)
        if on_progress:
            on_progress(total, total)
        return sources, target
    ctx = mp.get_context("fork")
    counter, abort = ctx.Value("i", 0), ctx.Event()
    with cf.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=_init_worker, initargs=(counter, abort)
    ) as pool:
        futures = [pool.submit(_sources_side, opts, urls), pool.submit(_target_side, opts, urls)]
        while True:
            done, _ = cf.wait(futures, timeout=0.25, return_when=cf.FIRST_EXCEPTION)
            if on_progress:
                on_progress(counter.value, total)
            if any(f.exception() for f in done):
                abort.set()  # the other side stops at its next chunk
                break
            if len(done) == 2:
                break
    # Both sides have ended; report the failure that caused the stop, not the stop itself.
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
    return futures[0].result(), futures[1].result()


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
    out: dict[str, dict[str, tuple[int, str]]] = {}
    for side in ("legacy", "policeworks", "target", "damaged"):
        if side not in urls:
            continue
        engine = engine_for(urls[side])
        md = METADATA[side]
        out[side] = {t.name: table_digest(engine, t.name, md) for t in md.sorted_tables}
        engine.dispose()
    return out
