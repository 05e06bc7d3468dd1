"""Running reconciliation from the command line: connections, the work store, the printout."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from continuity.domain.errors import ConfigError
from continuity.project import Project
from reconcile.engine import Connections
from reconcile.model import SOURCE_TERMS, ClassResult, Reconciliation


@dataclass(frozen=True)
class Setting:
    """Where to reconcile: databases, date and work store."""

    connections: Connections
    as_of: dt.date
    store_url: str


def resolve(
    estate: Path | None,
    damaged: bool,
    sources: tuple[str, ...],
    target: str | None,
    as_of: dt.date | None,
    store: str | None,
) -> Setting:
    """Combine ``--estate DIR`` (its databases and as-of date) with explicit options."""
    urls: dict[str, str] = {}
    estate_as_of = None
    if estate is not None:
        manifest = estate / "estate.json"
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{manifest}: not an estate ({exc})") from exc
        dbs = info["databases"]
        urls = {"legacy": dbs["legacy"], "policeworks": dbs["policeworks"]}
        if damaged and "damaged" not in dbs:
            raise ConfigError(f"{estate}: generated without --defects: no damaged target")
        target = target or dbs["damaged" if damaged else "target"]
        estate_as_of = dt.date.fromisoformat(info["as_of"])
    elif damaged:
        raise ConfigError("--damaged needs --estate DIR")
    for item in sources:
        system, sep, url = item.partition("=")
        if not sep or not system or not url:
            raise ConfigError(f"--source {item!r}: expected SYSTEM=URL, e.g. legacy=sqlite:///l.db")
        urls[system] = url
    if target is None:
        raise ConfigError("no target database: give --target URL or --estate DIR")
    if store is None:
        store = f"sqlite:///{(estate or Path('.')) / 'work.sqlite'}"
    return Setting(Connections(urls, target), as_of or estate_as_of or dt.date.today(), store)


def from_project(
    project: Project,
    estate: Path | None,
    damaged: bool,
    sources: tuple[str, ...],
    target: str | None,
    as_of: dt.date | None,
    store: str | None,
) -> Setting:
    """Where to reconcile a project's load: its SQL sources and target, its as-of date, and its
    ledger as the work store (so `continuity report` finds the findings); explicit options (and
    ``--estate``'s databases) still win. :func:`resolve` reads the ``--source`` items after the
    project's, so a later one names a system's database."""
    if estate is not None:
        return resolve(estate, damaged, sources, target, as_of, store or project.ledger)
    if target is None and project.target.loader != "sql":
        raise ConfigError(
            f"{project.file}: the target is written by the {project.target.loader!r} loader: "
            "give --target URL (the database it was applied to)"
        )
    own = tuple(f"{n}={cfg.location}" for n, cfg in project.sources.items() if cfg.kind == "sql")
    return resolve(
        None,
        damaged,
        (*own, *sources),
        target or project.target.location,
        as_of or project.as_of,
        store or project.ledger,
    )


def identity_table(result: Reconciliation, accepted: frozenset[tuple[str, str, str, str]]) -> str:
    """Both identities per class, as a plain-text table."""
    heads = [
        "source",
        *(p.value.lower().replace("_at_source", "") for p in SOURCE_TERMS),
        "altered",
    ]
    lines = [
        f"Reconciliation as of {result.as_of}"
        + (f", wave {result.wave}" if result.wave else ", every record"),
        "",
        f"{'class / system':<34}" + "".join(f"{h:>11}" for h in heads),
    ]
    for c in result.classes:
        lines.append(_class_line(c, accepted))
        for s in c.sources:
            values = [s.read, *(s.terms[p] for p in SOURCE_TERMS), s.altered]
            check = "" if s.balanced else "  UNBALANCED"
            lines.append(
                f"  {s.system + ' ' + s.table:<32}" + "".join(f"{v:>11,}" for v in values) + check
            )
        t = c.target
        only = sum(t.target_only.values())
        lines.append(
            f"  target {t.table:<25} {t.total:,} = {t.explained:,} explained + {only:,} "
            f"target-only + {t.duplicated:,} duplicated + {t.orphan:,} orphan"
            + ("" if t.balanced else "  UNBALANCED")
        )
        for warning in c.warnings:
            lines.append(f"  WARNING: {warning}")
        for system, year, n in c.years_differing():
            lines.append(
                f"  {system} {year}: {n['expected']:,} expected in the target "
                f"({n['source']:,} read), {n['target']:,} there"
            )
    verdict = "CLEAN" if result.clean(accepted) else "NOT CLEAN"
    blocking = sum(len(c.exceptions(accepted)) for c in result.classes)
    lines += ["", f"{verdict}: {blocking:,} exception(s) block sign-off"]
    return "\n".join(lines)


def _class_line(c: ClassResult, accepted: frozenset[tuple[str, str, str, str]]) -> str:
    n = len(c.exceptions(accepted))
    state = "clean" if c.clean(accepted) else f"{n:,} exception(s)"
    return f"{c.name} ({c.severity}, {c.owner}): {state}, {c.seconds:.1f} s"


def exceptions_listing(
    result: Reconciliation, accepted: frozenset[tuple[str, str, str, str]], limit: int
) -> str:
    """The first ``limit`` exceptions of each class, one per line."""
    lines = []
    for c in result.classes:
        ex = c.exceptions(accepted)
        if not ex:
            continue
        lines.append(f"{c.name}:")
        for f in ex[:limit]:
            fields = ", ".join(f"{d.field} {d.source!r}->{d.target!r}" for d in f.diffs)
            where = f"{f.system} {f.table}" if f.system else f"target {f.table}"
            integrity = f.integrity.value if f.integrity else ""
            line = f"  {f.placement.value:<10} {integrity:<8} {where} {f.key}"
            if fields:
                line += f"  [{fields}]"
            elif f.reason:
                line += f"  ({f.reason})"
            if f.candidates:
                shown = ", ".join(f"{c['target_key']} ({c['score']:.2f})" for c in f.candidates)
                line += f"\n      may be: {shown}"
            lines.append(line)
        if len(ex) > limit:
            lines.append(f"  ... and {len(ex) - limit:,} more (see --json or the work store)")
    return "\n".join(lines)
