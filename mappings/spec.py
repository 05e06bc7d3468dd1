"""Mapping files: how one target entity is built from the sources, one YAML file per entity.

A mapping is data with a schema (``mapping.schema.json``), read safely and checked completely
before any data moves: unknown operations, bad arguments, code tables that cannot be read,
conditions on fields that do not exist. Every error is reported at once, each naming file, line
and key. Checks that need the databases (source columns, target columns) are made by the compiler,
still before the first row is read. The reference is ``docs/mappings.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from continuity.domain.errors import MappingError
from continuity.domain.yamlsource import Located, Path_, load, raise_all, schema_errors
from mappings import operations
from mappings.resolution import ROLES, ResolveSettings

#: Operations that produce a field's first value from the source row.
HEADS = (
    "from",
    "const",
    "concat",
    "coalesce",
    "ref",
    "source_key",
    "field",
    "gazetteer",
    "address_key",
    "lookup",
    "resolved",
    "key_hash",
)
#: Transforming operations the compiler builds with context (code tables, the domain parsers).
CONTEXT_STEPS = ("code", "parse_date", "parse_datetime", "postcode", "is_partial")
CONDITION_OPS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "is_null")
AS_OF = "$as_of"


@dataclass(frozen=True)
class Step:
    """One operation of a field's chain, as written."""

    op: str
    args: Any
    reason: str | None
    at: str  # file:line: key.path, for messages


@dataclass(frozen=True)
class FieldMapping:
    name: str
    steps: tuple[Step, ...]
    at: str


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class RecordRule:
    """A reject or exclude rule: when every condition holds (and ``unless`` does not)."""

    name: str
    when: tuple[Condition, ...]
    unless: tuple[Condition, ...]
    reason: str


@dataclass(frozen=True)
class Each:
    """One target record per non-null value of several columns (``WARN1`` … ``WARN4``)."""

    columns: tuple[str, ...]
    as_field: str
    only: frozenset[str] | None
    column_as: str | None = None  # a field holding the name of the column the value came from


@dataclass(frozen=True)
class CopyOf:
    """This record is a copy of another system's record when the copy's key columns are set.

    Both copies become one target record with the other record's identity; the copy read later
    (this one: sources run in the order written) wins where their fields differ.
    """

    source: str
    table: str
    key: tuple[str, ...]


@dataclass(frozen=True)
class SupersededBy:
    """Another source holds newer copies of this source's records (``copy_of`` there).

    A record with a newer copy follows it: it adds only its crosswalk entry to the copy's target
    record, or is excluded or quarantined with the copy. Steps run the newer source first.
    """

    source: str
    table: str


@dataclass(frozen=True)
class Identity:
    """The target key comes from field values (one record per UPRN, per resolved person ...).

    Records sharing the values become one target record; their crosswalk rule is ``rule`` (a
    ``merge:`` rule tells reconciliation they are a declared merge) or the ``rule_field``'s
    value. Several identities are tried in order (a UPRN, else an exact address); a record none
    applies to keeps its own source identity.
    """

    fields: tuple[str, ...]
    rule: str | None
    rule_field: str | None
    score_field: str | None = None  # the crosswalk's score (a resolution's, per mille)


@dataclass(frozen=True)
class SourceMapping:
    source: str
    table: str | None
    query: str | None
    as_table: str  # the source table named in the crosswalk and quarantine
    key: tuple[str, ...]
    where: str | None
    each: Each | None
    copy_of: CopyOf | None
    superseded_by: SupersededBy | None
    identity: tuple[Identity, ...]  # tried in order: the first whose fields are all set
    row_when: tuple[Condition, ...]
    fields: tuple[FieldMapping, ...]
    reject: tuple[RecordRule, ...]
    exclude: tuple[RecordRule, ...]
    at: str

    def label(self) -> str:
        return f"{self.source}.{self.as_table}"

    def refs(self) -> list[Ref]:
        """Every ``ref`` the mapping's fields make, in field order (the first names the record
        this mapping's records belong to)."""
        return [
            Ref(s.args["source"], s.args["table"], s.args.get("entity"), tuple(s.args["key"]))
            for f in self.fields
            for s in f.steps
            if s.op == "ref"
        ]


class Ref(NamedTuple):
    """A ``ref``: the source record (source, table as the crosswalk names it, key columns of
    this mapping holding its key) and, when the mapping names it, the entity it became."""

    source: str
    table: str
    entity: str | None
    key: tuple[str, ...]


@dataclass(frozen=True)
class CodeTable:
    """A versioned code table: source code -> target code, plus codes deliberately not carried."""

    name: str
    file: Path
    version: str
    codes: Mapping[str, Any]
    excluded: frozenset[str]


@dataclass(frozen=True)
class Resolve:
    """Resolution of the mapping's records into one target record per human (persons)."""

    roles: Mapping[str, str]  # resolution's part (forename, surname, dob ...) -> field name
    settings: ResolveSettings

    @property
    def fields(self) -> tuple[str | None, ...]:
        """The field playing each of resolution's ``ROLES``, in order (None: not mapped)."""
        return tuple(self.roles.get(r) for r in ROLES)


@dataclass(frozen=True)
class MappingSpec:
    file: Path
    entity: str
    key_column: str | None
    description: str
    codes: Mapping[str, CodeTable]
    sources: tuple[SourceMapping, ...]
    digest: str = field(default="")
    resolve: Resolve | None = None
    key_at: str = ""  # file:line: key, for messages
    entity_at: str = ""


@cache
def json_schema() -> dict[str, Any]:
    text = resources.files("mappings").joinpath("mapping.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def mapping_files(folder: Path) -> list[Path]:
    """Every ``*.yml``/``*.yaml`` mapping in ``folder``, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MappingError(f"{folder}: no such mappings folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml"))
    if not files:
        raise MappingError(f"{folder}: no mappings (*.yml) in this folder")
    return files


def load_mappings(files: list[Path]) -> list[MappingSpec]:
    """Read and check every mapping, collecting every error across all files; raise once."""
    errors: list[str] = []
    specs: list[MappingSpec] = []
    for file in files:
        try:
            doc = load(Path(file), MappingError)
        except MappingError as exc:
            errors.append(str(exc))
            continue
        if not isinstance(doc.data, dict):
            errors.append(f"{file}:1: a mapping is a mapping (version, entity, sources)")
            continue
        found = schema_errors(doc, json_schema())
        if found:
            errors += found
            continue
        builder = _Builder(doc, errors)
        specs.append(builder.build())
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.entity in seen:
            errors.append(
                f"{spec.entity_at}: {spec.entity!r} is also mapped by {seen[spec.entity]}"
            )
        seen[spec.entity] = spec.file
    raise_all(errors, MappingError)
    return specs


class _Builder:
    def __init__(self, doc: Located, errors: list[str]) -> None:
        self.doc = doc
        self.errors = errors
        self.base = doc.file.parent

    def error(self, path: Path_, message: str) -> None:
        self.errors.append(f"{self.doc.where(path)}: {message}")

    def build(self) -> MappingSpec:
        data = self.doc.data
        codes = {
            name: self.code_table(("codes", name), name, c)
            for name, c in data.get("codes", {}).items()
        }
        sources = tuple(
            self.source(("sources", i), s, codes) for i, s in enumerate(data["sources"])
        )
        # a code table's content, not only its declared version: a code remapped without a
        # new version still changes what records become (and a delta must migrate them again)
        digest_input = {
            "mapping": data,
            "codes": {
                n: [c.version, sorted(c.codes.items()), sorted(c.excluded)]
                for n, c in codes.items()
            },
        }
        digest = hashlib.sha256(
            json.dumps(_text_keys(digest_input), sort_keys=True, default=str).encode("utf-8")
        ).hexdigest()
        resolve = None
        if "resolve" in data:
            r = data["resolve"]
            defaults = ResolveSettings()
            resolve = Resolve(
                dict(r["fields"]),
                ResolveSettings(
                    float(r.get("match", defaults.match)),
                    float(r.get("review_margin", defaults.review_margin)),
                    int(r.get("max_block", defaults.max_block)),
                    float(r.get("twins_below", defaults.twins_below)),
                    tuple(r.get("curated", ())),
                ),
            )
            tables = {f"{s.source}.{s.table}" for s in sources if s.table}
            for n, c in enumerate(r.get("curated", [])):
                if c not in tables:
                    self.error(
                        ("resolve", "curated", n),
                        f"{c!r} is not a source table of this mapping "
                        f"({', '.join(sorted(tables))})",
                    )
            for i, s in enumerate(sources):
                names = {f.name for f in s.fields}
                for name in r["fields"].values():
                    if name not in names:
                        self.error(
                            ("sources", i, "fields"),
                            f"resolve uses field {name!r}, which this source does not map",
                        )
        return MappingSpec(
            self.doc.file,
            data["entity"],
            data.get("key"),
            data.get("description", ""),
            codes,
            sources,
            digest,
            resolve,
            self.doc.where(("key",)),
            self.doc.where(("entity",)),
        )

    def code_table(self, path: Path_, name: str, spec: dict[str, Any]) -> CodeTable:
        file = (self.base / spec["file"]).resolve()
        column_from, column_to = spec.get("from", "from"), spec.get("to", "to")
        codes: dict[str, Any] = {}
        try:
            if file.suffix in (".yml", ".yaml"):
                # Read like every declarative file: a code mapped twice is an error, with its line.
                loaded = load(file, ValueError).data
                if not isinstance(loaded, dict):
                    raise ValueError("a YAML code table is a mapping of code: target code")
                codes = {str(k).strip(): v for k, v in loaded.items()}
            else:
                with file.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    header = reader.fieldnames or []
                    if column_from not in header or column_to not in header:
                        raise ValueError(f"needs columns {column_from!r} and {column_to!r}")
                    for line, row in enumerate(reader, 2):
                        if row[column_from] is None or row[column_to] is None:
                            raise ValueError(f"line {line}: too few fields")
                        code = row[column_from].strip()
                        if code in codes and codes[code] != row[column_to].strip():
                            raise ValueError(f"line {line}: code {code!r} mapped twice")
                        codes[code] = row[column_to].strip()
        except OSError as exc:
            self.error((*path, "file"), f"cannot read code table {file}: {exc.strerror}")
        except (ValueError, yaml.YAMLError) as exc:
            self.error((*path, "file"), f"code table {file}: {str(exc).splitlines()[0]}")
        excluded = frozenset(str(v) for v in spec.get("excluded", []))
        both = sorted(excluded & set(codes))
        if both:
            self.error((*path, "excluded"), f"codes both mapped and excluded: {both}")
        return CodeTable(name, file, str(spec["version"]), codes, excluded)

    def source(
        self, path: Path_, s: dict[str, Any], codes: Mapping[str, CodeTable]
    ) -> SourceMapping:
        each = None
        if "each" in s:
            e = s["each"]
            only = frozenset(str(v) for v in e["only"]) if "only" in e else None
            each = Each(tuple(e["columns"]), e["as"], only, e.get("column_as"))
        copy_of = None
        if "copy_of" in s:
            c = s["copy_of"]
            copy_of = CopyOf(c["source"], c["table"], tuple(c["key"]))
        fields = tuple(
            self.field((*path, "fields", name), name, expr, codes)
            for name, expr in s["fields"].items()
        )
        names = {f.name for f in fields} | ({each.as_field} if each else set())
        if each is not None and each.column_as:
            names.add(each.column_as)
        identity: list[Identity] = []
        given = s.get("identity", [])
        for n, i in enumerate(given if isinstance(given, list) else [given]):
            at = (*path, "identity", n) if isinstance(given, list) else (*path, "identity")
            for k, name in enumerate(i["fields"]):
                if name not in names:
                    self.error((*at, "fields", k), f"no field {name!r}")
            if "rule_field" in i and i["rule_field"] not in names:
                self.error((*at, "rule_field"), f"no field {i['rule_field']!r}")
            if "score_field" in i and i["score_field"] not in names:
                self.error((*at, "score_field"), f"no field {i['score_field']!r}")
            if ("rule" in i) == ("rule_field" in i):
                self.error(at, "give exactly one of rule and rule_field")
            identity.append(
                Identity(
                    tuple(i["fields"]), i.get("rule"), i.get("rule_field"), i.get("score_field")
                )
            )
        superseded = None
        if "superseded_by" in s:
            superseded = SupersededBy(s["superseded_by"]["source"], s["superseded_by"]["table"])
        row_when = self.conditions((*path, "row_when"), s.get("row_when", {}), names)
        rules = {
            kind: tuple(
                self.rule((*path, kind, i), r, names, kind) for i, r in enumerate(s.get(kind, []))
            )
            for kind in ("reject", "exclude")
        }
        table = s.get("table")
        return SourceMapping(
            source=s["source"],
            table=table,
            query=s.get("query"),
            as_table=s.get("as_table") or table or "query",
            key=tuple(s["key"]),
            where=s.get("where"),
            each=each,
            copy_of=copy_of,
            superseded_by=superseded,
            identity=tuple(identity),
            row_when=row_when,
            fields=fields,
            reject=rules["reject"],
            exclude=rules["exclude"],
            at=self.doc.where(path),
        )

    def field(
        self, path: Path_, name: str, expr: Any, codes: Mapping[str, CodeTable]
    ) -> FieldMapping:
        items = expr if isinstance(expr, list) else [expr]
        steps: list[Step] = []
        for i, item in enumerate(items):
            at_path = (*path, i) if isinstance(expr, list) else path
            step = self.step(at_path, item, first=i == 0, codes=codes)
            if step is not None:
                steps.append(step)
        return FieldMapping(name, tuple(steps), self.doc.where(path))

    def step(
        self, path: Path_, item: Any, first: bool, codes: Mapping[str, CodeTable]
    ) -> Step | None:
        at = self.doc.where(path)
        if isinstance(item, str):
            if first:  # a bare column name: `surname: SURNAME`
                return Step("from", item, None, at)
            op, args, reason = item, None, None
            if op not in operations.BARE and op not in CONTEXT_STEPS[1:]:
                self.error(path, _unknown(op) if not _known(op) else f"{op} needs arguments")
                return None
        else:
            reason = item.get("reason")
            ops = [k for k in item if k != "reason"]
            if len(ops) != 1:
                self.error(path, "a step is one operation (and an optional reason)")
                return None
            op, args = ops[0], item[ops[0]]
        if not _known(op):
            self.error(path, _unknown(op))
            return None
        if op in HEADS and not first:
            self.error(path, f"{op} produces a value: it can only start a field")
            return None
        if first and op not in HEADS:
            self.error(path, f"a field starts with one of {', '.join(HEADS)} (or a column name)")
            return None
        problem = self.check_args(op, args, codes)
        if problem:
            self.error(path, f"{op}: {problem}")
            return None
        if op in ("concat", "coalesce"):  # each part is an expression of its own: check it
            listed = isinstance(args, list)
            parts: list[Any] = args if listed else args["of"]  # type: ignore[index,assignment]
            for k, part in enumerate(parts):
                base = (*path, op, k) if listed else (*path, op, "of", k)
                items = part if isinstance(part, list) else [part]
                for n, item in enumerate(items):
                    self.step((*base, n) if isinstance(part, list) else base, item, n == 0, codes)
        return Step(op, args, reason, at)

    def check_args(self, op: str, args: Any, codes: Mapping[str, CodeTable]) -> str | None:
        if op in operations.STEPS:
            try:
                operations.STEPS[op](args)
            except operations.ArgumentProblem as exc:
                return str(exc)
            return None
        if op == "from" and not isinstance(args, str):
            return "names one source column"
        if op in ("concat", "coalesce"):
            parts = args.get("of") if isinstance(args, dict) else args
            if not isinstance(parts, list) or not parts:
                return f"needs a list of columns or expressions ({op}: [A, B])"
        if op == "ref":
            if not isinstance(args, dict) or not {"source", "table", "key"} <= set(args):
                return "needs {source, table, key: [COLUMNS], entity}"
            allowed_set = {"source", "table", "key", "entity", "name", "missing", "follow"}
            unknown = sorted(set(args) - allowed_set)
            if unknown:
                allowed = ", ".join(sorted(allowed_set))
                return f"unknown argument(s) {', '.join(unknown)} ({allowed})"
            if args.get("missing", "reject") not in ("reject", "null", None):
                return "missing is reject or null"
            if not isinstance(args.get("follow", True), bool):
                return "follow is true or false"
        if op == "field" and not isinstance(args, str):
            return "names one earlier field (field: _match)"
        if op == "gazetteer" and (
            not isinstance(args, dict)
            or not {"source", "table", "lines"} <= set(args)
            or not isinstance(args["lines"], list)
        ):
            return "needs {source, table, lines: [COLUMNS]}"
        if op == "address_key" and (
            not isinstance(args, dict) or not isinstance(args.get("lines"), list)
        ):
            return "needs {lines: [COLUMNS]}"
        if op == "lookup" and (
            not isinstance(args, dict)
            or not {"source", "key", "on", "value"} <= set(args)
            or ("table" in args) == ("query" in args)
            or not isinstance(args["key"], list)
            or not isinstance(args["on"], list)
            or len(args["key"]) != len(args["on"])
            or not isinstance(args["value"], str | list)
            or args.get("then", "postcode") != "postcode"
            or set(args) - {"source", "table", "query", "key", "on", "value", "then"}
        ):
            return (
                "needs {source, table or query, key: [COLUMNS], on: [THIS SOURCE'S COLUMNS, "
                "as many], value: COLUMN or [COLUMNS], then: postcode (optional)}"
            )
        if op == "resolved" and (
            not isinstance(args, str)
            or args.rpartition(".")[2] not in ("anchor", "rule", "role", "score")
        ):
            return "is anchor, rule, role or score (of another entity's resolution: person.role)"
        if op == "code" and args not in codes:
            known = ", ".join(sorted(codes)) or "none declared under codes"
            return f"no code table {args!r} ({known})"
        if op in ("parse_date", "parse_datetime", "postcode"):
            if not isinstance(args, dict | None):
                return "takes {formats, pivot, century, unknown, zone}"
            from mappings import parsing

            builder = {
                "parse_date": parsing.parse_date_step,
                "parse_datetime": parsing.parse_datetime_step,
                "postcode": parsing.postcode_step,
            }[op]
            try:
                builder(args)
            except (operations.ArgumentProblem, ValueError) as exc:
                return str(exc)
        return None

    def rule(self, path: Path_, r: dict[str, Any], names: set[str], kind: str) -> RecordRule:
        when = self.conditions((*path, "when"), r["when"], names)
        unless = self.conditions((*path, "unless"), r.get("unless", {}), names)
        return RecordRule(r.get("name", kind), when, unless, r["reason"])

    def conditions(
        self, path: Path_, spec: dict[str, Any], names: set[str]
    ) -> tuple[Condition, ...]:
        out = []
        for name, test in spec.items():
            if name not in names:
                self.error(
                    (*path, name), f"no field {name!r} in this source; fields: {sorted(names)}"
                )
                continue
            if isinstance(test, dict):
                if len(test) != 1 or next(iter(test)) not in CONDITION_OPS:
                    self.error((*path, name), f"one of {', '.join(CONDITION_OPS)}")
                    continue
                op, value = next(iter(test.items()))
            else:
                op, value = "eq", test
            if op in ("in", "not_in") and not isinstance(value, list):
                self.error((*path, name), f"{op} takes a list")
                continue
            bad = [v for v in (value if isinstance(value, list) else [value]) if _bad_date(v)]
            if bad:  # it would compare as text with dates, and never hold
                self.error((*path, name), f"not a date: {bad[0]!r}")
                continue
            out.append(Condition(name, op, value))
        return tuple(out)


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bad_date(value: Any) -> bool:
    """A condition value written as a date that is no date (2024-02-30)."""
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return True
    return False


def _text_keys(value: Any) -> Any:
    """``value`` with every mapping key as text (a code table may mix 1 and A)."""
    if isinstance(value, dict):
        return {str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    return value


def _known(op: str) -> bool:
    return op in HEADS or op in CONTEXT_STEPS or op in operations.STEPS


def _unknown(op: str) -> str:
    known = sorted({*HEADS, *CONTEXT_STEPS, *operations.STEPS})
    return f"unknown operation {op!r}; known: {', '.join(known)}"


def resolve_value(value: Any, as_of: dt.date) -> Any:
    """A condition's value with ``$as_of`` replaced by the wave's date."""
    return as_of if value == AS_OF else value
