"""Cut-over: a freeze, the final delta, and a go/no-go on the whole estate (docs/cutover.md).

``continuity cutover``:

- ``plan``: every rehearsal of the wave from the audit ledger (full runs and deltas, their
  durations and volumes), what has changed at source since the last run, and the freeze window
  that predicts;
- ``freeze``: records the freeze in the audit ledger (from then on the sources take no writes);
- ``run``: the delta wave, under the freeze;
- ``verify``: checks the sources did not change since the delta, reconciles the *whole* estate
  (not just the delta) and prints a one-page go/no-go: per class clean or not, exceptions
  accepted, sign-offs present, the delta's duration against the rehearsals'.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from continuity.domain.errors import ConfigError
from continuity.ledger import AuditLedger, Entry
from continuity.project import Project
from continuity.runs import runs

FREEZE, LIFT, DELTA, VERIFIED, SIGN_OFF = (
    "cutover-freeze",
    "cutover-lifted",
    "cutover-delta",
    "cutover-verified",
    "sign-off",
)


@dataclass(frozen=True)
class Rehearsal:
    """One finished run of the wave: how long it took and how much it moved."""

    run_id: str
    at: dt.datetime
    delta: bool
    seconds: float
    rows: int  # source rows migrated
    changes: int  # records added, changed, related or deleted (a delta's volume)
    cutover: bool = False  # the run made under a freeze

    @property
    def kind(self) -> str:
        return "cut-over delta" if self.cutover else "delta" if self.delta else "full"


def _volume(payload: dict[str, Any]) -> int:
    return sum(
        c.get("added", 0) + c.get("changed", 0) + c.get("related", 0) + c.get("deleted", 0)
        for c in (payload.get("changes") or {}).values()
    )


def rehearsals(ledger: AuditLedger, wave: str) -> list[Rehearsal]:
    """Finished runs of ``wave`` that were not rolled back, oldest first."""
    cutover_runs = {str(e.payload.get("run_id")) for e in ledger.entries(DELTA, wave)}
    found = []
    for r in runs(ledger):
        if r.wave != wave or r.rolled_back is not None or r.ended is None:
            continue
        if r.ended.kind != "run-finished" or r.ended.payload.get("failed"):
            continue
        p = r.ended.payload
        found.append(
            Rehearsal(
                r.run_id,
                r.started.at,
                bool(p.get("delta")),
                float(p.get("seconds", 0.0)),
                int(p.get("rows_read", 0)),
                _volume(p),
                r.run_id in cutover_runs,
            )
        )
    return found


def predict(history: list[Rehearsal], pending: int) -> float | None:
    """Seconds a delta of ``pending`` changes should take, from the rehearsal deltas: a line
    through them (seconds = fixed + per change x changes) when two or more differ in volume,
    else the last one scaled up (never down: a delta has a fixed cost). None without a delta."""
    deltas = [r for r in history if r.delta]
    if not deltas:
        return None
    volumes = {r.changes for r in deltas}
    if len(volumes) >= 2:
        fit = statistics.linear_regression([r.changes for r in deltas], [r.seconds for r in deltas])
        estimate = fit.intercept + fit.slope * pending
        return max(estimate, min(r.seconds for r in deltas))
    last = deltas[-1]
    return last.seconds * max(1.0, pending / last.changes if last.changes else 1.0)


def _approved_since(project: Project, ledger: AuditLedger, frozen: Entry | None) -> set[str]:
    """Classes whose latest sign-off since the freeze approves a cut-over report of this wave
    made since the freeze, signed after it by the key registered for the class. A rejection, a
    bad signature, another key, a report of another wave or from before the freeze, or a
    signature seen before (an old approval appended again) does not count."""
    from reports.signing import valid

    if frozen is None:
        return set()
    registered = {c: o.public_key for c, o in project.class_owners().items()}
    frozen_at = frozen.at.isoformat()
    reports: set[str] = set()
    seen: set[str] = set()
    latest: dict[str, bool] = {}
    for e in ledger.entries():
        p = e.payload
        if e.kind == "report" and e.seq > frozen.seq and e.wave == frozen.wave:
            if p.get("kind") == "cutover":
                reports.add(str(p.get("digest")))
            continue
        if e.kind != SIGN_OFF:
            continue
        signature = str(p.get("signature", ""))
        replayed = signature in seen
        seen.add(signature)
        if e.seq <= frozen.seq:
            continue
        cls = str(p.get("class"))
        key = p.get("public_key", "")
        good = (
            not replayed
            and key == registered.get(cls)
            and valid(key, signature, p)
            and p.get("report_digest") in reports
            and str(p.get("signed_at", "")).replace("Z", "") >= frozen_at
        )
        latest[cls] = good and p.get("decision") == "approve"
    return {cls for cls, approved in latest.items() if approved}


def freeze_in_force(ledger: AuditLedger, wave: str) -> Entry | None:
    """The wave's freeze, if one was recorded and not lifted since."""
    current = None
    for entry in ledger.entries(wave=wave):
        if entry.kind == FREEZE:
            current = entry
        elif entry.kind == LIFT:
            current = None
    return current


@dataclass
class Plan:
    wave: str
    history: list[Rehearsal]
    pending: dict[str, dict[str, int]]
    predicted: float | None
    freeze: Entry | None

    @property
    def pending_total(self) -> int:
        return changed_at_source(self.pending)


def changed_at_source(pending: dict[str, dict[str, int]]) -> int:
    """Records added, changed or deleted at source (per table counts of change detection)."""
    return sum(c["added"] + c["changed"] + c["deleted"] for c in pending.values())


def _pending(project: Project, wave: str, progress: Callable[..., None] | None) -> dict[str, Any]:
    from continuity.waves import WaveRunner

    runner = WaveRunner(project, wave, delta=True)
    try:
        return runner.pending_changes(progress)
    finally:
        runner.close()


def plan(project: Project, wave: str, progress: Callable[..., None] | None = None) -> Plan:
    project.wave(wave)
    ledger = AuditLedger(project.ledger)
    try:
        history = rehearsals(ledger, wave)
        frozen = freeze_in_force(ledger, wave)
    finally:
        ledger.close()
    pending = _pending(project, wave, progress)
    return Plan(wave, history, pending, predict(history, changed_at_source(pending)), frozen)


def plan_text(p: Plan) -> str:
    lines = [f"Cut-over plan: wave {p.wave}", "", "Rehearsals (audit ledger):"]
    if not p.history:
        lines.append("  none yet: run the wave (continuity run) before planning its cut-over")
    for r in p.history:
        lines.append(
            f"  {r.at:%Y-%m-%d %H:%M} {r.kind:<15} run {r.run_id[:8]}  {r.seconds:>9.1f} s  "
            f"{r.rows:>11,} rows  {r.changes:>9,} changes"
        )
    lines += ["", f"Changed at source since the last run: {p.pending_total:,} records"]
    for table, c in p.pending.items():
        if c["added"] or c["changed"] or c["deleted"]:
            lines.append(
                f"  {table:<32} {c['added']:>8,} added {c['changed']:>8,} changed "
                f"{c['deleted']:>8,} deleted"
            )
    if p.predicted is None:
        lines.append("Predicted delta: unknown (no rehearsal delta yet: run one with --delta)")
    else:
        lines.append(f"Predicted delta: {p.predicted:,.1f} s (from the rehearsal deltas above)")
    if p.freeze is not None:
        lines.append(
            f"A freeze is in force since {p.freeze.at:%Y-%m-%d %H:%M:%S} UTC "
            f"(ledger entry {p.freeze.seq}, by {p.freeze.operator})"
        )
    return "\n".join(lines)


def freeze(project: Project, wave: str, reason: str | None = None, lift: bool = False) -> Entry:
    """Record the freeze (or, with ``lift``, its end) in the audit ledger."""
    project.wave(wave)
    ledger = AuditLedger(project.ledger)
    try:
        current = freeze_in_force(ledger, wave)
        if lift:
            if current is None:
                raise ConfigError(f"wave {wave}: no freeze in force to lift")
            if not reason:
                raise ConfigError("lifting a freeze needs --reason")
            return ledger.append(LIFT, {"freeze": current.seq, "reason": reason}, None, wave)
        if current is not None:
            raise ConfigError(
                f"wave {wave} is frozen already, since {current.at:%Y-%m-%d %H:%M:%S} UTC "
                f"(ledger entry {current.seq}): lift it first (--lift --reason ...)"
            )
        return ledger.append(FREEZE, {"reason": reason or ""}, None, wave)
    finally:
        ledger.close()


def run_delta(
    project: Project, wave: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> Any:
    """The cut-over's delta: only under a freeze; recorded in the ledger with its timing."""
    from continuity.waves import run_wave

    ledger = AuditLedger(project.ledger)
    try:
        frozen = freeze_in_force(ledger, wave)
    finally:
        ledger.close()
    if frozen is None:
        raise ConfigError(
            f"wave {wave} is not frozen: record the freeze first (continuity cutover freeze)"
        )
    summary = run_wave(project, wave, delta=True, resume=resume, progress=progress)
    ledger = AuditLedger(project.ledger)
    try:
        ledger.append(
            DELTA,
            {
                "run_id": summary.run_id,
                "freeze": frozen.seq,
                "seconds": round(summary.seconds, 3),
                "rows": summary.rows_read,
                "changes": _volume(summary.as_dict()),
            },
            summary.run_id,
            wave,
        )
    finally:
        ledger.close()
    return summary


@dataclass
class ClassVerdict:
    name: str
    severity: str
    owner: str
    clean: bool
    exceptions: int
    accepted: int
    signed: bool


@dataclass
class Verdict:
    wave: str
    go: bool
    reasons: list[str]
    freeze: Entry | None
    delta: Entry | None
    unchanged: bool | None  # sources unchanged since the delta (None: not checked)
    classes: list[ClassVerdict] = field(default_factory=list)
    rehearsal_seconds: float | None = None
    full_seconds: float | None = None
    seconds: float = 0.0


def verify(
    project: Project,
    wave: str,
    store: str | None = None,
    progress: Callable[..., None] | None = None,
) -> Verdict:
    """The go/no-go: the freeze held, the delta ran, the whole estate reconciles."""
    from continuity.workstore import WorkStore
    from reconcile.engine import Connections, reconcile_all
    from reconcile.spec import bundled_specs_dir, load_specs, spec_files

    started = time.perf_counter()
    project.wave(wave)
    ledger = AuditLedger(project.ledger)
    try:
        ledger.verify()
        frozen = freeze_in_force(ledger, wave)
        deltas = [e for e in ledger.entries(DELTA, wave) if frozen and e.seq > frozen.seq]
        history = rehearsals(ledger, wave)
        signed = _approved_since(project, ledger, frozen)
    finally:
        ledger.close()
    delta = deltas[-1] if deltas else None
    reasons: list[str] = []
    if frozen is None:
        reasons.append("no freeze in force (continuity cutover freeze)")
    if delta is None:
        reasons.append("no cut-over delta since the freeze (continuity cutover run)")
    unchanged = None
    if delta is not None:
        pending = _pending(project, wave, progress)
        moved = changed_at_source(pending)
        unchanged = moved == 0
        if not unchanged:
            reasons.append(f"the sources changed since the delta: {moved:,} records (the freeze)")
    sources = {name: cfg.location for name, cfg in project.sources.items() if cfg.kind == "sql"}
    connections = Connections(sources, project.target.location)
    specs = load_specs(spec_files(project.specs or bundled_specs_dir()))
    work = WorkStore(store or project.ledger)
    try:
        accepted = work.accepted(connections.target)
        as_of = project.as_of or dt.date.today()
        result = reconcile_all(
            specs,
            connections,
            as_of,
            (),
            progress=(lambda _n, d, t: progress("reconcile", d, t)) if progress else None,
        )
        work.record(result, connections.target, accepted)
    finally:
        work.close()
    verdict = Verdict(wave, False, reasons, frozen, delta, unchanged)
    for c in result.classes:
        open_ = c.exceptions(accepted)
        every = c.exceptions(frozenset())
        verdict.classes.append(
            ClassVerdict(
                c.name,
                c.severity,
                c.owner,
                c.clean(accepted),
                len(open_),
                len(every) - len(open_),
                c.name in signed,
            )
        )
    unclean = [c.name for c in verdict.classes if not c.clean]
    if unclean:
        reasons.append(f"not clean: {', '.join(unclean)}")
    unsigned = [c.name for c in verdict.classes if not c.signed]
    if unsigned:
        reasons.append(
            f"no sign-off since the freeze: {', '.join(unsigned)} (each owner signs the report)"
        )
    rehearsal = [r.seconds for r in history if r.delta and not r.cutover]
    full = [r.seconds for r in history if not r.delta]
    verdict.rehearsal_seconds = statistics.median(rehearsal) if rehearsal else None
    verdict.full_seconds = full[-1] if full else None
    verdict.go = not reasons
    verdict.seconds = time.perf_counter() - started
    ledger = AuditLedger(project.ledger)
    try:
        ledger.append(
            VERIFIED,
            {
                "decision": "GO" if verdict.go else "NO-GO",
                "reasons": reasons,
                "classes": {
                    c.name: {"clean": c.clean, "exceptions": c.exceptions, "signed": c.signed}
                    for c in verdict.classes
                },
                "seconds": round(verdict.seconds, 3),
            },
            None,
            wave,
        )
    finally:
        ledger.close()
    return verdict


def verdict_text(v: Verdict) -> str:
    """The one page a cut-over board reads."""
    decision = "GO" if v.go else "NO-GO"
    lines = [f"Cut-over go/no-go, wave {v.wave}: {decision}", ""]
    if v.freeze is not None:
        lines.append(
            f"Freeze:      {v.freeze.at:%Y-%m-%d %H:%M:%S} UTC by {v.freeze.operator} "
            f"(ledger entry {v.freeze.seq})"
        )
    else:
        lines.append("Freeze:      none in force")
    if v.delta is not None:
        p = v.delta.payload
        line = (
            f"Final delta: run {str(p.get('run_id'))[:8]}, {p.get('seconds', 0):,.1f} s, "
            f"{p.get('changes', 0):,} records changed, {p.get('rows', 0):,} rows"
        )
        if v.rehearsal_seconds:
            line += f"; {p.get('seconds', 0) / v.rehearsal_seconds:.2f}x the rehearsal deltas'"
            line += f" ({v.rehearsal_seconds:,.1f} s median)"
        if v.full_seconds:
            line += f"; {p.get('seconds', 0) / v.full_seconds:.1%} of the full wave's"
        lines.append(line)
    else:
        lines.append("Final delta: none since the freeze")
    if v.unchanged is not None:
        lines.append(
            "Sources:     unchanged since the delta (the freeze held)"
            if v.unchanged
            else "Sources:     CHANGED since the delta"
        )
    lines += [
        "",
        f"{'class':<22} {'severity':<9} {'owner':<32} {'state':<10} {'open':>5} "
        f"{'accepted':>9} {'sign-off':>9}",
    ]
    for c in v.classes:
        lines.append(
            f"{c.name:<22} {c.severity:<9} {c.owner[:32]:<32} "
            f"{'clean' if c.clean else 'NOT CLEAN':<10} {c.exceptions:>5} {c.accepted:>9} "
            f"{'signed' if c.signed else 'missing':>9}"
        )
    lines += ["", f"Decision: {decision}"]
    lines += [f"  - {r}" for r in v.reasons]
    return "\n".join(lines)
