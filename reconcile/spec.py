"""Survival specs: what must survive a migration, one YAML file per class of record.

A spec declares where the class's records live in each source system, where they must be in
the target, how a source record is found there, which fields must be equal (with a normaliser
per side), which records may legitimately be absent (rules reconcile recomputes itself) and who
owns the class. It is checked completely before any data is read: every error is collected and
reported at once, each naming file, line and key. The reference is ``docs/survival-specs.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from continuity.domain.errors import ReconcileError
from continuity.domain.yamlsource import Located, Path_, load, schema_errors
from reconcile import normalisers

SEVERITIES = ("critical", "high", "normal")
CROSSWALK_COLUMNS = {
    "source_system": "source_system",
    "source_table": "source_table",
    "source_key": "source_key",
    "target_table": "target_table",
    "target_key": "target_key",
    "rule": "rule",
    "reason": "reason",
    "action": "action",
}
AS_OF = "$as_of"


@dataclass(frozen=True)
class NormaliserSpec:
    """A field's normaliser chain as written (kept for the digest) and built."""

    steps: tuple[Any, ...]
    base: Path

    def build(self, as_of: dt.date | None = None) -> normalisers.Normaliser:
        """The composed normaliser; ``$as_of`` in arguments becomes the reconciliation date."""
        return normalisers.chain(
            [normalisers.build(*_step(step, as_of), self.base) for step in self.steps]
        )


def _step(step: Any, as_of: dt.date | None) -> tuple[str, Any]:
    """A normaliser step as written (``name`` or ``{name: args}``): its name and arguments,
    ``$as_of`` resolved (to today while a spec is only being checked)."""
    name, args = (step, None) if isinstance(step, str) else next(iter(step.items()))
    if isinstance(args, dict):
        args = {k: resolve(v, as_of or dt.date.today()) for k, v in args.items()}
    return name, args


@dataclass(frozen=True)
class Condition:
    attribute: str
    op: str
    value: Any


@dataclass(frozen=True)
class Rule:
    """An exclusion or deferral rule, evaluated on a source record's attributes."""

    name: str
    reason: str
    when: tuple[Condition, ...]
    unless: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Join:
    table: str
    alias: str
    on: tuple[tuple[str, str], ...]
    where: Any = None


@dataclass(frozen=True)
class Population:
    """Rows of one table (with optional left joins and a filter) or of a query."""

    table: str | None
    query: str | None
    joins: tuple[Join, ...] = ()
    where: Any = None


@dataclass(frozen=True)
class Binding:
    """Where one field or attribute comes from in a source: column(s) or a constant."""

    columns: tuple[str, ...]
    const: Any = None
    normalise: NormaliserSpec | None = None
    target_normalise: NormaliserSpec | None = None
    translate_table: str | None = None


@dataclass(frozen=True)
class Alternatives:
    table: str
    key: str
    columns: tuple[str, ...]
    where: Any = None


@dataclass(frozen=True)
class FieldSpec:
    """A compared field: its target column(s) and how both sides are normalised."""

    name: str
    target: tuple[str, ...]
    translate: str | None  # the target table the translated column refers to
    normalise: NormaliserSpec
    target_normalise: NormaliserSpec | None
    null_source: str
    merged: str
    alternatives: Alternatives | None

    def target_normaliser(self, binding: Binding) -> NormaliserSpec:
        """The target side's normaliser when compared with ``binding``'s source: the binding's
        override, else the field's target normaliser, else the field's."""
        return binding.target_normalise or self.target_normalise or self.normalise


@dataclass(frozen=True)
class NewerCopy:
    """Another system holds a newer copy of some of this source's records (a 2019 bulk load).

    A copied record's rules are evaluated on the copy's attributes, and only ``compare`` fields
    are compared (the others legitimately moved on in the newer system).
    """

    system: str
    table: str
    column: str
    key: str | None
    attributes: dict[str, Binding]
    compare: tuple[str, ...] | None


@dataclass(frozen=True)
class SourceSpec:
    system: str
    population: Population
    key: tuple[str, ...]
    key_format: str | None
    crosswalk_table: str
    match: tuple[str, ...] | None
    fields: dict[str, Binding]
    attributes: dict[str, Binding]
    exclude: tuple[Rule, ...]
    defer: tuple[Rule, ...]
    newer_copy: NewerCopy | None
    waves: dict[str, Any] = field(default_factory=dict)

    def for_wave(self, wave: str | None) -> SourceSpec:
        """This source restricted to one wave's records (itself if it declares no such wave)."""
        if wave is None or wave not in self.waves:
            return self
        w = self.waves[wave]
        where = w if self.population.where is None else {"all": [self.population.where, w]}
        return dataclasses.replace(
            self, population=dataclasses.replace(self.population, where=where)
        )

    def key_text(self, values: tuple[Any, ...]) -> str:
        """The record's key as the crosswalk writes it."""
        if self.key_format is None:
            return "|".join("" if v is None else str(v) for v in values)
        return self.key_format.format_map(
            {c: "" if v is None else v for c, v in zip(self.key, values, strict=True)}
        )


@dataclass(frozen=True)
class TargetOnly:
    name: str
    where: Any


@dataclass(frozen=True)
class TargetSpec:
    population: Population
    key_columns: tuple[str, ...]
    duplicate_key: tuple[str, ...]
    target_only: tuple[TargetOnly, ...]


@dataclass(frozen=True)
class Crosswalk:
    table: str
    target_table: str
    columns: dict[str, str]


@dataclass(frozen=True)
class Parent:
    column: str
    target_table: str
    source_tables: dict[str, str]


@dataclass(frozen=True)
class Locate:
    crosswalk: Crosswalk | None
    parents: tuple[Parent, ...]
    merge_rules: tuple[str, ...]

    def is_merge(self, rule: str | None) -> bool:
        return rule is not None and any(fnmatch.fnmatchcase(rule, p) for p in self.merge_rules)


@dataclass(frozen=True)
class Quarantine:
    """A table of source records keyed like the crosswalk: the quarantine, or the deletions."""

    table: str
    columns: dict[str, str]


@dataclass(frozen=True)
class Candidates:
    """Which fields hold a person's names and date of birth, for missing-person diagnostics."""

    forename: str
    surname: str
    dob: str
    limit: int


@dataclass(frozen=True)
class SurvivalSpec:
    """One class of record that must survive: its sources, target and comparison."""

    name: str
    title: str
    description: str
    owner: str
    severity: str
    segments: int
    file: Path
    digest: str
    target: TargetSpec
    locate: Locate
    fields: dict[str, FieldSpec]
    sources: tuple[SourceSpec, ...]
    quarantine: Quarantine | None
    candidates: Candidates | None = None
    count_by_year: str | None = None
    deletions: Quarantine | None = None

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(s.system for s in self.sources)

    @property
    def waves(self) -> set[str]:
        return {w for s in self.sources for w in s.waves}

    def for_wave(self, wave: str | None) -> SurvivalSpec:
        """The class restricted to one wave: each source declaring it reads only its records."""
        if wave is None:
            return self
        return dataclasses.replace(self, sources=tuple(s.for_wave(wave) for s in self.sources))


@cache
def json_schema() -> dict[str, Any]:
    """The JSON Schema every spec is checked against (``reconcile/survival_spec.schema.json``)."""
    text = resources.files("reconcile").joinpath("survival_spec.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_spec(file: Path) -> SurvivalSpec:
    """Read, validate and build one survival spec; raise ReconcileError listing every error."""
    return load_specs([file])[0]


def load_specs(files: list[Path]) -> list[SurvivalSpec]:
    """Read every spec, collect every error across all files, and raise once if there are any."""
    errors: list[str] = []
    specs: list[SurvivalSpec] = []
    for file in files:
        try:
            doc = load(Path(file), ReconcileError)
        except ReconcileError as exc:
            errors.append(str(exc))
            continue
        builder = _Builder(doc)
        spec = builder.build()
        errors += builder.errors
        if spec is not None:
            specs.append(spec)
    names = [s.name for s in specs]
    for spec in specs:
        if names.count(spec.name) > 1:
            errors.append(f"{spec.file}:1: class: {spec.name!r} is declared in more than one spec")
    if errors:
        raise ReconcileError(
            errors[0] if len(errors) == 1 else f"{len(errors)} errors: " + "; ".join(errors)
        )
    return specs


def spec_files(path: Path) -> list[Path]:
    """Spec files named by ``path``: the file itself, or every ``*.yml`` in a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
        if not files:
            raise ReconcileError(f"{path}: no survival specs (*.yml) in this directory")
        return files
    if not path.exists():
        raise ReconcileError(f"{path}: no such spec file or directory")
    return [path]


def bundled_specs_dir() -> Path:
    """The specs for the estate's product schema, shipped with Continuity."""
    return Path(str(resources.files("reconcile").joinpath("specs")))


class _Builder:
    """Turns one validated document into a SurvivalSpec, collecting semantic errors."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc
        self.errors: list[str] = []
        self.base = doc.file.parent

    def error(self, path: Path_, message: str) -> None:
        self.errors.append(f"{self.doc.where(path)}: {message}")

    def build(self) -> SurvivalSpec | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.error((), "a survival spec is a mapping (version, class, owner, ...)")
            return None
        found = schema_errors(self.doc, json_schema())
        self.errors += found
        if found:
            return None
        fields = {name: self.field(("fields", name), name, f) for name, f in data["fields"].items()}
        sources = tuple(
            self.source(("sources", i), s, fields) for i, s in enumerate(data["sources"])
        )
        systems = [s.system for s in sources]
        for i, system in enumerate(systems):
            if systems.index(system) != i:
                self.error(("sources", i, "system"), f"system {system!r} appears twice")
        locate = self.locate(data["locate"], sources)
        target = self.target(data["target"])
        if locate.crosswalk is not None and len(target.key_columns) != 1:
            self.error(
                ("target", "key"),
                "a crosswalk names target records by one key column; this target has "
                f"{len(target.key_columns)}",
            )
        spec = SurvivalSpec(
            name=data["class"],
            title=data.get("title", data["class"].replace("_", " ").capitalize()),
            description=data.get("description", ""),
            owner=data["owner"],
            severity=data["severity"],
            segments=data.get("segments", 256),
            file=self.doc.file,
            digest=_digest(data),
            target=target,
            locate=locate,
            fields=fields,
            sources=sources,
            quarantine=self.quarantine(data.get("quarantine")),
            deletions=self.quarantine(data.get("deletions")),
            candidates=self.candidates(data.get("candidates"), fields),
            count_by_year=data.get("count_by_year"),
        )
        if spec.count_by_year is not None and spec.count_by_year not in fields:
            self.error(("count_by_year",), f"not a field of this class: {spec.count_by_year!r}")
        return None if self.errors else spec

    def normaliser(self, path: Path_, steps: list[Any] | None) -> NormaliserSpec | None:
        if steps is None:
            return None
        spec = NormaliserSpec(tuple(steps), self.base)
        for i, step in enumerate(steps):
            name, args = _step(step, None)
            if name not in normalisers.BUILDERS:
                known = ", ".join(sorted(normalisers.BUILDERS))
                self.error((*path, i), f"unknown normaliser {name!r}; known: {known}")
                continue
            try:
                normalisers.build(name, args, self.base)
            except (TypeError, ValueError) as exc:
                self.error((*path, i), f"normaliser {name!r}: {exc}")
        return spec

    def field(self, path: Path_, name: str, f: dict[str, Any]) -> FieldSpec:
        target = f["target"]
        translate = target["table"] if isinstance(target, dict) else None
        columns = (target["translate"],) if translate else _columns(target)
        alt = f.get("alternatives")
        return FieldSpec(
            name=name,
            target=columns,
            translate=translate,
            normalise=self.normaliser((*path, "normalise"), f.get("normalise", []))
            or NormaliserSpec((), self.base),
            target_normalise=self.normaliser(
                (*path, "target_normalise"), f.get("target_normalise")
            ),
            null_source=f.get("null_source", "compare"),
            merged=f.get("merged", "compare"),
            alternatives=Alternatives(
                alt["table"], alt["key"], _columns(alt["columns"]), alt.get("where")
            )
            if alt
            else None,
        )

    def binding(self, path: Path_, b: Any) -> Binding:
        if isinstance(b, str):
            return Binding((b,))
        columns = (b["column"],) if "column" in b else tuple(b.get("columns", ()))
        return Binding(
            columns=columns,
            const=b.get("const"),
            normalise=self.normaliser((*path, "normalise"), b.get("normalise")),
            target_normalise=self.normaliser(
                (*path, "target_normalise"), b.get("target_normalise")
            ),
            translate_table=b.get("translate_table"),
        )

    def population(self, data: dict[str, Any]) -> Population:
        joins = tuple(
            Join(j["table"], j.get("as", j["table"]), tuple(j["using"].items()), j.get("where"))
            for j in data.get("joins", ())
        )
        return Population(data.get("table"), data.get("query"), joins, data.get("where"))

    def rules(
        self, path: Path_, rules: list[dict[str, Any]], attributes: set[str]
    ) -> tuple[Rule, ...]:
        out = []
        for i, r in enumerate(rules):
            conds: dict[str, list[Condition]] = {"when": [], "unless": []}
            for part in conds:
                for j, c in enumerate(r.get(part, ())):
                    if c["attribute"] not in attributes:
                        self.error(
                            (*path, i, part, j, "attribute"),
                            f"unknown attribute {c['attribute']!r}; declared: {sorted(attributes)}",
                        )
                    op = next(k for k in c if k != "attribute")
                    conds[part].append(Condition(c["attribute"], op, c[op]))
            out.append(
                Rule(
                    r["rule"],
                    r.get("reason", r["rule"]),
                    tuple(conds["when"]),
                    tuple(conds["unless"]),
                )
            )
        return tuple(out)

    def source(self, path: Path_, s: dict[str, Any], fields: dict[str, FieldSpec]) -> SourceSpec:
        bindings = {
            name: self.binding((*path, "fields", name), b) for name, b in s["fields"].items()
        }
        for name in bindings:
            if name not in fields:
                self.error(
                    (*path, "fields", name), f"not a field of this class; fields: {list(fields)}"
                )
        for name in fields:
            if name not in bindings:
                self.error((*path, "fields"), f"field {name!r} has no binding in this source")
        for name, b in bindings.items():
            f = fields.get(name)
            if f is not None and f.translate and b.translate_table is None:
                self.error(
                    (*path, "fields", name),
                    "the target side translates this field through the crosswalk: "
                    "give translate_table (the source table its values are keys of)",
                )
        attributes = {
            name: self.binding((*path, "attributes", name), b)
            for name, b in s.get("attributes", {}).items()
        }
        copy = s.get("newer_copy")
        newer = None
        if copy is not None:
            cattrs = {
                name: self.binding((*path, "newer_copy", "attributes", name), b)
                for name, b in copy.get("attributes", {}).items()
            }
            for name in cattrs:
                if name not in attributes:
                    self.error(
                        (*path, "newer_copy", "attributes", name),
                        f"not an attribute of this source; declared: {sorted(attributes)}",
                    )
            for i, name in enumerate(copy.get("compare", ())):
                if name not in fields:
                    self.error((*path, "newer_copy", "compare", i), f"unknown field {name!r}")
            compare = copy.get("compare")
            newer = NewerCopy(
                copy["system"],
                copy["table"],
                copy["column"],
                copy.get("key"),
                cattrs,
                tuple(compare) if compare is not None else None,
            )
        key = tuple(s["key"])
        key_format = s.get("key_format")
        if key_format is not None:
            try:
                key_format.format_map({c: "" for c in key})
            except (KeyError, ValueError, IndexError) as exc:
                self.error((*path, "key_format"), f"must name only key columns {list(key)}: {exc}")
        return SourceSpec(
            system=s["system"],
            population=self.population(s),
            key=key,
            key_format=key_format,
            crosswalk_table=s.get("crosswalk_table", s.get("table", s["system"])),
            match=tuple(s["match"]) if "match" in s else None,
            fields=bindings,
            attributes=attributes,
            exclude=self.rules((*path, "exclude"), s.get("exclude", []), set(attributes)),
            defer=self.rules((*path, "defer"), s.get("defer", []), set(attributes)),
            newer_copy=newer,
            waves=dict(s.get("waves", {})),
        )

    def locate(self, data: dict[str, Any], sources: tuple[SourceSpec, ...]) -> Locate:
        xw = data.get("crosswalk")
        crosswalk = (
            Crosswalk(
                xw["table"], xw["target_table"], {**CROSSWALK_COLUMNS, **xw.get("columns", {})}
            )
            if xw
            else None
        )
        parents = tuple(
            Parent(p["column"], p["target_table"], dict(p["source_tables"]))
            for p in data.get("parents", ())
        )
        for i, s in enumerate(sources):
            if parents:
                if s.match is None or len(s.match) != len(parents):
                    self.error(
                        ("sources", i, "match"),
                        f"located through {len(parents)} parents: give `match` with "
                        f"{len(parents)} columns, one per parent",
                    )
                for j, p in enumerate(parents):
                    if s.system not in p.source_tables:
                        self.error(
                            ("locate", "parents", j, "source_tables"),
                            f"no source table for system {s.system!r}",
                        )
            elif s.match is not None:
                self.error(("sources", i, "match"), "only for classes located through parents")
        return Locate(crosswalk, parents, tuple(data.get("merge_rules", ())))

    def target(self, data: dict[str, Any]) -> TargetSpec:
        return TargetSpec(
            population=self.population(data),
            key_columns=_columns(data["key"]),
            duplicate_key=tuple(data.get("duplicate_key", ())),
            target_only=tuple(
                TargetOnly(t["name"], t["where"]) for t in data.get("target_only", ())
            ),
        )

    def candidates(
        self, data: dict[str, Any] | None, fields: dict[str, FieldSpec]
    ) -> Candidates | None:
        if data is None:
            return None
        for role in ("forename", "surname", "dob"):
            if data[role] not in fields:
                self.error(("candidates", role), f"not a field of this class: {data[role]!r}")
        return Candidates(data["forename"], data["surname"], data["dob"], data.get("limit", 5))

    def quarantine(self, data: dict[str, Any] | None) -> Quarantine | None:
        if data is None:
            return None
        return Quarantine(data["table"], {**CROSSWALK_COLUMNS, **data.get("columns", {})})


def _columns(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _digest(data: Any) -> str:
    import hashlib

    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve(value: Any, as_of: dt.date) -> Any:
    """A rule's value with ``$as_of`` replaced by the reconciliation date."""
    return as_of if value == AS_OF else value
