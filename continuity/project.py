"""The project file (``continuity.yml``): sources, target, mappings, specs, waves, ledger, owners.

A project is data with a schema (``project.schema.json``). It is read safely, every ``${VAR}``
is expanded from the environment, and every error (syntax, schema, a variable that is not set, a
password written into a URL, a wave naming a source that does not exist) is collected and
reported at once, each naming file, line and key. Relative paths, SQLite files included, are
read from the project file's folder, so a project works whatever the current directory.

Secrets come only from the environment: a URL whose password is written in the file is an
error, and URLs are redacted wherever they are shown (:func:`continuity.domain.connect.redact`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from continuity.domain.errors import ConfigError
from continuity.domain.yamlsource import Located, Path_, load, raise_all, schema_errors

if TYPE_CHECKING:
    from extractors.base import Extractor

PROJECT_FILE = "continuity.yml"

#: A variable's name in ``${NAME}`` or ``${NAME:-default}``; ``$${`` is a literal ``${``.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SourceConfig:
    """One source system: its extractor kind and where it lives (URL or path)."""

    name: str
    kind: str
    location: str
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def extractor(self) -> Extractor:
        """A new extractor for this source (nothing read yet: ``check`` tests it)."""
        from extractors.registry import open_extractor

        return open_extractor(self.kind, self.name, self.location, self.options)


@dataclass(frozen=True)
class TargetConfig:
    """The replacement product's database (or staging folder) and the loader that writes it."""

    loader: str
    location: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WaveConfig:
    """A wave: a named selection of source records, as SQL filters per source and table."""

    name: str
    description: str
    where: Mapping[str, Mapping[str, str]]

    def filter_for(self, source: str, table: str) -> str | None:
        """The wave's filter on ``source``'s ``table``, or None (the whole table)."""
        return self.where.get(source, {}).get(table)


@dataclass(frozen=True)
class OwnerConfig:
    """A data owner: the classes of record they sign off and their Ed25519 public key."""

    key: str
    name: str
    title: str
    classes: tuple[str, ...]
    public_key: str | None


@dataclass(frozen=True)
class RestrictedRecords:
    """Records a masked report redacts: rows of a source table (or, with no source, of the
    target) matching a SQL condition, named by their key."""

    source: str | None
    table: str
    key: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class Project:
    """A parsed, checked project file."""

    file: Path
    name: str
    description: str
    sources: Mapping[str, SourceConfig]
    target: TargetConfig
    mappings: Path
    specs: Path | None
    suites: Path | None
    ledger: str
    waves: Mapping[str, WaveConfig]
    owners: Mapping[str, OwnerConfig]
    digest: str
    as_of: dt.date | None = None
    restricted: tuple[RestrictedRecords, ...] = ()

    @property
    def folder(self) -> Path:
        return self.file.parent

    def class_owners(self) -> dict[str, OwnerConfig]:
        """Each class of record's owner (a class has at most one: the file is checked)."""
        return {cls: owner for owner in self.owners.values() for cls in owner.classes}

    def wave(self, name: str) -> WaveConfig:
        """The wave called ``name``; an unknown one is an error listing those declared."""
        try:
            return self.waves[name]
        except KeyError:
            known = ", ".join(sorted(self.waves)) or "none declared"
            raise ConfigError(f"{self.file}: no wave {name!r} (waves: {known})") from None


@cache
def json_schema() -> dict[str, Any]:
    """The project file's JSON Schema (shipped as package data)."""
    text = resources.files("continuity").joinpath("project.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def find_project(path: Path | None) -> Path:
    """The project file named by ``path`` (a file or a folder holding ``continuity.yml``)."""
    path = Path(path) if path is not None else Path.cwd()
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no project file (create one with `continuity init DIR`)")
    return path


def load_project(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Project:
    """Read and check a project file; raise ConfigError naming every problem at once."""
    file = find_project(path).resolve()
    env = os.environ if environ is None else environ
    doc = load(file, ConfigError)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{file}:1: a project file is a mapping (version, name, sources, ...)")
    errors = schema_errors(doc, json_schema())
    raise_all(errors, ConfigError)
    raw = json.loads(json.dumps(doc.data))  # before expansion: the digest must hold no secret
    data = _expand(doc, doc.data, (), env, errors)
    builder = _Builder(doc, errors)
    project = builder.build(data, _digest(raw))
    raise_all(errors, ConfigError)
    return project


def _expand(
    doc: Located, value: Any, path: Path_, env: Mapping[str, str], errors: list[str]
) -> Any:
    """``value`` with every ``${VAR}`` replaced from ``env``; unset variables are errors."""
    if isinstance(value, dict):
        return {k: _expand(doc, v, (*path, k), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(doc, v, (*path, i), env, errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def missing(name: str) -> str:
        errors.append(f"{doc.where(path)}: environment variable {name} is not set")
        return ""

    return _substitute(value, env, missing)


def _substitute(text: str, env: Mapping[str, str], missing: Callable[[str], str]) -> str:
    """Expand ``${NAME}`` and ``${NAME:-default}`` (the default may itself hold ``${...}``)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            out.append(text[i])
            i += 1
            continue
        depth, j = 1, i + 2
        while j < len(text) and depth:
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth -= text[j] == "}"
            j += 1
        body = text[i + 2 : j - 1] if depth == 0 else text[i + 2 :]
        name, sep, default = body.partition(":-")
        if depth or not _NAME.fullmatch(name):
            out.append(text[i:j])  # not a variable: kept as written
        elif name in env:
            out.append(env[name])
        elif sep:
            out.append(_substitute(default, env, missing))
        else:
            out.append(missing(name))
        i = j
    return "".join(out)


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Builder:
    """Turns a schema-valid, expanded document into a Project, collecting semantic errors."""

    def __init__(self, doc: Located, errors: list[str]) -> None:
        self.doc = doc
        self.errors = errors
        self.folder = doc.file.parent

    def error(self, path: Path_, message: str) -> None:
        self.errors.append(f"{self.doc.where(path)}: {message}")

    def path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.folder / p

    def url(self, path: Path_, expanded: str) -> str:
        """A database URL, relative SQLite paths read from the project's folder."""
        raw = self.doc.data
        for part in path:
            raw = raw[part]
        if not expanded:
            return expanded  # a variable that is not set: reported already
        try:
            url = make_url(expanded)
        except (ArgumentError, ValueError):
            self.error(path, f"not a database URL: {expanded!r}")
            return expanded
        if url.password is not None and "${" not in str(raw):
            self.error(path, "a password is written in the URL: take it from the environment")
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            url = url.set(database=str(self.path(url.database or "")))
        return url.render_as_string(hide_password=False)

    def build(self, data: dict[str, Any], digest: str) -> Project:
        sources: dict[str, SourceConfig] = {}
        for name, s in data["sources"].items():
            at = ("sources", name)
            location = self.url((*at, "url"), s["url"]) if "url" in s else str(self.path(s["path"]))
            sources[name] = SourceConfig(
                name, s["kind"], location, s.get("options", {}), s.get("description", "")
            )
        t = data["target"]
        target = TargetConfig(
            t["loader"],
            self.url(("target", "url"), t["url"]) if "url" in t else str(self.path(t["path"])),
            t.get("options", {}),
        )
        waves: dict[str, WaveConfig] = {}
        for name, w in data.get("waves", {}).items():
            where = w.get("where", {})
            for source in where:
                if source not in sources:
                    self.error(("waves", name, "where", source), f"no source {source!r}")
            waves[name] = WaveConfig(name, w.get("description", ""), where)
        owners: dict[str, OwnerConfig] = {}
        claimed: dict[str, str] = {}
        for key, o in data.get("owners", {}).items():
            for i, cls in enumerate(o["classes"]):
                if cls in claimed:
                    self.error(
                        ("owners", key, "classes", i), f"class {cls!r} is owned by {claimed[cls]}"
                    )
                claimed[cls] = key
            owners[key] = OwnerConfig(
                key, o["name"], o.get("title", ""), tuple(o["classes"]), o.get("public_key")
            )
        restricted = []
        for i, r in enumerate(data.get("restricted", [])):
            if r.get("source") is not None and r["source"] not in sources:
                self.error(("restricted", i, "source"), f"no source {r['source']!r}")
            restricted.append(
                RestrictedRecords(r.get("source"), r["table"], tuple(r["key"]), r["where"])
            )
        ledger = data.get("ledger", "sqlite:///.continuity/ledger.sqlite")
        specs = data.get("specs")
        as_of = None
        if "as_of" in data:
            try:
                as_of = dt.date.fromisoformat(data["as_of"])
            except ValueError:
                self.error(("as_of",), f"not a date: {data['as_of']!r}")
        return Project(
            file=self.doc.file,
            name=data["name"],
            description=data.get("description", ""),
            sources=sources,
            target=target,
            mappings=self.path(data.get("mappings", "mappings")),
            specs=None if specs in (None, "bundled") else self.path(specs),
            suites=self.path(data["suites"]) if "suites" in data else None,
            ledger=self.url(("ledger",), ledger) if "ledger" in data else self._default(ledger),
            waves=waves,
            owners=owners,
            digest=digest,
            as_of=as_of,
            restricted=tuple(restricted),
        )

    def _default(self, ledger: str) -> str:
        return f"sqlite:///{self.folder / '.continuity' / 'ledger.sqlite'}"
