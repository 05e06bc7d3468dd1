"""Selections, key problems and the base class's defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from continuity.domain.errors import ConfigError
from extractors import Extractor, Selection
from extractors.base import duplicate_key, null_key


class ListExtractor(Extractor):
    """Rows from the options, so that only the base class's own logic is under test."""

    kind: ClassVar[str] = "list"
    option_names: ClassVar[frozenset[str] | None] = frozenset({"rows"})

    def batches(self, selection: Selection, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        columns = self.columns(selection)
        rows = [tuple(r[c] for c in columns) for r in self.options["rows"]]
        for start in range(0, len(rows), size):
            yield rows[start : start + size]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one of a table or a query"),
        ({"table": "NOMINAL", "query": "SELECT 1"}, "exactly one of a table or a query"),
        ({"table": "NOMINAL", "columns": ()}, "table NOMINAL: an empty column list"),
        ({"table": "NOMINAL", "order_by_key": True}, "order_by_key needs a declared key"),
        ({"table": "NOMINAL", "key": ("A",), "after": ("x",)}, "needs order_by_key"),
        (
            {"table": "NOMINAL", "key": ("A", "B"), "order_by_key": True, "after": ("x",)},
            "resume point has 1 values for a key of 2 columns",
        ),
    ],
)
def test_a_selection_that_makes_no_sense_is_a_config_error(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Selection(**arguments)


def test_selections_are_immutable_and_describe_themselves() -> None:
    from_yaml: Any = {"table": "NOMINAL", "key": ["A", "B"], "columns": ["A"], "after": None}
    selection = Selection(**from_yaml)
    assert selection.key == ("A", "B") and selection.columns == ("A",)
    assert selection.describe() == "table NOMINAL"
    long = Selection(query="SELECT  n.NOMINAL_REF,\n       n.SURNAME FROM NOMINAL n JOIN ALIAS a")
    assert long.describe() == "query SELECT n.NOMINAL_REF, n.SURNAME FROM NOM..."
    assert Selection(query="SELECT 1").describe() == "query SELECT 1"


def test_key_problem_reasons_name_the_columns() -> None:
    key = ("NOMINAL_REF", "SEQ")
    assert duplicate_key(key, ("N000123", 2), 3).reason == (
        "duplicate key: 3 rows share NOMINAL_REF=N000123, SEQ=2"
    )
    assert null_key(("NOMINAL_REF",), (None,), 1).reason == "null key part NOMINAL_REF"
    assert null_key(key, ("N1", None), 4).reason == "null key part SEQ (NOMINAL_REF=N1); 4 rows"
    assert null_key(key, (None, None), 1).reason == "null key parts NOMINAL_REF, SEQ"


def test_the_defaults_build_on_batches() -> None:
    rows = [{"REF": r, "N": n} for r, n in [("A", 1), ("B", 2), ("A", 3), (None, 4), (None, 5)]]
    with ListExtractor("memory", "-", {"rows": rows}) as extractor:
        extractor.check()  # the default has nothing to check
        selection = Selection(table="t", key=("REF",), columns=("REF", "N"))
        assert extractor.count(selection) == 5
        problems = [(p.key, p.rows) for p in extractor.key_problems(selection)]
        assert problems == [((None,), 2), (("A",), 2)]  # null keys first, then duplicates
        with pytest.raises(ConfigError, match="source memory: table t: the list extractor needs"):
            extractor.columns(Selection(table="t"))
        with pytest.raises(ConfigError, match="no key declared"):
            list(extractor.key_problems(Selection(table="t", columns=("N",))))
    assert repr(extractor) == "<ListExtractor memory (list)>"


def test_unknown_options_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown list option colour, size \(accepted: rows\)"):
        ListExtractor("memory", "-", {"rows": [], "size": 1, "colour": "blue"})
