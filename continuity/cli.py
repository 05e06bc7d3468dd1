"""The ``continuity`` command line: thin click commands over the library.

Errors Continuity raises on purpose (:class:`ContinuityError`) are caught in one place, printed
as one line and exit 2; a reconciliation that finds losses exits 1; success exits 0.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from continuity import __version__
from continuity.domain.errors import ConfigError, ContinuityError


class ContinuityGroup(click.Group):
    """A click group that turns a ContinuityError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ContinuityError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


class Progress:
    """A progress bar on stderr that appears only once work has started.

    Validation errors therefore print alone, on one line, with no half-drawn bar before them.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


@click.group(cls=ContinuityGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="continuity")
def main() -> None:
    """Continuity moves a police force's records out of legacy systems into a replacement
    records product, and proves that nothing was lost on the way.

    Start with `continuity estate generate --out DIR` to make a synthetic police estate (legacy
    crime system, PoliceWorks, gazetteer, the ideal target and its ground truth) to rehearse on.
    """


@main.group(cls=ContinuityGroup)
def estate() -> None:
    """Synthetic police estates whose truth is known: demo and test material."""


@estate.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write into; must be new or empty. Holds the SQLite databases unless "
    "URLs are given, and always the ground truth, gazetteer and manifests.",
)
@click.option(
    "--persons",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of distinct humans (each appears as one or more records across systems).",
)
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Random seed: the same seed and size give identical content on any database.",
)
@click.option(
    "--defects",
    is_flag=True,
    help="Also write a damaged copy of the ideal target and defects.json listing every planted "
    "defect and decoy.",
)
@click.option(
    "--legacy-url",
    envvar="CONTINUITY_LEGACY_URL",
    help="SQLAlchemy URL for the legacy crime "
    "system [default: DIR/legacy.sqlite; env CONTINUITY_LEGACY_URL].",
)
@click.option(
    "--policeworks-url",
    envvar="CONTINUITY_POLICEWORKS_URL",
    help="SQLAlchemy URL for PoliceWorks "
    "[default: DIR/policeworks.sqlite; env CONTINUITY_POLICEWORKS_URL].",
)
@click.option(
    "--target-url",
    envvar="CONTINUITY_TARGET_URL",
    help="SQLAlchemy URL for the ideal target "
    "[default: DIR/target.sqlite; env CONTINUITY_TARGET_URL].",
)
@click.option(
    "--damaged-url",
    envvar="CONTINUITY_DAMAGED_URL",
    help="SQLAlchemy URL for the damaged copy "
    "written with --defects [default: DIR/target_defects.sqlite].",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 2),
    help="Worker processes: 2 generates the two halves of the estate in parallel "
    "(from 4,000 persons).",
)
def estate_generate(
    out: Path,
    persons: int,
    seed: int,
    defects: bool,
    legacy_url: str | None,
    policeworks_url: str | None,
    target_url: str | None,
    damaged_url: str | None,
    processes: int,
) -> None:
    """Generate a synthetic police estate with its ideal target and ground truth.

    Humans, places and crimes are generated first (the truth), then rendered into the legacy crime
    system and PoliceWorks with their quirks, a gazetteer, the ideal target (the product schema as a
    perfect migration leaves it) and truth.sqlite. See docs/estate.md.
    """
    from continuity.estate.generate import EstateOptions, generate_estate

    opts = EstateOptions(
        out=out,
        persons=persons,
        seed=seed,
        defects=defects,
        legacy_url=legacy_url,
        policeworks_url=policeworks_url,
        target_url=target_url,
        damaged_url=damaged_url,
        processes=processes,
    )
    with Progress("Generating estate") as progress:
        summary = generate_estate(opts, on_progress=progress)
    click.echo(
        f"Estate of {persons:,} persons (seed {seed}) written in {summary.seconds:.1f} s "
        f"({summary.total_rows / max(summary.seconds, 1e-9):,.0f} rows/s):"
    )
    from continuity.domain.connect import redact

    for side, url in summary.urls.items():
        rows = sum(summary.counts.get(side, {}).values())
        click.echo(f"  {side:<12} {rows:>12,} rows  {redact(url)}")
    click.echo(
        f"  {'gazetteer':<12} {summary.counts['gazetteer']['gazetteer.csv']:>12,} rows  "
        f"{out / 'gazetteer.csv'}"
    )
    if defects:
        click.echo(
            f"  {summary.defects_planted} defects planted, listed with the decoys in "
            f"{out / 'defects.json'}"
        )
        if summary.defects_missing:
            click.echo(
                f"  warning: no candidate for {', '.join(summary.defects_missing)}: "
                "use more --persons",
                err=True,
            )


def estate_urls(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options naming an existing estate's databases (default: the SQLite files in DIR)."""
    for name, env in reversed(
        (
            ("--legacy-url", "LEGACY"),
            ("--policeworks-url", "POLICEWORKS"),
            ("--target-url", "TARGET"),
        )
    ):
        command = click.option(name, envvar=f"CONTINUITY_{env}_URL", help="As given to generate.")(
            command
        )
    return command


@estate.command("evolve")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--days", type=int, required=True, help="Days of live use to apply.")
@click.option(
    "--seed", type=int, default=None, help="Random seed of this evolution (default: the estate's)."
)
@click.option(
    "--processes",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Worker processes computing what changed.",
)
@estate_urls
def estate_evolve(
    out: Path,
    days: int,
    seed: int | None,
    processes: int,
    legacy_url: str | None,
    policeworks_url: str | None,
    target_url: str | None,
) -> None:
    """Apply DAYS of live use to an estate, as its systems would take them.

    New PoliceWorks crimes (with new and known people, bail, safeguarding referrals), outcomes
    on open crimes, new warnings and firearms certificates, corrected dates of birth, legacy
    duplicate nominals deleted, new and reviewed intelligence: inserted, updated and deleted in
    the legacy and PoliceWorks databases, with the ideal target and the ground truth updated to
    match, so that reconciliation can be checked after a delta wave. Evolving twice by 15 days
    gives the same estate as once by 30 only in distribution; the same evolutions in the same
    order always give the same estate. See docs/estate.md.
    """
    from continuity.estate.evolve import evolve_estate
    from continuity.estate.generate import EstateOptions

    urls = EstateOptions(
        out=out, legacy_url=legacy_url, policeworks_url=policeworks_url, target_url=target_url
    ).urls()
    with Progress("Evolving estate") as progress:
        summary = evolve_estate(out, days, urls, seed, processes, on_progress=progress)
    e = summary.evolution
    last = e.first_day + dt.timedelta(days=e.days - 1)
    click.echo(
        f"Evolution {e.step} (seed {e.seed}): {e.days} days, {e.first_day} to {last}, "
        f"applied in {summary.seconds:.1f} s"
    )
    for kind, n in sorted(summary.events.items()):
        click.echo(f"  {kind.replace('_', ' '):<24} {n:>9,}")
    click.echo(f"  {'database / table':<34} {'inserted':>9} {'updated':>9} {'deleted':>9}")
    for side, tables in summary.changes.items():
        for name, c in sorted(tables.items()):
            if any(c.values()):
                click.echo(
                    f"  {side + ' ' + name:<34} {c['inserted']:>9,} {c['updated']:>9,} "
                    f"{c['deleted']:>9,}"
                )


@estate.command("digest")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@estate_urls
def estate_digest(
    out: Path, legacy_url: str | None, policeworks_url: str | None, target_url: str | None
) -> None:
    """Print row counts and content digests of an estate's databases.

    Digests do not depend on the database: the same seed and size print the same lines whether
    the estate was written to SQLite, PostgreSQL or MariaDB.
    """
    from continuity.estate.generate import EstateOptions, estate_digests

    opts = EstateOptions(
        out=out, legacy_url=legacy_url, policeworks_url=policeworks_url, target_url=target_url
    )
    urls = {k: v for k, v in opts.urls().items() if k != "truth"}
    for side, tables in estate_digests(urls).items():
        for table, (count, digest) in tables.items():
            click.echo(f"{side:<12} {table:<22} {count:>10}  {digest[:16]}")


@estate.command("quirks")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@estate_urls
def estate_quirks(
    out: Path, legacy_url: str | None, policeworks_url: str | None, target_url: str | None
) -> None:
    """Measure every quirk of an estate on its databases, against its stated minimum rate.

    Exits 1 if a quirk falls short of its stated rate (see docs/estate.md).
    """
    from continuity.estate import quirks
    from continuity.estate.generate import EstateOptions

    urls = EstateOptions(
        out=out, legacy_url=legacy_url, policeworks_url=policeworks_url, target_url=target_url
    ).urls()
    measured = quirks.measure(urls)
    short = 0
    click.echo(f"{'quirk':<32} {'system':<12} {'rate':>8} {'stated':>8}")
    for name, system, _description, minimum in quirks.catalogue():
        shown, among = measured[name]
        rate = shown / among if among else 0.0
        ok = among > 0 and minimum <= rate <= quirks.MAXIMUM.get(name, 1.0)
        short += not ok
        click.echo(f"{name:<32} {system:<12} {rate:>8.2%} {minimum:>8.2%}{'' if ok else '  SHORT'}")
    if short:
        sys.exit(1)


@main.group(cls=ContinuityGroup)
def target() -> None:
    """The replacement product's schema (the bundled target)."""


@target.command("init")
@click.argument("url")
def target_init(url: str) -> None:
    """Create the product's tables in the database at URL (an empty database)."""
    from continuity.db import create_tables, existing_tables
    from continuity.domain.connect import check_reachable, engine_for, redact
    from continuity.target_schema import metadata

    engine = engine_for(url)
    check_reachable(engine)
    present = existing_tables(engine, metadata)
    if present:
        raise ContinuityError(
            f"{redact(url)} already holds target tables ({', '.join(present[:4])}"
            f"{' ...' if len(present) > 4 else ''})"
        )
    create_tables(engine, metadata)
    engine.dispose()
    click.echo(f"Created {len(metadata.tables)} tables in {redact(url)}")


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--store",
        "store",
        envvar="CONTINUITY_STORE_URL",
        help="The ledger's work store (default: work.sqlite in the estate directory, else in the "
        "current directory).",
    )(command)
    return click.option(
        "--estate",
        type=click.Path(path_type=Path, exists=True, file_okay=False),
        help="An estate made by `continuity estate generate`: its databases and as-of date.",
    )(command)


@main.command("reconcile")
@_store_options
@click.option(
    "--project",
    "-p",
    "project_path",
    type=click.Path(path_type=Path),
    help="Reconcile a project's load: its SQL sources, target, specs and as-of date, with the "
    "findings in its ledger's work store (what `continuity report` reads).",
)
@click.option(
    "--damaged", is_flag=True, help="With --estate: reconcile its damaged target (--defects)."
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="SYSTEM=URL",
    help="A source system's database, e.g. legacy=sqlite:///legacy.sqlite (repeatable).",
)
@click.option("--target", "target_url", metavar="URL", help="The target database.")
@click.option(
    "--specs",
    type=click.Path(path_type=Path, exists=True),
    help="A survival spec file or a directory of them (default: the bundled specs).",
)
@click.option(
    "--class", "classes", multiple=True, metavar="CLASS", help="Only this class (repeatable)."
)
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date the exclusion rules (MoPI review dates) are judged at (default: the estate's "
    "as-of date, else today).",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the identities and every finding to this JSON file.",
)
@click.option(
    "--wave",
    metavar="WAVE",
    help="Only the records of this wave, as the specs declare it (sources' `waves`); classes "
    "that do not declare it are reconciled whole.",
)
@click.option("--show", default=10, show_default=True, help="Exceptions listed per class.")
def reconcile_command(
    estate: Path | None,
    store: str | None,
    project_path: Path | None,
    damaged: bool,
    sources: tuple[str, ...],
    target_url: str | None,
    specs: Path | None,
    classes: tuple[str, ...],
    as_of: Any,
    json_file: Path | None,
    wave: str | None,
    show: int,
) -> None:
    """Prove, record by record, that every person, firearms warning and crime survived.

    Reads the sources and the target itself (never the pipeline's word), gives every source
    record a placement (MIGRATED, MERGED, DUPLICATED, EXCLUDED, REJECTED, DEFERRED,
    DELETED_AT_SOURCE, MISSING) and an integrity (EQUAL or ALTERED with the field diffs),
    and prints both accounting identities per class. Findings go to the work store.

    Exits 0 when nothing is MISSING, ALTERED, DUPLICATED or ORPHAN and every exception of a
    critical class is accepted (`continuity accept`); 1 otherwise; 2 on error.
    """
    import json
    import os
    import signal

    from continuity.domain.digest import KEY_VARIABLE
    from continuity.reconciliation import exceptions_listing, identity_table, resolve
    from continuity.workstore import WorkStore
    from reconcile.engine import reconcile_all
    from reconcile.spec import bundled_specs_dir, load_specs, spec_files

    # A polite kill (SIGTERM) unwinds like an error: temporary spill files, which hold personal
    # data, are removed and the work store is left as it was.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if project_path is not None:
        from continuity.project import load_project
        from continuity.reconciliation import from_project

        project = load_project(project_path)
        setting = from_project(
            project, estate, damaged, sources, target_url, as_of.date() if as_of else None, store
        )
        specs = specs or project.specs
    else:
        setting = resolve(
            estate, damaged, sources, target_url, as_of.date() if as_of else None, store
        )
    loaded = load_specs(spec_files(specs or bundled_specs_dir()))
    with WorkStore(setting.store_url) as work:
        accepted = work.accepted(setting.connections.target)
        with Progress("Reconciling") as progress:
            result = reconcile_all(
                loaded,
                setting.connections,
                setting.as_of,
                classes,
                progress=lambda _name, done, total: progress(done, total),
                wave=wave,
            )
        if not os.environ.get(KEY_VARIABLE):
            click.echo(
                f"warning: {KEY_VARIABLE} is not set: fingerprints use a development key that "
                "anyone can reproduce (set it for real data)",
                err=True,
            )
        work.record(result, setting.connections.target, accepted)
    click.echo(identity_table(result, accepted))
    listing = exceptions_listing(result, accepted, show)
    if listing:
        click.echo(listing)
    if json_file is not None:
        json_file.write_text(json.dumps(result.to_dict(accepted), indent=1), encoding="utf-8")
    sys.exit(0 if result.clean(accepted) else 1)


@main.command("accept")
@_store_options
@click.argument("cls", metavar="CLASS")
@click.argument("key")
@click.option("--reason", required=True, help="Why the owner accepts this record as it is.")
@click.option(
    "--system", help="The record's source system, when the key alone is ambiguous (or 'target')."
)
@click.option(
    "--ledger",
    envvar="CONTINUITY_LEDGER",
    help="The audit ledger the acceptance is written to first (a project's `ledger`).",
)
@click.option(
    "--project",
    "-p",
    "project_path",
    type=click.Path(path_type=Path),
    help="A project: its ledger is both the work store and the audit ledger (as "
    "`reconcile --project` and `report` use them).",
)
def accept_command(
    estate: Path | None,
    store: str | None,
    cls: str,
    key: str,
    reason: str,
    system: str | None,
    ledger: str | None,
    project_path: Path | None,
) -> None:
    """Accept one exception of a critical class (firearms warnings), with a reason.

    In a critical class anything not placed-and-EQUAL (even REJECTED, EXCLUDED or an unmatched
    address) blocks sign-off until its owner accepts it here, record by record. The acceptance
    (who, when, why) is kept across runs, and with --ledger written first to the audit ledger
    (append-only, hash-chained). Other classes are made clean by fixing the load.
    """
    from continuity.workstore import WorkStore

    if project_path is not None:
        from continuity.project import load_project

        project = load_project(project_path)
        store, ledger = store or project.ledger, ledger or project.ledger
    with WorkStore(store or f"sqlite:///{(estate or Path('.')) / 'work.sqlite'}") as work:
        _accept(work, cls, key, reason, system, ledger)


def _accept(
    work: Any, cls: str, key: str, reason: str, system: str | None, ledger: str | None
) -> None:
    """Accept one finding in ``work`` (a WorkStore), writing the ledger first if given."""
    from continuity.ledger import AuditLedger

    found = work.last_findings(cls, key)
    if found and not found[0]["critical"]:
        raise ContinuityError(
            f"{cls} is not a critical class: its losses are fixed in the load or the spec, "
            "not accepted record by record"
        )
    systems = sorted({f["system"] or "target" for f in found})
    if not found:
        raise ContinuityError(f"{cls} {key}: not a finding of the last reconciliation")
    if system is None:
        if len(systems) > 1:
            raise ContinuityError(f"{cls} {key}: held by {', '.join(systems)}: give --system")
        system = systems[0]
    elif system not in systems:
        raise ContinuityError(f"{cls} {key}: no finding from system {system!r} ({systems})")
    mine = [f for f in found if (f["system"] or "target") == system]
    if not reason.strip():
        raise ContinuityError("an acceptance needs a reason (--reason)")
    if all(work.is_accepted(f) for f in mine):
        raise ContinuityError(f"{cls} {system} {key} is already accepted as it stands")
    if ledger is not None:
        audit = AuditLedger(ledger)
        try:
            for finding in mine:
                audit.append(
                    "acceptance",
                    {
                        "class": cls,
                        "system": system,
                        "key": key,
                        "signature": finding["signature"],
                        "target": finding["target"],
                        "reason": reason.strip(),
                    },
                )
        finally:
            audit.close()
    for finding in mine:  # a key held twice gives two findings: the owner accepts the record
        work.accept(finding, reason)
    click.echo(f"Accepted {cls} {system} {key}: {reason}")


def _project_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--project",
        "-p",
        "project_path",
        type=click.Path(path_type=Path),
        envvar="CONTINUITY_PROJECT",
        help="The project file, or its folder (default: continuity.yml in the current folder).",
    )(command)


@main.command("init")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def init_command(folder: Path) -> None:
    """Write a commented starter project into FOLDER (continuity.yml and a mappings folder)."""
    from continuity.starter import write_starter

    for path in write_starter(folder):
        click.echo(f"wrote {path}")
    click.echo(f"Edit {folder / 'continuity.yml'}, then: continuity run all --project {folder}")


@main.command("run")
@_project_option
@click.argument("wave")
@click.option("--resume", is_flag=True, help="Continue this wave's interrupted run.")
@click.option("--restart", is_flag=True, help="Start an interrupted wave again from the beginning.")
@click.option("--dry-run", is_flag=True, help="Read and map everything; write nothing.")
@click.option(
    "--delta",
    is_flag=True,
    help="Migrate only what changed since earlier runs (by the fingerprints they kept): added "
    "and changed records, the parents of changed children; records deleted at source move to "
    "migration_deletion.",
)
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The date rules compare with ($as_of; default: the project's, else today).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Rows per transaction (and per checkpoint).",
)
@click.option(
    "--no-journal",
    is_flag=True,
    help="Keep no journal of what each batch replaced: faster, but the run cannot be rolled back.",
)
@click.option(
    "--no-search-index",
    is_flag=True,
    help="Do not rebuild the person search index after the wave (continuity search --reindex "
    "does it later).",
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Skip the project's validation suites (sources before loading, target after).",
)
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="Write the summary.")
def run_command(
    project_path: Path | None,
    wave: str,
    resume: bool,
    restart: bool,
    dry_run: bool,
    delta: bool,
    as_of: Any,
    batch_size: int,
    no_journal: bool,
    no_search_index: bool,
    no_validate: bool,
    json_file: Path | None,
) -> None:
    """Run migration WAVE of the project: extract, map, load, with quarantine and crosswalk.

    Every source record lands in the target, in the target's quarantine with a reason, or is
    excluded by a declared rule. Each batch commits with its checkpoint: a run that is killed
    continues with --resume; re-running a finished wave changes nothing.

    Every run first fingerprints the source records it covers; with --delta only those added or
    changed since (and the parents of changed children) are migrated, and records deleted at
    source since are recorded as such (see docs/delta.md).

    A project with suites validates its sources first (a critical failure stops the wave with
    nothing loaded; rows failing a quarantine expectation are quarantined with it as reason)
    and its target after (a critical failure marks the run failed: exit 1); see
    docs/validators.md.
    """
    import json

    from continuity.project import load_project
    from continuity.waves import run_wave

    project = load_project(project_path)
    with StepProgress() as progress:
        summary = run_wave(
            project,
            wave,
            resume=resume,
            restart=restart,
            dry_run=dry_run,
            as_of=as_of.date() if as_of else None,
            batch_size=batch_size,
            progress=progress,
            journal=not no_journal,
            delta=delta,
            validate=not no_validate,
        )
    click.echo(_summary_table(summary))
    if json_file is not None:
        json_file.write_text(json.dumps(summary.as_dict(), indent=1), encoding="utf-8")
    if not dry_run and not no_search_index:
        _refresh_search_index(project)
    if summary.failed:
        click.echo(f"run failed: {summary.failed}", err=True)
        sys.exit(1)


@main.command("validate")
@_project_option
@click.option(
    "--side",
    type=click.Choice(["source", "target", "both"]),
    default="both",
    show_default=True,
    help="Validate the sources, the target, or both, with the project's suites.",
)
@click.option("--wave", help="The wave this validation belongs to (recorded in the ledger).")
@click.option(
    "--target", "target_url", metavar="URL", help="The target database (default: the project's)."
)
@click.option(
    "--profile",
    "profile_source",
    metavar="SOURCE",
    help="Instead of validating, profile every table of source SOURCE: nulls, distinct values "
    "of coded fields, date formats seen, placeholder values.",
)
@click.option(
    "--table", "tables", multiple=True, help="With --profile: only this table (repeatable)."
)
@click.option(
    "--json", "json_file", type=click.Path(path_type=Path), help="Write the findings as JSON."
)
@click.option("--show", default=5, show_default=True, help="Example values listed per failure.")
def validate_command(
    project_path: Path | None,
    side: str,
    wave: str | None,
    target_url: str | None,
    profile_source: str | None,
    tables: tuple[str, ...],
    json_file: Path | None,
    show: int,
) -> None:
    """Validate the project's sources and target with its great-expectations suites.

    Suites are YAML files in the project's suites folder, one per table (docs/validators.md).
    Every finding, with the keys of unexpected rows, is written to the ledger. Exits 1 when a
    critical expectation fails, 0 otherwise (warnings are reported, not failures).

    With --profile SOURCE, summarise the source's tables instead, to see legacy data quality
    before writing mappings and suites.
    """
    import json

    from continuity.project import load_project

    project = load_project(project_path)
    if profile_source is not None:
        from continuity.validation import profile_project_source
        from validators.profile import format_profile

        profiles = profile_project_source(project, profile_source, tables)
        click.echo(format_profile(profiles))
        if json_file is not None:
            data = [p.to_dict() for p in profiles]
            json_file.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        return
    from continuity.validation import format_result, project_suites, run_validation

    suites = project_suites(project)
    if not suites:
        raise ConfigError(
            f"{project.file}: no suites declared (suites: FOLDER; docs/validators.md)"
        )
    sides = ["source", "target"] if side == "both" else [side]
    if side == "both" and target_url is None and project.target.loader != "sql":
        click.echo(
            f"The target is written by the {project.target.loader!r} loader, not a database: "
            "its suites need --target URL (the database the vendor loaded)."
        )
        sides = ["source"]
    found = {}
    ok = True
    for one in sides:
        with ExpectationProgress(f"Validating the {one}") as progress:
            done = run_validation(
                project,
                one,
                target_url=target_url,
                wave=wave,
                on_expectation=progress,
                suites=suites,
            )
        if done is None:
            click.echo(f"No {one} suites.")
            continue
        click.echo(format_result(done.result, show))
        found[one] = done.result.to_dict()
        ok = ok and done.result.ok
    if json_file is not None:
        json_file.write_text(json.dumps(found, indent=1, default=str), encoding="utf-8")
    if not ok:
        sys.exit(1)


class ExpectationProgress:
    """A progress line on stderr naming the expectation being computed (a table may take a
    while): erased when done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._shown = False

    def __call__(self, suite: Any, spec: Any) -> None:
        if sys.stderr.isatty():
            text = f"{self.label}: {suite.table} {spec.name}"[:100]
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
            self._shown = True

    def __enter__(self) -> ExpectationProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


@main.command("report")
@_project_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Folder for report.json (the evidence), report.html, report.pdf and exceptions/*.csv.",
)
@click.option("--store", help="The work store holding the reconciliation (default: the ledger).")
@click.option("--wave", help="The wave (or cut-over) the report is for.")
@click.option("--cutover", is_flag=True, help="A cut-over report: names the freeze in force.")
@click.option("--run", "run_id", type=int, help="This reconciliation run (default: the latest).")
@click.option(
    "--unmasked",
    is_flag=True,
    help="The owner's copy: names, dates of birth and addresses shown. Needs --key: an owner's "
    "registered key (recorded in the ledger with the owner).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --unmasked: your private key (continuity keygen).",
)
@click.option("--pdf", is_flag=True, help="Also print report.pdf with headless Chromium.")
def report_command(
    project_path: Path | None,
    out: Path,
    store: str | None,
    wave: str | None,
    cutover: bool,
    run_id: int | None,
    unmasked: bool,
    key_file: Path | None,
    pdf: bool,
) -> None:
    """Write the evidence a data owner reads and signs: the latest reconciliation in the work
    store, with both identities per class, every exception and its acceptance, validation
    results and sign-offs so far. JSON is the evidence (its SHA-256 goes to the audit ledger);
    the HTML (self-contained, masked by default), the CSVs and the PDF render from it.
    """
    from continuity.project import load_project
    from continuity.reporting import build, owner_of_key, write

    project = load_project(project_path)
    owner = None
    if unmasked:
        if key_file is None:
            raise ConfigError("--unmasked is the owner's copy: give your key (--key FILE)")
        owner = owner_of_key(project, key_file)
    document = build(
        project,
        store=store,
        wave=wave,
        kind="cutover" if cutover else "wave",
        masked=not unmasked,
        run_id=run_id,
    )
    written = write(project, document, out, pdf=pdf, owner=owner)
    s = document["summary"]
    click.echo(
        f"Report of reconciliation {document['checked']['reconcile_run']}: {s['state']} "
        f"({s['clean']} of {s['classes']} classes clean, {s['blocked']} blocked, "
        f"{s['exceptions_open']:,} open exceptions){'' if document['masked'] else ', UNMASKED'}"
    )
    click.echo(f"SHA-256 {written.digest} (recorded in the audit ledger)")
    for path in written.files:
        click.echo(f"  {path}")


@main.command("keygen")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder for NAME.key (private: keep it on your machine) and NAME.pub.",
)
@click.option("--name", required=True, help="The owner's key in the project file (e.g. firearms).")
def keygen_command(out: Path, name: str) -> None:
    """Create an owner's Ed25519 key pair, on the owner's own machine. Register the public key
    for the owner's classes in the project file (owners.NAME.public_key)."""
    from reports.signing import generate

    private, public, text = generate(out, name)
    click.echo(f"wrote {private} (private: never share it) and {public}")
    click.echo(f"In continuity.yml, under owners.{name}:\n  public_key: {text}")


@main.command("signoff")
@_project_option
@click.argument("report", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--class", "cls", required=True, help="The class of record signed off.")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Your private key (continuity keygen).",
)
@click.option("--decision", type=click.Choice(["approve", "reject"]), required=True)
@click.option("--comment", default="", help="Why (recorded and signed).")
def signoff_command(
    project_path: Path | None, report: Path, cls: str, key_file: Path, decision: str, comment: str
) -> None:
    """Sign off one class of a report with your own key: your decision, bound to the report's
    digest, class and time, is signed and appended to the audit ledger. Refused with a key not
    registered for the class, and approval refused while the class has unaccepted critical
    exceptions."""
    from continuity.project import load_project
    from continuity.reporting import signoff

    entry = signoff(load_project(project_path), report, cls, key_file, decision, comment)
    click.echo(
        f"{decision} of {cls} signed by {entry.payload['owner']} and recorded "
        f"(ledger entry {entry.seq})"
    )
    click.echo(
        f"Receipt (keep it: continuity verify --receipt proves the entry is still there): "
        f"{entry.seq}:{entry.hash}"
    )


@main.command("verify")
@_project_option
@click.argument("report", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--receipt",
    "receipts",
    multiple=True,
    metavar="SEQ:HASH",
    help="A sign-off's receipt: the entry must still be in the ledger as it was (repeatable).",
)
def verify_command(project_path: Path | None, report: Path, receipts: tuple[str, ...]) -> None:
    """Check REPORT against the ledger: its digest, the hash chain, every sign-off's signature
    and that each signing key is the one registered for its class. Exits 1 naming what differs."""
    from continuity.project import load_project
    from continuity.reporting import verify

    found = verify(load_project(project_path), report, receipts)
    for line in found.checks:
        click.echo(f"ok       {line}")
    for line in found.problems:
        click.echo(f"PROBLEM  {line}")
    click.echo("VERIFIED" if found.ok else "NOT VERIFIED")
    if not found.ok:
        sys.exit(1)


@main.group(cls=ContinuityGroup)
def cutover() -> None:
    """Cut-over: freeze the sources, run the final delta, decide go or no-go.

    plan (rehearsal timings, what changed, the predicted window) -> freeze (recorded in the audit
    ledger) -> run (the delta, only under a freeze) -> verify (the whole estate reconciled, one
    page: exit 0 GO, 1 NO-GO). See docs/cutover.md.
    """


_wave_option = click.option(
    "--wave", default="all", show_default=True, help="The wave the cut-over migrates."
)


@cutover.command("plan")
@_project_option
@_wave_option
def cutover_plan(project_path: Path | None, wave: str) -> None:
    """Rehearsals of the wave (durations, volumes), what changed at source since the last run,
    and how long the cut-over's delta should take."""
    from continuity.cutover import plan, plan_text
    from continuity.project import load_project

    project = load_project(project_path)
    with StepProgress() as progress:
        found = plan(project, wave, progress)
    click.echo(plan_text(found))


@cutover.command("freeze")
@_project_option
@_wave_option
@click.option("--reason", help="Why (a lift needs one).")
@click.option("--lift", is_flag=True, help="End the freeze in force (e.g. a no-go: thaw).")
def cutover_freeze(project_path: Path | None, wave: str, reason: str | None, lift: bool) -> None:
    """Record the freeze in the audit ledger: from now the sources take no more writes."""
    from continuity.cutover import freeze
    from continuity.project import load_project

    entry = freeze(load_project(project_path), wave, reason, lift)
    what = "lifted" if lift else "recorded"
    click.echo(
        f"Freeze of wave {wave} {what} at {entry.at:%Y-%m-%d %H:%M:%S} UTC by {entry.operator} "
        f"(audit ledger entry {entry.seq})"
    )


@cutover.command("run")
@_project_option
@_wave_option
@click.option("--resume", is_flag=True, help="Continue the cut-over delta that was interrupted.")
def cutover_run(project_path: Path | None, wave: str, resume: bool) -> None:
    """Run the cut-over's delta (refused without a freeze); its timing goes to the ledger."""
    from continuity.cutover import run_delta
    from continuity.project import load_project

    project = load_project(project_path)
    with StepProgress() as progress:
        summary = run_delta(project, wave, resume=resume, progress=progress)
    click.echo(_summary_table(summary))


@cutover.command("verify")
@_project_option
@_wave_option
@click.option(
    "--store",
    help="The work store holding the owners' acceptances (default: the project's ledger).",
)
def cutover_verify(project_path: Path | None, wave: str, store: str | None) -> None:
    """The go/no-go: the freeze held, the delta ran, the whole estate reconciles, every critical
    exception is accepted and every class is signed off. Exit 0 GO, 1 NO-GO."""
    from continuity.cutover import verdict_text, verify
    from continuity.project import load_project

    with StepProgress() as progress:
        verdict = verify(load_project(project_path), wave, store, progress)
    click.echo(verdict_text(verdict))
    if not verdict.go:
        sys.exit(1)


class StepProgress:
    """One progress bar per step of a wave, on stderr."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.bar: Progress | None = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if step != self.step:
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
            self.step = step
            self.bar = Progress(step)
        assert self.bar is not None
        self.bar(done, max(total, done))

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _summary_table(summary: Any) -> str:
    rate = summary.rows_read / summary.seconds if summary.seconds else 0.0
    verb = "Would load" if summary.dry_run else "Loaded"
    lines = [
        f"Wave {summary.wave} ({'dry run' if summary.dry_run else 'run ' + summary.run_id}"
        f"{', resumed' if summary.resumed else ''}): {summary.rows_read:,} source rows in "
        f"{summary.seconds:.1f} s ({rate:,.0f} rows/s)",
        f"{'entity':<24} {'read':>10} {verb.lower():>10} {'quarantined':>12} {'excluded':>9}",
    ]
    for entity, c in summary.entities.items():
        lines.append(
            f"{entity:<24} {c.read:>10,} {c.loaded:>10,} {c.quarantined:>12,} {c.excluded:>9,}"
        )
    if summary.changes:
        lines.append(
            ("Changes migrated" if summary.delta else "Changes since earlier runs")
            + f" ({'delta' if summary.delta else 'every record migrated'}):"
        )
        lines.append(
            f"  {'source table':<30} {'added':>9} {'changed':>9} {'related':>9} "
            f"{'deleted':>9} {'unchanged':>10}"
        )
        for table, c in summary.changes.items():
            lines.append(
                f"  {table:<30} {c['added']:>9,} {c['changed']:>9,} {c['related']:>9,} "
                f"{c['deleted']:>9,} {c['unchanged']:>10,}"
            )
    if summary.moved:
        lines.append("Deleted at source, crosswalk entries moved to migration_deletion (kept):")
        for entity, n in summary.moved.items():
            lines.append(f"  {entity:<22} {n:>10,}")
    if summary.dry_run and summary.would_insert:
        lines.append("Records new to the target / already there (would be updated):")
        for entity in summary.would_insert:
            lines.append(
                f"  {entity:<22} {summary.would_insert[entity]:>10,} / "
                f"{summary.would_update.get(entity, 0):,}"
            )
    for side, v in summary.validation.items():
        if v:
            lines.append(
                f"Validation of the {side}: {v['expectations'] - v['failed']} of "
                f"{v['expectations']} expectations met ({v['critical']} critical, "
                f"{v['quarantine']} quarantine: {v['quarantined_rows']:,} rows, {v['warning']} "
                f"warning failures): {'ok' if v['ok'] else 'FAILED'}; continuity validate "
                "lists them"
            )
    if summary.phases:
        from continuity.waves import phases_text

        lines.append(f"Where the time went: {phases_text(summary.phases)}")
    return "\n".join(lines)


def _rebuild_search_index(project: Any) -> None:
    """Rebuild the project's search index, saying so on stderr."""
    from continuity.search import build_index

    click.echo("Search index: rebuilding from the sources and the target", err=True)
    info = build_index(project, on_progress=lambda line: click.echo(f"  {line}", err=True))
    click.echo(f"Search {info.describe()}, in {info.seconds:.1f} s", err=True)


def _refresh_search_index(project: Any) -> None:
    """After a wave: rebuild the search index. The wave is done whatever happens here, so a
    failure is a warning (the previous index stays in use), not the wave's exit status."""
    try:
        _rebuild_search_index(project)
    except ContinuityError as exc:
        click.echo(
            f"warning: the search index was not rebuilt ({exc}); searches use the previous "
            "one: run continuity search --reindex",
            err=True,
        )


@main.command("search")
@_project_option
@click.argument("name", required=False)
@click.option(
    "--dob",
    metavar="DATE",
    help="Date of birth, YYYY-MM-DD or DD/MM/YYYY. Records born that day rank first, then day "
    "and month swapped, then an estimate within a year, then unknown, then any other date.",
)
@click.option(
    "--system",
    default="all",
    show_default=True,
    metavar="SYSTEM",
    help="Only records of this system: a source of the project (legacy, policeworks), "
    "target, or all.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Candidates shown, best first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as a JSON list.")
@click.option(
    "--reason",
    metavar="TEXT",
    help="Why you are searching; required for a search. Written to the audit ledger with "
    "the query, the number of results and who searched.",
)
@click.option(
    "--reindex",
    is_flag=True,
    help="Rebuild the index first, from the sources and the target as they are now (a target "
    "loaded by another tool); without NAME, only rebuild. Every wave rebuilds it too.",
)
def search_command(
    project_path: Path | None,
    name: str | None,
    dob: str | None,
    system: str,
    limit: int,
    as_json: bool,
    reason: str | None,
    reindex: bool,
) -> None:
    """Find a person in every source system and in the target, however the name was spelled.

    NAME is "Forename Surname" or "SURNAME, Forename" (one word is a surname). Every record of
    the sources and the target is a candidate, ranked by how its names agree (exact, nickname,
    phonetic key, Jaro-Winkler, alias, one part of a double-barrelled surname, names swapped)
    and, with --dob, its dates of birth (exact, day and month swapped, estimate within a
    year). Each says why it matched and, for a source record, where it went in the target or
    that it did not arrive (quarantined with the reason, excluded, or not in the target).

    \b
    Examples:
      continuity search "Mohammed Khan" --dob 1984-02-01 --reason "custody record check" \\
          --project examples/gmp
      continuity search "KHAN, Muhammad" --system policeworks --json --reason "FOI 2291"
      continuity search --reindex --project examples/gmp
    """
    import json

    from continuity.project import load_project
    from continuity.search import SearchError, parse_query, search

    if name is None:
        if not reindex:
            raise SearchError('give a NAME to search for, e.g. "Mohammed Khan" (or --reindex)')
        if dob is not None:
            raise SearchError("--dob needs a NAME to search for")
    query = parse_query(name, dob, system, limit) if name is not None else None
    if query is not None and not (reason or "").strip():
        raise SearchError(
            "a search needs --reason: why you are looking (the audit ledger keeps it)"
        )
    project = load_project(project_path)
    if reindex:
        _rebuild_search_index(project)
    if query is None:
        return
    result = search(project, query, reason or "")
    if as_json:
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(json.dumps(result.to_list(), indent=1, ensure_ascii=False))
    else:
        click.echo(result.render())


@main.command("rollback")
@_project_option
@click.argument("wave")
def rollback_command(project_path: Path | None, wave: str) -> None:
    """Undo the last run of WAVE: the target returns to what it was before that run.

    Replays the run's journal backwards in one transaction: rows it replaced are put back,
    rows it added are deleted. Only the latest run may be rolled back (roll back later waves
    first); the rollback is written to the audit ledger.
    """
    from continuity.project import load_project
    from continuity.rollback import rollback_wave

    counts = rollback_wave(load_project(project_path), wave)
    click.echo(f"Rolled back wave {wave}:")
    for what, n in sorted(counts.items()):
        click.echo(f"  {what:<40} {n:>10,}")


@main.command("status")
@_project_option
def status_command(project_path: Path | None) -> None:
    """The project's waves and their runs, from the audit ledger (interrupted runs included)."""
    from continuity.project import load_project
    from continuity.runs import wave_status

    project = load_project(project_path)
    click.echo(wave_status(project))


@main.group("people", cls=ContinuityGroup)
def people_group() -> None:
    """Person resolution: review merges near the threshold, confirm or split them.

    Each wave resolves persons (the person mapping's resolve:) and lists the pairs whose
    score fell near the threshold, merged or not. A reviewer confirms or splits each; the
    decision is written to the audit ledger and applied by every later run.
    """


@people_group.command("review")
@_project_option
@click.option("--entity", default="person", show_default=True, help="The resolved entity.")
@click.option("--undecided", is_flag=True, help="Only pairs no reviewer has decided yet.")
@click.option(
    "--state",
    type=click.Choice(["merged", "near", "refused"]),
    help="Only merged pairs, near misses below the threshold, or pairs a rule refused.",
)
@click.option(
    "--order",
    type=click.Choice(["priority", "pair"]),
    default="priority",
    show_default=True,
    help="priority: merges near the threshold first (weakest first), then refusals by a hard "
    "rule, near misses, and pairs left apart for want of evidence; decided pairs last. "
    "pair: by pair number.",
)
@click.option("--limit", default=50, show_default=True, help="Pairs shown (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the pairs as JSON.")
def people_review(
    project_path: Path | None,
    entity: str,
    undecided: bool,
    state: str | None,
    order: str,
    limit: int,
    as_json: bool,
) -> None:
    """List the pairs the last run's resolution put near its threshold, the riskiest first.

    \b
    Example:
      continuity people review --project examples/gmp
      continuity people decide 3 split --reason "twins: different schools" -p examples/gmp
    """
    import json
    from collections import Counter

    from continuity import people
    from continuity.project import load_project

    project = load_project(project_path)
    pairs = people.review(project.ledger, entity)
    if order == "priority":
        pairs.sort(key=people.priority)
    if undecided:
        pairs = [p for p in pairs if p["decision"] is None]
    if state is not None:
        pairs = [p for p in pairs if people.state_of(p) == state]
    if as_json:
        click.echo(json.dumps(pairs[:limit] if limit else pairs, indent=1))
        return
    if not pairs:
        click.echo(f"No {entity} pairs to review (run a wave that resolves them first).")
        return
    for p in pairs[:limit] if limit else pairs:
        state = "merged" if p["merged"] else f"not merged ({p['refused'] or 'below threshold'})"
        decided = f"  decided: {p['decision']} by {p['decided_by']}" if p["decision"] else ""
        click.echo(
            f"#{p['pair']:<4} score {p['score']:.3f}  {state}  [{', '.join(p['reasons'])}]"
            f"{decided}\n      {p['a']}: {p['a_seen']}\n      {p['b']}: {p['b_seen']}"
        )
    counts = Counter(people.state_of(p) for p in pairs)
    shown = min(limit, len(pairs)) if limit else len(pairs)
    click.echo(
        f"{shown} of {len(pairs)} pairs shown ("
        + ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items()))
        + "). Decide with: continuity people decide PAIR confirm|split --reason ..."
    )


@people_group.command("decide")
@_project_option
@click.argument("pair")
@click.argument("decision", type=click.Choice(["confirm", "split"]))
@click.option("--reason", required=True, help="Why (written to the audit ledger).")
@click.option("--entity", default="person", show_default=True, help="The resolved entity.")
@click.option("--with", "other", metavar="RECORD", help="PAIR is a record; this is the other.")
def people_decide(
    project_path: Path | None,
    pair: str,
    decision: str,
    reason: str,
    entity: str,
    other: str | None,
) -> None:
    """Confirm (merge) or split a pair: by its number in the review, or two records.

    A split pair is never merged again; a confirmed one always is (never across PNC IDs).
    The next run of a wave applies the decision.

    \b
    Examples:
      continuity people decide 3 split --reason "twins" -p examples/gmp
      continuity people decide "legacy|NOMINAL|N1" confirm \\
          --with "policeworks|pw_person|6f1c..." --reason "same custody photo" -p examples/gmp
    """
    from continuity import people
    from continuity.project import load_project

    project = load_project(project_path)
    if other is not None:
        target: int | tuple[str, str] = (pair, other)
    else:
        try:
            target = int(pair.lstrip("#"))
        except ValueError:
            raise people.ReviewError(
                f"pair {pair!r}: give its number in the review, or a record and --with RECORD"
            ) from None
    done = people.decide(project.ledger, entity, target, decision, reason)
    click.echo(
        f"{decision}: {done['a']} and {done['b']} ({entity}), by {done['operator']}; "
        "the next run of a wave applies it"
    )


if __name__ == "__main__":
    main()
