"""docs/survival-specs.md documents every key of the spec schema and every normaliser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.normalisers import BUILDERS
from reconcile.spec import json_schema

PAGE = Path(__file__).resolve().parents[2] / "docs" / "survival-specs.md"
_BRANCHES = ("allOf", "oneOf", "anyOf")


def schema_names(
    node: Any, found: set[str] | None = None, seen: set[str] | None = None
) -> set[str]:
    """Every property name (and enum text) reachable from ``node``, following ``$ref``."""
    found = set() if found is None else found
    seen = set() if seen is None else seen
    if not isinstance(node, dict):
        return found
    ref = node.get("$ref")
    if ref is not None and ref not in seen:
        seen.add(ref)
        schema_names(json_schema()["$defs"][ref.removeprefix("#/$defs/")], found, seen)
    for name, sub in node.get("properties", {}).items():
        found.add(name)
        schema_names(sub, found, seen)
    found.update(v for v in node.get("enum", ()) if isinstance(v, str))
    for key in ("items", "additionalProperties"):
        schema_names(node.get(key), found, seen)
    for key in _BRANCHES:
        for branch in node.get(key, ()):
            schema_names(branch, found, seen)
    return found


def test_the_walk_reaches_nested_keys() -> None:
    names = schema_names(json_schema())
    assert {"newer_copy", "as", "any", "is_null", "source_tables", "translate"} <= names
    assert {"dob_evidence", "critical"} <= names


@pytest.mark.parametrize("name", sorted(schema_names(json_schema())))
def test_every_schema_key_is_documented(name: str) -> None:
    assert f"`{name}`" in PAGE.read_text(encoding="utf-8"), f"`{name}` is not in {PAGE.name}"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_normaliser_is_documented(name: str) -> None:
    assert f"`{name}`" in PAGE.read_text(encoding="utf-8"), f"`{name}` is not in {PAGE.name}"
