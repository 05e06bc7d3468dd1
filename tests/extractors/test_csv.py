"""The ``csv`` extractor beyond the conformance tests: locations, options and malformed files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from continuity.domain.errors import ConfigError, ExtractError
from extractors import Selection, open_extractor


def read(extractor: Any, selection: Selection, size: int = 10_000) -> list[tuple[Any, ...]]:
    return [row for batch in extractor.batches(selection, size) for row in batch]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_a_directory_holds_one_table_per_file(tmp_path: Path) -> None:
    write(tmp_path / "gazetteer.csv", "UPRN,POSTCODE\n1001,M1 1AA\n1002,\n")
    write(tmp_path / "offences.csv", "CODE\n8N\n")
    with open_extractor("csv", "reference", str(tmp_path)) as extractor:
        extractor.check()
        expected = [("1001", "M1 1AA"), ("1002", None)]
        assert read(extractor, Selection(table="gazetteer")) == expected
        assert read(extractor, Selection(table="gazetteer.csv")) == expected
        assert read(extractor, Selection(table="offences")) == [("8N",)]
        with pytest.raises(ExtractError, match=r"no table crimes: no file crimes\.csv in "):
            read(extractor, Selection(table="crimes"))
        with pytest.raises(ConfigError, match="not a file name"):
            read(extractor, Selection(table="../gazetteer"))


def test_a_single_file_is_one_table_named_after_it(tmp_path: Path) -> None:
    file = write(tmp_path / "gazetteer.csv", "UPRN\n1001\n")
    with open_extractor("csv", "reference", str(file)) as extractor:
        extractor.check()
        assert read(extractor, Selection(table="gazetteer")) == [("1001",)]
        assert read(extractor, Selection(table="gazetteer.csv")) == [("1001",)]
        with pytest.raises(ExtractError, match=r"no table streets in .*its one table is gazetteer"):
            read(extractor, Selection(table="streets"))


def test_delimiter_encoding_and_null_options(tmp_path: Path) -> None:
    write(
        tmp_path / "names.csv",
        "ID;SURNAME;FORENAME\n1;O'Brien;Siobhán\n2;;NULL\n",
        encoding="cp1252",
    )
    options = {"delimiter": ";", "encoding": "cp1252", "null": "NULL"}
    with open_extractor("csv", "legacy", str(tmp_path), options) as extractor:
        rows = read(extractor, Selection(table="names"))
    assert rows == [("1", "O'Brien", "Siobhán"), ("2", "", None)]  # "" is text when null=NULL
    with open_extractor("csv", "legacy", str(tmp_path), {**options, "null": None}) as extractor:
        assert read(extractor, Selection(table="names"))[1] == ("2", "", "NULL")


def test_utf16_files_are_read_through_the_text_layer(tmp_path: Path) -> None:
    write(tmp_path / "names.csv", "ID,NAME\r\n1,Siobhán\r\n2,Łukasz\r\n", encoding="utf-16")
    with open_extractor("csv", "legacy", str(tmp_path), {"encoding": "utf-16"}) as extractor:
        assert read(extractor, Selection(table="names")) == [("1", "Siobhán"), ("2", "Łukasz")]


def test_a_character_cut_short_at_the_end_of_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_bytes(b"ID,NAME\n1,Siobh" + "á".encode()[:1])
    with (
        open_extractor("csv", "legacy", str(tmp_path)) as extractor,
        pytest.raises(ExtractError, match=r"names\.csv, line 2: not utf-8 text"),
    ):
        read(extractor, Selection(table="names"))


def test_a_byte_order_mark_does_not_stick_to_the_first_column(tmp_path: Path) -> None:
    write(tmp_path / "export.csv", "\ufeffREF,NAME\nA1,Łukasz\n")
    with open_extractor("csv", "legacy", str(tmp_path)) as extractor:
        selection = Selection(table="export", key=("REF",))
        assert extractor.columns(selection) == ["REF", "NAME"]
        assert read(extractor, selection) == [("A1", "Łukasz")]


def test_quoted_fields_and_blank_lines(tmp_path: Path) -> None:
    write(tmp_path / "mo.csv", 'REF,MO\nC1,"forced rear door,\nstole ""cash"""\n\nC2,x\n')
    with open_extractor("csv", "legacy", str(tmp_path)) as extractor:
        assert read(extractor, Selection(table="mo")) == [
            ("C1", 'forced rear door,\nstole "cash"'),
            ("C2", "x"),
        ]


def test_a_row_with_the_wrong_number_of_fields_names_file_and_line(tmp_path: Path) -> None:
    # Line 2 holds a field running over two lines, so the bad record starts on line 5.
    write(tmp_path / "mo.csv", 'REF,MO\nC1,"two\nlines"\nC2,ok\nC3,too,many\nC4,x\n')
    with (
        open_extractor("csv", "legacy", str(tmp_path)) as extractor,
        pytest.raises(ExtractError) as exc,
    ):
        read(extractor, Selection(table="mo"), size=1)
    assert str(exc.value) == (
        f"source legacy: {tmp_path / 'mo.csv'}, line 5: 3 fields where the header has 2"
    )


def test_text_in_the_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "names.csv", "ID,NAME\n1,ok\n2,Siobh\xe1n\n", encoding="latin-1")
    with (
        open_extractor("csv", "legacy", str(tmp_path)) as extractor,
        pytest.raises(ExtractError, match=r"names\.csv, line 3: not utf-8 text"),
    ):
        read(extractor, Selection(table="names"))


def test_headers_are_required_and_unique(tmp_path: Path) -> None:
    write(tmp_path / "empty.csv", "")
    write(tmp_path / "twice.csv", "REF,NAME,REF\n1,a,1\n")
    with open_extractor("csv", "legacy", str(tmp_path)) as extractor:
        with pytest.raises(ExtractError, match=r"empty\.csv: no header row"):
            extractor.columns(Selection(table="empty"))
        with pytest.raises(ExtractError, match=r"twice\.csv: column REF appears twice"):
            read(extractor, Selection(table="twice"))


def test_an_unknown_column_names_file_and_column(tmp_path: Path) -> None:
    write(tmp_path / "names.csv", "ID,NAME\n1,a\n")
    with open_extractor("csv", "legacy", str(tmp_path)) as extractor:
        with pytest.raises(ExtractError, match=r"names\.csv: no column DOB \(header: ID, NAME\)"):
            read(extractor, Selection(table="names", columns=("ID", "DOB")))
        with pytest.raises(ExtractError, match="no column REF"):
            list(extractor.key_problems(Selection(table="names", key=("REF",))))


@pytest.mark.parametrize(
    ("selection", "refused"),
    [
        (Selection(query="SELECT 1"), "a query"),
        (Selection(table="names", where="ID = :id", params={"id": "1"}), "a where filter"),
        (Selection(table="names", key=("ID",), order_by_key=True), "order_by_key"),
    ],
)
def test_what_a_file_cannot_do_is_a_config_error(
    tmp_path: Path, selection: Selection, refused: str
) -> None:
    write(tmp_path / "names.csv", "ID\n1\n")
    with open_extractor("csv", "legacy", str(tmp_path)) as extractor:
        with pytest.raises(ConfigError, match=f"csv extractor does not support {refused}"):
            read(extractor, selection)
        with pytest.raises(ConfigError, match=refused):
            extractor.count(selection)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sep": ";"}, r"unknown csv option sep \(accepted: delimiter, encoding, null\)"),
        ({"delimiter": ";;"}, "delimiter must be one character"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"null": 0}, "null must be text"),
    ],
)
def test_bad_options_are_config_errors(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        open_extractor("csv", "legacy", str(tmp_path), options)


def test_a_missing_location_fails_check(tmp_path: Path) -> None:
    with (
        open_extractor("csv", "legacy", str(tmp_path / "nowhere")) as extractor,
        pytest.raises(ExtractError, match=r"no such file or directory: .*nowhere"),
    ):
        extractor.check()
