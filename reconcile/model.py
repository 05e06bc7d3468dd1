"""What reconciliation finds: dispositions on two axes, and both accounting identities.

Every source record of a checked class gets a *placement* (where it went) and, when it was found,
an *integrity* (whether it arrived intact). The source identity says every source record is
accounted for; the target identity says every target record is explained. Each term is backed by
its keys, except MIGRATED-and-EQUAL, the complement, which costs nothing per record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Placement(StrEnum):
    """Where a source record went (or, for ORPHAN and TARGET_ONLY, where a target one came from)."""

    MIGRATED = "MIGRATED"
    MERGED = "MERGED"
    DUPLICATED = "DUPLICATED"
    EXCLUDED = "EXCLUDED"
    REJECTED = "REJECTED"
    DEFERRED = "DEFERRED"
    DELETED_AT_SOURCE = "DELETED_AT_SOURCE"
    MISSING = "MISSING"
    # Target side only:
    ORPHAN = "ORPHAN"
    TARGET_ONLY = "TARGET_ONLY"


class Integrity(StrEnum):
    EQUAL = "EQUAL"
    ALTERED = "ALTERED"


#: Source-side placements, in the order the source identity lists them.
SOURCE_TERMS = (
    Placement.MIGRATED,
    Placement.MERGED,
    Placement.DUPLICATED,
    Placement.EXCLUDED,
    Placement.REJECTED,
    Placement.DEFERRED,
    Placement.DELETED_AT_SOURCE,
    Placement.MISSING,
)
#: Placements that mean the record is in the target.
FOUND = frozenset({Placement.MIGRATED, Placement.MERGED, Placement.DUPLICATED})


@dataclass(frozen=True)
class FieldDiff:
    field: str
    source: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "source": self.source, "target": self.target}


@dataclass(frozen=True)
class Finding:
    """One record that is not simply MIGRATED and EQUAL (or a target record nobody explains)."""

    cls: str
    side: str  # "source" or "target"
    system: str | None
    table: str
    key: str
    placement: Placement
    integrity: Integrity | None = None
    diffs: tuple[FieldDiff, ...] = ()
    reason: str | None = None
    target_key: str | None = None
    candidates: tuple[dict[str, Any], ...] = ()

    @property
    def fields(self) -> list[str]:
        return [d.field for d in self.diffs]

    @property
    def signature(self) -> str:
        """What was found: placement, integrity, the differing fields, their values (as a
        digest) and the target record; an acceptance covers exactly this."""
        import hashlib

        integrity = self.integrity.value if self.integrity else ""
        values = "\x1e".join(f"{d.field}\x1f{d.source}\x1f{d.target}" for d in self.diffs)
        digest = hashlib.sha256(values.encode("utf-8")).hexdigest()[:16]
        fields = ",".join(sorted(self.fields))
        return f"{self.placement.value}|{integrity}|{fields}|{self.target_key or ''}|{digest}"

    @property
    def is_exception(self) -> bool:
        """A finding that makes the class unclean (a loss, damage, or an unexplained record)."""
        return self.placement in (
            Placement.MISSING,
            Placement.DUPLICATED,
            Placement.ORPHAN,
        ) or (self.integrity is Integrity.ALTERED)

    def needs_acceptance(self, critical: bool) -> bool:
        """Critical classes: anything not placed-and-EQUAL needs an owner's acceptance."""
        if self.side == "target":
            return self.is_exception
        if self.is_exception:
            return True
        return critical and self.placement not in (Placement.MIGRATED, Placement.MERGED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "side": self.side,
            "system": self.system,
            "table": self.table,
            "key": self.key,
            "placement": self.placement.value,
            "integrity": self.integrity.value if self.integrity else None,
            "fields": self.fields,
            "diffs": [d.to_dict() for d in self.diffs],
            "reason": self.reason,
            "target_key": self.target_key,
            "candidates": list(self.candidates),
        }


@dataclass
class SourceIdentity:
    """One source table's identity.

    ``source = migrated + merged + duplicated + excluded + rejected + deferred
    + deleted_at_source + missing``; ``altered`` counts the found records with field diffs.
    """

    system: str
    table: str
    read: int = 0
    terms: Counter[Placement] = field(default_factory=Counter)
    altered: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == sum(self.terms[p] for p in SOURCE_TERMS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "table": self.table,
            "source": self.read,
            **{p.value.lower(): self.terms[p] for p in SOURCE_TERMS},
            "altered": self.altered,
            "balanced": self.balanced,
        }


@dataclass
class TargetIdentity:
    """``target = explained by source records + declared target-only + duplicated + orphan``."""

    table: str
    total: int = 0
    explained: int = 0
    target_only: Counter[str] = field(default_factory=Counter)
    duplicated: int = 0
    orphan: int = 0

    @property
    def balanced(self) -> bool:
        return self.total == (
            self.explained + sum(self.target_only.values()) + self.duplicated + self.orphan
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "target": self.total,
            "explained": self.explained,
            "target_only": dict(self.target_only),
            "duplicated": self.duplicated,
            "orphan": self.orphan,
            "balanced": self.balanced,
        }


@dataclass
class ClassResult:
    """Everything reconciliation found for one class."""

    name: str
    title: str
    owner: str
    severity: str
    spec_digest: str
    sources: list[SourceIdentity]
    target: TargetIdentity
    findings: list[Finding]
    seconds: float = 0.0
    segments_compared: int = 0
    segments: int = 0
    #: things an owner must know that are not findings (a source that read nothing)
    warnings: list[str] = field(default_factory=list)
    #: system -> year -> {"source", "expected" (source less excluded/rejected/deferred), "target"}
    years: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: content digests of each side (keyed fingerprints of the compared values, by segment)
    source_digest: str = ""
    target_digest: str = ""

    def years_differing(self) -> list[tuple[str, str, dict[str, int]]]:
        """(system, year, counts) where the target does not hold what the source says it should."""
        return [
            (system, year, c)
            for system, by_year in self.years.items()
            for year, c in sorted(by_year.items())
            if c["expected"] != c["target"]
        ]

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def exceptions(
        self, accepted: frozenset[tuple[str, str, str, str]] = frozenset()
    ) -> list[Finding]:
        """Findings that block sign-off: losses, damage, and (critical classes) anything unplaced.

        ``accepted`` holds ``(class, system, key, signature)`` the owner accepted with a reason:
        an acceptance covers the finding as it was accepted, not whatever that record becomes.
        """
        return [
            f
            for f in self.findings
            if f.needs_acceptance(self.critical)
            and (self.name, f.system or "", f.key, f.signature) not in accepted
        ]

    def clean(self, accepted: frozenset[tuple[str, str, str, str]] = frozenset()) -> bool:
        balanced = all(s.balanced for s in self.sources) and self.target.balanced
        return balanced and not self.exceptions(accepted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "title": self.title,
            "owner": self.owner,
            "severity": self.severity,
            "spec_digest": self.spec_digest,
            "source_identity": [s.to_dict() for s in self.sources],
            "target_identity": self.target.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "counts_by_year": self.years,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Reconciliation:
    """Every class reconciled in one run."""

    as_of: str
    classes: list[ClassResult]
    wave: str | None = None

    def clean(self, accepted: frozenset[tuple[str, str, str, str]] = frozenset()) -> bool:
        """Nothing lost, damaged or unexplained, and every critical exception accepted."""
        return all(c.clean(accepted) for c in self.classes)

    def to_dict(
        self, accepted: frozenset[tuple[str, str, str, str]] = frozenset()
    ) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "wave": self.wave,
            "clean": self.clean(accepted),
            "classes": [
                {
                    **c.to_dict(),
                    "clean": c.clean(accepted),
                    "exceptions": len(c.exceptions(accepted)),
                }
                for c in self.classes
            ],
        }
