"""Search: find a person in every source system and in the target, however they were spelled.

An officer who cannot find a person because the name was typed differently is the failure this
exists for. ``continuity search "Mohammed Khan" --dob 1984-02-01`` looks in an index of phonetic
keys kept in the work store (the project's ``ledger`` database) and ranks every candidate record,
from the legacy system, PoliceWorks and the target alike, saying why it matched and, for a source
record, where it went in the target or that it did not arrive.

**What is indexed.** Every source record of the person mapping, read as person resolution reads
it (:func:`continuity.waves.person_records`), and every person of the target with all of its
names (``person_name``: primary, variant and alias) and dates of birth (``person_dob``). A target
without person tables (no wave run yet) is skipped: the sources are indexed alone.

**Keys.** Each name a record holds gives a handful of key texts, from
:mod:`continuity.domain.names` only (the one cleansing every stage shares), each stored as a
63-bit hash with the record's year of birth (0 when unknown):

- ``n``: NYSIIS of the forename and of the surname (spelling that sounds alike: Hussain, Hussein);
- ``k``: the forename's nickname group and the surname's NYSIIS (Bill and William, Mohammed and
  Muhammad, Aoife and Eva);
- ``x``: the forename's first letter and the surname's Soundex (a forename spelled differently
  but starting alike: Siobhan and Shivaun; Chakraborty and Chakravarty);
- ``i``: the forename's NYSIIS and the surname's initial (a surname spelled differently or cut
  short: Nowak and Novak, Okafor and Okafo, which no phonetic key joins);
- ``s``: the surname's NYSIIS alone (a search by surname, or a record with no forename).

``n`` and ``k`` are also made for each part of a double-barrelled surname, so Smith-Jones meets
Jones. A query makes the same keys for its name and for the name turned round (``KHAN
Mohammed``). Metaphone is not keyed: every spelling variant the estate plants is already
joined by these keys, and every family costs a row per name (it still scores, inside
``compare_names``).

**Bounded reads.** A key held by more than :data:`KEY_CAP` records (:data:`BROAD_KEY_CAP` for
the broad ``x``, ``i`` and ``s``, whose records mostly bear other names) is not read whole: with
a date of birth only its records born within a year either side (or of unknown birth) are read,
and without one a broad key is left out while an exact-sounding key (``n``, ``k``) is read in
index order up to the cap and the answer says it is incomplete. With a date of birth, records
born further away are read only when fewer than the limit agree better than they could. A
search therefore reads a few thousand index rows at most, whatever the size of the estate.

**Ranking.** Each candidate is scored with :func:`~continuity.domain.names.compare_names` on its
best-matching name, and, when a date of birth is given, with how the dates agree: the same day,
day and month swapped, the same year or a year apart where either date is an estimate (or a 1
January, how forces record one), unknown, or different. A name found only as an alias scores a
little lower than the same name as the primary. Ties are broken by system and key, so the same
index gives the same order every time; a record with the exact name and date of birth always
comes first. The best candidates' target persons are then looked up and each person's other
records that matched are moved up beside its best one: the migration already decided they are
one human, and among namesakes an officer wants the person, not a scatter of records.

**Where it went** is read from the target when the answer is shown (the crosswalk, the
quarantine and the exclusions, the target person's names), never from the index: it is as
current as the target itself, after a later wave or a rollback, and costs a few key reads.

**Rebuilding.** Each build writes new tables (``search_record_N``, ``search_key_N``) and only
then, in one transaction, makes them current in ``search_index``: a build that dies half way
leaves the previous index in use and its own tables are dropped by the next build. Nothing of
the index is held in memory while it is built.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    inspect,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from continuity.domain.connect import MYSQL_FAMILY, engine_for, redact
from continuity.domain.errors import ContinuityError, LedgerError, driver_message
from continuity.domain.names import (
    JARO_WINKLER,
    SWAPPED,
    compare_names,
    compare_part,
    compare_surnames,
    name_parts,
    nicknames,
    phonetic_keys,
)
from continuity.ledger import AuditLedger, open_store
from continuity.project import Project

#: Changes whenever the keys a name gives change: an index built otherwise must be rebuilt.
KEY_VERSION = "1"
#: Records a key may hold and still be read whole (see "Bounded reads" above).
KEY_CAP = 2000
#: The same for the broad families (``x``, ``i``, ``s``), whose records mostly bear other names.
BROAD_KEY_CAP = 500
#: Name score below which a candidate is not shown at all (a different name).
MIN_NAME_SCORE = 0.7
#: How a name and a date of birth weigh in the score when a date of birth is given.
NAME_WEIGHT, DOB_WEIGHT = 0.6, 0.4
#: How much each agreement of dates of birth is worth, strongest first.
DOB_SCORES = {
    "exact": 1.0,
    "swap": 0.9,
    "year": 0.8,  # the same year, one of the dates an estimate
    "adjacent_year": 0.7,  # a year apart, one of them an estimate
    "unknown": 0.5,
    "different": 0.0,
}
#: Forename score below which a record is another person, however alike the surnames.
MIN_FORENAME_SCORE = 0.7
#: A name matched only as an alias scores this much less than the primary name would.
ALIAS_PENALTY = 0.02
#: A record with no forename, against a query with one, keeps this share of its surname score.
NO_FORENAME = 0.85
#: The best score a record whose date of birth differs can reach.
DIFFERENT_DOB_BEST = NAME_WEIGHT + DOB_WEIGHT * DOB_SCORES["different"]
#: Families whose keys are read in part (up to the cap) rather than dropped when too common.
STRONG_FAMILIES = frozenset("nk")
#: Index rows written per transaction while building.
BATCH_ROWS = 100_000
DEFAULT_LIMIT = 20

metadata = MetaData()

search_index = Table(
    "search_index",
    metadata,
    Column("generation", Integer, primary_key=True, autoincrement=False),
    Column("state", String(10), nullable=False),  # building, current or retired
    Column("started_at", DateTime, nullable=False),
    Column("built_at", DateTime),
    Column("records", Integer),
    Column("name_keys", Integer),
    Column("counts", Text),  # JSON: records per system
    Column("target", String(400)),  # the target indexed (redacted URL), "" for none
    Column("key_version", String(60), nullable=False),
)


class SearchError(ContinuityError):
    """A search that cannot be made: bad input, or no index to search."""


# --- keys ----------------------------------------------------------------------------------


def _hash(text: str) -> int:
    """A key text as a 63-bit integer (positive in any database's BIGINT)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def key_texts(forename: str, surname: tuple[str, ...]) -> list[str]:
    """The key texts of one cleansed name: first forename (``""`` for none) and surname parts.

    >>> key_texts("mohammed", ("khan",))[:2]
    ['s|CAN', 'n|MAHANAD|CAN']
    """
    whole = "".join(surname)
    if not whole:
        return []
    s_nysiis, _, s_soundex = phonetic_keys(whole)
    texts = [f"s|{s_nysiis}"]
    if not forename:
        return texts
    f_nysiis = phonetic_keys(forename)[0]
    groups = sorted(nicknames().canonical(forename))
    for part in [whole, *surname] if len(surname) > 1 else [whole]:
        p_nysiis = phonetic_keys(part)[0]
        texts.append(f"n|{f_nysiis}|{p_nysiis}")
        texts.extend(f"k|{g}|{p_nysiis}" for g in groups)
    texts.append(f"x|{forename[0]}|{s_soundex}")
    texts.append(f"i|{f_nysiis}|{whole[0]}")
    return list(dict.fromkeys(texts))


@lru_cache(maxsize=262144)
def _name_keys(forename: str, surname: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(sorted({_hash(t) for t in key_texts(forename, surname)}))


def _cleansed(forename: str | None, surname: str | None) -> tuple[str, tuple[str, ...]]:
    """A name as keys and scores take it: the first cleansed forename, the surname's parts."""
    fparts = name_parts(forename) if isinstance(forename, str) else ()
    return (fparts[0] if fparts else ""), (name_parts(surname) if isinstance(surname, str) else ())


def name_keys(forename: str | None, surname: str | None) -> tuple[int, ...]:
    """The integer keys a record holding this name is indexed under."""
    return _name_keys(*_cleansed(forename, surname))


# --- dates of birth ------------------------------------------------------------------------


def _as_date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _flag(value: Any) -> bool:
    return bool(value) and value not in ("0", "false", "N", "n", "False")


def _dobs_text(dobs: Iterable[tuple[dt.date, bool]]) -> str:
    """Dates of birth as stored: ISO, ``~`` after an estimate, comma-separated."""
    return ",".join(f"{d.isoformat()}{'~' if est else ''}" for d, est in dobs)


def _dobs_of(text: str | None) -> list[tuple[dt.date, bool]]:
    if not text:
        return []
    return [(dt.date.fromisoformat(t.rstrip("~")), t.endswith("~")) for t in text.split(",")]


def _dob_agreement(query: dt.date, dob: dt.date, estimated: bool) -> str:
    if dob == query:
        return "exact"
    if dob.year == query.year and dob.day == query.month and dob.month == query.day:
        return "swap"
    # Forces record an estimated date of birth as 1 January of the year: a 1 January on either
    # side may be an estimate even where no flag says so.
    maybe_estimate = (
        estimated or (dob.month, dob.day) == (1, 1) or (query.month, query.day) == (1, 1)
    )
    if maybe_estimate and dob.year == query.year:
        return "year"
    if maybe_estimate and abs(dob.year - query.year) == 1:
        return "adjacent_year"
    return "different"


_DOB_ORDER = ("different", "unknown", "adjacent_year", "year", "swap", "exact")


def dob_agreement(query: dt.date, dobs: Sequence[tuple[dt.date, bool]]) -> str:
    """How a record's dates of birth agree with the one searched for (its best)."""
    if not dobs:
        return "unknown"
    return max((_dob_agreement(query, d, e) for d, e in dobs), key=_DOB_ORDER.index)


_DOB_PATTERNS = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), (0, 1, 2)),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), (2, 1, 0)),
)


def parse_dob(text: str | dt.date | None, today: dt.date | None = None) -> dt.date | None:
    """A date of birth as typed: ``YYYY-MM-DD`` or ``DD/MM/YYYY``; a day that does not exist,
    anything else, or a day after ``today`` is a :class:`SearchError`."""
    if text is None or isinstance(text, dt.date):
        day = text
    else:
        day = None
        for pattern, (y, m, d) in _DOB_PATTERNS:
            found = pattern.match(text.strip())
            if found:
                parts = [int(g) for g in found.groups()]
                try:
                    day = dt.date(parts[y], parts[m], parts[d])
                except ValueError:
                    raise SearchError(f"--dob {text}: no such day") from None
                break
        if day is None:
            raise SearchError(f"--dob {text}: not a date (give YYYY-MM-DD or DD/MM/YYYY)")
    if day is not None and day > (today or dt.date.today()):
        raise SearchError(f"--dob {day.isoformat()}: a date of birth cannot be in the future")
    return day


# --- the query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A checked search: the name as typed, its readings, the DOB, the system and the limit."""

    name: str
    readings: tuple[tuple[str, tuple[str, ...]], ...]  # (first forename, surname parts)
    dob: dt.date | None = None
    system: str = "all"
    limit: int = DEFAULT_LIMIT

    @property
    def key_families(self) -> dict[int, str]:
        """Every key the query looks up, with its family (``n``, ``k``, ``x``, ``i``, ``s``)."""
        found: dict[int, str] = {}
        orientations = list(self.readings)
        first_forename, first_surname = self.readings[0]
        if first_forename and first_surname:  # the name turned round: KHAN Mohammed
            orientations.append((first_surname[-1], (first_forename, *first_surname[:-1])))
        for forename, surname in orientations:
            for text in key_texts(forename, surname):
                found.setdefault(_hash(text), text[0])
        return found


def parse_query(
    name: str, dob: str | dt.date | None = None, system: str = "all", limit: int = DEFAULT_LIMIT
) -> Query:
    """Check a search and read its name: ``Forename [Middle …] Surname`` or ``SURNAME,
    Forename``. A single word is taken as a surname.

    A name of three or more words is read both ways (the surname the last word, or every word
    after the first) and each candidate scored on the better reading: ``Siobhan Louise Wilson``
    and ``John Lloyd Davies`` both find what they should. ``Nadia Smith-Jones`` is one reading.
    """
    if not isinstance(name, str) or not name_parts(name):
        raise SearchError(f'search for {name!r}: a name needs letters in it, e.g. "Mohammed Khan"')
    if limit < 1:
        raise SearchError(f"--limit {limit}: give 1 or more")
    if "," in name:
        before, _, after = name.partition(",")
        surname, forenames = name_parts(before), name_parts(after)
        if not surname:
            surname, forenames = forenames, ()
        readings = [(forenames[0] if forenames else "", surname)]
    else:
        parts = name_parts(name)
        if len(parts) == 1:
            readings = [("", parts)]
        else:
            readings = [(parts[0], parts[1:])]
            # Three words or more: the last alone may be the surname, the rest forenames (a
            # hyphenated surname is one word: Smith-Jones is never read as a middle name).
            last = name_parts(name.split()[-1])
            if len(name.split()) > 2 and last and last != parts[1:]:
                readings.append((parts[0], last))
    return Query(name.strip(), tuple(readings), parse_dob(dob), system, limit)


# --- the index's tables --------------------------------------------------------------------


def _record_table(md: MetaData, generation: int) -> Table:
    return Table(
        f"search_record_{generation}",
        md,
        Column("record_id", Integer, primary_key=True, autoincrement=False),
        Column("system", String(20), nullable=False),
        Column("record_table", String(40), nullable=False),
        Column("record_key", String(200), nullable=False),
        Column("forename", String(100)),
        Column("surname", String(100)),
        Column("other_names", Text),  # JSON [[forename, surname, name_type], ...] or NULL
        Column("dobs", String(400)),  # see _dobs_text
    )


def _key_table(md: MetaData, generation: int, keyed: bool, suffix: str = "") -> Table:
    """The keys of one generation; ``keyed`` with its primary key (name_key, birth_year,
    record_id), which is the only index a search reads."""
    columns = [
        Column("name_key", BigInteger, nullable=False, autoincrement=False),
        Column("birth_year", SmallInteger, nullable=False, autoincrement=False),
        Column("record_id", Integer, nullable=False, autoincrement=False),
    ]
    name = f"search_key_{generation}{suffix}"
    if not keyed:
        return Table(name, md, *columns)
    return Table(
        name,
        md,
        *columns,
        PrimaryKeyConstraint("name_key", "birth_year", "record_id"),
        sqlite_with_rowid=False,
    )


def _work_engine(url: str) -> Engine:
    return open_store(url, metadata)


def _key_version() -> str:
    return f"{KEY_VERSION}/{nicknames().version}"


@dataclass(frozen=True)
class IndexInfo:
    """The current index: when it was built, from what, and how big it is."""

    generation: int
    built_at: dt.datetime
    records: int
    name_keys: int
    counts: dict[str, int]
    target: str
    key_version: str
    seconds: float = 0.0

    def describe(self) -> str:
        systems = ", ".join(f"{s} {n:,}" for s, n in self.counts.items())
        target = f"; target {self.target}" if self.target else "; no target indexed"
        return (
            f"index built {self.built_at:%Y-%m-%d %H:%M} UTC from {self.records:,} records "
            f"({systems}{target})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "built_at": self.built_at.isoformat(),
            "records": self.records,
            "name_keys": self.name_keys,
            "counts": self.counts,
            "target": self.target,
            "key_version": self.key_version,
        }


def _info_of(row: Any) -> IndexInfo:
    return IndexInfo(
        row.generation,
        row.built_at,
        row.records or 0,
        row.name_keys or 0,
        json.loads(row.counts or "{}"),
        row.target or "",
        row.key_version,
    )


def index_info(url: str) -> IndexInfo | None:
    """The current index in the work store at ``url``, or None when none was ever built."""
    engine = _work_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(search_index).where(search_index.c.state == "current")
            ).first()
        return None if row is None else _info_of(row)
    finally:
        engine.dispose()


# --- building ------------------------------------------------------------------------------


class _BulkRows:
    """Appends tuples through the driver's bulk path: COPY on PostgreSQL, else executemany."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect.name
        self.quote = engine.dialect.identifier_preparer.quote
        self.raw = engine.raw_connection()
        if self.dialect == "sqlite":
            cur = self.raw.cursor()
            cur.execute("PRAGMA cache_size=-131072")  # 128 MB: the sort of the keys uses it
            cur.close()

    def write(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cols = ", ".join(self.quote(c.name) for c in table.columns)
        cur = self.raw.cursor()
        try:
            if self.dialect == "postgresql":
                with cur.copy(f"COPY {self.quote(table.name)} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                mark = "?" if self.dialect == "sqlite" else "%s"
                marks = ", ".join([mark] * len(table.columns))
                cur.executemany(
                    f"INSERT INTO {self.quote(table.name)} ({cols}) VALUES ({marks})", rows
                )
        finally:
            cur.close()

    def execute(self, statement: str) -> None:
        cur = self.raw.cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()

    def commit(self) -> None:
        self.raw.commit()

    def close(self) -> None:
        self.raw.close()


@dataclass
class _Batch:
    records: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[tuple[int, int, int]] = field(default_factory=list)


def _source_rows(
    project: Project, counts: dict[str, int], on_progress: Callable[[str], None] | None
) -> Iterator[tuple[tuple[Any, ...], tuple[int, ...], set[int]]]:
    """Each source record of the person mapping: its index row (without record_id), keys and
    years of birth."""
    from continuity.waves import person_records

    def step_done(step: str, done: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(f"read {step} ({done:,} source records so far)")

    # Quarantined and excluded records too: an officer must find the record that did not
    # arrive, and be told why.
    for identity, values in person_records(project, progress=step_done, dropped=True):
        system, table, key = identity.split("|", 2)
        forename, surname, dob, estimated = (list(values) + [None] * 4)[:4]
        day = _as_date(dob)
        est = _flag(estimated) or bool(getattr(dob, "estimated", False))
        counts[system] = counts.get(system, 0) + 1
        dobs = [(day, est)] if day is not None else []
        row = (system, table, key, forename, surname, None, _dobs_text(dobs))
        yield row, name_keys(forename, surname), {day.year} if day is not None else {0}


def _target_url(project: Project) -> str | None:
    """The project's target as a database URL, or None (a staging folder, a missing file)."""
    if project.target.loader != "sql":
        return None
    try:
        url = make_url(project.target.location)
    except ArgumentError:
        return None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or not Path(database).exists():
            return None
    return project.target.location


def _target_tables(engine: Engine) -> set[str]:
    try:
        return {t.lower() for t in inspect(engine).get_table_names()}
    except SQLAlchemyError as exc:
        raise ContinuityError(f"target {redact(str(engine.url))}: {driver_message(exc)}") from exc


def _target_rows(
    engine: Engine, tables: set[str]
) -> Iterator[tuple[tuple[Any, ...], tuple[int, ...], set[int]]]:
    """Each target person with every name and date of birth it holds, streamed in key order."""
    from continuity.target_schema import person, person_dob, person_name

    parts = [
        select(
            person.c.person_id,
            literal(0).label("kind"),
            person.c.forename,
            person.c.surname,
            null().label("label"),
            person.c.dob,
            person.c.dob_estimated.label("estimated"),
        )
    ]
    if "person_name" in tables:
        parts.append(
            select(
                person_name.c.person_id,
                literal(1),
                person_name.c.forename,
                person_name.c.surname,
                person_name.c.name_type,
                null(),
                null(),
            )
        )
    if "person_dob" in tables:
        parts.append(
            select(
                person_dob.c.person_id,
                literal(2),
                null(),
                null(),
                null(),
                person_dob.c.dob,
                person_dob.c.estimated,
            )
        )
    query = union_all(*parts).order_by("person_id", "kind")
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=20_000).execute(query)
        current: str | None = None
        group: list[Any] = []
        for row in rows:
            if row[0] != current and group:
                yield _target_record(group)
                group = []
            current = row[0]
            group.append(row)
        if group:
            yield _target_record(group)


def _target_record(group: list[Any]) -> tuple[tuple[Any, ...], tuple[int, ...], set[int]]:
    person_id = group[0][0]
    head = next((r for r in group if r[1] == 0), None)
    forename, surname = (head[2], head[3]) if head is not None else (None, None)
    others: list[list[str | None]] = []
    seen = {(forename, surname)}
    dobs: dict[dt.date, bool] = {}
    for _, kind, f, s, label, dob, estimated in group:
        if kind == 1:
            if forename is None and surname is None:  # a name whose person row is missing
                forename, surname = f, s
                seen.add((f, s))
            if (f, s) not in seen:
                seen.add((f, s))
                others.append([f, s, label])
        day = _as_date(dob)
        if day is not None:
            dobs[day] = dobs.get(day, True) and _flag(estimated)
    keys = set(name_keys(forename, surname))
    for f, s, _ in others:
        keys.update(name_keys(f, s))
    years = {d.year for d in dobs} or {0}
    row = (
        "target",
        "person",
        person_id,
        forename,
        surname,
        json.dumps(others, ensure_ascii=False) if others else None,
        _dobs_text(sorted(dobs.items())),
    )
    return row, tuple(sorted(keys)), years


def build_index(project: Project, on_progress: Callable[[str], None] | None = None) -> IndexInfo:
    """Rebuild the search index of ``project`` from its sources and its target.

    Writes new tables in batches, then makes them current in one transaction and drops the
    previous generation. A build that fails leaves the previous index current.

    Args:
        on_progress: called with a line of progress now and then (for stderr).
    """
    started = time.perf_counter()
    engine = _work_engine(project.ledger)
    say = on_progress or (lambda _line: None)
    lock = _BuildLock(engine)
    try:
        lock.take()
        generation = _begin(engine)
        md = MetaData()
        records = _record_table(md, generation)
        # Keys are loaded unindexed and given their primary key at the end (_finish_keys).
        sqlite = engine.dialect.name == "sqlite"
        _key_table(md, generation, keyed=sqlite)
        md.create_all(engine)
        counts: dict[str, int] = {}
        writer = _BulkRows(engine)
        if sqlite:  # loaded into a temporary table (its own file, gone with the connection)
            keys = _key_table(MetaData(), generation, keyed=False, suffix="_load")
            writer.execute(
                f"CREATE TEMP TABLE {writer.quote(keys.name)} "
                "(name_key INTEGER NOT NULL, birth_year INTEGER NOT NULL, "
                "record_id INTEGER NOT NULL)"
            )
        else:
            keys = md.tables[f"search_key_{generation}"]
        written = key_rows = 0
        try:
            batch = _Batch()

            def add(row: tuple[Any, ...], name_keys_: tuple[int, ...], years: set[int]) -> None:
                nonlocal written, key_rows
                written += 1
                batch.records.append((written, *row))
                batch.keys.extend((k, y, written) for k in name_keys_ for y in years)
                if len(batch.keys) >= BATCH_ROWS:
                    flush()

            def flush() -> None:
                nonlocal key_rows
                writer.write(records, batch.records)
                writer.write(keys, batch.keys)
                writer.commit()
                key_rows += len(batch.keys)
                batch.records.clear()
                batch.keys.clear()

            for row, name_keys_, years in _source_rows(project, counts, say):
                add(row, name_keys_, years)
            say(f"source records indexed: {written:,}")
            target = _target_url(project)
            target_label = ""
            if target is not None:
                target_engine = engine_for(target)
                try:
                    tables = _target_tables(target_engine)
                    if "person" in tables:
                        target_label = redact(target)
                        before = written
                        for row, name_keys_, years in _target_rows(target_engine, tables):
                            add(row, name_keys_, years)
                        counts["target"] = written - before
                        say(f"target persons indexed: {written - before:,}")
                finally:
                    target_engine.dispose()
            flush()
            say(f"sorting {key_rows:,} keys")
            _finish_keys(engine, writer, generation)
        finally:
            writer.close()
        info = _swap(engine, generation, written, key_rows, counts, target_label)
        _drop_retired(engine)
        return dataclasses.replace(info, seconds=time.perf_counter() - started)
    except SQLAlchemyError as exc:
        raise LedgerError(
            f"search index in {redact(project.ledger)}: {driver_message(exc)}"
        ) from exc
    except engine.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        # The bulk writer works on the driver's own connection: its errors are the driver's.
        raise LedgerError(
            f"search index in {redact(project.ledger)}: {driver_message(exc)}"
        ) from exc
    finally:
        lock.release()
        engine.dispose()


class _BuildLock:
    """One index build at a time per work store: a second build (a wave's rebuild meeting an
    operator's --reindex) is refused at once rather than corrupting the first's generation.

    PostgreSQL's advisory lock and MariaDB's GET_LOCK, each held on a connection of its own for
    the build; on SQLite an exclusive lock on a file beside the database.
    """

    NAME = "continuity_search_build"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Any = None
        self.file: Any = None

    def take(self) -> None:
        dialect = self.engine.dialect.name
        busy = False
        if dialect == "sqlite":
            import fcntl

            database = self.engine.url.database or ""
            if database in ("", ":memory:"):
                return
            self.file = open(f"{database}.search-build.lock", "a+")  # noqa: SIM115
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = True
        else:
            self.conn = self.engine.connect()
            if dialect == "postgresql":
                got = self.conn.execute(
                    sql_text("SELECT pg_try_advisory_lock(hashtext(:n))"), {"n": self.NAME}
                ).scalar()
            else:
                got = self.conn.execute(
                    sql_text("SELECT GET_LOCK(:n, 0)"), {"n": self.NAME}
                ).scalar()
            busy = not got
        if busy:
            self.release()
            raise LedgerError(
                "another search index build is running on this work store: "
                "try again when it has finished"
            )

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the lock
            self.file = None
        if self.conn is not None:
            try:
                unlock = (
                    "SELECT pg_advisory_unlock(hashtext(:n))"
                    if self.engine.dialect.name == "postgresql"
                    else "SELECT RELEASE_LOCK(:n)"
                )
                self.conn.execute(sql_text(unlock), {"n": self.NAME})
            finally:
                self.conn.close()
                self.conn = None


def _begin(engine: Engine) -> int:
    """Drop what an interrupted build left, and claim the next generation."""
    _drop_retired(engine, states=("building", "retired"))
    with engine.begin() as conn:
        last = conn.execute(select(func.max(search_index.c.generation))).scalar()
        generation = (last or 0) + 1
        conn.execute(
            search_index.insert().values(
                generation=generation,
                state="building",
                started_at=_now(),
                key_version=_key_version(),
            )
        )
    return generation


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _finish_keys(engine: Engine, writer: _BulkRows, generation: int) -> None:
    """Give the loaded keys their primary key: one sort at the end, not millions of inserts
    into a B-tree in random order."""
    quote = writer.quote
    if engine.dialect.name == "sqlite":
        load = quote(f"search_key_{generation}_load")
        writer.execute(
            f"INSERT INTO main.{quote(f'search_key_{generation}')} "
            "(name_key, birth_year, record_id) "
            f"SELECT name_key, birth_year, record_id FROM temp.{load} "
            "ORDER BY name_key, birth_year, record_id"
        )
        writer.execute(f"DROP TABLE {load}")
        writer.commit()
        return
    name = quote(f"search_key_{generation}")
    writer.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (name_key, birth_year, record_id)")
    writer.commit()
    for table in (name, quote(f"search_record_{generation}")):
        writer.execute(
            f"ANALYZE TABLE {table}" if engine.dialect.name in MYSQL_FAMILY else f"ANALYZE {table}"
        )
    writer.commit()


def _swap(
    engine: Engine,
    generation: int,
    records: int,
    key_rows: int,
    counts: dict[str, int],
    target: str,
) -> IndexInfo:
    """Make ``generation`` the current index, in one transaction."""
    built = _now()
    with engine.begin() as conn:
        conn.execute(
            update(search_index).where(search_index.c.state == "current").values(state="retired")
        )
        made = conn.execute(
            update(search_index)
            .where(search_index.c.generation == generation, search_index.c.state == "building")
            .values(
                state="current",
                built_at=built,
                records=records,
                name_keys=key_rows,
                counts=json.dumps(counts),
                target=target,
            )
        )
        if made.rowcount != 1:
            raise LedgerError(f"search index generation {generation} was taken from this build")
    return IndexInfo(generation, built, records, key_rows, counts, target, _key_version())


def _drop_retired(engine: Engine, states: Sequence[str] = ("retired",)) -> None:
    with engine.connect() as conn:
        old = [
            r[0]
            for r in conn.execute(
                select(search_index.c.generation).where(search_index.c.state.in_(states))
            )
        ]
    for generation in old:
        md = MetaData()
        for table in (_record_table(md, generation), _key_table(md, generation, keyed=True)):
            table.drop(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(delete(search_index).where(search_index.c.generation == generation))


# --- searching -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a record is: for a source record, where it went in the target or why not."""

    status: str  # migrated, merged, quarantined, excluded, not_in_target, in_target, gone, unknown
    target_key: str | None = None
    rule: str | None = None
    detail: str | None = None

    def describe(self) -> str:
        if self.status == "migrated":
            return f"went to person {self.target_key}"
        if self.status == "merged":
            return f"merged into person {self.target_key} ({self.rule})"
        if self.status in ("quarantined", "excluded"):
            return f"did not arrive: {self.status}: {self.detail}"
        if self.status == "not_in_target":
            return "did not arrive: not in the target"
        if self.status == "in_target":
            return f"in the target, {self.detail}" if self.detail else "in the target"
        if self.status == "gone":
            return "no longer in the target (rebuild the index: continuity search --reindex)"
        return f"unknown: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "target_key": self.target_key,
            "rule": self.rule,
            "detail": self.detail,
            "text": self.describe(),
        }


@dataclass(frozen=True)
class Candidate:
    """One record a search found, with its score and why."""

    rank: int
    score: float
    system: str
    table: str
    key: str
    forename: str | None
    surname: str | None
    dobs: tuple[tuple[dt.date, bool], ...]
    aliases: tuple[tuple[str | None, str | None, str], ...]
    why: tuple[str, ...]
    placement: Placement
    sources: tuple[str, ...] = ()

    @property
    def record(self) -> str:
        return f"{self.system}|{self.table}|{self.key}"

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.forename, self.surname) if p)

    @property
    def person(self) -> str | None:
        """The target person this record is, or became; None if it is in no target person."""
        return self.placement.target_key

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 4),
            "system": self.system,
            "table": self.table,
            "key": self.key,
            "record": self.record,
            "forename": self.forename,
            "surname": self.surname,
            "dobs": [{"dob": d.isoformat(), "estimated": e} for d, e in self.dobs],
            "aliases": [{"forename": f, "surname": s, "type": t} for f, s, t in self.aliases],
            "why": list(self.why),
            "person": self.person,
            "placement": self.placement.to_dict(),
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class SearchResult:
    """What a search found, and from which index."""

    query: Query
    candidates: tuple[Candidate, ...]
    matched: int  # candidates above the name floor, before the limit
    complete: bool  # False when a name was too common to read whole
    index: IndexInfo
    notes: tuple[str, ...] = ()

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.candidates]

    def render(self) -> str:
        """The readable table ``continuity search`` prints."""
        q = self.query
        asked = q.name + (f", born {q.dob.isoformat()}" if q.dob else "")
        scope = "" if q.system == "all" else f" in {q.system}"
        lines = [
            f"Search for {asked}{scope}: {len(self.candidates)} of {self.matched:,} candidates "
            f"({self.index.describe()})"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if not self.candidates:
            lines.append("No record matches.")
            return "\n".join(lines)
        width = max(len(f"{c.table} {c.key}") for c in self.candidates)
        name_width = max(len(c.name) for c in self.candidates)
        lines.append(
            f"{'#':>3}  {'score':>5}  {'system':<11}  {'key':<{width}}  "
            f"{'name':<{name_width}}  DOB(s)"
        )
        previous: Candidate | None = None
        for c in self.candidates:
            if previous is not None and (c.person is None or c.person != previous.person):
                lines.append("")  # records of one target person stand together
            previous = c
            dobs = ", ".join(f"{d.isoformat()}{' (est.)' if e else ''}" for d, e in c.dobs)
            lines.append(
                f"{c.rank:>3}  {c.score:5.3f}  {c.system:<11}  {f'{c.table} {c.key}':<{width}}  "
                f"{c.name:<{name_width}}  {dobs or 'unknown'}"
            )
            pad = " " * 12
            lines.append(f"{pad}why: {', '.join(c.why)}")
            if c.aliases:
                shown = ", ".join(
                    " ".join(p for p in (f, s) if p) + f" ({t.lower()})" for f, s, t in c.aliases
                )
                lines.append(f"{pad}aliases: {shown}")
            lines.append(f"{pad}where: {c.placement.describe()}")
        return "\n".join(lines)


@dataclass
class _Found:
    record_id: int
    system: str
    table: str
    key: str
    forename: str | None
    surname: str | None
    others: list[tuple[str | None, str | None, str]]
    dobs: list[tuple[dt.date, bool]]
    score: float = 0.0
    why: tuple[str, ...] = ()


def _part_word(why: str, score: float) -> str:
    return f"{JARO_WINKLER} {score:.2f}" if why == JARO_WINKLER else why


def _compare(
    forename: str, surname: tuple[str, ...], cf: str, cs: tuple[str, ...]
) -> tuple[float, tuple[str, ...]]:
    """Score a candidate's cleansed name against one reading of the query, saying why."""
    if not cs:
        return 0.0, ()
    if not forename or not cf:
        ss, swhy = compare_surnames(surname, cs)
        words = (f"surname {_part_word(swhy, ss)}",)
        if not forename:
            return ss, words
        return ss * NO_FORENAME, (*words, "no forename")
    scored = compare_names(forename, surname, cf, cs)
    if scored.reasons == (SWAPPED,):
        return scored.score, (SWAPPED,)
    fs, fwhy = compare_part(forename, cf, True)
    if fs < MIN_FORENAME_SCORE:  # the same surname alone does not make a candidate
        return 0.0, ()
    ss, swhy = compare_surnames(surname, cs)
    return scored.score, (f"forename {_part_word(fwhy, fs)}", f"surname {_part_word(swhy, ss)}")


def _score(
    query: Query, found: _Found, memo: dict[tuple[Any, ...], tuple[float, tuple[str, ...]]]
) -> None:
    """Score a candidate on its best-matching name and its dates of birth (``-1`` when no
    name of it is near enough to be shown)."""
    best = -1.0
    why: tuple[str, ...] = ()
    for name in ((found.forename, found.surname, "PRIMARY"), *found.others):
        scored = memo.get(name)
        if scored is None:
            scored = memo[name] = _name_match(query, *name)
        if scored[0] > best:
            best, why = scored
    if best < MIN_NAME_SCORE:  # another name: not shown
        found.score, found.why = -1.0, why
        return
    if query.dob is not None:
        agreement = dob_agreement(query.dob, found.dobs)
        best = NAME_WEIGHT * best + DOB_WEIGHT * DOB_SCORES[agreement]
        why = (*why, f"dob {agreement}")
    found.score, found.why = best, why


def _name_match(
    query: Query, forename: str | None, surname: str | None, kind: str | None
) -> tuple[float, tuple[str, ...]]:
    """One name of a candidate against the query's readings: the better score, and why."""
    cf, cs = _cleansed(forename, surname)
    best = -1.0
    why: tuple[str, ...] = ()
    for qf, qs in query.readings:
        score, words = _compare(qf, qs, cf, cs)
        if kind == "ALIAS":
            score, words = score - ALIAS_PENALTY, (*words, "alias")
        elif kind not in ("PRIMARY", "", None):
            words = (*words, f"{str(kind).lower()} name")
        if score > best:
            best, why = score, words
    return best, why


class Searcher:
    """Searches the current index of a project; keeps its connections open between searches.

    This is the engine: it writes nothing to the audit ledger. :func:`search` is what a person
    uses (it checks the input and writes the audit entry).
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.engine = _work_engine(project.ledger)
        self.conn = self.engine.connect()
        self._target: Engine | None = None
        self._target_tables: set[str] | None = None
        self._target_problem: str | None = None

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()
        if self._target is not None:
            self._target.dispose()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> IndexInfo:
        """The current index; a :class:`SearchError` when there is none (or an outdated one)."""
        row = self.conn.execute(
            select(search_index).where(search_index.c.state == "current")
        ).first()
        self.conn.commit()  # end the read: a rebuild may swap generations meanwhile
        if row is None:
            raise SearchError("no search index: run a wave or continuity search --reindex")
        info = _info_of(row)
        if info.key_version != _key_version():
            raise SearchError(
                f"the search index was built with keys {info.key_version}, this version uses "
                f"{_key_version()}: run continuity search --reindex"
            )
        return info

    def find(self, query: Query) -> SearchResult:
        """Search the current index (once more if a rebuild swapped it away meanwhile)."""
        try:
            return self._find(query)
        except SQLAlchemyError:  # the tables were swapped away: read the new generation
            self.conn.rollback()
        try:
            return self._find(query)
        except SQLAlchemyError as exc:
            self.conn.rollback()
            raise LedgerError(
                f"search index in {redact(self.project.ledger)}: {driver_message(exc)}"
            ) from exc

    def _find(self, query: Query) -> SearchResult:
        info = self.info()
        known = [*info.counts, *(["target"] if "target" not in info.counts else []), "all"]
        if query.system not in known:
            raise SearchError(
                f"--system {query.system!r}: the index holds no such system ({', '.join(known)})"
            )
        md = MetaData()
        records = _record_table(md, info.generation)
        keys = _key_table(md, info.generation, keyed=True)
        memo: dict[tuple[Any, ...], tuple[float, tuple[str, ...]]] = {}
        if query.dob is not None:
            # Those born within a year either side (or of unknown birth) first: only if fewer
            # than the limit agree better than any other date could are the rest read.
            years = sorted({query.dob.year - 1, query.dob.year, query.dob.year + 1, 0})
            ids, complete = self._candidate_ids(keys, query, years)
            found = self._fetch(records, ids, query, memo)
            if sum(f.score > DIFFERENT_DOB_BEST for f in found) < query.limit:
                more, complete_more = self._candidate_ids(keys, query, None)
                found += self._fetch(records, more - ids, query, memo)
                complete = complete and complete_more
        else:
            ids, complete = self._candidate_ids(keys, query, None)
            found = self._fetch(records, ids, query, memo)
        found.sort(key=lambda f: (-f.score, f.system != "target", f.system, f.table, f.key))
        top, placements, aliases, sources = self._arrange(found, query.limit)
        candidates = tuple(
            Candidate(
                rank=n,
                score=f.score,
                system=f.system,
                table=f.table,
                key=f.key,
                forename=f.forename,
                surname=f.surname,
                dobs=tuple(f.dobs),
                aliases=_other_names(
                    f, f.others if f.system == "target" else aliases.get(f.record_id, [])
                ),
                why=f.why,
                placement=placements[f.record_id],
                sources=tuple(sources.get(f.record_id, ())),
            )
            for n, f in enumerate(top, start=1)
        )
        notes = []
        if not complete:
            notes.append(
                f"more than {KEY_CAP:,} records hold this name: only the first {KEY_CAP:,} were "
                "read; give --dob to narrow"
            )
        if self._target_problem:
            notes.append(self._target_problem)
        return SearchResult(query, candidates, len(found), complete, info, tuple(notes))

    def _fetch(
        self,
        records: Table,
        ids: set[int],
        query: Query,
        memo: dict[tuple[Any, ...], tuple[float, tuple[str, ...]]],
    ) -> list[_Found]:
        """The records ``ids`` of the query's system, scored; those of another name dropped."""
        found: list[_Found] = []
        ordered = sorted(ids)
        for i in range(0, len(ordered), 500):
            stmt = select(records).where(records.c.record_id.in_(ordered[i : i + 500]))
            if query.system != "all":
                stmt = stmt.where(records.c.system == query.system)
            for r in self.conn.execute(stmt):
                others = [(x[0], x[1], x[2]) for x in json.loads(r.other_names or "[]")]
                f = _Found(
                    r.record_id,
                    r.system,
                    r.record_table,
                    r.record_key,
                    r.forename,
                    r.surname,
                    others,
                    _dobs_of(r.dobs),
                )
                _score(query, f, memo)
                if f.score >= 0:
                    found.append(f)
        self.conn.commit()
        return found

    def _candidate_ids(
        self, keys: Table, query: Query, years: Sequence[int] | None
    ) -> tuple[set[int], bool]:
        """The records the query's keys reach (born in ``years``, if given), reading no key
        beyond :data:`KEY_CAP` rows; and whether every record of a strong key was read."""
        families = query.key_families
        wanted = sorted(families)

        def holding(k: int) -> Any:
            if years is None:
                return keys.c.name_key == k
            return and_(keys.c.name_key == k, keys.c.birth_year.in_(years))

        # A surname alone gives only the broad surname key: it is then the strongest there is.
        only_surname = all(families[k] not in STRONG_FAMILIES for k in wanted)

        def strong(k: int) -> bool:
            return only_surname or families[k] in STRONG_FAMILIES

        def cap(k: int) -> int:
            return KEY_CAP if strong(k) else BROAD_KEY_CAP

        counted = [
            select(literal(k, BigInteger).label("k"), func.count().label("n")).select_from(
                select(literal(1).label("one"))
                .select_from(keys)
                .where(holding(k))
                .limit(cap(k) + 1)
                .subquery()
            )
            for k in wanted
        ]
        counts: dict[int, int] = {}
        for i in range(0, len(counted), 50):
            for k, n in self.conn.execute(union_all(*counted[i : i + 50])):
                counts[int(k)] = int(n)
        whole = [k for k in wanted if 0 < counts.get(k, 0) <= cap(k)]
        ids: set[int] = set()
        if whole:
            stmt = select(keys.c.record_id).where(keys.c.name_key.in_(whole))
            if years is not None:
                stmt = stmt.where(keys.c.birth_year.in_(years))
            ids.update(r[0] for r in self.conn.execute(stmt.distinct()))
        complete = True
        for k in wanted:
            if counts.get(k, 0) <= cap(k):
                continue
            complete = False  # said in the answer: a key this common was not read whole
            if not strong(k):
                continue  # a broad key this common is left out, as resolution leaves a block
            ids.update(
                r[0]
                for r in self.conn.execute(
                    select(keys.c.record_id)
                    .where(holding(k))
                    .order_by(keys.c.birth_year, keys.c.record_id)
                    .limit(KEY_CAP)
                )
            )
        self.conn.commit()
        return ids, complete

    # -- where the records went (read from the target now) ----------------------------------

    def _target_engine(self) -> tuple[Engine | None, set[str]]:
        if self._target is None and self._target_problem is None:
            url = _target_url(self.project)
            if url is None:
                self._target_tables = set()
                self._target_problem = None
                return None, set()
            try:
                self._target = engine_for(url)
                self._target_tables = _target_tables(self._target)
            except ContinuityError as exc:
                self._target_problem = f"where records went is unknown: {exc}"
                self._target = None
                self._target_tables = set()
        return self._target, self._target_tables or set()

    def _arrange(
        self, found: Sequence[_Found], limit: int
    ) -> tuple[
        list[_Found],
        dict[int, Placement],
        dict[int, list[tuple[str | None, str | None, str]]],
        dict[int, list[str]],
    ]:
        """The first ``limit`` candidates, each target person's records together, and where
        each record is (read from the target now).

        The best candidates' target persons are looked up, and every other candidate that is a
        record of one of them is moved up beside it: the migration already decided these are
        one human, and an officer wants the person, not a scatter of their records among
        namesakes. A record whose target person is unknown stands alone.
        """
        engine, tables = self._target_engine()
        head = list(found[:limit])
        placements: dict[int, Placement] = {}
        aliases: dict[int, list[tuple[str | None, str | None, str]]] = {}
        sources: dict[int, list[str]] = {}
        if engine is None:
            why = self._target_problem or "the project has no target database yet"
            for f in head:
                status = "unknown" if self._target_problem else "not_in_target"
                placements[f.record_id] = Placement(status, detail=why)
            return head, placements, aliases, sources
        try:
            with engine.connect() as conn:
                fates = self._fates(conn, tables, [f for f in head if f.system != "target"])
                persons = {f.key for f in head if f.system == "target"} | {
                    p.target_key for p in fates.values() if p.target_key is not None
                }
                came_from = self._came_from(conn, tables, persons)
                top = _grouped(found, persons, came_from, limit)
                fates.update(
                    self._fates(
                        conn,
                        tables,
                        [f for f in top if f.system != "target" and f.record_id not in fates],
                    )
                )
                present = self._present(conn, tables, [f.key for f in top if f.system == "target"])
                for f in top:
                    if f.system != "target":
                        placements[f.record_id] = fates[f.record_id]
                        continue
                    sources[f.record_id] = came_from.get(f.key, [])
                    placements[f.record_id] = (
                        Placement("in_target", f.key, detail=_from(sources[f.record_id]))
                        if f.key in present
                        else Placement("gone", f.key)
                    )
                names = self._names(
                    conn,
                    tables,
                    {placements[f.record_id].target_key for f in top if f.system != "target"},
                )
                for f in top:
                    person = placements[f.record_id].target_key
                    if f.system != "target" and person in names:
                        aliases[f.record_id] = names[person]
        except SQLAlchemyError as exc:
            problem = f"where records went is unknown: target: {driver_message(exc)}"
            top = head
            placements = {f.record_id: Placement("unknown", detail=problem) for f in top}
            aliases, sources = {}, {}
        return top, placements, aliases, sources

    def _came_from(self, conn: Any, tables: set[str], persons: set[str]) -> dict[str, list[str]]:
        """The source records (``system|table|key``) each target person was made from."""
        from continuity.target_schema import migration_crosswalk as xw

        found: dict[str, list[str]] = {}
        if not persons or "migration_crosswalk" not in tables:
            return found
        for s, t, k, tk in conn.execute(
            select(xw.c.source_system, xw.c.source_table, xw.c.source_key, xw.c.target_key)
            .where(xw.c.target_table == "person", xw.c.target_key.in_(sorted(persons)))
            .order_by(xw.c.source_system, xw.c.source_table, xw.c.source_key)
        ):
            found.setdefault(tk, []).append(f"{s}|{t}|{k}")
        return found

    def _present(self, conn: Any, tables: set[str], keys: Sequence[str]) -> set[str]:
        """Which of these target persons the target still holds."""
        from continuity.target_schema import person

        if not keys or "person" not in tables:
            return set()
        return {
            r[0]
            for r in conn.execute(select(person.c.person_id).where(person.c.person_id.in_(keys)))
        }

    def _names(
        self, conn: Any, tables: set[str], persons: set[str | None]
    ) -> dict[str, list[tuple[str | None, str | None, str]]]:
        """Every name each target person is known by, in its order."""
        from continuity.target_schema import person_name

        wanted = sorted(p for p in persons if p is not None)
        found: dict[str, list[tuple[str | None, str | None, str]]] = {}
        if not wanted or "person_name" not in tables:
            return found
        for pid, forename, surname, kind in conn.execute(
            select(
                person_name.c.person_id,
                person_name.c.forename,
                person_name.c.surname,
                person_name.c.name_type,
            )
            .where(person_name.c.person_id.in_(wanted))
            .order_by(person_name.c.person_id, person_name.c.seq)
        ):
            found.setdefault(pid, []).append((forename, surname, kind))
        return found

    def _fates(
        self, conn: Any, tables: set[str], records: Sequence[_Found]
    ) -> dict[int, Placement]:
        """Where each source record went: crosswalk, quarantine, exclusion, or nowhere."""
        from continuity.target_schema import migration_crosswalk as xw
        from continuity.target_schema import migration_exclusion as exclusion
        from continuity.target_schema import migration_quarantine as quarantine

        out: dict[int, Placement] = {}
        if not records:
            return out
        if "migration_crosswalk" not in tables:
            for f in records:
                out[f.record_id] = Placement(
                    "unknown" if "person" in tables else "not_in_target",
                    detail="the target keeps no crosswalk",
                )
            return out
        groups: dict[tuple[str, str], list[_Found]] = {}
        for f in records:
            groups.setdefault((f.system, f.table), []).append(f)
        for (system, table), members in groups.items():
            keys = [f.key for f in members]
            hit: dict[str, Placement] = {}
            for k, tk, rule in conn.execute(
                select(xw.c.source_key, xw.c.target_key, xw.c.rule).where(
                    xw.c.source_system == system,
                    xw.c.source_table == table,
                    xw.c.target_table == "person",
                    xw.c.source_key.in_(keys),
                )
            ):
                merged = str(rule).startswith("merge")
                hit[k] = Placement("merged" if merged else "migrated", tk, rule)
            for status, t in (("quarantined", quarantine), ("excluded", exclusion)):
                if t.name not in tables:
                    continue
                rest = [k for k in keys if k not in hit]
                if not rest:
                    break
                for k, reason in conn.execute(
                    select(t.c.source_key, t.c.reason).where(
                        t.c.source_system == system,
                        t.c.source_table == table,
                        t.c.source_key.in_(rest),
                    )
                ):
                    hit[k] = Placement(status, detail=reason)
            for f in members:
                out[f.record_id] = hit.get(f.key, Placement("not_in_target"))
        return out


def _other_names(
    found: _Found, names: Sequence[tuple[str | None, str | None, str]]
) -> tuple[tuple[str | None, str | None, str], ...]:
    """The names of a record's target person other than the one it shows, each spelling once
    (letter case aside), with the type it first has."""
    seen = {_spelling(found.forename, found.surname)}
    out = []
    for name in names:
        spelling = _spelling(name[0], name[1])
        if spelling not in seen:
            seen.add(spelling)
            out.append(name)
    return tuple(out)


def _spelling(forename: str | None, surname: str | None) -> tuple[str, str]:
    return (forename or "").casefold(), (surname or "").casefold()


def _grouped(
    found: Sequence[_Found], persons: set[str], came_from: dict[str, list[str]], limit: int
) -> list[_Found]:
    """The first ``limit`` of ``found`` (best first), each of ``persons`` with every candidate
    that is one of its records moved up to where its best record stands."""
    by_identity = {f"{f.system}|{f.table}|{f.key}": f for f in found}
    person_of: dict[int, str] = {}
    for person, identities in came_from.items():
        for identity in identities:
            if identity in by_identity:
                person_of[by_identity[identity].record_id] = person
    for f in found:
        if f.system == "target" and f.key in persons:
            person_of[f.record_id] = f.key
    members: dict[str, list[_Found]] = {}
    for f in found:
        if f.record_id in person_of:
            members.setdefault(person_of[f.record_id], []).append(f)
    out: list[_Found] = []
    done: set[int] = set()
    for f in found:
        if len(out) >= limit:
            break
        if f.record_id in done:
            continue
        owner = person_of.get(f.record_id)
        for g in members[owner] if owner is not None else [f]:
            out.append(g)
            done.add(g.record_id)
    return out[:limit]


def _from(sources: Sequence[str]) -> str:
    if not sources:
        return "from no source record (the crosswalk names none)"
    records = "record" if len(sources) == 1 else "records"
    return f"from {len(sources)} source {records}: {', '.join(sources)}"


def search(project: Project, query: Query, reason: str) -> SearchResult:
    """Search, and write the search to the audit ledger (who, what, why, how many found).

    The entry is written before the answer is returned: no search is shown that the ledger
    does not hold.
    """
    if not reason or not reason.strip():
        raise SearchError(
            "a search needs --reason: why you are looking (the audit ledger keeps it)"
        )
    with Searcher(project) as searcher:
        result = searcher.find(query)
    ledger = AuditLedger(project.ledger)
    try:
        ledger.append(
            "search",
            {
                "query": query.name,
                "dob": query.dob.isoformat() if query.dob else None,
                "system": query.system,
                "limit": query.limit,
                "results": len(result.candidates),
                "reason": reason.strip(),
                "index_built_at": result.index.built_at.isoformat(),
            },
        )
    finally:
        ledger.close()
    return result
