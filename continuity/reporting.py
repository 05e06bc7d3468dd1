"""Reports, sign-offs and their verification, read from and written to the project's ledger.

``continuity report`` builds the evidence of the latest reconciliation in the work store
(:mod:`reports.build`), writes it as JSON (the evidence), HTML, CSV and PDF, and appends a
``report`` entry naming the JSON's SHA-256 to the audit ledger. ``continuity signoff`` appends an
owner's signed decision on one class of a report the ledger knows; ``continuity verify`` checks a
report file against the ledger: its digest, the chain, every sign-off's signature and that each
signing key is the one registered for its class now.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from continuity import __version__
from continuity.domain.errors import ConfigError, LedgerError
from continuity.ledger import AuditLedger, Entry, operator
from continuity.project import Project
from continuity.workstore import WorkStore, acceptance, reconcile_finding, reconcile_run
from reports import signing
from reports.build import ReportInputs, build_report
from reports.model import BLOCKED, REPORT_VERSION, canonical_bytes, digest_of

REPORT, SIGN_OFF = "report", "sign-off"
DECISIONS = ("approve", "reject")


@dataclass
class Written:
    """What ``continuity report`` wrote."""

    digest: str
    files: list[Path] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _head(ledger: AuditLedger) -> dict[str, Any]:
    seq, hash_ = ledger.head()
    return {"seq": seq, "hash": hash_}


def _owners(project: Project) -> dict[str, tuple[str, str]]:
    return {c: (o.key, o.name) for c, o in project.class_owners().items()}


def _latest_run(work: WorkStore, run_id: int | None, wave: str | None) -> dict[str, Any]:
    """The reconciliation reported: ``run_id``, else the latest of the wave or of the whole
    estate (a whole-estate reconciliation covers every wave)."""
    with work.engine.connect() as conn:
        query = select(reconcile_run).order_by(reconcile_run.c.run_id.desc())
        if run_id is not None:
            query = select(reconcile_run).where(reconcile_run.c.run_id == run_id)
        elif wave is not None:
            query = query.where((reconcile_run.c.wave == wave) | reconcile_run.c.wave.is_(None))
        row = conn.execute(query).first()
    if row is None:
        which = f"reconciliation run {run_id}" if run_id else "reconciliation"
        raise ConfigError(
            f"work store {work.url}: no {which} to report (continuity reconcile ... --store URL)"
        )
    run = dict(row._mapping)
    run["summary"] = json.loads(run["summary"])
    return run


def _findings(work: WorkStore, run_id: int) -> Iterator[dict[str, Any]]:
    with work.engine.connect() as conn:
        result = conn.execution_options(yield_per=10_000).execute(
            select(reconcile_finding).where(reconcile_finding.c.run_id == run_id)
        )
        for row in result:
            yield dict(row._mapping)


def _accepted(work: WorkStore, target: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    with work.engine.connect() as conn:
        rows = conn.execute(select(acceptance).where(acceptance.c.target == target))
        return {
            (r._mapping["class"], r.system, r.record_key, r.signature): dict(r._mapping)
            for r in rows
        }


def _trend(work: WorkStore, target: str) -> list[dict[str, Any]]:
    """Exceptions per class in every reconciliation of this target, oldest first."""
    with work.engine.connect() as conn:
        rows = conn.execute(
            select(
                reconcile_run.c.run_id,
                reconcile_run.c.started_at,
                reconcile_run.c.wave,
                reconcile_run.c.summary,
            )
            .where(reconcile_run.c.target == target)
            .order_by(reconcile_run.c.run_id)
        )
        out = []
        for r in rows:
            summary = json.loads(r.summary)
            out.append(
                {
                    "reconcile_run": r.run_id,
                    "at": str(r.started_at),
                    "wave": r.wave,
                    "exceptions": {
                        name: s.get("exceptions", 0 if s.get("clean") else None)
                        for name, s in summary.items()
                    },
                }
            )
        return out


def _restricted_keys(project: Project, target: str) -> dict[str, frozenset[str]]:
    """Keys of the project's restricted records (``restricted:``), per source system ("" for
    the target), read from the databases; a masked report redacts findings about them."""
    from sqlalchemy import text

    from continuity.domain.connect import engine_for, redact
    from continuity.domain.errors import ExtractError, driver_message

    found: dict[str, set[str]] = {}
    for r in project.restricted:
        if r.source is None:
            if project.target.loader != "sql":
                continue  # the target is files a vendor applies: nothing to read here
            url = project.target.location
        else:
            url = project.sources[r.source].location
        engine = engine_for(url)
        quote = engine.dialect.identifier_preparer.quote
        columns = ", ".join(quote(k) for k in r.key)
        sql = text(f"SELECT {columns} FROM {quote(r.table)} WHERE {r.where}")
        keys = found.setdefault(r.source or "", set())
        try:
            with engine.connect() as conn:
                for row in conn.execute(sql):
                    keys.add("|".join("" if v is None else str(v) for v in row))
        except Exception as exc:
            raise ExtractError(
                f"{project.file}: restricted {r.source or 'target'}.{r.table}: "
                f"{redact(url)}: {driver_message(exc)}"
            ) from exc
        finally:
            engine.dispose()
    return {system: frozenset(keys) for system, keys in found.items()}


def _from_ledger(ledger: AuditLedger, wave: str | None, kind: str) -> dict[str, Any]:
    """Digests of the mappings and suites last used, the latest validation of each side, the
    freeze (a cut-over), and every sign-off so far."""
    mappings: dict[str, Any] = {}
    validation: dict[str, dict[str, Any]] = {}
    freeze: Entry | None = None
    signoffs = []
    for e in ledger.entries():
        if e.kind == "run-started" and (wave is None or e.wave == wave):
            mappings = {"project": e.payload.get("project"), "mappings": e.payload.get("mappings")}
        elif e.kind == "validation":
            p = e.payload
            validation[p["side"]] = {
                "side": p["side"],
                "ok": p["ok"],
                "counts": p["counts"],
                "suites_digest": p["suites_digest"],
                "at": e.at.isoformat(),
                "ledger_seq": e.seq,
                "failed": [
                    {k: f[k] for k in ("table", "expectation", "column", "severity")}
                    | {"unexpected": f.get("unexpected_count"), "error": f.get("error")}
                    for f in p["findings"]
                    if not f["success"]
                ],
            }
        elif e.kind == "cutover-freeze" and e.wave == wave:
            freeze = e
        elif e.kind == "cutover-lifted" and e.wave == wave:
            freeze = None
        elif e.kind == SIGN_OFF:
            signoffs.append({**e.payload, "ledger_seq": e.seq, "ledger_hash": e.hash})
    checked: dict[str, Any] = {"digests": mappings}
    if kind == "cutover":
        checked["freeze"] = (
            {"at": freeze.at.isoformat(), "ledger_seq": freeze.seq} if freeze else None
        )
    return {"checked": checked, "validation": list(validation.values()), "signoffs": signoffs}


def build(
    project: Project,
    *,
    store: str | None = None,
    wave: str | None = None,
    kind: str = "wave",
    masked: bool = True,
    run_id: int | None = None,
) -> dict[str, Any]:
    """The report document of the latest reconciliation (or ``run_id``) in the work store."""
    if wave is not None:
        project.wave(wave)
    work = WorkStore(store or project.ledger)
    ledger = AuditLedger(project.ledger)
    try:
        ledger.verify()
        head = _head(ledger)
        found = _from_ledger(ledger, wave, kind)
        run = _latest_run(work, run_id, wave)
        report = build_report(
            ReportInputs(
                kind=kind,
                project={
                    "name": project.name,
                    "digest": project.digest,
                    # the keys registered when the report was made: the only ones that may
                    # sign it (a key swapped into the project file later cannot)
                    "signers": {
                        c: {"owner": o.key, "public_key": o.public_key}
                        for c, o in project.class_owners().items()
                    },
                },
                wave=wave,
                generated_at=_now(),
                operator=operator(),
                tool_version=__version__,
                run=run,
                findings=_findings(work, run["run_id"]),
                accepted=_accepted(work, run["target"]),
                owners=_owners(project),
                ledger_head=head,
                masked=masked,
                checked=found["checked"],
                validation=found["validation"],
                trend=_trend(work, run["target"]),
                signoffs=found["signoffs"],
                restricted=_restricted_keys(project, run["target"]) if masked else {},
            )
        )
    finally:
        ledger.close()
        work.close()
    return report.to_dict()


def owner_of_key(project: Project, key_file: Path) -> str:
    """The owner whose registered key ``key_file`` is (an owner's copy is theirs alone)."""
    public = signing.public_text(signing.read_private(key_file).public_key())
    for owner in project.owners.values():
        if owner.public_key == public:
            return owner.key
    raise ConfigError(f"{key_file}: not the key of any owner registered in {project.file}")


def write(
    project: Project,
    document: dict[str, Any],
    out: Path,
    pdf: bool = False,
    owner: str | None = None,
) -> Written:
    """Write the report's JSON, HTML, CSVs (and PDF) into ``out``; record its digest."""
    from reports.csv_export import write_csvs
    from reports.html import render_html

    data = canonical_bytes(document)
    digest = digest_of(data)
    json_path, html_path = out / "report.json", out / "report.html"
    try:
        out.mkdir(parents=True, exist_ok=True)
        json_path.write_bytes(data)
        html_path.write_text(render_html(document, digest), encoding="utf-8")
        files = [json_path, html_path, *write_csvs(document, out / "exceptions")]
    except OSError as exc:
        raise ConfigError(
            f"{exc.filename or out}: cannot write the report: {exc.strerror}"
        ) from exc
    if pdf:
        from reports.browser import print_pdf

        files.append(print_pdf(html_path, out / "report.pdf"))
    ledger = AuditLedger(project.ledger)
    try:
        ledger.append(
            REPORT,
            {
                "digest": digest,
                "kind": document["kind"],
                "masked": document["masked"],
                "reconcile_run": document["checked"]["reconcile_run"],
                "state": document["summary"]["state"],
                "ledger_head": document["ledger_head"],
                **({"unmasked_for": owner} if owner else {}),
            },
            wave=document["wave"],
        )
    finally:
        ledger.close()
    return Written(digest, files, document)


def _read_report(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        data = path.read_bytes()
        document = json.loads(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not a report (JSON: {exc.msg})") from exc
    if not isinstance(document, dict) or document.get("report_version") != REPORT_VERSION:
        raise ConfigError(f"{path}: not a report of version {REPORT_VERSION}")
    return data, document


def _report_entry(ledger: AuditLedger, digest: str) -> Entry | None:
    return next((e for e in ledger.entries(REPORT) if e.payload.get("digest") == digest), None)


def signoff(
    project: Project,
    report: Path,
    cls: str,
    key_file: Path,
    decision: str,
    comment: str = "",
) -> Entry:
    """Append an owner's signed decision on class ``cls`` of ``report`` to the audit ledger.

    Refused: a report the ledger did not make (or one changed since), a class the report does
    not hold, a key not registered for the class, and approval of a class with unaccepted
    critical exceptions.
    """
    if decision not in DECISIONS:
        raise ConfigError(f"--decision {decision!r}: approve or reject")
    data, document = _read_report(report)
    digest = digest_of(data)
    classes = {c["class"]: c for c in document["classes"]}
    if cls not in classes:
        raise ConfigError(f"{report}: no class {cls!r} (classes: {', '.join(sorted(classes))})")
    owner = project.class_owners().get(cls)
    if owner is None:
        raise ConfigError(f"{project.file}: no owner declares class {cls!r}")
    if not owner.public_key:
        raise ConfigError(
            f"{project.file}: owner {owner.key} has no public_key registered "
            f"(continuity keygen, then owners.{owner.key}.public_key)"
        )
    key = signing.read_private(key_file)
    public = signing.public_text(key.public_key())
    recorded = document.get("project", {}).get("signers", {}).get(cls, {})
    if public != owner.public_key or public != recorded.get("public_key"):
        raise ConfigError(
            f"{key_file}: not the key registered for class {cls} (owner {owner.key}) when "
            "the report was made and now: refused"
        )
    if decision == "approve" and classes[cls]["state"] == BLOCKED:
        open_ = classes[cls]["exceptions_open"]
        raise ConfigError(
            f"class {cls} has {open_:,} unaccepted critical exception(s): approval refused "
            "(continuity accept, then a new report; or --decision reject)"
        )
    ledger = AuditLedger(project.ledger)
    try:
        if _report_entry(ledger, digest) is None:
            raise LedgerError(
                f"{report}: its digest {digest[:16]}... matches no report in the ledger: "
                "it was changed, or another ledger made it"
            )
        fields = {
            "project": project.name,
            "report_digest": digest,
            "class": cls,
            "owner": owner.key,
            "decision": decision,
            "comment": comment,
            "signed_at": _now(),
        }
        payload = {**fields, "public_key": public, "signature": signing.sign(key, fields)}
        return ledger.append(SIGN_OFF, payload, wave=document.get("wave"))
    finally:
        ledger.close()


@dataclass
class Verification:
    """What ``continuity verify`` found: every check made, and the problems."""

    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(project: Project, report: Path, receipts: tuple[str, ...] = ()) -> Verification:
    """Check ``report`` against the ledger: digest, chain, sign-offs, registered keys.

    Args:
        receipts: ``SEQ:HASH`` of entries the caller was given (a sign-off's receipt): each
            must still be in the ledger as it was (the chain alone cannot tell that its last
            entries were cut off).
    """
    out = Verification()
    data, document = _read_report(report)
    digest = digest_of(data)
    ledger = AuditLedger(project.ledger)
    try:
        try:
            length = ledger.verify()
            out.checks.append(f"audit ledger: {length:,} entries, hash chain intact")
        except LedgerError as exc:
            out.problems.append(str(exc))
        entries = {e.seq: e for e in ledger.entries()}
    finally:
        ledger.close()
    made = next(
        (e for e in entries.values() if e.kind == REPORT and e.payload.get("digest") == digest),
        None,
    )
    if made is None:
        out.problems.append(
            f"{report}: SHA-256 {digest} matches no report the ledger recorded: a byte of the "
            "report was changed, or another ledger made it"
        )
    else:
        out.checks.append(f"report digest {digest[:16]}... recorded in ledger entry {made.seq}")
    head = document.get("ledger_head", {})
    at = entries.get(int(head.get("seq", 0)))
    if head.get("seq") and (at is None or at.hash != head.get("hash")):
        out.problems.append(
            f"ledger entry {head.get('seq')} is not the one the report was built on "
            "(the ledger was rewritten)"
        )
    for receipt in receipts:
        seq_text, _, hash_ = receipt.partition(":")
        if not seq_text.isdigit() or not hash_:
            raise ConfigError(f"--receipt {receipt!r}: expected SEQ:HASH (as signoff printed it)")
        kept = entries.get(int(seq_text))
        if kept is None or kept.hash != hash_:
            out.problems.append(f"ledger entry {seq_text} is not the one the receipt names")
        else:
            out.checks.append(f"receipt {seq_text}: the entry is in the ledger as it was")
    registered = project.class_owners()
    signers = document.get("project", {}).get("signers", {})
    for e in entries.values():
        if e.kind != SIGN_OFF:
            continue
        p = e.payload
        if p.get("report_digest") != digest:
            continue
        who = f"sign-off {e.seq} ({p.get('class')}, {p.get('owner')}, {p.get('decision')})"
        if not signing.valid(p.get("public_key", ""), p.get("signature", ""), p):
            out.problems.append(f"{who}: the signature does not match what it signs")
            continue
        owner = registered.get(str(p.get("class")))
        if owner is None or owner.public_key != p.get("public_key"):
            out.problems.append(
                f"{who}: signed with a key not registered for class {p.get('class')} in "
                f"{project.file}"
            )
            continue
        if signers.get(str(p.get("class")), {}).get("public_key") != p.get("public_key"):
            out.problems.append(
                f"{who}: signed with a key the report does not name for class {p.get('class')} "
                "(the key was registered after the report was made)"
            )
            continue
        out.checks.append(f"{who}: signature valid, key registered")
    for s in document.get("signoffs", []):  # earlier sign-offs the report shows
        shown = entries.get(int(s.get("ledger_seq", 0)))
        if shown is None or shown.hash != s.get("ledger_hash"):
            out.problems.append(
                f"the report's sign-off at ledger entry {s.get('ledger_seq')} is not in the ledger "
                "as it was"
            )
    return out
