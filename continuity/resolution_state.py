"""What a delta needs to resolve persons again without reading every person record.

A full run resolves every record of a resolved mapping (:mod:`mappings.resolution`). It then
keeps, in the target beside the fingerprints, each record's *state*: a digest of what
resolution read of it (and the values themselves), where it went (anchor, rule, role, score),
its *component* (the records tied to it by pairs whose outcomes can depend on each other's: see
``Resolver._links``), its name and whether it
has a DOB and counts toward the forenames in use, and its *dependency keys* (its blocks, its PNC
ID, for a record with no DOB its name, the keys of the values it looked up).

A delta then resolves only the *part* of the population a change can reach, which is exact:

1. the records change detection wants again (added, changed, related), those whose looked-up
   values changed, read through the mapping; those whose digest differs are *changed*;
   records gone from the source (or no longer resolved: quarantined, excluded) are *gone*;
2. the part starts with the changed records (one read again with the same digest starts
   nothing: it goes where its state row says, unless the part reaches it), the records a
   changed one now pairs with (scored against what the state read of them, in every block
   within ``max_block``), every record of a block whose size crosses ``max_block`` either
   way, the records sharing a changed one's PNC ID, the records of a forename whose standing
   as a name in use flipped, and the records reviewers decided on; and a vague record (an
   estimated or no DOB) a changed record, a block crossing ``max_block`` or a new first holder
   of its PNC ID may give its first weak pair strong enough to merge brings the records it
   pairs with: from then on it reads the clusters of every person it fits;
3. the part grows to whole components, the changed and gone records' old ones included (a
   component: the records tied by the pairs whose outcomes can depend on each other's, see
   ``Resolver._links``; a weak pair too weak to merge ties none). Nothing outside it can
   resolve differently: a pair of unchanged records in a block whose capping did not change
   scores as it did, so it tied them into one component before, or it is refused as it was;
4. names: a record with no DOB weighs every person of its name (it joins the one it fits, of
   several none). A record with no DOB outside the part whose name a record of the part bears
   or bore joins it with its component, until none is left; for each record with no DOB in
   the part, the persons of its name outside it are counted (their clusters stand), not
   resolved;
5. the part is resolved in the order a full run takes its records, with the whole's forenames
   in use and the whole's size of every block (a block larger than ``max_block`` is not
   compared however few of its records the part holds). The records not read again are
   resolved from what the state read of them. A part holding more than ``WHOLE_ABOVE`` of the
   records gives way to resolving every record.

Every other record resolves as the state says. A run writes the state in the transaction that
finishes it, with the fingerprints, so that state and baseline never disagree; a scoped run,
a rollback, or a change of the mapping, the resolution's settings, the reviewers' decisions or
this module's version leaves the next run to resolve everything again.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from continuity.db import stream
from continuity.domain.connect import engine_for
from mappings.resolution import (
    LOOKUP_KEY,
    PNC_KEY,
    Context,
    Resolved,
    Resolver,
    ResolveSettings,
    dependency_hash,
    name_key,
    names_in_use,
)

STATE = "migration_resolution"
KEYS = "migration_resolution_key"
LOOKUPS = "migration_resolution_lookup"
TABLES = (STATE, KEYS, LOOKUPS)
#: Bumped whenever resolution or its dependency keys change meaning: the next run resolves all.
VERSION = 5
#: Values per IN list.
CHUNK = 500
#: Values per IN list of a read through the driver (SQLite binds 32,766 values at most).
READ_CHUNK = 5000
#: Bytes of a SQLite state database mapped into memory while a delta works out its part:
#: the reads go by key all over a file of gigabytes, which SQLite's page cache of a few
#: megabytes reads from the file again and again (four times slower at 1M persons).
MAP_BYTES = 2**31
#: State rows written per transaction call.
WRITE_EVERY = 20_000
#: Above this share of the records wanted again (or reached), resolving them all is cheaper.
WHOLE_ABOVE = 0.3


def add_tables(metadata: MetaData) -> None:
    """Add the state tables to ``metadata`` (a run's copy of the product's)."""
    if STATE in metadata.tables:
        return
    Table(
        STATE,
        metadata,
        Column("entity", String(60), primary_key=True),
        Column("identity", String(300), primary_key=True),  # source|table|key
        Column("digest", BigInteger, nullable=False),
        Column("component", String(300), nullable=False),
        Column("forename", String(100)),  # the first forename, cleansed (None: none)
        Column("surname", String(200)),  # the surname's parts, cleansed, |-joined
        Column("counted", Integer, nullable=False),  # 1: it counts toward the names in use
        Column("nodob", Integer, nullable=False),  # 1: it has no date of birth
        Column("seen", Text, nullable=False),  # what resolution read of it (JSON)
        Column("looked", Text, nullable=False),  # the dependency keys of what it looked up
        Column("anchor", String(300), nullable=False),
        Column("rule", String(60), nullable=False),
        Column("role", String(10), nullable=False),
        Column("score", Integer),
        # Each index holds what its query reads (SQLite, which keeps no statistics, would
        # otherwise take the primary key's, for holding the column read, and scan it).
        Index("ix_migration_resolution_component", "entity", "component", "identity"),
        Index("ix_migration_resolution_name", "entity", "forename", "surname", "identity"),
    )
    Table(
        KEYS,
        metadata,
        Column("entity", String(60), primary_key=True),
        Column("key_hash", BigInteger, primary_key=True),
        Column("identity", String(300), primary_key=True),
        # (no index by record: a record's keys follow from its state row's values, worked out
        # again where a delta needs them, and are deleted by the primary key)
    )
    Table(
        LOOKUPS,
        metadata,
        Column("entity", String(60), primary_key=True),
        Column("lookup", String(32), primary_key=True),
        Column("key_hash", BigInteger, primary_key=True),
        Column("digest", BigInteger, nullable=False),
    )


_META = MetaData()
add_tables(_META)


_OLD_KEYS_INDEX = "ix_migration_resolution_key"


def create_tables(engine: sa.Engine, metadata: MetaData) -> None:
    """Create the state tables; one of another layout (an earlier version's) is made anew: the
    state is a cache, and the next run, finding no state it can use, resolves everything."""
    present = sa.inspect(engine)
    for name in TABLES:
        table = metadata.tables[name]
        if present.has_table(name):
            columns = [c["name"] for c in present.get_columns(name)]
            if columns == [c.name for c in table.columns]:
                if name == KEYS and any(
                    i["name"] == _OLD_KEYS_INDEX for i in present.get_indexes(name)
                ):
                    # an earlier version's index of the keys by record: every write kept it up
                    # (bound to a throwaway copy of the table, not to the run's schema)
                    bare = Table(name, MetaData(), Column("entity", String(60)))
                    with engine.begin() as conn:
                        conn.execute(sa.schema.DropIndex(Index(_OLD_KEYS_INDEX, bare.c.entity)))
                continue
            table.drop(engine)
        table.create(engine)


def checkpoint_name(entity: str) -> str:
    return f"resolution:{entity}"


def _hash64(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def digest_of(values: Sequence[Any], lookups: Iterable[int]) -> int:
    """What resolution read of a record (and the keys of what it looked up), as 64 bits."""
    return _hash64(repr(list(values)) + repr(sorted(lookups)))


def lookup_name(resource: str) -> str:
    """A lookup's short stable name (its resource name can be a whole query)."""
    return hashlib.blake2b(resource.encode("utf-8"), digest_size=8).hexdigest()


def _keying() -> str:
    """What a record's blocking keys follow from besides its values: the phonetic library's
    version and the bundled nickname table. (A delta works a changed record's old keys out
    again from its stored values: a state kept under other keying is not used.)"""
    from importlib import metadata, resources

    table = resources.files("continuity.domain").joinpath("data/nicknames.csv").read_bytes()
    return f"{metadata.version('jellyfish')}|{hashlib.sha256(table).hexdigest()}"


def settings_digest(settings: ResolveSettings, mapping_digest: str) -> str:
    text = json.dumps([VERSION, repr(settings), mapping_digest, _keying()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _chunks(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Prior:
    """The state an earlier run left for one entity, read as the increment asks."""

    def __init__(self, url: str, entity: str, kept: Mapping[str, Any] | None = None) -> None:
        """``kept``: the state's checkpoint (what :func:`write` returned), if it says how many
        records the state holds and how many count toward each forename."""
        self.entity = entity
        self.engine = engine_for(url)
        self.state = _META.tables[STATE]
        self.keys = _META.tables[KEYS]
        self.lookups = _META.tables[LOOKUPS]
        self._conn: sa.Connection | None = None
        self._resolved: dict[str, Resolved | None] = {}
        kept = kept or {}
        self._count: int | None = kept.get("records")
        self._forenames: dict[str, int] | None = kept.get("forenames")
        #: the keys more than ``max_block`` records hold (None: the checkpoint does not say)
        capped = kept.get("capped")
        self.capped: frozenset[int] | None = None if capped is None else frozenset(capped)

    def _c(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
            self._map(MAP_BYTES)
        return self._conn

    def _map(self, size: int) -> None:
        """Map (or, with 0, unmap) up to ``size`` bytes of a SQLite state database."""
        if self._conn is not None and self.engine.dialect.name == "sqlite":
            self._conn.exec_driver_sql(f"PRAGMA mmap_size={int(size)}")

    def unmap(self) -> None:
        """The part is known: later reads are a record at a time, and the mapped pages would
        count as the run's memory."""
        self._map(0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    def _cursor(self) -> Any:
        """A cursor of the driver on the state's connection: the reads below return hundreds
        of thousands of rows, which SQLAlchemy's statements and rows would cost seconds."""
        return self._c().connection.cursor()

    def _sql(self, text: str) -> str:
        """``text`` with ``?`` marks written as the driver takes them."""
        return text if self.engine.dialect.paramstyle == "qmark" else text.replace("?", "%s")

    def _where_in(
        self, columns: Sequence[Any], column: Any, values: Iterable[Any], group: bool = False
    ) -> Iterator[Any]:
        """Rows of ``columns`` whose ``column`` is one of ``values`` (asked a chunk at a
        time), counted by ``columns`` with ``group``."""
        quote = self.engine.dialect.identifier_preparer.quote
        names = ", ".join(quote(c.name) for c in columns)
        head = (
            f"SELECT {names}{', COUNT(*)' if group else ''} FROM {quote(column.table.name)} "
            f"WHERE {quote('entity')} = ? AND {quote(column.name)} IN "
        )
        cursor = self._cursor()
        try:
            for chunk in _chunks(sorted(set(values)), READ_CHUNK):
                marks = ", ".join("?" * len(chunk))
                tail = f" GROUP BY {names}" if group else ""
                cursor.execute(self._sql(f"{head}({marks}){tail}"), [self.entity, *chunk])
                yield from cursor.fetchall()
        finally:
            cursor.close()

    def rows(self, identities: Iterable[str]) -> dict[str, Row]:
        """The state of those of ``identities`` it holds."""
        t = self.state.c
        columns = [t.identity, *(t[c] for c in Row._fields)]
        return {r[0]: Row(*r[1:]) for r in self._where_in(columns, t.identity, identities)}

    def name_anchors(
        self, names: Iterable[tuple[str, str]], besides: set[str]
    ) -> dict[tuple[str, str], set[str]]:
        """The persons (by anchor) of the records of each (forename, ``|``-joined surname
        parts), but for those ``besides`` names. (A query per name: SQLite does not read a
        row-value IN list of names through the index.)"""
        quote = self.engine.dialect.identifier_preparer.quote
        query = self._sql(
            f"SELECT {quote('identity')}, {quote('anchor')} FROM {quote(STATE)} "
            f"WHERE {quote('entity')} = ? AND {quote('forename')} = ? AND {quote('surname')} = ?"
        )
        found: dict[tuple[str, str], set[str]] = {}
        cursor = self._cursor()
        try:
            for forename, surname in names:
                cursor.execute(query, (self.entity, forename[:100], surname[:200]))
                found[(forename, surname)] = {a for i, a in cursor.fetchall() if i not in besides}
        finally:
            cursor.close()
        return found

    def holders(self, keys: Iterable[int]) -> set[str]:
        """The records holding any of ``keys``."""
        t = self.keys.c
        return {i for (i,) in self._where_in([t.identity], t.key_hash, keys)}

    def sizes(self, keys: Iterable[int]) -> dict[int, int]:
        """How many records hold each of ``keys``."""
        t = self.keys.c
        return {h: n for h, n in self._where_in([t.key_hash], t.key_hash, keys, group=True)}

    def members(self, components: Iterable[str]) -> set[str]:
        t = self.state.c
        return {i for (i,) in self._where_in([t.identity], t.component, components)}

    def named(self, forenames: Iterable[str]) -> set[str]:
        """The records bearing any of ``forenames``."""
        t = self.state.c
        return {
            i for (i,) in self._where_in([t.identity], t.forename, {f[:100] for f in forenames})
        }

    def forename_counts(self) -> Counter[str]:
        if self._forenames is not None:
            return Counter(self._forenames)
        t = self.state.c
        query = (
            sa.select(t.forename, sa.func.count())
            .where(t.entity == self.entity, t.counted == 1)
            .group_by(t.forename)
        )
        return Counter({f: n for f, n in self._c().execute(query)})

    def count(self) -> int:
        """How many records the state holds (asked once)."""
        if self._count is None:
            t = self.state.c
            query = sa.select(sa.func.count()).select_from(self.state)
            self._count = int(self._c().execute(query.where(t.entity == self.entity)).scalar_one())
        return self._count

    def resolved(self, identity: str) -> Resolved | None:
        """Where the state says a record went (None: not a record it holds)."""
        if identity in self._resolved:
            return self._resolved[identity]
        t = self.state.c
        query = sa.select(t.anchor, t.rule, t.role, t.score).where(
            t.entity == self.entity, t.identity == identity
        )
        row = self._c().execute(query).first()
        found = None if row is None else Resolved(row[0], row[1], row[2], row[3])
        if len(self._resolved) < 200_000:
            self._resolved[identity] = found
        return found

    def know(self, rows: Mapping[str, Row]) -> None:
        """Where these records went, as their state rows (read already) say."""
        for identity, r in rows.items():
            self._resolved[identity] = Resolved(r.anchor, r.rule, r.role, r.score)

    def kept(self) -> bool:
        """Whether the target holds state tables at all."""
        return sa.inspect(self.engine).has_table(LOOKUPS)

    def lookup_digests(self, name: str) -> dict[int, int]:
        t = self.lookups.c
        query = sa.select(t.key_hash, t.digest).where(
            t.entity == self.entity, t.lookup == lookup_name(name)
        )
        return dict(stream(self._c(), query))


def lookup_digests(table: Mapping[str, Any]) -> dict[int, int]:
    """A looked-up relation (key text -> value) as key hash -> digest of the value."""
    return {_hash64(k): _hash64(repr(v)) for k, v in table.items()}


@dataclass(frozen=True)
class LookupChanges:
    """How a looked-up relation changed since its state was kept (worked out once a run, by
    :func:`lookup_changes`): the keys whose value changed or came, with their digests now,
    and the keys that went."""

    changed: dict[int, int]
    gone: set[int]


def lookup_changes(now: Mapping[int, int], before: Mapping[int, int]) -> LookupChanges:
    """Digests of a relation now (:func:`lookup_digests`) against those the state kept."""
    return LookupChanges(
        {h: d for h, d in now.items() if before.get(h) != d}, set(before.keys() - now.keys())
    )


def changed_lookups(name: str, changes: LookupChanges) -> set[int]:
    """The dependency keys of the lookup keys whose value changed, came or went."""
    keys = changes.changed.keys() | changes.gone
    # the dependency key names the lookup key's text; the relation is keyed by its hash
    return {dependency_hash(LOOKUP_KEY, (lookup_name(name), h)) for h in keys}


def lookup_dependency(name: str, key: str | None) -> int:
    """The dependency key of a record looking ``key`` up in lookup ``name``."""
    return dependency_hash(LOOKUP_KEY, (lookup_name(name), _hash64(key) if key else None))


def write(
    tx: Any,
    entity: str,
    resolver: Resolver,
    read: Mapping[str, Kept],
    part: Part | None,
    lookups: Mapping[str, tuple[Mapping[int, int], LookupChanges | None]],
) -> dict[str, Any]:
    """Keep ``entity``'s resolution state: all of it after a full resolution, the part's
    records (and the gone ones' removal) after a delta's. In the caller's transaction.

    Returns what the state's checkpoint keeps beside it: how many records it holds, how many
    count toward each forename in use, and the keys of their own values (blocks, PNC IDs,
    names) more than ``max_block`` records hold (:class:`Prior` reads them there, not by
    counting the state's rows)."""
    identities = resolver.identities()
    counts: Counter[str] = Counter()
    if part is None:
        for table in TABLES:
            tx.execute(f"DELETE FROM {table} WHERE entity = ?", [entity])
    else:
        # A part's record whose digest did not change keeps its dependency keys (they follow
        # from what resolution read of it), and one whose state row comes out the same is
        # not written again: a delta writes what changed, not the whole part.
        for chunk in _chunks(sorted(part.gone)):
            marks = ", ".join("?" for _ in chunk)
            tx.execute(
                f"DELETE FROM {STATE} WHERE entity = ? AND identity IN ({marks})",
                [entity, *chunk],
            )
        going = [(entity, h, i) for i, keys in sorted(part.old_keys.items()) for h in keys]
        for start in range(0, len(going), WRITE_EVERY):
            tx.delete(KEYS, going[start : start + WRITE_EVERY])
    rows: list[tuple[Any, ...]] = []
    for identity in identities:
        where = resolver.resolved(identity)
        assert where is not None
        digest, looked, seen = read[identity]
        forename, surname, dob = resolver.seen(identity)
        counted = resolver.counted_forename(identity) is not None
        if counted and part is None:
            counts[forename[:100]] += 1
        row = (
            digest,
            resolver.component(identity),
            forename[:100] or None,
            surname[:200] or None,
            int(counted),
            int(not dob),
            seen,
            json.dumps(sorted(looked)),
            where.anchor,
            where.rule,
            where.role,
            where.score,
        )
        if part is not None and part.before.get(identity) == row:
            continue
        rows.append((entity, identity, *row))
        if len(rows) >= WRITE_EVERY:
            tx.upsert(STATE, rows)
            rows = []
    tx.upsert(STATE, rows)
    capped = _write_keys(tx, entity, resolver, read, part)
    for name, (now, since) in lookups.items():
        short = lookup_name(name)
        if part is None or since is None:
            changed = list(now.items())
        else:
            changed = list(since.changed.items())
            tx.delete(LOOKUPS, [(entity, short, h) for h in sorted(since.gone)])
        for start in range(0, len(changed), WRITE_EVERY):
            tx.upsert(
                LOOKUPS, [(entity, short, h, d) for h, d in changed[start : start + WRITE_EVERY]]
            )
    kept: dict[str, Any] = (
        {"records": part.total, "forenames": dict(sorted(part.forenames.items()))}
        if part is not None
        else {"records": len(identities), "forenames": dict(sorted(counts.items()))}
    )
    if capped is not None:
        kept["capped"] = sorted(capped)
    return kept


def _write_keys(
    tx: Any,
    entity: str,
    resolver: Resolver,
    read: Mapping[str, Kept],
    part: Part | None,
) -> set[int] | None:
    """The records' dependency keys, in key order (the primary key's B-tree is then written
    from left to right). Returns the keys more than ``max_block`` records hold now, where
    known: counted over every key after a full resolution, carried over a part's."""
    identities = resolver.identities()
    hashes = array("q")
    at = array("l")
    own = 0  # (the keys of the records' own values come first, then those they looked up)
    if part is None:
        for h, members in resolver.dependency_index():
            hashes.extend([h] * len(members))
            at.extend(members)
        own = len(hashes)
        for position, identity in enumerate(identities):
            looked = read[identity][1]
            hashes.extend(looked)
            at.extend([position] * len(looked))
    else:
        # only the changed records' keys changed (those a delta worked out when it began)
        for position, identity in enumerate(identities):
            if identity in part.changed:
                found = part.new_keys[identity].union(read[identity][1])
                hashes.extend(found)
                at.extend([position] * len(found))
    h_arr = np.frombuffer(hashes, dtype=np.int64)
    a_arr = np.frombuffer(at, dtype=np.int64 if at.itemsize == 8 else np.int32)
    order = np.lexsort((a_arr, h_arr))
    capped: set[int] | None = part.capped if part is not None else None
    if part is None and own:
        # (of the records' own keys: a delta knows how many hold those it touched, not how
        # many look a value up)
        held, counts = np.unique(h_arr[:own], return_counts=True)
        capped = set(held[counts > resolver.settings.max_block].tolist())
    for start in range(0, len(order), WRITE_EVERY):
        chunk = order[start : start + WRITE_EVERY]
        tx.upsert(
            KEYS,
            [
                (entity, int(h), identities[i])
                for h, i in zip(h_arr[chunk], a_arr[chunk], strict=True)
            ],
        )
    return capped


def _name(now: Resolver, rows: Mapping[str, Row], identity: str) -> tuple[str, str]:
    """A record's (forename, surname) as it is now: a changed one's read again, else its
    state's."""
    if identity in now:
        return now.seen(identity)[:2]
    row = rows[identity]
    return row.forename or "", row.surname or ""


def _no_dob(now: Resolver, rows: Mapping[str, Row], identity: str) -> bool:
    if identity in now:
        return not now.seen(identity)[2]
    return bool(rows[identity].nodob)


class Row(NamedTuple):
    """A record's state, as :class:`Prior` reads it."""

    digest: int
    component: str
    forename: str | None
    surname: str | None
    counted: int
    nodob: int
    seen: str  # JSON of the ROLES values
    looked: str  # JSON of the lookup dependency keys
    anchor: str
    rule: str
    role: str
    score: int | None

    def values(self) -> list[Any]:
        return list(json.loads(self.seen))

    def lookups(self) -> set[int]:
        return set(json.loads(self.looked))


def seen_text(values: Sequence[Any]) -> str:
    """Values as JSON, a date as its ISO text (resolution reads either alike)."""
    return json.dumps(
        list(values), default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)
    )


#: What a run keeps of a record it resolved, for its state row: (digest, lookup dependency
#: keys, the ROLES values as JSON). The JSON text, not the values: a full run holds it for
#: every record, and a string weighs less than a list of values.
Kept = tuple[int, Collection[int], str]

#: identity -> (the ROLES values resolution reads, the record's lookup dependency keys)
Read = Callable[[set[str]], dict[str, tuple[list[Any], set[int]]]]


@dataclass
class Part:
    """The part of the population a delta resolves again (see the module's docstring)."""

    resolver: Resolver  # the part's records, in a full run's order, not yet finished
    prior: Prior
    gone: set[str]  # records the state holds that resolution does not any more
    changed: set[str]  # records whose digest changed, or new
    #: record -> (digest, lookup keys, values as JSON) of the part's records
    read: dict[str, Kept] = field(default_factory=dict)
    total: int = 0  # records resolution holds now, in the part or not
    #: the state rows the part's records and the gone ones had (those the state held)
    before: dict[str, Row] = field(default_factory=dict)
    #: the dependency keys the state holds of the changed and gone records (with the keys
    #: of what they looked up)
    old_keys: dict[str, set[int]] = field(default_factory=dict)
    #: the changed records' dependency keys now (blocks, PNC ID, name; not their look-ups')
    new_keys: dict[str, set[int]] = field(default_factory=dict)
    #: how many records, in the part or not, count toward each forename now
    forenames: Counter[str] = field(default_factory=Counter)
    #: the keys more than ``max_block`` records, in the part or not, hold now (None: the
    #: state's checkpoint did not say)
    capped: set[int] | None = None

    def __contains__(self, identity: object) -> bool:
        return identity in self.resolver

    def resolved(self, identity: str) -> Resolved | None:
        """Where a record goes: the part's resolution, else the state's."""
        if identity in self.resolver:
            return self.resolver.resolved(identity)
        if identity in self.gone:
            return None
        return self.prior.resolved(identity)

    def present(self, identity: str) -> bool:
        """Whether resolution still holds the record (in the part or unchanged in the state)."""
        if identity in self.resolver:
            return True
        return identity not in self.gone and self.prior.resolved(identity) is not None


def _keys_of(settings: ResolveSettings, rows: Mapping[str, Row]) -> dict[str, set[int]]:
    """The dependency keys the state holds of these records: worked out again from what
    resolution read of them (a record's keys follow from its values and what it looked up)."""
    scratch = Resolver(settings)
    for identity, row in rows.items():
        scratch.add(identity, row.values())
    return {i: scratch.dependency_keys(i) | row.lookups() for i, row in rows.items()}


def _partners(
    prior: Prior,
    now: Resolver,
    records: set[str],
    sizes: Mapping[int, int],
    cap: int,
    besides: set[str],
    keys: set[int] | None = None,
    corroborated: set[str] | None = None,
) -> set[str]:
    """The records a candidate pair joins to any of ``records`` (held by ``now``, or unchanged
    records the state holds), in blocks no larger than ``cap`` (``sizes``: the blocks' sizes
    now, where a change touched them; else as the state counts them), but for ``besides``
    (gone). ``now``, holding the changed records as they are now, is given ``records`` and the
    records they may pair with, as the state read them. ``keys``: the records' dependency
    keys, where known; ``corroborated``: see :meth:`Resolver.partners`."""
    if not records:
        return set()
    held = set(now.identities())
    for identity, row in sorted(prior.rows(records - held).items()):
        now.add(identity, row.values())
    if keys is None:
        keys = {k for i in records for k in now.dependency_keys(i)}
    counted = {**prior.sizes(keys - sizes.keys()), **{k: sizes[k] for k in keys & sizes.keys()}}
    mates = prior.holders(k for k in keys if counted.get(k, 0) <= cap) - besides
    for identity, row in sorted(prior.rows(mates - held - records).items()):
        now.add(identity, row.values())
    return now.partners(records, counted, corroborated)


def resolve_part(
    prior: Prior,
    settings: ResolveSettings,
    decisions: Mapping[tuple[str, str], str],
    wanted: set[str],
    deleted: set[str],
    read: Read,
    order: Callable[[set[str]], list[str]],
    lookup_changes: set[int],
    whole_above: float = WHOLE_ABOVE,
) -> Part | None:
    """The part of the population a change can reach, added (in order) to an unfinished
    :class:`Resolver` with the whole's context: pin it, then finish it. None when the part
    holds more than ``whole_above`` of the records (resolve them all instead)."""
    cap = settings.max_block
    again = (set(wanted) | prior.holders(lookup_changes)) - deleted
    fresh = read(again)
    digests = {i: digest_of(v, lk) for i, (v, lk) in fresh.items()}
    gone = set(deleted) | (again - fresh.keys())
    before = prior.rows(again | gone)
    gone &= before.keys()  # (a record never resolved is not gone from the state)
    changed = {i for i in fresh if i not in before or before[i].digest != digests[i]}
    # The changed records as they are now (and, below, those they may pair with).
    now = Resolver(settings)
    for identity in sorted(changed):
        now.add(identity, fresh[identity][0])
    # Block sizes before and after; a block crossing max_block either way changes for all.
    new_keys = {i: now.dependency_keys(i) for i in changed}
    old_keys = _keys_of(settings, {i: before[i] for i in changed | gone if i in before})
    touched = set().union(*new_keys.values(), *old_keys.values())
    sizes = prior.sizes(touched)
    after = Counter(sizes)
    for keys in old_keys.values():
        after.subtract(keys)
    for keys in new_keys.values():
        after.update(keys)
    crossing = {k for k in touched if (sizes.get(k, 0) > cap) != (after[k] > cap)}
    # The records a changed one pairs with now: scored against what the state read of them.
    corroborated: set[str] = set()
    partners = _partners(
        prior, now, changed, after, cap, gone, set().union(*new_keys.values()), corroborated
    )
    # The old names of the changed and gone records (see the names' rule below).
    olds = {(r.forename or "", r.surname or "") for i in changed | gone if (r := before.get(i))}
    # The forenames in use, before and after.
    counts = prior.forename_counts()
    was = names_in_use(counts)
    for identity in changed | gone:
        old = before.get(identity)
        if old is not None and old.counted:
            counts[old.forename or ""] -= 1
    for identity in changed:
        f = now.counted_forename(identity)
        if f is not None:
            counts[f[:100]] += 1  # (as the state keeps it)
    in_use = names_in_use(+counts)
    flipped = was ^ in_use
    # Records reviewers decided on, where resolution holds them.
    decided = {x for pair in decisions for x in pair}
    decided = {i for i in decided if i in fresh} | set(prior.rows(decided - fresh.keys()))
    pncs = {dependency_hash(PNC_KEY, p) for i in changed if (p := now.pnc(i))}
    # (A record read again whose digest did not change seeds nothing: it resolves as before
    # unless something else reaches its component.)
    crossed = prior.holders(crossing)
    sharing = prior.holders(pncs)
    seeds = changed | partners | decided | crossed | sharing
    seeds |= prior.named(flipped)
    seeds -= gone
    # A vague record a change may give its first weak pair strong enough to merge reads, from
    # now on, the clusters of everyone it fits: they may be tied to it by no component yet.
    # Such a pair is one with a changed record, one in a block no longer too large to compare,
    # or one of two records of a PNC ID a changed record now holds first (two holders after
    # the first pair by their names, not by the PNC ID: see Resolver._candidates).
    reach = (corroborated | crossed | sharing) - changed - gone
    seeds |= _partners(prior, now, reach, after, cap, gone)
    rows = prior.rows(seeds - fresh.keys())
    # (a gone record's too: its going may part its cluster)
    components = {r.component for r in rows.values()} | {
        r.component for i in seeds | gone if (r := before.get(i)) is not None
    }
    part = (prior.members(components) | seeds) - gone
    total = prior.count() - len(gone) + len(changed - before.keys())
    # Names: a record with no DOB weighs every person of its name (one of them it may join;
    # of several it joins none). One outside the part whose name a record in the part bears
    # (or bore) joins it, with its component, until none is left; the persons of its name
    # the part then does not hold are counted, not resolved (their clusters stand).
    rows.update(before)
    names_seen: set[tuple[str, str]] = set()
    new_names = olds
    frontier = part
    while True:
        rows.update(prior.rows(frontier - rows.keys() - fresh.keys()))
        new_names |= {_name(now, rows, i) for i in frontier}
        new_names -= names_seen
        names_seen |= new_names
        nameless = prior.holders(name_key(f, sn) for f, sn in new_names if f and sn)
        nameless -= part | gone
        if not nameless:
            break
        rows.update(prior.rows(nameless))
        frontier = (prior.members({rows[i].component for i in nameless}) | nameless) - part
        frontier -= gone
        part |= frontier
        new_names = set()
        if len(part) > whole_above * total:
            break
    if len(part) > whole_above * total:
        return None  # resolving every record again costs less than reading this part
    # The records read again that the part does not hold go where the state says.
    prior.know({i: r for i, r in before.items() if i not in part and i not in gone})
    rows.update(prior.rows(part - rows.keys() - fresh.keys()))
    undated = {_name(now, rows, i) for i in part if _no_dob(now, rows, i)}
    outside = {
        name: len(anchors)
        for name, anchors in prior.name_anchors(
            {n for n in undated if n[0] and n[1]}, part | gone
        ).items()
    }
    ordered = order(part)
    block_sizes: dict[int, int] = {k: after[k] for k in touched}
    namesakes = {(f, tuple(sn.split("|"))): n for (f, sn), n in outside.items() if n}
    resolver = Resolver(settings, decisions, Context(in_use, block_sizes, namesakes))
    kept: dict[str, Kept] = {}
    for identity in ordered:
        if identity in fresh:
            v, lk = fresh[identity]
            kept[identity] = (digests[identity], lk, seen_text(v))
        else:
            r = rows[identity]
            v = r.values()
            kept[identity] = (r.digest, r.lookups(), r.seen)
        resolver.add(identity, v)
    # A block the part holds only some records of, and no change touched: as the state
    # counts it (where the checkpoint lists the blocks too large to compare, only whether
    # it is one of those matters).
    rest = [
        key for key, n in resolver.block_keys(remember=True) if key not in block_sizes and n <= cap
    ]
    capped: set[int] | None = None
    if prior.capped is not None:
        block_sizes.update((key, cap + 1) for key in rest if key in prior.capped)
        looked = set().union(*(r.lookups() for i in changed | gone if (r := before.get(i))))
        capped = set(prior.capped - touched)
        capped |= {k for k in touched - looked if after[k] > cap}
    else:
        block_sizes.update(prior.sizes(rest))
    prior.unmap()
    return Part(
        resolver,
        prior,
        gone,
        changed,
        kept,
        total,
        {i: rows[i] for i in part | gone if i in rows},
        old_keys,
        new_keys,
        +counts,
        capped,
    )
