"""Building a report from what the ledger holds: a reconciliation run, its findings, the owners'
acceptances, and the audit entries around them.

Pure: the caller reads the ledger and work store (``continuity.reporting``) and hands the rows
over; this module decides what each class's state is, which findings are exceptions, and masks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconcile.model import FieldDiff, Finding, Integrity, Placement
from reports.masking import MASK, mask_diffs, mask_reason
from reports.model import ClassReport, Report

Acceptance = Mapping[str, Any]  # reason, operator, accepted_at


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from (plain data read from the ledger and work store)."""

    kind: str
    project: dict[str, Any]
    wave: str | None
    generated_at: str
    operator: str
    tool_version: str
    run: Mapping[str, Any]  # the reconcile run: run_id, started_at, as_of, wave, target, summary
    findings: Iterable[Mapping[str, Any]]  # its reconcile_finding rows
    accepted: Mapping[tuple[str, str, str, str], Acceptance]  # (class, system, key, signature)
    owners: Mapping[str, tuple[str, str]]  # class -> (owner key, owner name)
    ledger_head: dict[str, Any]
    masked: bool = True
    checked: dict[str, Any] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    trend: list[dict[str, Any]] = field(default_factory=list)
    signoffs: list[dict[str, Any]] = field(default_factory=list)
    #: keys of restricted records, by source system ("" for the target): redacted when masked
    restricted: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _restricted(f: Finding, restricted: Mapping[str, frozenset[str]]) -> bool:
    """A finding about a restricted record: its key (or a part of a composite key: a link of a
    restricted nominal) is restricted in its system, or its target record is."""
    if not restricted:
        return False
    mine = restricted.get(f.system or "", frozenset())
    target = restricted.get("", frozenset())
    parts = set(f.key.split("|"))
    if f.system is None:
        return bool(parts & target)
    return bool(parts & mine) or bool(f.target_key and set(f.target_key.split("|")) & target)


REDACTED = "[restricted]"


def finding_of(row: Mapping[str, Any]) -> Finding:
    """A work-store finding row as the reconciliation model's Finding."""
    diffs = tuple(FieldDiff(**d) for d in json.loads(row["fields"])) if row.get("fields") else ()
    candidates = tuple(json.loads(row["candidates"])) if row.get("candidates") else ()
    return Finding(
        cls=row["class"],
        side=row["side"],
        system=row.get("system"),
        table=row["source_table"],
        key=row["record_key"],
        placement=Placement(row["placement"]),
        integrity=Integrity(row["integrity"]) if row.get("integrity") else None,
        diffs=diffs,
        reason=row.get("reason"),
        target_key=row.get("target_key"),
        candidates=candidates,
    )


def build_report(inputs: ReportInputs) -> Report:
    """The report of one reconciliation run (see :class:`ReportInputs`)."""
    summary: dict[str, Any] = inputs.run["summary"]
    # a run recorded before the summary named severities: its rows' critical flags say
    critical = {name for name, s in summary.items() if s.get("severity") == "critical"}
    open_: Counter[str] = Counter()
    accepted_n: Counter[str] = Counter()
    redacted: Counter[str] = Counter()
    rows: list[list[Any]] = []
    restricted_targets = inputs.restricted.get("", frozenset())
    for row in inputs.findings:
        cls = row["class"]
        f = finding_of(row)
        if row.get("critical"):
            critical.add(cls)
        if not f.needs_acceptance(cls in critical):
            continue
        acceptance = inputs.accepted.get((cls, f.system or "", f.key, f.signature))
        if acceptance is None:
            open_[cls] += 1
        else:
            accepted_n[cls] += 1
        diffs = [d.to_dict() for d in f.diffs]
        if inputs.masked and _restricted(f, inputs.restricted):
            redacted[cls] += 1
            rows.append(
                [
                    cls,
                    f.system,
                    f.table,
                    REDACTED,
                    f.placement.value,
                    f.integrity.value if f.integrity else None,
                    [],
                    REDACTED,
                    None,
                    [],
                    acceptance is not None,
                    {**(_acceptance(acceptance, True) or {}), "reason": REDACTED}
                    if acceptance
                    else None,
                ]
            )
            continue
        rows.append(
            [
                cls,
                f.system,
                f.table,
                f.key,
                f.placement.value,
                f.integrity.value if f.integrity else None,
                mask_diffs(diffs) if inputs.masked else diffs,
                mask_reason(f.reason) if inputs.masked else f.reason,
                f.target_key,
                [
                    c
                    for c in f.candidates
                    if not inputs.masked or str(c.get("target_key")) not in restricted_targets
                ],
                acceptance is not None,
                _acceptance(acceptance, inputs.masked),
            ]
        )
    rows.sort(key=lambda r: (r[10], r[0], r[4], r[1] or "", r[3]))  # open ones first
    classes = [
        _class(
            name,
            {**s, "severity": "critical"} if name in critical else s,
            inputs.owners,
            open_[name],
            accepted_n[name],
            redacted[name],
        )
        for name, s in summary.items()
    ]
    run = inputs.run
    checked = {
        "reconcile_run": run["run_id"],
        "reconciled_at": str(run["started_at"]),
        "as_of": str(run["as_of"]),
        "reconciled_wave": run.get("wave"),
        "target": run["target"],
        "spec_digests": {name: s.get("spec_digest") for name, s in summary.items()},
        "content_digests": {
            name: {"source": s.get("source_digest"), "target": s.get("target_digest")}
            for name, s in summary.items()
        },
        "source_rows": _source_rows(summary),
        "target_rows": {
            name: s.get("target_identity", {}).get("target", 0) for name, s in summary.items()
        },
        **inputs.checked,
    }
    return Report(
        kind=inputs.kind,
        project=inputs.project,
        wave=inputs.wave,
        generated_at=inputs.generated_at,
        operator=inputs.operator,
        tool_version=inputs.tool_version,
        masked=inputs.masked,
        checked=checked,
        ledger_head=inputs.ledger_head,
        classes=classes,
        exceptions=rows,
        validation=inputs.validation,
        trend=inputs.trend,
        # an owner's comment is free text: the owner's copy shows it
        signoffs=[
            {**s, "comment": MASK} if inputs.masked and s.get("comment") else s
            for s in inputs.signoffs
        ],
    )


def _acceptance(acceptance: Acceptance | None, masked: bool) -> dict[str, Any] | None:
    """Who accepted and when; the reason (free text an owner wrote) only in the owner's copy."""
    if acceptance is None:
        return None
    return {
        "reason": MASK if masked else acceptance["reason"],
        "operator": acceptance["operator"],
        "accepted_at": str(acceptance["accepted_at"]),
    }


def _class(
    name: str,
    s: Mapping[str, Any],
    owners: Mapping[str, tuple[str, str]],
    open_: int,
    accepted: int,
    redacted: int,
) -> ClassReport:
    sources = list(s.get("source_identity", []))
    target = dict(s.get("target_identity", {}))
    dispositions: Counter[str] = Counter()
    for identity in sources:
        for placement in Placement:
            dispositions[placement.value] += int(identity.get(placement.value.lower(), 0) or 0)
        dispositions["ALTERED"] += int(identity.get("altered", 0) or 0)
    dispositions["ORPHAN"] += int(target.get("orphan", 0) or 0)
    dispositions["TARGET_ONLY"] += sum(int(v) for v in (target.get("target_only") or {}).values())
    owner_key, owner_name = owners.get(name, (s.get("owner", ""), s.get("owner", "")))
    balanced = all(i.get("balanced", True) for i in sources) and target.get("balanced", True)
    return ClassReport(
        name=name,
        title=s.get("title", name),
        owner=owner_key,
        owner_name=owner_name,
        severity=s.get("severity", "normal"),
        spec_digest=s.get("spec_digest", ""),
        source_identity=sources,
        target_identity=target,
        dispositions={k: v for k, v in sorted(dispositions.items()) if v},
        exceptions_open=open_,
        exceptions_accepted=accepted,
        balanced=bool(balanced),
        redacted=redacted,
        warnings=list(s.get("warnings", [])),
    )


def _source_rows(summary: Mapping[str, Any]) -> dict[str, int]:
    """Rows read per source system and table (each table once, whichever class read it)."""
    out: dict[str, int] = {}
    for s in summary.values():
        for identity in s.get("source_identity", []):
            out[f"{identity['system']}.{identity['table']}"] = int(identity.get("source", 0))
    return out
