"""YAML read safely, remembering the line of every key, so errors can name file, line and key."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's booleans: only true and false.

    YAML 1.1 also reads yes, no, on, off, y and n as booleans; in a mapping or a code table
    `NO` (Norway), `Y` (a legacy flag) or `ON` must stay text.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass
class Located:
    """A YAML document as plain data, with the 1-based line of each mapping key and list item."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    def where(self, path: Path_) -> str:
        """``file:line: key.path`` for messages."""
        key = ".".join(str(k) for k in path) or "(document)"
        return f"{self.file}:{self.line(path)}: {key}"


def load(file: Path, error: type[Exception]) -> Located:
    """Read ``file`` with the safe loader; a syntax error becomes ``error`` naming file and line."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{file}: cannot read: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{file}{line}: malformed YAML: {problem}") from exc
    located = Located(file, None)
    if node is None:
        return located
    located.lines[()] = node.start_mark.line + 1
    located.data = _convert(node, (), located.lines, file, error)
    return located


def _convert(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], file: Path, error: type[Exception]
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _Loader("").construct_object(key_node)  # scalars only
            line = key_node.start_mark.line + 1
            if key in out:
                dotted = ".".join(str(k) for k in (*path, key))
                raise error(f"{file}:{line}: {dotted}: duplicate key")
            lines[(*path, key)] = line
            out[key] = _convert(value_node, (*path, key), lines, file, error)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_convert(item, (*path, i), lines, file, error))
        return items
    value = _Loader("").construct_object(node)
    if isinstance(value, dt.date):  # a bare 2019-07-01 means the text a spec compares with
        return value.isoformat()
    return value


def schema_errors(doc: Located, schema: dict[str, Any]) -> list[str]:
    """Every JSON Schema violation of ``doc``, each as ``file:line: key.path: message``.

    An unknown key is named with the keys allowed in its place, the commonest mistake (a typo)
    being the one the message must make obvious.
    """
    import jsonschema  # needed only when a declarative file is checked

    validator = jsonschema.Draft202012Validator(schema)
    found = sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.path)))
    out: list[str] = []
    for e in found:
        path = tuple(e.absolute_path)
        if e.validator in ("additionalProperties", "unevaluatedProperties"):
            allowed = sorted(_allowed_keys(e.schema, schema))
            for key in sorted(set(e.instance) - set(allowed), key=str):
                hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
                out.append(f"{doc.where((*path, key))}: unknown key{hint}")
        else:
            out.append(f"{doc.where(path)}: {_schema_message(e)}")
    return out


def _allowed_keys(part: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """Keys a schema object allows, following its allOf references."""
    keys = set(part.get("properties", {}))
    for sub in part.get("allOf", []):
        ref = sub.get("$ref", "")
        if ref.startswith("#/$defs/"):
            keys |= _allowed_keys(root["$defs"][ref.rsplit("/", 1)[1]], root)
    return keys


def _schema_message(error: Any) -> str:
    """A one-line reading of a JSON Schema error."""
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        return str(error.message).replace("Unevaluated properties are not allowed", "unknown key")
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        return (
            f"{str(error.message).split(' is not valid')[0][:80]} matches none of the allowed forms"
        )
    return str(error.message)


def raise_all(errors: list[str], error: type[Exception]) -> None:
    """Raise ``error`` once carrying every message, if there are any."""
    if errors:
        raise error(
            errors[0] if len(errors) == 1 else f"{len(errors)} errors: " + "; ".join(errors)
        )
