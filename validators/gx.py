"""The one module that calls great-expectations (GX Core 1.x): an upgrade touches this file.

GX is imported lazily (``import great_expectations`` costs seconds: only commands that validate
pay it), with ``GX_ANALYTICS_ENABLED=false`` set first, into an ephemeral context: no project
folder, no network, no progress bars of its own. Data comes from any SQLAlchemy URL (a table of
SQLite, PostgreSQL or MariaDB, read by the database) or from in-flight batches of rows (a pandas
data frame). The policing library (:mod:`validators.expectations`) is registered on first use.

Nothing GX returns leaves this module: :meth:`GX.validate` answers with a plain
:class:`validators.model.Outcome`.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from continuity.domain.errors import driver_message
from validators.model import Outcome

#: Result formats a suite may name (GX's).
RESULT_FORMATS = ("BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE")

#: GX's partial_unexpected_count when every unexpected row's key is wanted.
EVERY_ROW = 2**31 - 1


def _gx() -> Any:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    # GX's own imports use modules Python deprecates (sre_constants ...): its noise, not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations

        import validators.expectations  # noqa: F401  (registers the policing library)

    return great_expectations


def expectation_class(name: str) -> type[Any]:
    """The GX expectation class called ``name`` (snake case, as GX names them)."""
    _gx()
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(name)
    except ExpectationNotFoundError:
        raise KeyError(name) from None


def is_row_level(cls: type[Any]) -> bool:
    """Whether an expectation judges rows one by one (a map expectation, whose unexpected rows
    have keys) rather than the table as a whole."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    return issubclass(
        cls, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    )


def build(name: str, arguments: Mapping[str, Any]) -> Any:
    """An expectation of class ``name`` with ``arguments``; a bad argument raises ValueError
    with GX's own one-line reason."""
    cls = expectation_class(name)
    try:
        return cls(**arguments)
    except Exception as exc:  # pydantic's ValidationError, or a code list that cannot be read
        raise ValueError(first_problem(exc)) from exc


def first_problem(exc: Exception) -> str:
    """The first line of what went wrong (pydantic: the first field and its message)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            first = found[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return driver_message(exc)


class GX:
    """An ephemeral GX context with the data sources a validation reads."""

    def __init__(self) -> None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        self._sources: dict[str, Any] = {}
        self._frames: Any = None
        self._assets = 0

    def _source(self, url: str) -> Any:
        found = self._sources.get(url)
        if found is None:
            name = f"source{len(self._sources)}"
            sources = self.context.data_sources
            dialect = url.split(":", 1)[0].split("+", 1)[0]
            with warnings.catch_warnings():
                # GX suggests its dialect-specific sources; the generic one is what reads any
                # SQLAlchemy URL (MariaDB's included), so its advice is not taken everywhere.
                warnings.simplefilter("ignore")
                if dialect == "sqlite":
                    found = sources.add_sqlite(name=name, connection_string=url)
                elif dialect == "postgresql":
                    found = sources.add_postgres(name=name, connection_string=url)
                else:
                    found = sources.add_sql(name=name, connection_string=url)
            self._sources[url] = found
        return found

    def close(self) -> None:
        """Close the connections GX opened (it keeps an engine per data source)."""
        for source in self._sources.values():
            execution = getattr(source, "_execution_engine", None)
            if execution is not None:
                connection = getattr(execution, "_connection", None)
                if connection is not None:  # kept open between queries on some dialects
                    connection.close()
                execution.close()
            engine = getattr(source, "_engine", None)
            if engine is not None:
                engine.dispose()
        self._sources.clear()

    def __enter__(self) -> GX:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _asset_name(self) -> str:
        self._assets += 1
        return f"asset{self._assets}"

    def table(self, url: str, table: str, schema: str | None = None) -> Any:
        """A batch of a whole table of the database at ``url`` (read by the database)."""
        extra = {"schema_name": schema} if schema else {}
        with warnings.catch_warnings():
            # GX would have the schema in the connection; a source names it as an option
            warnings.simplefilter("ignore", DeprecationWarning)
            asset = self._source(url).add_table_asset(
                name=self._asset_name(), table_name=table, **extra
            )
        return asset.add_batch_definition_whole_table("whole").get_batch()

    def query(self, url: str, query: str) -> Any:
        """A batch of a query's rows (a wave's filter on a table, say)."""
        asset = self._source(url).add_query_asset(name=self._asset_name(), query=query)
        return asset.add_batch_definition_whole_table("whole").get_batch()

    def frame(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
        """A batch of in-flight rows (a pandas data frame)."""
        import pandas as pd

        if self._frames is None:
            source = self.context.data_sources.add_pandas("in_flight")
            self._frames = source.add_dataframe_asset("rows").add_batch_definition_whole_dataframe(
                "batch"
            )
        frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
        return self._frames.get_batch(batch_parameters={"dataframe": frame})

    def validate(
        self, batch: Any, expectation: Any, result_format: str, key: Sequence[str]
    ) -> Outcome:
        """Run one expectation on a batch; the keys of its unexpected rows come back when the
        result format is COMPLETE and the expectation is row level."""
        fmt: dict[str, Any] = {"result_format": result_format}
        row_level = is_row_level(type(expectation))
        if row_level and key and result_format == "COMPLETE":
            fmt["unexpected_index_column_names"] = list(key)
            fmt["return_unexpected_index_query"] = False
            # GX truncates a SQL table's unexpected rows at partial_unexpected_count (20 by
            # default): quarantine and the ledger need every one.
            fmt["partial_unexpected_count"] = EVERY_ROW
        try:
            with warnings.catch_warnings():
                # pandas and SQLAlchemy advice to GX's authors, not to a suite's
                warnings.simplefilter("ignore")
                found = batch.validate(expectation, result_format=fmt)
        except Exception as exc:  # GX raises for a batch it cannot read at all
            return Outcome(False, error=first_problem(exc))
        info = found.exception_info or {}
        if info.get("raised_exception"):
            return Outcome(False, error=_one_line(info.get("exception_message")))
        for value in info.values():  # per-metric exceptions, keyed by metric id
            if isinstance(value, dict) and value.get("raised_exception"):
                return Outcome(False, error=_one_line(value.get("exception_message")))
        result = dict(found.result or {})
        keys: list[tuple[Any, ...]] | None = None
        if "unexpected_index_column_names" in fmt:
            keys = [
                tuple(_plain(entry.get(k)) for k in key)
                for entry in result.get("unexpected_index_list") or []
                if isinstance(entry, dict)
            ]
        observed = result.get("observed_value")
        return Outcome(
            bool(found.success),
            element_count=result.get("element_count"),
            unexpected_count=result.get("unexpected_count"),
            missing_count=result.get("missing_count"),
            observed=_plain(observed),
            examples=tuple(_plain(v) for v in (result.get("partial_unexpected_list") or [])[:10]),
            keys=tuple(keys) if keys is not None else None,
        )


def _one_line(message: Any) -> str:
    text = str(message or "GX could not compute the expectation").strip()
    return (text.splitlines() or [text])[0][:300]


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as the Python value a database driver would have given; GX's
    own text types as text, in lists and dicts too (an outcome crosses processes: it holds
    nothing that needs GX to be read)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
