"""What the audit ledger says about a project's waves: ``continuity status``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from continuity.ledger import AuditLedger, Entry
from continuity.project import Project


@dataclass
class RunRecord:
    """One run of a wave, assembled from its ledger entries."""

    run_id: str
    wave: str
    started: Entry
    ended: Entry | None = None
    resumes: list[Entry] = field(default_factory=list)
    rolled_back: Entry | None = None
    last_seq: int = 0  # the run's latest entry: what ran after it is judged by this

    @property
    def state(self) -> str:
        if self.rolled_back is not None:
            return "rolled back"
        if self.ended is None:
            return "interrupted (or running)"
        if self.ended.kind == "run-recovered":
            return f"{self.ended.payload.get('state', 'finished')} (recovered)"
        if self.ended.kind == "run-refused":
            return "refused (validation)"
        if self.ended.kind == "run-finished" and self.ended.payload.get("failed"):
            return "loaded, failed validation"
        return "finished" if self.ended.kind == "run-finished" else "failed"

    @property
    def counts(self) -> dict[str, Any]:
        if self.ended is None:
            return {}
        payload = self.ended.payload
        return dict(payload.get("entities") or payload.get("counts") or {})


def runs(ledger: AuditLedger) -> list[RunRecord]:
    """Every run in the ledger, oldest first (a resumed run is one run with several starts)."""
    found: dict[str, RunRecord] = {}
    for entry in ledger.entries():
        if entry.kind == "rollback":
            undone = found.get(str(entry.payload.get("rolled_back")))
            if undone is not None:
                undone.rolled_back = entry
            continue
        if entry.run_id is None or not entry.kind.startswith("run-"):
            continue
        record = found.get(entry.run_id)
        if record is not None:
            record.last_seq = entry.seq
        if entry.kind == "run-refused" and record is None:  # stopped before it started
            found[entry.run_id] = RunRecord(
                entry.run_id, entry.wave or "", entry, ended=entry, last_seq=entry.seq
            )
        elif entry.kind == "run-started":
            if record is None:
                found[entry.run_id] = RunRecord(
                    entry.run_id, entry.wave or "", entry, last_seq=entry.seq
                )
            else:
                record.resumes.append(entry)
                record.ended = None
        elif record is not None:
            record.ended = entry
    return list(found.values())


def wave_status(project: Project) -> str:
    """A readable table: each declared wave, its last run and that run's outcome."""
    ledger = AuditLedger(project.ledger)
    try:
        length = ledger.verify()
        history = runs(ledger)
    finally:
        ledger.close()
    lines = [
        f"Project {project.name} ({project.file}); audit ledger: {length} entries, chain intact"
    ]
    last: dict[str, RunRecord] = {}
    for past in history:
        last[past.wave] = past
    for name, wave in project.waves.items():
        record = last.get(name)
        if record is None:
            lines.append(f"  {name:<20} never run   {wave.description}")
            continue
        when = (record.ended or record.started).at.isoformat(sep=" ")
        lines.append(
            f"  {name:<20} {record.state:<24} run {record.run_id[:8]} by "
            f"{record.started.operator} at {when} UTC"
            + (f", resumed {len(record.resumes)}x" if record.resumes else "")
        )
        if record.ended is not None and record.ended.kind in ("run-failed", "run-refused"):
            lines.append(f"    error: {record.ended.payload.get('error')}")
        elif record.ended is not None and record.ended.payload.get("failed"):
            lines.append(f"    failed: {record.ended.payload.get('failed')}")
        for entity, c in record.counts.items():
            lines.append(
                f"    {entity:<22} read {c.get('read', 0):>9,}  loaded {c.get('loaded', 0):>9,}"
                f"  quarantined {c.get('quarantined', 0):>7,}  excluded {c.get('excluded', 0):>7,}"
            )
    return "\n".join(lines)
