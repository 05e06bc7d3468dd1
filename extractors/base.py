"""What every extractor is: a reader of row batches for a table or query with a declared key.

An extractor kind implements one method, :meth:`Extractor.batches`; the others have defaults
built on it (a kind that can do better, as ``sql`` does by asking the database, overrides them).
Errors are :class:`~continuity.domain.errors.ExtractError` (the source cannot be read) or
:class:`~continuity.domain.errors.ConfigError` (the selection asks for something the kind cannot
do), each with a one-line message naming the source and the table, column, file or line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ClassVar

from continuity.domain.errors import ConfigError, ExtractError

__all__ = ["Extractor", "KeyProblem", "Selection", "one_line"]


def one_line(text: object) -> str:
    """The first non-empty line of ``text`` (driver messages often run to several lines)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True)
class Selection:
    """What to read from one source.

    Attributes:
        table: a table (or, for ``csv``, a file) name; exactly one of ``table`` and ``query``.
        query: a ``SELECT``, read as a subquery (``sql`` only).
        key: the declared, possibly composite, key columns.
        columns: the columns to read, in this order; ``None`` means every column in table
            (or query) order.
        where: a SQL boolean expression pushed down to the database (the wave's filter), with
            ``:name`` bind parameters taken from ``params``. It is trusted project
            configuration, never user data, and is passed to the database as written.
        params: values of the ``:name`` parameters of ``where`` (and of ``query``).
        order_by_key: deliver rows in key order, so that a run can resume after the last
            key it checkpointed. Only rows whose key is complete are delivered then: a row
            with a null key part has no place in the order (databases put NULL first or last
            as they please) and is what :meth:`Extractor.key_problems` reports.
        after: with ``order_by_key``, deliver only rows whose key is greater than this one
            (the resume point).
        keys: only rows whose key (a one-column key, as text) is one of these: a delta wave
            reads the records that changed. An optimisation an extractor may ignore: the reader
            keeps only those rows whatever it is given.
        matching: only rows in which one of these columns holds (as text) one of its values:
            ``((column, values), ...)``, any of them. A delta wave reads the rows referring to
            records resolution moved. An optimisation too: the reader keeps only those rows.
    """

    table: str | None = None
    query: str | None = None
    key: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    where: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    order_by_key: bool = False
    after: tuple[Any, ...] | None = None
    keys: tuple[str, ...] | None = None
    matching: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def __post_init__(self) -> None:
        # Lists from a YAML file are accepted and kept as tuples, so a selection stays immutable.
        object.__setattr__(self, "key", tuple(self.key))
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.after is not None:
            object.__setattr__(self, "after", tuple(self.after))
        if self.keys is not None:
            object.__setattr__(self, "keys", tuple(self.keys))
            if len(self.key) != 1:
                raise ConfigError(f"{self.describe()}: keys needs a one-column key")
        if self.matching is not None:
            object.__setattr__(
                self, "matching", tuple((c, tuple(values)) for c, values in self.matching)
            )
            if self.keys is not None:
                raise ConfigError(f"{self.describe()}: keys and matching are read apart")
        if (self.table is None) == (self.query is None):
            raise ConfigError("a selection names exactly one of a table or a query")
        if self.columns is not None and not self.columns:
            raise ConfigError(f"{self.describe()}: an empty column list")
        if self.order_by_key and not self.key:
            raise ConfigError(f"{self.describe()}: order_by_key needs a declared key")
        if self.after is not None:
            if not self.order_by_key:
                raise ConfigError(f"{self.describe()}: a resume point (after) needs order_by_key")
            if len(self.after) != len(self.key):
                raise ConfigError(
                    f"{self.describe()}: resume point has {len(self.after)} values "
                    f"for a key of {len(self.key)} columns"
                )

    def describe(self) -> str:
        """``"table NOMINAL"`` or ``"query SELECT …"`` (first 40 characters), for messages."""
        if self.table is not None:
            return f"table {self.table}"
        text = " ".join((self.query or "").split())
        return f"query {text[:40]}{'...' if len(text) > 40 else ''}"


@dataclass(frozen=True)
class KeyProblem:
    """A key that does not identify exactly one row: a duplicate, or one with a null part."""

    key: tuple[Any, ...]
    rows: int
    reason: str


def duplicate_key(key_columns: Sequence[str], key: tuple[Any, ...], rows: int) -> KeyProblem:
    """The problem of ``rows`` (> 1) rows sharing one complete key."""
    shown = ", ".join(f"{c}={v}" for c, v in zip(key_columns, key, strict=True))
    return KeyProblem(key, rows, f"duplicate key: {rows} rows share {shown}")


def null_key(key_columns: Sequence[str], key: tuple[Any, ...], rows: int) -> KeyProblem:
    """The problem of ``rows`` rows sharing one key that has a null part."""
    nulls = [c for c, v in zip(key_columns, key, strict=True) if v is None]
    known = [f"{c}={v}" for c, v in zip(key_columns, key, strict=True) if v is not None]
    reason = f"null key part{'s' if len(nulls) > 1 else ''} {', '.join(nulls)}"
    if known:
        reason += f" ({', '.join(known)})"
    if rows > 1:
        reason += f"; {rows} rows"
    return KeyProblem(key, rows, reason)


class Extractor(ABC):
    """Reads one source (a database, a directory of files …) as batches of row tuples.

    Subclasses set :attr:`kind` and implement :meth:`batches`. The constructor must not touch
    the source: :meth:`check` does, so that a project can be loaded while a source is down.

    Args:
        name: the source's name in the project file (``"legacy"``), used in messages.
        location: a URL or a path, as the kind understands it.
        options: kind-specific options from the project file.
    """

    #: The name projects use for this kind (``"sql"``, ``"csv"``); for a third-party kind, the
    #: name of its entry point in the ``continuity.extractors`` group.
    kind: ClassVar[str]
    #: Option names this kind accepts; anything else in ``options`` is a ConfigError.
    #: ``None`` accepts any option (the kind checks them itself).
    option_names: ClassVar[frozenset[str] | None] = None

    def __init__(self, name: str, location: str, options: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.location = location
        self.options: dict[str, Any] = dict(options or {})
        if self.option_names is not None:
            unknown = sorted(set(self.options) - self.option_names)
            if unknown:
                accepted = ", ".join(sorted(self.option_names)) or "none"
                raise ConfigError(
                    f"source {name}: unknown {self.kind} option {', '.join(unknown)} "
                    f"(accepted: {accepted})"
                )

    def error(self, message: str) -> ExtractError:
        """An ExtractError about this source, on one line."""
        return ExtractError(one_line(f"source {self.name}: {message}"))

    def config_error(self, message: str) -> ConfigError:
        """A ConfigError about this source, on one line."""
        return ConfigError(one_line(f"source {self.name}: {message}"))

    def check(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Fail with an ExtractError unless the source can be reached and read.

        The default does nothing: a kind that can look cheaply should override it.
        """

    def columns(self, selection: Selection) -> list[str]:
        """The columns :meth:`batches` delivers for ``selection``, in order.

        The default returns ``selection.columns``; a kind whose sources describe themselves
        (tables, files with a header) overrides it, and must then raise an ExtractError naming
        an unknown table or column.
        """
        if selection.columns is None:
            raise self.config_error(
                f"{selection.describe()}: the {self.kind} extractor needs the columns listed"
            )
        return list(selection.columns)

    @abstractmethod
    def batches(self, selection: Selection, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream the selected rows as lists of at most ``size`` tuples.

        Each tuple holds the values of :meth:`columns` in that order, as the source gives them.
        Implementations must stream (a server-side cursor, a file read line by line): the whole
        table is never held in memory. Empty batches are not yielded.
        """

    def key_problems(self, selection: Selection) -> Iterator[KeyProblem]:
        """Keys with a null part, then keys shared by more than one row, in ``selection``.

        ``order_by_key`` and ``after`` are ignored: a problem belongs to the whole population.
        The default streams the key columns through :meth:`batches` and counts keys in a dict,
        so its memory grows with the number of keys; database kinds override it with a query.
        """
        key = require_key(self, selection)
        counts: dict[tuple[Any, ...], int] = {}
        keys_only = replace(selection, columns=key, order_by_key=False, after=None)
        for batch in self.batches(keys_only):
            for row in batch:
                counts[row] = counts.get(row, 0) + 1
        yield from problems_from_counts(key, counts.items())

    def keys_equal_as_text(self, selection: Selection) -> bool:
        """Whether the source holds two rows' keys for one key exactly when their texts
        (``key_text``) are one: then a reader that met every key's text once knows that
        :meth:`key_problems` would find nothing. False (the default) where unsure."""
        return False

    def content_digest(self, selection: Selection) -> str | None:
        """A digest that changes whenever what :meth:`batches` delivers for ``selection`` may,
        if one costs far less than reading the rows (a file's bytes); None where it does not
        (a database table): then nothing read from it is cached."""
        return None

    def count(self, selection: Selection) -> int:
        """How many rows :meth:`batches` would deliver for ``selection``."""
        return sum(len(batch) for batch in self.batches(selection))

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release connections and files; the default has none."""

    def __enter__(self) -> Extractor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.kind})>"


def require_key(extractor: Extractor, selection: Selection) -> tuple[str, ...]:
    """The selection's key, or a ConfigError when none was declared."""
    if not selection.key:
        raise extractor.config_error(f"{selection.describe()}: no key declared")
    return selection.key


def problems_from_counts(
    key_columns: Sequence[str], counts: Iterable[tuple[tuple[Any, ...], int]]
) -> Iterator[KeyProblem]:
    """Null-key problems first, then duplicates, from ``(key, rows)`` pairs."""
    duplicates: list[KeyProblem] = []
    for key, rows in counts:
        if any(v is None for v in key):
            yield null_key(key_columns, key, rows)
        elif rows > 1:
            duplicates.append(duplicate_key(key_columns, key, rows))
    yield from duplicates
