"""The policing expectation library: great-expectations custom expectations for police records.

Each is a proper GX expectation (registered under its snake-case name, usable in any suite) made
the way GX's documentation recommends: a built-in expectation with policing defaults where one
fits (postcodes and crime references are regular expressions, offence codes and coded fields are
value sets read from versioned code lists), and a map metric with a SQL and a pandas
implementation where none does (plausible dates of birth, warning markers). Two need other tables
of the same database (no dangling links, a victim for offences that need one) and so run on SQL
sources only.

This module subclasses GX classes and so imports great-expectations when imported: only
:mod:`validators.gx` imports it, lazily. Row-level (map) expectations report the keys of their
unexpected rows (``unexpected_index_column_names``), which is what lets a wave quarantine exactly
those rows.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import PandasExecutionEngine, SqlAlchemyExecutionEngine
from great_expectations.expectations import (
    ExpectColumnValuesToBeInSet,
    ExpectColumnValuesToMatchRegex,
)
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    MulticolumnMapExpectation,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    MulticolumnMapMetricProvider,
)
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (  # noqa: E501
    multicolumn_condition_partial,
)

#: A UK postcode as Royal Mail writes it: outward code, one space, inward code, upper case.
#: Written with POSIX classes only, so SQLite, PostgreSQL and MariaDB read it alike.
UK_POSTCODE = (
    r"^(?:GIR 0AA|[A-PR-UWYZ][A-HK-Y]?[0-9][0-9A-HJKPSTUW]? [0-9][ABD-HJLNP-UW-Z][ABD-HJLNP-UW-Z])$"
)

#: The estate's crime references: PoliceWorks' ``CRI/yy/nnnnnnnn`` and the legacy system's
#: ``dd/nnnnnnnn/yy`` (division, sequence, year). A force sets its own with ``regex``.
CRIME_REFERENCE = r"^(?:CRI/[0-9][0-9]/[0-9]{8}|[0-9][0-9]/[0-9]{8}/[0-9][0-9])$"

_ENGINE_KEYS = ("batch_id", "table", "row_condition", "condition_parser")


def read_code_list(
    path: str | Path, column: str, where: str | None = None, encoding: str = "utf-8"
) -> list[str]:
    """The values of ``column`` in a CSV code list (rows whose ``where`` column is true only).

    A code list is versioned by its file (``home_office_offence_codes_v1.csv``): a suite names
    the version it checks against.
    """
    with open(path, newline="", encoding=encoding) as handle:
        reader = csv.DictReader(handle)
        names = reader.fieldnames or []
        for wanted in (column, where):
            if wanted is not None and wanted not in names:
                raise ValueError(f"{path}: no column {wanted!r} (columns: {', '.join(names)})")
        return sorted(
            {
                row[column]
                for row in reader
                if row[column] and (where is None or row[where].strip().lower() in _TRUE)
            }
        )


_TRUE = {"1", "true", "t", "y", "yes"}


def _flag_set(value: Any) -> bool:
    """A flag as files and frames carry it: True, 1, or text such as "Y" or "true" (never a
    non-empty string that merely says no, as Python's bool() would have it)."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


class ExpectColumnValuesToBeUkPostcodes(ExpectColumnValuesToMatchRegex):
    """Expect column values to be UK postcodes in Royal Mail's form (``M3 7BE``, ``BL2 8NL``).

    Missing values are not judged (``expect_column_values_to_not_be_null`` says they must exist).
    """

    regex: str = UK_POSTCODE


class ExpectColumnValuesToBeCrimeReferences(ExpectColumnValuesToMatchRegex):
    """Expect column values to be crime references of the force's format (``regex``)."""

    regex: str = CRIME_REFERENCE


class _CodeListExpectation(ExpectColumnValuesToBeInSet):
    """A value set read from a versioned CSV code list when the suite does not give one."""

    code_list: str | None = None
    code_column: str = "code"
    excluded: list[str] = pydantic.Field(default_factory=list)

    code_column_of: ClassVar[str] = "code"

    def __init__(self, **data: Any) -> None:
        if "value_set" not in data and data.get("code_list"):
            column = data.get("code_column", type(self).code_column_of)
            codes = read_code_list(data["code_list"], column)
            data["value_set"] = sorted({*codes, *data.get("excluded", [])})
        super().__init__(**data)


class ExpectColumnValuesToBeHomeOfficeOffenceCodes(_CodeListExpectation):
    """Expect column values to be Home Office offence codes of a versioned code list.

    ``code_list`` is a CSV file (a column ``code``, or the one named by ``code_column``).
    """


class ExpectColumnValuesToBeInCrosswalk(_CodeListExpectation):
    """Expect every value of a coded field to be mapped by its crosswalk, or explicitly excluded.

    ``code_list`` is the crosswalk CSV the mapping uses, ``code_column`` its source-side column
    (``from``), ``excluded`` the values the mapping excludes on purpose. A value outside both is
    one the migration would quarantine.
    """

    code_column: str = "from"
    code_column_of: ClassVar[str] = "from"


# --- plausible dates of birth ------------------------------------------------------------------


class PlausibleDateOfBirth(MulticolumnMapMetricProvider):
    """A date of birth is on or after ``earliest`` and not after ``latest``; an estimated flag
    (the optional second column) is not set on a record without a date of birth."""

    condition_metric_name = "multicolumn_values.plausible_date_of_birth"
    condition_domain_keys = (*_ENGINE_KEYS, "column_list", "ignore_row_if")
    condition_value_keys = ("earliest", "latest")

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list: pd.DataFrame, earliest: str, latest: str, **_: Any) -> Any:
        dob = pd.to_datetime(column_list.iloc[:, 0], errors="coerce")
        missing = column_list.iloc[:, 0].isna()
        in_range = (dob >= pd.Timestamp(earliest)) & (dob <= pd.Timestamp(latest))
        ok = missing | in_range
        if column_list.shape[1] > 1:
            flag = column_list.iloc[:, 1].map(_flag_set)
            ok &= ~(missing & flag)
        return ok

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_list: list[Any], earliest: str, latest: str, **_: Any) -> Any:
        dob = column_list[0]
        first, last = dt.date.fromisoformat(earliest), dt.date.fromisoformat(latest)
        ok = sa.or_(
            dob.is_(None),
            sa.and_(dob >= sa.literal(first, sa.Date), dob <= sa.literal(last, sa.Date)),
        )
        if len(column_list) > 1:
            ok = sa.and_(ok, sa.or_(dob.is_not(None), column_list[1].is_not(True)))
        return ok


class ExpectDatesOfBirthToBePlausible(MulticolumnMapExpectation):
    """Expect dates of birth not in the future, not before 1900, and an estimated flag only on
    a record that has a date of birth.

    ``column_list`` is ``[dob]`` or ``[dob, estimated_flag]``; ``latest`` defaults to today.
    """

    earliest: str = "1900-01-01"
    latest: str = ""
    ignore_row_if: str = "never"  # type: ignore[assignment]

    map_metric: ClassVar[str] = "multicolumn_values.plausible_date_of_birth"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly", "earliest", "latest")
    args_keys: ClassVar[tuple[str, ...]] = ("column_list",)

    def __init__(self, **data: Any) -> None:
        data.setdefault("latest", dt.date.today().isoformat())
        super().__init__(**data)


# --- warning markers -------------------------------------------------------------------------


class WarningMarkerValid(MulticolumnMapMetricProvider):
    """A warning marker's code is in the allowed list and its dates are in order:
    start <= review <= end (each pair judged where both are present)."""

    condition_metric_name = "multicolumn_values.valid_warning_marker"
    condition_domain_keys = (*_ENGINE_KEYS, "column_list", "ignore_row_if")
    condition_value_keys = ("codes",)

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_list: pd.DataFrame, codes: list[str], **_: Any) -> Any:
        code = column_list.iloc[:, 0]
        ok = code.isin(codes)
        dates = [pd.to_datetime(column_list.iloc[:, i], errors="coerce") for i in (1, 2, 3)]
        for a, b in ((0, 1), (1, 2), (0, 2)):
            ok &= dates[a].isna() | dates[b].isna() | (dates[a] <= dates[b])
        return ok

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column_list: list[Any], codes: list[str], **_: Any) -> Any:
        code, start, review, end = column_list
        # a NULL code must fail, not vanish: NULL IN (...) is NULL, neither true nor false
        parts = [code.is_not(None), code.in_(codes)]
        for a, b in ((start, review), (review, end), (start, end)):
            parts.append(sa.or_(a.is_(None), b.is_(None), a <= b))
        return sa.and_(*parts)


class ExpectWarningMarkersToBeValid(MulticolumnMapExpectation):
    """Expect warning markers whose code is in ``codes`` and whose dates run
    start <= review <= end. ``column_list`` is ``[code, start, review, end]``."""

    codes: list[str]
    ignore_row_if: str = "never"  # type: ignore[assignment]

    map_metric: ClassVar[str] = "multicolumn_values.valid_warning_marker"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly", "codes")
    args_keys: ClassVar[tuple[str, ...]] = ("column_list", "codes")


# --- links: references that resolve, victims that exist ---------------------------------------


class ReferencesExistingRow(ColumnMapMetricProvider):
    """The value names a row of another table of the same database (or is missing)."""

    condition_metric_name = "column_values.reference_existing_row"
    condition_value_keys = ("referenced_table", "referenced_column")

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(
        cls, column: Any, referenced_table: str, referenced_column: str, **_: Any
    ) -> Any:
        if _a_query(_.get("_table")) and _leads_an_index(
            _["_sqlalchemy_engine"], referenced_table, referenced_column
        ):
            # Some rows (a delta's): each value looked up by the referenced table's index,
            # not compared with a list of all its values that each of GX's queries would build
            # again. (Renamed, so that the unqualified outer column cannot name it.)
            values: Any = (
                sa.select(sa.column(referenced_column).label("continuity_referenced"))
                .select_from(sa.table(referenced_table))
                .subquery("continuity_references")
            )
            return sa.exists().where(values.c.continuity_referenced == column)
        referenced: Any = sa.column(referenced_column)
        # one NULL among the referenced values would make every unmatched IN NULL (not false)
        target: Any = sa.select(referenced).select_from(sa.table(referenced_table))
        return column.in_(target.where(referenced.is_not(None)))


class ExpectColumnValuesToReferenceExistingRows(ColumnMapExpectation):
    """Expect no dangling links: every value names a row of ``referenced_table`` (its
    ``referenced_column``) in the same database. SQL sources only."""

    referenced_table: str
    referenced_column: str

    #: a row's verdict changes with another table's rows (see validators.runner._judges_rows)
    judges_other_rows: ClassVar[bool] = True
    #: ...only with the row itself and the rows of ``referenced_table`` whose
    #: ``referenced_column`` holds its ``column``'s value (see validators.runner.Data.reaching)
    reaches: ClassVar[tuple[str, str, str]] = ("column", "referenced_table", "referenced_column")
    map_metric: ClassVar[str] = "column_values.reference_existing_row"
    success_keys: ClassVar[tuple[str, ...]] = ("mostly", "referenced_table", "referenced_column")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "referenced_table", "referenced_column")


def _a_query(selectable: Any) -> bool:
    """Whether GX's batch is a query's rows (a delta's, a filter's), not a whole table: over
    a whole table a look-up per row costs more than one list of the referenced values."""
    return isinstance(getattr(selectable, "element", None), sa.TextualSelect)


#: (database URL, table, column) -> whether the column leads an index (see _leads_an_index)
_LEADING: dict[tuple[str, str, str], bool] = {}


def _leads_an_index(engine: Any, table: str, column: str) -> bool:
    """Whether ``column`` is the first column of ``table``'s primary key or of an index (in
    the database ``engine`` reads); asked once per database and run."""
    at = (str(engine.url), table, column)
    if at not in _LEADING:
        _LEADING[at] = _index_led_by(engine, table, column)
    return _LEADING[at]


def _index_led_by(engine: Any, table: str, column: str) -> bool:
    try:
        found = sa.inspect(engine)
        leading = [found.get_pk_constraint(table).get("constrained_columns") or []]
        leading += [ix.get("column_names") or [] for ix in found.get_indexes(table)]
    except sa.exc.SQLAlchemyError:  # (no such table: the query says so)
        return False
    return any(columns and str(columns[0]).lower() == column.lower() for columns in leading)


class HasVictim(MulticolumnMapMetricProvider):
    """An event whose offence needs a victim has a link with a victim role."""

    condition_metric_name = "multicolumn_values.offence_has_victim"
    condition_domain_keys = (*_ENGINE_KEYS, "column_list", "ignore_row_if")
    condition_value_keys = (
        "offence_codes",
        "link_table",
        "link_column",
        "role_column",
        "victim_roles",
    )

    @multicolumn_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(
        cls,
        column_list: list[Any],
        offence_codes: list[str],
        link_table: str,
        link_column: str,
        role_column: str,
        victim_roles: list[str],
        **_: Any,
    ) -> Any:
        key, offence = column_list
        victims: Any
        if _leads_an_index(_["_sqlalchemy_engine"], link_table, link_column):
            # A victim link of this row's event, looked up by the link table's index (an IN
            # list of every victim link would be built again by each of GX's queries). The
            # link table's columns are renamed so that the unqualified outer key cannot name
            # them: GX gives the row's table no name that its queries keep.
            links: Any = (
                sa.select(
                    sa.column(link_column).label("continuity_link"),
                    sa.column(role_column).label("continuity_role"),
                )
                .select_from(sa.table(link_table))
                .subquery("continuity_victims")
            )
            victims = sa.exists().where(
                links.c.continuity_link == key, links.c.continuity_role.in_(victim_roles)
            )
        else:  # (a look-up per row would read the whole link table each time)
            link: Any = sa.column(link_column)
            victims = key.in_(
                sa.select(link)
                .select_from(sa.table(link_table))
                .where(sa.column(role_column).in_(victim_roles), link.is_not(None))
            )
        # every branch is true or false, never NULL (a NULL condition is neither expected nor
        # unexpected to GX: the row would vanish from the count)
        return sa.or_(
            offence.is_(None),
            offence.not_in(offence_codes),
            sa.and_(key.is_not(None), victims),
        )


class ExpectOffencesNeedingAVictimToHaveOne(MulticolumnMapExpectation):
    """Expect every event whose offence needs a victim (``offence_codes``, or the rows of
    ``code_list`` whose ``needs_victim`` column is true) to have a victim in ``link_table``.

    ``column_list`` is ``[event key, offence code]``; the link table is in the same database
    (its ``link_column`` names the event, ``role_column`` holds one of ``victim_roles``). SQL
    sources only.
    """

    offence_codes: list[str]
    link_table: str
    link_column: str
    role_column: str
    victim_roles: list[str]
    code_list: str | None = None
    code_column: str = "code"
    judges_other_rows: ClassVar[bool] = True
    ignore_row_if: str = "never"  # type: ignore[assignment]

    map_metric: ClassVar[str] = "multicolumn_values.offence_has_victim"
    success_keys: ClassVar[tuple[str, ...]] = (
        "mostly",
        "offence_codes",
        "link_table",
        "link_column",
        "role_column",
        "victim_roles",
    )
    args_keys: ClassVar[tuple[str, ...]] = ("column_list",)

    def __init__(self, **data: Any) -> None:
        if "offence_codes" not in data and data.get("code_list"):
            column = data.get("code_column", "code")
            data["offence_codes"] = read_code_list(data["code_list"], column, "needs_victim")
        super().__init__(**data)


#: Every expectation of the library, by the name a suite uses.
LIBRARY: dict[str, type[Any]] = {
    "expect_column_values_to_be_uk_postcodes": ExpectColumnValuesToBeUkPostcodes,
    "expect_column_values_to_be_crime_references": ExpectColumnValuesToBeCrimeReferences,
    "expect_column_values_to_be_home_office_offence_codes": (
        ExpectColumnValuesToBeHomeOfficeOffenceCodes
    ),
    "expect_column_values_to_be_in_crosswalk": ExpectColumnValuesToBeInCrosswalk,
    "expect_dates_of_birth_to_be_plausible": ExpectDatesOfBirthToBePlausible,
    "expect_warning_markers_to_be_valid": ExpectWarningMarkersToBeValid,
    "expect_column_values_to_reference_existing_rows": ExpectColumnValuesToReferenceExistingRows,
    "expect_offences_needing_a_victim_to_have_one": ExpectOffencesNeedingAVictimToHaveOne,
}
