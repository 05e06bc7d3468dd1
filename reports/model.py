"""The report a data owner reads and signs: a versioned JSON document, the evidence.

HTML, CSV and PDF are renderings of it. The document is written canonically (sorted keys, UTF-8,
one layout), so its SHA-256 (:func:`digest_of`) names exactly these bytes: the digest is what an
owner signs and what ``continuity verify`` recomputes. Its JSON Schema is
``docs/report.schema.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: The report format's version: a reader refuses a version it does not know.
REPORT_VERSION = 1

#: Columns of the exception table, in order (the document holds rows, not objects: a million
#: exceptions as objects would repeat every name a million times).
EXCEPTION_COLUMNS = (
    "class",
    "system",
    "table",
    "key",
    "placement",
    "integrity",
    "diffs",
    "reason",
    "target_key",
    "candidates",
    "accepted",
    "acceptance",
)

#: A class's state, as the summary shows it.
CLEAN, EXCEPTIONS, BLOCKED = "clean", "exceptions", "blocked"


@dataclass(frozen=True)
class ClassReport:
    """One class of record: both identities, its dispositions and its exceptions' counts."""

    name: str
    title: str
    owner: str
    owner_name: str
    severity: str
    spec_digest: str
    source_identity: list[dict[str, Any]]
    target_identity: dict[str, Any]
    dispositions: dict[str, int]
    exceptions_open: int
    exceptions_accepted: int
    balanced: bool
    redacted: int = 0  # exceptions about restricted records, shown without their details
    #: what reconciliation says an owner must know besides findings (a source that read
    #: nothing, years whose counts differ): a class with any is not clean
    warnings: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """blocked: a critical class with an exception no owner accepted (approval refused);
        exceptions: any other exception, open or accepted; clean: none, identities balanced."""
        if self.severity == "critical" and (self.exceptions_open or not self.balanced):
            return BLOCKED
        if self.exceptions_open or self.exceptions_accepted or not self.balanced or self.warnings:
            return EXCEPTIONS
        return CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "title": self.title,
            "owner": self.owner,
            "owner_name": self.owner_name,
            "severity": self.severity,
            "state": self.state,
            "spec_digest": self.spec_digest,
            "balanced": self.balanced,
            "source_identity": self.source_identity,
            "target_identity": self.target_identity,
            "dispositions": self.dispositions,
            "exceptions_open": self.exceptions_open,
            "exceptions_accepted": self.exceptions_accepted,
            "redacted": self.redacted,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Report:
    """Everything a report says (see the module docstring)."""

    kind: str  # "wave" or "cutover"
    project: dict[str, Any]
    wave: str | None
    generated_at: str
    operator: str
    tool_version: str
    masked: bool
    checked: dict[str, Any]
    ledger_head: dict[str, Any]
    classes: list[ClassReport]
    exceptions: list[list[Any]]
    validation: list[dict[str, Any]] = field(default_factory=list)
    trend: list[dict[str, Any]] = field(default_factory=list)
    signoffs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        states = {c.state for c in self.classes}
        return BLOCKED if BLOCKED in states else EXCEPTIONS if EXCEPTIONS in states else CLEAN

    def to_dict(self) -> dict[str, Any]:
        order = {"critical": 0}
        classes = sorted(self.classes, key=lambda c: (order.get(c.severity, 1), c.name))
        return {
            "report_version": REPORT_VERSION,
            "kind": self.kind,
            "project": self.project,
            "wave": self.wave,
            "generated_at": self.generated_at,
            "operator": self.operator,
            "tool_version": self.tool_version,
            "masked": self.masked,
            "checked": self.checked,
            "ledger_head": self.ledger_head,
            "summary": {
                "state": self.state,
                "classes": len(self.classes),
                "clean": sum(c.state == CLEAN for c in self.classes),
                "with_exceptions": sum(c.state == EXCEPTIONS for c in self.classes),
                "blocked": sum(c.state == BLOCKED for c in self.classes),
                "exceptions_open": sum(c.exceptions_open for c in self.classes),
                "exceptions_accepted": sum(c.exceptions_accepted for c in self.classes),
            },
            "classes": [c.to_dict() for c in classes],
            "validation": self.validation,
            "trend": self.trend,
            "exceptions": {"columns": list(EXCEPTION_COLUMNS), "rows": self.exceptions},
            "signoffs": self.signoffs,
        }


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The one byte layout of a report document (what is written, hashed and signed)."""
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def digest_of(data: bytes) -> str:
    """SHA-256 of a report file's bytes, as hex."""
    return hashlib.sha256(data).hexdigest()
