"""The report model without a database: masking, exceptions and states from work-store rows."""

from __future__ import annotations

import json
from typing import Any

from reports.build import ReportInputs, build_report
from reports.masking import MASK, mask_reason


def test_a_reason_keeps_its_rule_and_hides_what_is_not_a_rule() -> None:
    assert mask_reason("quarantined: unmapped offence code: XX") == f"quarantined: {MASK}"
    assert mask_reason("no trace in the target") == "no trace in the target"
    assert mask_reason("John Smith born 1980-01-01 moved away") == MASK
    assert mask_reason("SMITH: duplicate") == MASK
    assert mask_reason(None) is None


def _inputs(summary: dict[str, Any], rows: list[dict[str, Any]], **kw: Any) -> ReportInputs:
    return ReportInputs(
        kind="wave",
        project={"name": "p", "digest": "d"},
        wave=None,
        generated_at="2026-11-25T00:00:00Z",
        operator="me",
        tool_version="0",
        run={
            "run_id": 1,
            "started_at": "x",
            "as_of": "2026-06-30",
            "wave": None,
            "target": "t",
            "summary": summary,
        },
        findings=rows,
        accepted={},
        owners={},
        ledger_head={"seq": 0, "hash": "0" * 64},
        **kw,
    )


def _row(cls: str, key: str, placement: str, critical: int, **kw: Any) -> dict[str, Any]:
    return {
        "class": cls,
        "side": "source",
        "system": "legacy",
        "source_table": "T",
        "record_key": key,
        "placement": placement,
        "critical": critical,
        "integrity": kw.get("integrity"),
        "fields": json.dumps(kw["diffs"]) if "diffs" in kw else None,
        "reason": kw.get("reason"),
        "target_key": kw.get("target_key"),
        "candidates": None,
    }


def test_a_run_recorded_without_severities_takes_them_from_its_rows() -> None:
    """An older work store's summary names no severity: the rows' critical flag blocks."""
    summary = {"firearms": {"source_identity": [], "target_identity": {}}}
    rows = [
        _row("firearms", "K1", "MISSING", 1),
        _row("firearms", "K2", "REJECTED", 1, reason="quarantined: bad date: 01/01/1980"),
    ]
    doc = build_report(_inputs(summary, rows)).to_dict()
    (firearms,) = doc["classes"]
    assert firearms["severity"] == "critical"
    assert firearms["state"] == "blocked"
    assert firearms["exceptions_open"] == 2  # a REJECTED record needs acceptance when critical
    assert "01/01/1980" not in json.dumps(doc)


def test_restricted_target_records_are_not_offered_as_candidates() -> None:
    summary = {"persons": {"severity": "normal", "source_identity": [], "target_identity": {}}}
    row = _row("persons", "K1", "MISSING", 0)
    row["candidates"] = json.dumps(
        [{"target_key": "T1", "score": 0.9}, {"target_key": "T2", "score": 0.8}]
    )
    doc = build_report(_inputs(summary, [row], restricted={"": frozenset({"T1"})})).to_dict()
    (found,) = doc["exceptions"]["rows"]
    assert [c["target_key"] for c in found[9]] == ["T2"]
