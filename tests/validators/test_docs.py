"""docs/validators.md documents every key of a suite and every expectation of the policing
library, and its complete suite example is a real, compiling suite."""

from __future__ import annotations

import re
from pathlib import Path

from validators import gx
from validators.runner import compile_suites
from validators.suite import json_schema, load_suite

PAGE = Path(__file__).resolve().parents[2] / "docs" / "validators.md"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_every_key_of_the_suite_schema_is_documented() -> None:
    schema = json_schema()
    keys = set(schema["properties"]) | set(
        schema["properties"]["expectations"]["items"]["properties"]
    )
    for key in keys:
        assert f"| `{key}` |" in page(), key


def test_every_policing_expectation_is_documented_and_registered() -> None:
    gx.expectation_class("expect_column_values_to_be_uk_postcodes")  # registers the library
    from validators.expectations import LIBRARY

    for name, cls in LIBRARY.items():
        assert f"| `{name}` |" in page(), name
        assert gx.expectation_class(name) is cls


def test_the_suite_example_compiles(tmp_path: Path) -> None:
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", page(), re.DOTALL) if "version:" in b]
    path = tmp_path / "example.yml"
    path.write_text(block, encoding="utf-8")
    (compiled,) = compile_suites([load_suite(path)])
    assert len(compiled.expectations) == 3
