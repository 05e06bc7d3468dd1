"""Validation suites: YAML files, one per source or target table, beside a project's mappings.

A suite names its side (``source`` with the source system, or ``target``), its table, the key
that identifies a row (GX's ``unexpected_index_column_names``: what a quarantine or the ledger
records), and a list of great-expectations expectations by name, each with its arguments
written beside ``expect`` and a ``severity`` (:data:`validators.model.SEVERITIES`). The format
is a JSON Schema (``suite.schema.json``) documented in ``docs/validators.md``.

Reading a folder checks every file and reports every problem at once, each naming file, line and
key, before any data is read. Expectation names and arguments are checked against GX by
:func:`validators.runner.compile_suites`, with the same file and line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from continuity.domain.errors import ValidationError
from continuity.domain.yamlsource import load, raise_all, schema_errors

#: Keys of an expectation entry that are the suite's, not arguments of the expectation.
OWN_KEYS = frozenset({"expect", "severity", "notes", "result_format"})

#: Arguments naming a file: read from the suite's folder when relative.
PATH_ARGUMENTS = frozenset({"code_list"})


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite, as declared."""

    name: str
    arguments: Mapping[str, Any]
    severity: str
    result_format: str
    line: int
    notes: str = ""

    @property
    def column(self) -> str | None:
        column = self.arguments.get("column")
        if column is None and "column_list" in self.arguments:
            return ",".join(map(str, self.arguments["column_list"]))
        if column is None and "column_A" in self.arguments:
            return f"{self.arguments['column_A']},{self.arguments.get('column_B')}"
        return None if column is None else str(column)


@dataclass(frozen=True)
class Suite:
    """A checked suite file."""

    file: Path
    name: str
    side: str
    source: str | None
    table: str
    key: tuple[str, ...]
    expectations: tuple[ExpectationSpec, ...]
    digest: str
    description: str = ""
    lines: Mapping[str, int] = field(default_factory=dict)


@cache
def json_schema() -> dict[str, Any]:
    """The suite file's JSON Schema (shipped as package data)."""
    text = resources.files("validators").joinpath("suite.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_suite(file: Path) -> Suite:
    """Read and check one suite file; raise ValidationError naming every problem."""
    suite, errors = _read(Path(file))
    raise_all(errors, ValidationError)
    assert suite is not None
    return suite


def load_suites(folder: Path, side: str | None = None) -> list[Suite]:
    """Every suite (``*.yml``, ``*.yaml``) of a folder, in name order, optionally of one side;
    every problem in any of them is reported at once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"{folder}: no suites folder")
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    suites: list[Suite] = []
    errors: list[str] = []
    for file in files:
        suite, found = _read(file)
        errors += found
        if suite is not None:
            suites.append(suite)
    names: dict[tuple[str, str | None, str], Path] = {}
    for s in suites:
        earlier = names.setdefault((s.side, s.source, s.table), s.file)
        if earlier != s.file:
            errors.append(
                f"{s.file}:{s.lines.get('table', 1)}: table: {s.table} already has a suite "
                f"({earlier.name}): one suite per table"
            )
    raise_all(errors, ValidationError)
    return [s for s in suites if side is None or s.side == side]


def _read(file: Path) -> tuple[Suite | None, list[str]]:
    doc = load(file, ValidationError)
    if not isinstance(doc.data, dict):
        return None, [f"{file}:1: a suite is a mapping (version, side, table, expectations)"]
    errors = schema_errors(doc, json_schema())
    if errors:
        return None, errors
    data = doc.data
    side = data["side"]
    if side == "source" and not data.get("source"):
        errors.append(f"{doc.where(('side',))}: a source suite names its source system (source:)")
    if side == "target" and "source" in data:
        errors.append(f"{doc.where(('source',))}: a target suite names no source system")
    key = data.get("key", ())
    key = (key,) if isinstance(key, str) else tuple(key)
    default_format = data.get("result_format", "COMPLETE")
    specs = []
    for i, item in enumerate(data["expectations"]):
        here = ("expectations", i)
        if item["severity"] == "quarantine" and side == "target":
            errors.append(
                f"{doc.where((*here, 'severity'))}: target rows cannot be quarantined "
                "(critical or warning)"
            )
        if item["severity"] == "quarantine" and not key:
            errors.append(
                f"{doc.where((*here, 'severity'))}: quarantine needs the suite's key "
                "(key:) to name the rows"
            )
        arguments = {k: v for k, v in item.items() if k not in OWN_KEYS}
        for name in PATH_ARGUMENTS & set(arguments):
            path = Path(str(arguments[name]))
            arguments[name] = str(path if path.is_absolute() else (file.parent / path).resolve())
        specs.append(
            ExpectationSpec(
                name=item["expect"],
                arguments=arguments,
                severity=item["severity"],
                result_format=item.get("result_format", default_format),
                line=doc.line(here),
                notes=item.get("notes", ""),
            )
        )
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    suite = Suite(
        file=file,
        name=file.stem,
        side=side,
        source=data.get("source"),
        table=data["table"],
        key=key,
        expectations=tuple(specs),
        digest=digest,
        description=data.get("description", ""),
        lines={k: doc.line((k,)) for k in data},
    )
    return suite, errors


def suites_digest(suites: Sequence[Suite]) -> str:
    """One digest over every suite's file (what a ledger entry names as checked)."""
    h = hashlib.sha256()
    for s in sorted(suites, key=lambda s: s.name):
        h.update(f"{s.name}\x1f{s.digest}\x1e".encode())
    return h.hexdigest()
