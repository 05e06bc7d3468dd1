"""What every loader is: a target written in atomic batches, each carrying its checkpoints.

A wave's runner maps source records to target rows (their keys are UUIDv5 of the source identity,
:func:`continuity.domain.keys.target_key`) and hands them to a :class:`Loader` one batch at a
time. A batch's rows and the checkpoints saying how far the wave got are committed together or not
at all, so a run killed at any moment resumes from its last checkpoint to the same target as an
uninterrupted run, and re-running a finished wave changes nothing (upserts are idempotent).

Third-party loaders subclass :class:`Loader` and :class:`LoadBatch` and register the subclass in
the entry-point group ``continuity.loaders`` (see ``docs/loaders.md``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from sqlalchemy import MetaData, Table

from continuity.domain.errors import ConfigError, ContinuityError

#: Longest checkpoint step name (the SQL loader keeps steps in a ``VARCHAR(200)`` key).
MAX_STEP_LENGTH = 200


class LoadError(ContinuityError):
    """The target refused a batch (a constraint, a value that does not fit, a full disk)."""


class Loader(ABC):
    """A target that takes rows in atomic batches and remembers checkpoints with them.

    Subclasses set :attr:`kind` and implement :meth:`transaction` and :meth:`checkpoints`; the
    other methods have sensible defaults. The usual life of a loader::

        loader.check()                       # reachable and writable
        loader.prepare()                     # the loader's own bookkeeping
        start = loader.checkpoint("crimes")  # None on a first run
        with loader.transaction() as batch:  # one atomic unit
            batch.upsert("person", rows)
            batch.set_checkpoint("crimes", {"after": last_key})
        loader.close()
    """

    #: The name a project file uses for this loader (``loader: sql``).
    kind: ClassVar[str]
    #: Options this loader understands, with their defaults; any other option is a ConfigError.
    option_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self, location: str, metadata: MetaData, options: Mapping[str, Any] | None = None
    ) -> None:
        """Args:
        location: where the rows go: a SQLAlchemy URL (``sql``) or a directory (``staging``).
        metadata: the target tables (SQLAlchemy Core); rows are tuples in their column order.
        options: loader-specific settings (:attr:`option_defaults` lists them).
        """
        self.location = location
        self.metadata = metadata
        self.options = self._options(options or {})

    def _options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise ConfigError(
                f"{self.kind} loader: unknown option {', '.join(unknown)} (known: {known})"
            )
        merged = dict(self.option_defaults)
        for name, value in given.items():
            default = self.option_defaults[name]
            if default is not None and not isinstance(value, type(default)):
                raise ConfigError(
                    f"{self.kind} loader: option {name} must be a {type(default).__name__}, "
                    f"not {value!r}"
                )
            merged[name] = value
        return merged

    def table(self, name: str) -> Table:
        """The target table called ``name``; an unknown name is a one-line ConfigError."""
        try:
            return self.metadata.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.metadata.tables))
            raise ConfigError(f"no target table {name!r} (tables: {known})") from None

    @property
    def readers_wait_for_writers(self) -> bool:
        """Whether a reader of the target waits while a transaction writes it (then nothing
        reads it beside the run's writes)."""
        return False

    def check(self) -> None:  # noqa: B027 - optional: a default that checks nothing
        """Raise a one-line LedgerError or ConfigError unless the target is reachable and
        writable."""

    def prepare(self) -> None:  # noqa: B027 - optional: not every loader keeps bookkeeping
        """Create the loader's own bookkeeping (never the target's tables)."""

    def checkpoint(self, step: str) -> dict[str, Any] | None:
        """The last committed state of ``step``, or None if it was never checkpointed."""
        return self.checkpoints().get(step)

    @abstractmethod
    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """Every step's last committed state."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[LoadBatch]:
        """One atomic unit: its rows and checkpoints are committed together or not at all.

        Leaving the block normally commits; an exception rolls everything back and propagates.
        """

    def close(self) -> None:  # noqa: B027 - optional: not every loader holds resources
        """Release connections and files; anything not committed is lost."""

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoadBatch(ABC):
    """The rows and checkpoints of one transaction.

    Write parents before children (``metadata.sorted_tables`` order) and delete children first:
    targets that enforce foreign keys check them statement by statement.
    """

    def __init__(self) -> None:
        #: Rows upserted per table in this batch.
        self.counts: dict[str, int] = {}
        #: Keys deleted per table in this batch.
        self.deleted: dict[str, int] = {}
        #: Checkpoint states set in this batch (committed with its rows).
        self.states: dict[str, dict[str, Any]] = {}
        self._finished = False

    @abstractmethod
    def upsert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in the table's column order), or replace the row with the same
        primary key. Running the same batch again leaves the same target; within one batch a
        later row with the same key replaces an earlier one.
        """

    @abstractmethod
    def delete(self, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
        """Delete rows by primary key (tuples in the key's column order); absent keys are fine."""

    @abstractmethod
    def set_checkpoint(self, step: str, state: Mapping[str, Any]) -> None:
        """Record ``state`` (a JSON-able mapping) as ``step``'s checkpoint, committed with the
        rows."""

    def _open(self) -> None:
        if self._finished:
            raise RuntimeError("this batch's transaction has ended")

    def _count(self, counter: dict[str, int], table: str, n: int) -> None:
        counter[table] = counter.get(table, 0) + n

    def _state(self, step: str, state: Mapping[str, Any]) -> str:
        """Validate a checkpoint and return its canonical JSON text."""
        if not isinstance(step, str) or not step or len(step) > MAX_STEP_LENGTH:
            raise ConfigError(
                f"checkpoint step must be a non-empty name of at most {MAX_STEP_LENGTH} "
                f"characters, not {step!r}"
            )
        try:
            text = json.dumps(dict(state), sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise LoadError(f"checkpoint {step!r}: state is not JSON ({exc})") from exc
        self.states[step] = json.loads(text)
        return text


def primary_key_indexes(table: Table) -> list[int]:
    """Positions of ``table``'s primary-key columns in its column order."""
    names = [c.name for c in table.columns]
    return [names.index(c.name) for c in table.primary_key.columns]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers add hints and context lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
