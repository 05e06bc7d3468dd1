"""The ``csv`` extractor: reference data and exports held as delimited text files.

The location is a directory, whose tables are its ``*.csv`` files (table ``gazetteer`` is
``gazetteer.csv``), or a single file, whose one table is named after it. The first row is the
header. Values are strings, except the text of the ``null`` option (default: the empty string),
which is ``None``. Files are read record by record, never whole.

A file cannot evaluate SQL, so ``query`` and ``where`` are configuration errors, and so is
``order_by_key``: sorting would mean holding the file in memory, and files are small reference
data read in one go, so they never need resuming.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, TextIO

from continuity.domain.errors import ExtractError
from extractors.base import Extractor, Selection


class CsvExtractor(Extractor):
    """Reads tables from CSV files.

    Options:
        delimiter: the field separator, one character (default ``","``).
        encoding: the files' text encoding (default ``"utf-8"``; a byte-order mark is skipped).
        null: the text that stands for NULL (default ``""``); ``None`` reads every value as text.
    """

    kind: ClassVar[str] = "csv"
    option_names: ClassVar[frozenset[str] | None] = frozenset({"delimiter", "encoding", "null"})

    def __init__(self, name: str, location: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, location, options)
        self.path = Path(location)
        self.delimiter = self.options.get("delimiter", ",")
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
            raise self.config_error(f"delimiter must be one character, not {self.delimiter!r}")
        self.encoding = str(self.options.get("encoding", "utf-8"))
        try:
            codec = codecs.lookup(self.encoding).name
        except LookupError as exc:
            raise self.config_error(f"unknown encoding {self.encoding!r}") from exc
        # Spreadsheet exports often begin with a byte-order mark, which would cling to the
        # first column's name.
        self._codec = "utf-8-sig" if codec == "utf-8" else codec
        self._newline_is_one_byte = "\n".encode(codec) == b"\n"
        null = self.options.get("null", "")
        if null is not None and not isinstance(null, str):
            raise self.config_error(f"null must be text, not {null!r}")
        self.null: str | None = null

    def check(self) -> None:
        """The location must be a readable directory or file."""
        if self.path.is_dir():
            try:
                next(self.path.iterdir(), None)
            except OSError as exc:
                raise self.error(f"cannot read directory {self.path}: {exc.strerror}") from exc
        elif self.path.is_file():
            with self._open(self.path):
                pass
        else:
            raise self.error(f"no such file or directory: {self.path}")

    def columns(self, selection: Selection) -> list[str]:
        """The selection's columns; an unknown file or column is an ExtractError naming it."""
        file = self._file(selection)
        with self._open(file) as handle:
            header = self._header(file, csv.reader(handle, delimiter=self.delimiter))
        return self._wanted(file, selection, header)

    def batches(self, selection: Selection, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream the file's records as tuples of the selected columns, ``size`` at a time."""
        if size < 1:
            raise self.config_error(f"batch size must be at least 1, not {size}")
        file = self._file(selection)
        with self._open(file) as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            header = self._header(file, reader)
            wanted = self._wanted(file, selection, header)
            picks = [header.index(c) for c in wanted]
            pick = itemgetter(*picks) if len(picks) > 1 else (lambda r: (r[picks[0]],))
            width = len(header)
            null = self.null
            batch: list[tuple[Any, ...]] = []
            line = reader.line_num
            try:
                for record in reader:
                    if len(record) != width:
                        if not record:  # a blank line, as csv.DictReader skips them
                            line = reader.line_num
                            continue
                        raise self.error(
                            f"{file}, line {line + 1}: {len(record)} fields where the header "
                            f"has {width}"
                        )
                    values = pick(record)
                    if null is not None:
                        values = tuple([None if v == null else v for v in values])
                    batch.append(values)
                    if len(batch) >= size:
                        yield batch
                        batch = []
                    line = reader.line_num
            except UnicodeDecodeError as exc:
                raise self._not_text(file) from exc
            except csv.Error as exc:
                raise self.error(f"{file}, line {line + 1}: {exc}") from exc
            if batch:
                yield batch

    def content_digest(self, selection: Selection) -> str | None:
        """SHA-256 of the table's file, with how it is read (the selection and the options)."""
        file = self._file(selection)
        h = hashlib.sha256(
            repr((self.kind, selection.columns, self.delimiter, self._codec, self.null)).encode()
        )
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    h.update(chunk)
        except OSError as exc:
            raise self.error(f"cannot read {file}: {exc.strerror}") from exc
        return h.hexdigest()

    # -- files ---------------------------------------------------------------------------------

    def _file(self, selection: Selection) -> Path:
        """The file holding the selected table, after refusing what a file cannot do."""
        for asked, what in (
            (selection.query, "a query"),
            (selection.where, "a where filter"),
            (selection.order_by_key, "order_by_key"),
        ):
            if asked:
                raise self.config_error(
                    f"{selection.describe()}: the csv extractor does not support {what}"
                )
        table = selection.table
        assert table is not None  # a Selection without a query has a table
        if self.path.is_dir():
            name = table if table.endswith(".csv") else f"{table}.csv"
            if Path(name).name != name or name.startswith(".."):
                raise self.config_error(f"table {table} is not a file name")
            file = self.path / name
            if not file.is_file():
                raise self.error(f"no table {table}: no file {name} in {self.path}")
            return file
        if self.path.is_file():
            if table not in (self.path.name, self.path.stem):
                raise self.error(
                    f"no table {table} in {self.path} (its one table is {self.path.stem})"
                )
            return self.path
        raise self.error(f"no such file or directory: {self.path}")

    def _open(self, file: Path) -> TextIO:
        try:
            return open(file, encoding=self._codec, newline="")
        except OSError as exc:
            raise self.error(f"cannot read {file}: {exc.strerror}") from exc

    def _not_text(self, file: Path) -> ExtractError:
        """The error for a file that does not decode, naming the first line that does not.

        The text layer decodes in 8 KiB chunks, so the failing line is found again, only now,
        by decoding line by line (possible when a newline is the byte ``\\n``, i.e. not in
        UTF-16 or UTF-32): the fast path stays fast.
        """
        if self._newline_is_one_byte:
            with open(file, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    try:
                        line.decode(self._codec)
                    except UnicodeDecodeError:
                        return self.error(f"{file}, line {number}: not {self.encoding} text")
        return self.error(f"{file}: not {self.encoding} text")

    def _header(self, file: Path, reader: Any) -> list[str]:
        try:
            header = next(reader, None)
        except UnicodeDecodeError as exc:
            raise self._not_text(file) from exc
        except csv.Error as exc:
            raise self.error(f"{file}, line 1: {exc}") from exc
        if not header:
            raise self.error(f"{file}: no header row")
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise self.error(f"{file}: column {column} appears twice in the header")
            seen.add(column)
        return list(header)

    def _wanted(self, file: Path, selection: Selection, header: list[str]) -> list[str]:
        wanted = list(selection.columns) if selection.columns is not None else header
        for column in (*wanted, *selection.key):
            if column not in header:
                raise self.error(f"{file}: no column {column} (header: {', '.join(header)})")
        return wanted
