"""What a validation found: plain frozen dataclasses, free of great-expectations types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: What a failed expectation does, by its declared severity.
#:   critical:   stops a wave before anything is loaded (a source) or fails the run (the target)
#:   quarantine: its unexpected rows go to quarantine with the expectation as reason (a source's
#:               row-level expectations only; the rest of the table migrates)
#:   warning:    reported, with the keys of the rows, and nothing else
SEVERITIES = ("critical", "quarantine", "warning")


@dataclass(frozen=True)
class Outcome:
    """One expectation's result on one batch."""

    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    missing_count: int | None = None
    observed: Any = None
    examples: tuple[Any, ...] = ()
    keys: tuple[tuple[Any, ...], ...] | None = None  # of the unexpected rows, when asked for
    error: str | None = None  # GX could not compute it (a column gone, a table missing)


@dataclass(frozen=True)
class Finding:
    """An expectation of a suite, as it fared."""

    suite: str
    file: str
    line: int
    side: str
    source: str | None
    table: str
    expectation: str
    column: str | None
    severity: str
    row_level: bool
    outcome: Outcome
    notes: str = ""
    key: tuple[str, ...] = ()  # the suite's key columns: what ``outcome.keys`` hold
    seconds: float = 0.0  # how long judging it took (in-flight batches: not their reading)

    @property
    def success(self) -> bool:
        return self.outcome.success

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def reason(self) -> str:
        """The quarantine reason of a row this expectation found unexpected."""
        on = f" on {self.column}" if self.column else ""
        return f"validation: {self.expectation}{on} failed ({self.where})"

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "suite": self.suite,
            "where": self.where,
            "side": self.side,
            "source": self.source,
            "table": self.table,
            "expectation": self.expectation,
            "column": self.column,
            "severity": self.severity,
            "row_level": self.row_level,
            "success": o.success,
            "element_count": o.element_count,
            "unexpected_count": o.unexpected_count,
            "missing_count": o.missing_count,
            "observed": o.observed,
            "examples": [str(v) for v in o.examples],
            "error": o.error,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ValidationResult:
    """Every finding of a validation, and what follows from them."""

    side: str
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    #: "source.table" -> rows judged, of the tables whose row-level expectations judged only
    #: some rows (a delta's: see validators.runner.Data.rows_query); "source.table.column" ->
    #: values whose rows a reference judged (validators.runner.Data.reaching)
    scope: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.success]

    @property
    def stops(self) -> list[Finding]:
        """What stops a wave before loading (source) or fails a run (target): a critical
        failure, and a quarantine expectation that could not be computed (a column gone): the
        rows it should quarantine cannot be named, and must not load unjudged."""
        return [
            f
            for f in self.failed
            if f.severity == "critical" or (f.severity == "quarantine" and f.outcome.error)
        ]

    @property
    def ok(self) -> bool:
        return not self.stops

    def quarantine(
        self,
    ) -> dict[tuple[str, str], tuple[tuple[str, ...], dict[tuple[Any, ...], str]]]:
        """Per (source, table): the key columns, and the key of each row to quarantine with
        why (its first failed expectation)."""
        out: dict[tuple[str, str], tuple[tuple[str, ...], dict[tuple[Any, ...], str]]] = {}
        for f in self.failed:
            if f.severity != "quarantine" or f.side != "source" or not f.outcome.keys:
                continue
            _, bad = out.setdefault((f.source or "", f.table), (f.key, {}))
            for key in f.outcome.keys:
                bad.setdefault(key, f.reason)
        return out

    def counts(self) -> Mapping[str, int]:
        failed = self.failed
        return {
            "expectations": len(self.findings),
            "failed": len(failed),
            "critical": sum(f.severity == "critical" for f in failed),
            "quarantine": sum(f.severity == "quarantine" for f in failed),
            "warning": sum(f.severity == "warning" for f in failed),
            "quarantined_rows": sum(len(v[1]) for v in self.quarantine().values()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "counts": dict(self.counts()),
            "findings": [f.to_dict() for f in self.findings],
        }
