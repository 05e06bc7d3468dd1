"""docs/mappings.md documents every key, operation and condition, and its examples are real.

Every complete example of the page (a YAML block with ``version:``) must load, and compile
against the estate's source tables (``continuity.estate.schemas``) and the bundled target
(``continuity.target_schema``); every field example (a block marked ``yaml fields``) must load
as the fields of a source.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from continuity import target_schema
from continuity.domain.addresses import Gazetteer
from continuity.estate import schemas
from mappings import operations
from mappings.compiler import compile_source
from mappings.spec import AS_OF, CONDITION_OPS, CONTEXT_STEPS, HEADS, json_schema, load_mappings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "mappings.md"
_BRANCHES = ("allOf", "oneOf", "anyOf")
_BLOCK = re.compile(r"^```(yaml[^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

OPERATIONS = sorted({*HEADS, *CONTEXT_STEPS, *operations.STEPS})


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def blocks(kind: str | None = None) -> list[str]:
    """The page's YAML blocks; ``kind`` picks those whose info string is ``yaml KIND``."""
    found = [(info.split()[1:], body) for info, body in _BLOCK.findall(page())]
    if kind is None:
        return [body for _, body in found]
    return [body for words, body in found if words == [kind]]


def complete_examples() -> list[str]:
    return [b for b in blocks() if re.search(r"^version:", b, re.MULTILINE)]


def sections() -> dict[str, str]:
    """Each ``### `name` `` section of the page, by name."""
    parts = re.split(r"^### `([^`]+)`\s*$", page(), flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts) - 1, 2)}


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
    assert {"as_table", "copy_of", "only", "unless", "excluded", "as", "reason"} <= names
    assert {"column_as", "rule_field", "twins_below", "dob_estimated"} <= names


def test_the_page_has_examples() -> None:
    assert len(complete_examples()) >= 5
    assert len(blocks("fields")) >= len(OPERATIONS) - 2


@pytest.mark.parametrize("name", sorted(schema_names(json_schema())))
def test_every_schema_key_is_documented(name: str) -> None:
    assert f"`{name}`" in page(), f"`{name}` is not in {PAGE.name}"


@pytest.mark.parametrize("name", [*CONDITION_OPS, AS_OF])
def test_every_condition_operator_is_documented(name: str) -> None:
    assert f"`{name}`" in page(), f"`{name}` is not in {PAGE.name}"


@pytest.mark.parametrize("op", OPERATIONS)
def test_every_operation_has_a_section_with_an_example(op: str) -> None:
    found = sections()
    assert op in found, f"no section ### `{op}` in {PAGE.name}"
    examples = re.findall(r"^```yaml[^\n]*\n(.*?)^```", found[op], re.MULTILINE | re.DOTALL)
    assert examples, f"the section of `{op}` has no YAML example"
    assert any(re.search(rf"\b{re.escape(op)}\b", e) for e in examples), (
        f"no example of the section of `{op}` uses it"
    )


@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_every_yaml_block_parses(block: str) -> None:
    yaml.safe_load(block)


def _code_tables(folder: Path, doc: dict[str, Any]) -> None:
    """Create each code table a mapping declares: an empty table of the declared shape."""
    for table in (doc.get("codes") or {}).values():
        path = folder / table["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".yml", ".yaml"):
            path.write_text("{}\n", encoding="utf-8")
        else:
            path.write_text(f"{table.get('from', 'from')},{table.get('to', 'to')}\n")


@pytest.mark.parametrize(
    "example", complete_examples(), ids=lambda b: re.findall(r"entity: (\w+)", b)[0]
)
def test_every_complete_example_loads_and_compiles(tmp_path: Path, example: str) -> None:
    doc = yaml.safe_load(example)
    _code_tables(tmp_path, doc)
    path = tmp_path / "example.yml"
    path.write_text(example, encoding="utf-8")
    (spec,) = load_mappings([path])
    target = target_schema.metadata.tables[spec.entity]
    required = {c.name for c in target.columns if not c.nullable}
    # The run loads each gazetteer a mapping resolves against; an empty one compiles the same.
    gazetteers = re.findall(r"gazetteer: \{source: (\w+), table: (\w+)", example)
    resources = {f"gazetteer:{s}.{t}": Gazetteer() for s, t in gazetteers}
    for source in spec.sources:
        if source.table is None:
            continue  # a query's columns are whatever it selects
        metadata = schemas.legacy if source.source == "legacy" else schemas.policeworks
        columns = [c.name for c in metadata.tables[source.table].columns]
        compile_source(
            spec,
            source,
            columns,
            [c.name for c in target.columns],
            required,
            resources={**resources, "resolving": spec.resolve is not None},
        )


@pytest.mark.parametrize("fields", blocks("fields"), ids=lambda b: b.splitlines()[0][:40])
def test_every_field_example_loads(tmp_path: Path, fields: str) -> None:
    (tmp_path / "offence.csv").write_text("from,to\n", encoding="utf-8")
    text = (
        "version: 1\nentity: example\n"
        "codes:\n  offence: {file: offence.csv, version: 1}\n"
        "sources:\n  - source: legacy\n    table: T\n    key: [REF]\n    fields:\n"
        + textwrap.indent(fields, "      ")
    )
    path = tmp_path / "example.yml"
    path.write_text(text, encoding="utf-8")
    (spec,) = load_mappings([path])
    assert spec.sources[0].fields
