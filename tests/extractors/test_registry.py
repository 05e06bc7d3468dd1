"""Finding extractor kinds: the built-ins, and third-party ones through a real entry point.

The fixture installs a tiny distribution, ``continuity-lines``, into a directory on ``sys.path``
(a ``.dist-info`` with ``entry_points.txt``, as pip would leave it). It declares four extractors
in the ``continuity.extractors`` group: ``lines`` (works: one row per line of a text file),
``broken`` (its module raises on import), ``notone`` (not an Extractor subclass) and ``sql``
(tries to replace a built-in).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from continuity.domain.errors import ConfigError
from extractors import BUILT_INS, Selection, available, extractor_class, open_extractor
from extractors.csv import CsvExtractor
from extractors.sql import SqlExtractor

PLUGIN = """
from extractors.base import Extractor


class LinesExtractor(Extractor):
    kind = "lines"

    def columns(self, selection):
        return ["line"]

    def batches(self, selection, size=10_000):
        with open(self.location, encoding="utf-8") as handle:
            batch = []
            for line in handle:
                batch.append((line.rstrip("\\n"),))
                if len(batch) == size:
                    yield batch
                    batch = []
            if batch:
                yield batch


class NotAnExtractor:
    pass
"""

ENTRY_POINTS = """
[continuity.extractors]
lines = continuity_lines_plugin:LinesExtractor
broken = continuity_broken_plugin:BrokenExtractor
notone = continuity_lines_plugin:NotAnExtractor
sql = continuity_lines_plugin:LinesExtractor
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    dist_info = site / "continuity_lines-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: continuity-lines\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    (site / "continuity_lines_plugin.py").write_text(PLUGIN)
    (site / "continuity_broken_plugin.py").write_text("raise ImportError('needs cx_Oracle')\n")
    monkeypatch.syspath_prepend(str(site))
    yield tmp_path
    for name in ("continuity_lines_plugin", "continuity_broken_plugin"):
        sys.modules.pop(name, None)


def test_built_ins_need_no_entry_points() -> None:
    assert dict(BUILT_INS) == {"sql": SqlExtractor, "csv": CsvExtractor}
    assert extractor_class("sql") is SqlExtractor
    assert extractor_class("csv") is CsvExtractor
    assert {"sql", "csv"} <= set(available())


def test_an_unknown_kind_lists_the_kinds_there_are() -> None:
    with pytest.raises(ConfigError) as exc:
        open_extractor("oracle", "legacy", "oracle://x")
    assert str(exc.value) == "unknown extractor kind 'oracle'; available: csv, sql"


def test_a_third_party_kind_is_found_through_its_entry_point(plugins: Path) -> None:
    lines = plugins / "names.txt"
    lines.write_text("SIOBHÁN\nŁUKASZ\nSIOBHÁN\nO'BRIEN\nSIOBHÁN\n", encoding="utf-8")
    cls = extractor_class("lines")
    assert cls.__name__ == "LinesExtractor" and cls.__module__ == "continuity_lines_plugin"
    with open_extractor("lines", "notes", str(lines)) as extractor:
        selection = Selection(table="names", key=("line",))
        assert [len(b) for b in extractor.batches(selection, size=2)] == [2, 2, 1]
        # The base class's count and key check work for a kind that implements only batches.
        assert extractor.count(selection) == 5
        problems = list(extractor.key_problems(selection))
        assert [(p.key, p.rows, p.reason) for p in problems] == [
            (("SIOBHÁN",), 3, "duplicate key: 3 rows share line=SIOBHÁN")
        ]


def test_a_broken_plugin_warns_and_is_skipped(plugins: Path) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        kinds = available()
    assert set(kinds) == {"sql", "csv", "lines"}
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        "extractor plugin broken (continuity_broken_plugin:BrokenExtractor) failed to import: "
        "ImportError: needs cx_Oracle; skipped",
        "extractor plugin notone (continuity_lines_plugin:NotAnExtractor) is not a subclass of "
        "extractors.base.Extractor; skipped",
    ]


def test_asking_for_a_broken_plugin_is_a_config_error(plugins: Path) -> None:
    with pytest.warns(RuntimeWarning) as caught, pytest.raises(ConfigError) as exc:
        extractor_class("broken")
    # Each broken plugin is reported once: "broken" on trying it, "notone" on listing the kinds.
    assert sorted(str(w.message).split(" (")[0] for w in caught) == [
        "extractor plugin broken",
        "extractor plugin notone",
    ]
    assert "unknown extractor kind 'broken' (its plugin could not be loaded)" in str(exc.value)
    assert str(exc.value).endswith("available: csv, lines, sql")


def test_a_plugin_cannot_replace_a_built_in(plugins: Path) -> None:
    assert extractor_class("sql") is SqlExtractor
