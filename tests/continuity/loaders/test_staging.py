"""The ``staging`` loader: CSV files and a manifest whose line is the commit."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from continuity.db import table_digest
from continuity.domain.errors import ConfigError, LedgerError
from continuity.loaders import LoadError, SqlLoader, StagingLoader, apply_staging
from continuity.loaders.staging import MANIFEST, decode_field, read_manifest, read_staged
from continuity.target_schema import metadata

Rows = Callable[..., list[tuple[Any, ...]]]

OFFENCE = metadata.tables["ref_offence_code"]


def _staging(path: Path) -> StagingLoader:
    loader = StagingLoader(str(path), metadata)
    loader.check()
    loader.prepare()
    return loader


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / MANIFEST).read_text().splitlines()]


def test_a_batch_is_files_and_one_manifest_line(tmp_path: Path, rows: Rows) -> None:
    with _staging(tmp_path / "s") as loader:
        with loader.transaction() as batch:
            batch.upsert("person", rows("person", 3))
            batch.upsert("event", rows("event", 2))
            batch.upsert("person", rows("person", 1, 3))  # same file as the first
            batch.delete("person_dob", [("k", dt.date(1980, 1, 2))])
            batch.set_checkpoint("persons", {"after": 4})
        assert loader.checkpoints() == {"persons": {"after": 4}}
    (entry,) = _lines(tmp_path / "s")
    assert entry["batch"] == 1 and entry["format"] == "continuity-staging/1"
    assert entry["counts"] == {"person": 4, "event": 2}
    assert entry["deleted"] == {"person_dob": 1}
    assert entry["checkpoints"] == {"persons": {"after": 4}}
    files = entry["files"]
    assert [(f["path"], f["op"], f["rows"]) for f in files] == [
        ("batch-000001/001-person.csv", "upsert", 4),
        ("batch-000001/002-event.csv", "upsert", 2),
        ("batch-000001/003-person_dob.delete.csv", "delete", 1),
    ]
    for described in files:
        data = (tmp_path / "s" / described["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == described["sha256"]
        header, *body = list(csv.reader(io.StringIO(data.decode(), newline="")))
        assert header == described["columns"] and len(body) == described["rows"]
    assert files[2]["columns"] == ["person_id", "dob"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["batch-000001", MANIFEST]


def test_values_are_written_by_the_documented_convention(tmp_path: Path) -> None:
    """NULL is \\N, '' is empty, a leading backslash is doubled; booleans, dates, timestamps."""
    bail = metadata.tables["bail"]
    values: dict[str, Any] = {
        "bail_id": "b1",
        "person_id": None,
        "event_id": "",
        "conditions": 'curfew, "21:00"\nline two',
        "return_date": dt.date(2024, 2, 29),
        "mopi_group": 0,
        "mopi_review_date": None,
    }
    texts = ["\\N", "\\\\x", "a\\b", "\\"]
    with _staging(tmp_path) as loader, loader.transaction() as batch:
        batch.upsert("bail", [tuple(values[c.name] for c in bail.columns)])
        batch.upsert(
            "warning_marker",
            [(t, "person", None, None, "FI", None, None, None, True, None, None) for t in texts]
            + [("w", "location", "", None, "WE", None, None, None, False, 1, None)],
        )
        batch.upsert(
            "intelligence_report",
            [("i", None, "A1", dt.datetime(2024, 3, 31, 1, 2, 3, 45), "NEW", None, None, None)],
        )
    directory = tmp_path / "batch-000001"
    assert (directory / "001-bail.csv").read_bytes().decode().splitlines()[1:] == [
        'b1,\\N,,"curfew, ""21:00""',
        'line two",2024-02-29,0,\\N',
    ]
    with (directory / "002-warning_marker.csv").open(newline="") as fh:
        markers = list(csv.reader(fh))[1:]
    assert [r[0] for r in markers] == ["\\\\N", "\\\\\\x", "a\\b", "\\\\", "w"]
    assert [decode_field(r[0]) for r in markers] == [*texts, "w"]
    assert markers[0][2] == "\\N" and markers[-1][2] == ""
    assert [decode_field(markers[0][2]), decode_field(markers[-1][2])] == [None, ""]
    assert [r[8] for r in markers] == ["true"] * 4 + ["false"]
    intel = (directory / "003-intelligence_report.csv").read_text().splitlines()[1]
    assert intel == "i,\\N,A1,2024-03-31T01:02:03.000045,NEW,\\N,\\N,\\N"


def test_every_table_reads_back_typed(tmp_path: Path, rows: Rows) -> None:
    with _staging(tmp_path) as loader, loader.transaction() as batch:
        for table in metadata.sorted_tables:
            batch.upsert(table.name, rows(table.name, 6))
    (entry,) = read_manifest(tmp_path).entries
    for described in entry["files"]:
        table = metadata.tables[described["table"]]
        assert read_staged(tmp_path, described, table) == rows(table.name, 6), table.name


def test_staging_applied_is_the_direct_load(tmp_path: Path, rows: Rows) -> None:
    """Upserts, replacements, deletes and checkpoints over three batches, applied to SQLite,
    give the same tables and checkpoints as the sql loader given the same batches."""
    urls = [f"sqlite:///{tmp_path / name}" for name in ("direct.sqlite", "applied.sqlite")]
    for url in urls:
        metadata.create_all(create_engine(url))
    direct, staged = SqlLoader(urls[0], metadata), _staging(tmp_path / "s")
    direct.prepare()
    for loader in (direct, staged):
        for n in range(3):
            with loader.transaction() as batch:
                for table in metadata.sorted_tables:
                    batch.upsert(table.name, rows(table.name, 4, 2 * n))
                batch.delete("event_person", [r[:3] for r in rows("event_person", 1, 2 * n)])
                batch.upsert("event_person", rows("event_person", 1, 2 * n + 3))
                batch.set_checkpoint("wave", {"batch": n})
    with SqlLoader(urls[1], metadata) as applied:
        applied.prepare()
        assert apply_staging(tmp_path / "s", applied) == 3
        assert apply_staging(tmp_path / "s", applied) == 0  # resumes after what it applied
        assert applied.checkpoint("wave") == direct.checkpoint("wave") == {"batch": 2}
    for table in metadata.sorted_tables:
        digests = [table_digest(create_engine(u), table.name, metadata) for u in urls]
        assert digests[0] == digests[1], table.name
    direct.close()


def test_a_later_operation_on_a_key_stays_later(tmp_path: Path) -> None:
    a, b = ("8N", "first", "2024"), ("8N", "second", "2024")
    with _staging(tmp_path) as loader, loader.transaction() as batch:
        batch.upsert("ref_offence_code", [a])
        batch.delete("ref_offence_code", [a[:1]])
        batch.upsert("ref_offence_code", [b])
    (entry,) = read_manifest(tmp_path).entries
    assert [(f["op"], f["path"].split("/")[1]) for f in entry["files"]] == [
        ("upsert", "001-ref_offence_code.csv"),
        ("delete", "002-ref_offence_code.delete.csv"),
        ("upsert", "003-ref_offence_code.csv"),
    ]
    assert read_staged(tmp_path, entry["files"][2], OFFENCE) == [b]


def test_a_torn_manifest_line_and_uncommitted_files_are_ignored(tmp_path: Path) -> None:
    with _staging(tmp_path) as loader:
        for n in range(2):
            with loader.transaction() as batch:
                batch.upsert("ref_offence_code", [(f"C{n}", "x", "2024")])
                batch.set_checkpoint("wave", {"batch": n})
    # A run killed while appending batch 3's line, and one killed before renaming batch 4.
    committed = (tmp_path / MANIFEST).read_bytes()
    with (tmp_path / MANIFEST).open("ab") as fh:
        fh.write(b'{"batch": 3, "checkpoints": {"wave": {"bat')
    (tmp_path / "batch-000003").mkdir()
    (tmp_path / "batch-000003" / "001-event.csv").write_text("junk")
    (tmp_path / "batch-000004.tmp").mkdir()

    loader = StagingLoader(str(tmp_path), metadata)
    assert loader.checkpoints() == {"wave": {"batch": 1}}
    assert read_manifest(tmp_path).last_batch == 2
    with loader.transaction() as batch:
        batch.upsert("ref_offence_code", [("C2", "y", "2024")])
        batch.set_checkpoint("wave", {"batch": 2})
    data = (tmp_path / MANIFEST).read_bytes()
    assert data.startswith(committed) and data.count(b"\n") == 3
    assert loader.checkpoint("wave") == {"batch": 2}
    assert sorted(p.name for p in (tmp_path / "batch-000003").iterdir()) == [
        "001-ref_offence_code.csv"
    ]
    assert not (tmp_path / "batch-000004.tmp").exists()


def test_an_exception_leaves_no_line_and_no_files(tmp_path: Path) -> None:
    with _staging(tmp_path) as loader:
        with pytest.raises(RuntimeError, match="boom"), loader.transaction() as batch:
            batch.upsert("ref_offence_code", [("C1", "x", "2024")])
            batch.set_checkpoint("wave", {"batch": 0})
            raise RuntimeError("boom")
        assert loader.checkpoints() == {}
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        with loader.transaction() as batch:
            batch.set_checkpoint("wave", {"batch": 0})
    assert [e["batch"] for e in _lines(tmp_path)] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]  # no rows: no directory


def test_a_damaged_manifest_or_file_is_a_ledger_error(tmp_path: Path) -> None:
    with _staging(tmp_path) as loader:
        for n in range(2):
            with loader.transaction() as batch:
                batch.upsert("ref_offence_code", [(f"C{n}", "x", "2024")])
    entry = read_manifest(tmp_path).entries[0]
    path = tmp_path / entry["files"][0]["path"]
    path.write_bytes(path.read_bytes().replace(b"C0", b"C9"))
    with pytest.raises(LedgerError, match=r"001-ref_offence_code\.csv: SHA-256 differs"):
        read_staged(tmp_path, entry["files"][0], OFFENCE)
    lines = (tmp_path / MANIFEST).read_bytes().splitlines(keepends=True)
    (tmp_path / MANIFEST).write_bytes(b"{not json\n" + lines[1])
    with pytest.raises(LedgerError, match=r"manifest.jsonl, line 1: not a continuity-staging/1"):
        StagingLoader(str(tmp_path), metadata).checkpoints()


def test_bad_values_and_locations_are_one_line_errors(tmp_path: Path, rows: Rows) -> None:
    row = list(rows("person", 1)[0])
    row[metadata.tables["person"].columns.keys().index("dob_estimated")] = "yes"
    with _staging(tmp_path / "s") as loader:
        with (
            pytest.raises(
                LoadError, match="table person, column dob_estimated: expected a boolean"
            ),
            loader.transaction() as batch,
        ):
            batch.upsert("person", [tuple(row)])
        with (
            pytest.raises(LoadError, match="a row of 2 values for 3 columns"),
            loader.transaction() as batch,
        ):
            batch.upsert("ref_offence_code", [("C", "x")])
        assert not (tmp_path / "s" / MANIFEST).exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        StagingLoader(str(tmp_path / "file" / "s"), metadata).check()
    with pytest.raises(ConfigError, match=r"unknown option x \(known: none\)"):
        StagingLoader(str(tmp_path), metadata, {"x": 1})
