"""The ``staging`` loader: each batch becomes CSV files plus one line of ``manifest.jsonl``.

Product vendors often load through their own staging format; this loader writes one a vendor can
apply with any tool, and proves what it handed over (row counts and SHA-256 per file).

Layout of the staging directory::

    manifest.jsonl                     one JSON line per committed batch, in commit order
    batch-000001/001-person.csv        rows to upsert into person (header row, RFC 4180 CSV)
    batch-000001/002-event.csv
    batch-000002/001-event.delete.csv  keys to delete from event (header: the key columns)

A transaction writes its files into ``batch-NNNNNN.tmp/``, fsyncs them, renames the directory to
``batch-NNNNNN/``, then appends its manifest line and fsyncs the manifest. **The manifest line is
the commit**: a batch directory without a complete manifest line (the run was killed) is garbage,
removed by the next transaction, and a torn last line is cut off before the next one is appended.

Values (``docs/loaders.md`` has the full convention): NULL is an unquoted ``\\N``; an empty
string is an empty field; a text value beginning with a backslash gets one more backslash in
front (so ``\\N`` the text is written ``\\\\N``); booleans ``true``/``false``; dates
``YYYY-MM-DD``; timestamps ``YYYY-MM-DDTHH:MM:SS.ffffff`` in UTC without an offset.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, ClassVar

from sqlalchemy import Boolean, Column, Date, DateTime, Integer, MetaData, String, Table

from continuity.domain.errors import ConfigError, LedgerError
from continuity.loaders.base import LoadBatch, Loader, LoadError, primary_key_indexes

MANIFEST = "manifest.jsonl"
#: Written in every manifest line; a reader refuses a format it does not know.
FORMAT = "continuity-staging/1"
#: The NULL marker (as in PostgreSQL's COPY text format).
NULL = "\\N"
#: Checkpoint step under which :func:`apply_staging` records the last batch it applied.
APPLIED_STEP = "staging-applied"

_BATCH_NAME = re.compile(r"^batch-(\d{6,})(\.tmp)?$")

Encoder = Callable[[Any], str]


# -- values ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return "\\" + value if value.startswith("\\") else value
    raise TypeError(f"expected text, got {type(value).__name__} {value!r}")


def _integer(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")


def _boolean(value: Any) -> str:
    if value is True or value is False or value in (0, 1):
        return "true" if value else "false"
    raise TypeError(f"expected a boolean, got {type(value).__name__} {value!r}")


def _date(value: Any) -> str:
    if isinstance(value, dt.date):  # a datetime keeps only its date, as SQLAlchemy's Date does
        return dt.date.isoformat(value)
    raise TypeError(f"expected a date, got {type(value).__name__} {value!r}")


def _datetime(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat("T", "microseconds")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00.000000"
    raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")


def _any(value: Any) -> str:
    """Columns of other types: the obvious text of plain values, nothing ambiguous."""
    if isinstance(value, bool):
        return _boolean(value)
    if isinstance(value, dt.datetime):
        return _datetime(value)
    if isinstance(value, dt.date):
        return _date(value)
    if isinstance(value, int | float | Decimal):
        return str(value)
    return _text(value)


def _encoder(column: Column[Any]) -> Encoder:
    kind = column.type
    if isinstance(kind, Boolean):
        return _boolean
    if isinstance(kind, DateTime):
        return _datetime
    if isinstance(kind, Date):
        return _date
    if isinstance(kind, Integer):
        return _integer
    if isinstance(kind, String):  # Text included
        return _text
    return _any


def _decoder(column: Column[Any]) -> Callable[[str], Any]:
    kind = column.type
    if isinstance(kind, Boolean):
        return {"true": True, "false": False}.__getitem__
    if isinstance(kind, DateTime):
        return dt.datetime.fromisoformat
    if isinstance(kind, Date):
        return dt.date.fromisoformat
    if isinstance(kind, Integer):
        return int
    return str


def decode_field(text: str) -> str | None:
    """A CSV field as the text it stands for: ``\\N`` is NULL, a leading escape is dropped."""
    if text.startswith("\\"):
        return None if text == NULL else text[1:]
    return text


# -- the manifest ------------------------------------------------------------------------------


@dataclass
class Manifest:
    """The committed batches of a staging directory, as read from its manifest."""

    entries: list[dict[str, Any]]
    #: Bytes of the manifest up to the end of its last complete line.
    committed_size: int
    #: The manifest's size on disk (larger than ``committed_size`` after a torn append).
    size: int

    @property
    def last_batch(self) -> int:
        return self.entries[-1]["batch"] if self.entries else 0


def read_manifest(directory: str | Path) -> Manifest:
    """Read the committed batches of a staging directory; a torn last line is not one of them.

    Raises:
        LedgerError: a complete line is not a manifest entry, or batches are out of sequence.
    """
    path = Path(directory) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Manifest([], 0, 0)
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from exc
    end = data.rfind(b"\n") + 1  # bytes after the last newline: an append cut short
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        try:
            entry = json.loads(line)
            ok = (
                isinstance(entry, dict)
                and entry.get("format") == FORMAT
                and entry.get("batch") == len(entries) + 1
                and isinstance(entry.get("files"), list)
                and isinstance(entry.get("checkpoints"), dict)
            )
        except ValueError:
            ok = False
        if not ok:
            raise LedgerError(
                f"{path}, line {number}: not a {FORMAT} entry of batch {len(entries) + 1}"
            )
        entries.append(entry)
    return Manifest(entries, end, len(data))


def _fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory is synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the loader --------------------------------------------------------------------------------


class StagingLoader(Loader):
    """Write each batch as CSV files in a directory, committed by a line of its manifest."""

    kind: ClassVar[str] = "staging"

    def __init__(
        self, location: str, metadata: MetaData, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(location, metadata, options)
        self.root = Path(location)
        self._encoders = {t.name: [_encoder(c) for c in t.columns] for t in metadata.sorted_tables}
        self._batch: StagingBatch | None = None
        # (last committed batch, manifest size) as this loader left them: a transaction need
        # not re-read the whole manifest while the file is still the size it left it.
        self._committed: tuple[int, int] | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def check(self) -> None:
        """The directory (or the nearest existing parent it will be created in) is writable."""
        where = self.root
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise ConfigError(f"staging location {self.root} is not a directory")
        if not os.access(where, os.W_OK | os.X_OK):
            raise ConfigError(f"staging location {self.root}: {where} is not writable")

    def prepare(self) -> None:
        """Create the directory; cut a torn manifest line and remove uncommitted batch files."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create staging directory {self.root}: {exc.strerror}"
            ) from exc
        self._recover()

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """Every step's last committed state, folded over the manifest in commit order."""
        states: dict[str, dict[str, Any]] = {}
        for entry in read_manifest(self.root).entries:
            states.update(entry["checkpoints"])
        return states

    def _recover(self) -> Manifest:
        """Bring the directory back to its committed state; return that state."""
        manifest = read_manifest(self.root)
        try:
            if manifest.size > manifest.committed_size:
                with open(self.manifest_path, "r+b") as fh:
                    fh.truncate(manifest.committed_size)
                    fh.flush()
                    os.fsync(fh.fileno())
            if self.root.is_dir():
                for child in self.root.iterdir():
                    match = _BATCH_NAME.match(child.name)
                    if match and (match[2] or int(match[1]) > manifest.last_batch):
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
        except OSError as exc:
            raise LedgerError(f"cannot recover staging directory {self.root}: {exc}") from exc
        self._committed = (manifest.last_batch, manifest.committed_size)
        return Manifest(manifest.entries, manifest.committed_size, manifest.committed_size)

    def _next_batch(self) -> int:
        try:
            size = self.manifest_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if self._committed is None or self._committed[1] != size:
            self._recover()
        assert self._committed is not None
        return self._committed[0] + 1

    @contextmanager
    def transaction(self) -> Iterator[StagingBatch]:
        """Write one batch's files; on success commit them with one manifest line."""
        if self._batch is not None:
            raise RuntimeError("a transaction is already open on this loader")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            number = self._next_batch()
            work = self.root / f"batch-{number:06d}.tmp"
            work.mkdir()
        except OSError as exc:
            raise LoadError(f"cannot start a batch in {self.root}: {exc}") from exc
        batch = StagingBatch(self, work, number)
        self._batch = batch
        try:
            yield batch
            self._commit(batch)
        except BaseException:
            self._committed = None  # a failed commit may have left anything: look again
            batch._close(sync=False)
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            batch._finished = True
            self._batch = None

    def _commit(self, batch: StagingBatch) -> None:
        final = self.root / f"batch-{batch.number:06d}"
        try:
            batch._close(sync=True)
            if batch.files:
                _fsync_dir(batch.work)
                os.rename(batch.work, final)
            else:
                batch.work.rmdir()
            _fsync_dir(self.root)
            entry = {
                "format": FORMAT,
                "batch": batch.number,
                "committed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
                "files": [f.describe(self.root, final) for f in batch.files],
                "counts": batch.counts,
                "deleted": batch.deleted,
                "checkpoints": batch.states,
            }
            line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()
            created = not self.manifest_path.exists()
            fd = os.open(self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)  # the commit point
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.root)
            self._committed = (batch.number, size)
        except OSError as exc:
            raise LoadError(f"cannot commit batch {batch.number} to {self.root}: {exc}") from exc


@dataclass
class _StagedFile:
    table: str
    op: str  # "upsert" or "delete"
    columns: list[str]
    name: str
    handle: IO[bytes]
    rows: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def write(self, rows: Sequence[Sequence[str]]) -> None:
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(rows)
        data = buffer.getvalue().encode("utf-8")
        self.digest.update(data)
        self.handle.write(data)

    def describe(self, root: Path, directory: Path) -> dict[str, Any]:
        return {
            "path": (directory / self.name).relative_to(root).as_posix(),
            "table": self.table,
            "op": self.op,
            "columns": self.columns,
            "rows": self.rows,
            "sha256": self.digest.hexdigest(),
        }


class StagingBatch(LoadBatch):
    """The files of one batch of a :class:`StagingLoader`.

    Each table's upserts go to one file, and its deletes to another; a table's upserts after a
    delete of it start a new file, so applying the files in manifest order keeps every key's
    last operation last.
    """

    def __init__(self, loader: StagingLoader, work: Path, number: int) -> None:
        super().__init__()
        self._loader = loader
        self.work = work
        self.number = number
        self.files: list[_StagedFile] = []
        self._current: dict[tuple[str, str], _StagedFile] = {}

    def _file(self, table: Table, op: str, columns: list[str]) -> _StagedFile:
        staged = self._current.get((table.name, op))
        if staged is None:
            suffix = ".delete.csv" if op == "delete" else ".csv"
            name = f"{len(self.files) + 1:03d}-{table.name}{suffix}"
            try:
                handle = open(self.work / name, "wb")  # noqa: SIM115 - closed at commit
            except OSError as exc:
                raise LoadError(f"cannot write {self.work / name}: {exc.strerror}") from exc
            staged = _StagedFile(table.name, op, columns, name, handle)
            self._write(staged, [columns])
            staged.rows = 0
            self.files.append(staged)
            self._current[(table.name, op)] = staged
            # Later operations of the other kind on this table must come after this file's.
            self._current.pop((table.name, "upsert" if op == "delete" else "delete"), None)
        return staged

    @staticmethod
    def _encode(
        table: str, columns: list[str], encoders: list[Encoder], rows: Sequence[Sequence[Any]]
    ) -> list[tuple[str, ...]]:
        """Encode ``rows`` column by column: one tight loop per column, the common text value
        (no leading backslash) without a function call. Twice as fast as row by row."""
        width = len(encoders)
        for row in rows:
            if len(row) != width:
                raise LoadError(
                    f"target table {table}: a row of {len(row)} values for {width} columns"
                )
        encoded = []
        for name, encode, values in zip(columns, encoders, zip(*rows, strict=True), strict=True):
            try:
                if encode is _text:
                    column = [
                        NULL
                        if v is None
                        else v
                        if v.__class__ is str and v[:1] != "\\"
                        else encode(v)
                        for v in values
                    ]
                else:
                    column = [NULL if v is None else encode(v) for v in values]
            except (TypeError, ValueError, OverflowError) as exc:
                raise LoadError(f"target table {table}, column {name}: {exc}") from None
            encoded.append(column)
        return list(zip(*encoded, strict=True))

    def upsert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append ``rows`` to this batch's upsert file of ``table``."""
        self._open()
        target = self._loader.table(table)
        if not rows:
            return
        columns = [c.name for c in target.columns]
        encoded = self._encode(target.name, columns, self._loader._encoders[target.name], rows)
        staged = self._file(target, "upsert", columns)
        self._write(staged, encoded)
        self._count(self.counts, target.name, len(rows))

    def delete(self, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
        """Append ``keys`` to this batch's delete file of ``table``."""
        self._open()
        target = self._loader.table(table)
        if not keys:
            return
        key = primary_key_indexes(target)
        columns = [target.columns[i].name for i in key]
        encoders = [self._loader._encoders[target.name][i] for i in key]
        encoded = self._encode(target.name, columns, encoders, keys)
        staged = self._file(target, "delete", columns)
        self._write(staged, encoded)
        self._count(self.deleted, target.name, len(keys))

    def _write(self, staged: _StagedFile, encoded: Sequence[Sequence[str]]) -> None:
        try:
            staged.write(encoded)
        except OSError as exc:
            raise LoadError(f"cannot write {self.work / staged.name}: {exc.strerror}") from exc
        staged.rows += len(encoded)

    def set_checkpoint(self, step: str, state: Mapping[str, Any]) -> None:
        """Record ``step``'s state in this batch's manifest line."""
        self._open()
        self._state(step, state)

    def _close(self, sync: bool) -> None:
        for staged in self.files:
            if staged.handle.closed:
                continue
            if sync:
                staged.handle.flush()
                os.fsync(staged.handle.fileno())
            with contextlib.suppress(OSError):
                staged.handle.close()


# -- reading it back ---------------------------------------------------------------------------


def read_staged(
    directory: str | Path, described: Mapping[str, Any], table: Table
) -> list[tuple[Any, ...]]:
    """The rows (or keys) of one file of a manifest entry, typed by ``table``'s columns.

    The file is checked against its manifest entry (SHA-256, row count, header) first.

    Raises:
        LedgerError: the file is missing or differs from what the manifest says.
    """
    path = Path(directory) / described["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LedgerError(f"staging file {path}: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != described["sha256"]:
        raise LedgerError(f"staging file {path}: SHA-256 differs from the manifest's")
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader, [])
    if header != described["columns"]:
        raise LedgerError(f"staging file {path}: header {header} is not {described['columns']}")
    decoders = [_decoder(table.columns[name]) for name in header]
    rows = []
    for line, fields in enumerate(reader, start=2):
        try:
            rows.append(
                tuple(
                    None if (text := decode_field(f)) is None else decode(text)
                    for decode, f in zip(decoders, fields, strict=True)
                )
            )
        except (ValueError, KeyError) as exc:
            raise LedgerError(f"staging file {path}, line {line}: {exc}") from exc
    if len(rows) != described["rows"]:
        raise LedgerError(
            f"staging file {path}: {len(rows)} rows, manifest says {described['rows']}"
        )
    return rows


def apply_staging(directory: str | Path, loader: Loader) -> int:
    """Apply a staging directory's committed batches to another loader, as a vendor would.

    The reference for ``docs/loaders.md``: batches in manifest order, each in one transaction of
    ``loader`` with the batch's checkpoints and :data:`APPLIED_STEP`, so an interrupted apply
    resumes after the last batch it committed.

    Returns:
        The number of batches applied by this call.
    """
    done = (loader.checkpoint(APPLIED_STEP) or {}).get("batch", 0)
    applied = 0
    for entry in read_manifest(directory).entries:
        if entry["batch"] <= done:
            continue
        with loader.transaction() as batch:
            for described in entry["files"]:
                table = loader.table(described["table"])
                rows = read_staged(directory, described, table)
                if described["op"] == "delete":
                    batch.delete(table.name, rows)
                else:
                    batch.upsert(table.name, rows)
            for step, state in entry["checkpoints"].items():
                batch.set_checkpoint(step, state)
            batch.set_checkpoint(APPLIED_STEP, {"batch": entry["batch"]})
        applied += 1
    return applied
