"""A delta's resolution of part of the persons (continuity/resolution_state.py) gives what a
resolution of every record would: for the records it resolves again, and for every other
record, which keeps what the state says."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, inspect

from continuity import resolution_state
from continuity.db import create_tables
from continuity.loaders.registry import open_loader
from mappings.resolution import Resolver, ResolveSettings

#: with how many records hold each: the rare ones (Jon, Declan, Liam) are held by about as
#: few records as make a name one in use, so that a change flips them in or out of use
FORENAMES = {"John": 8, "Jon": 1, "Jack": 4, "Mary": 4, "Maria": 1, "Dean": 4, "Declan": 1}
FORENAMES |= {"Liam": 1, "William": 4, "Ann": 4}
SURNAMES = ["Smith", "Smyth", "Khan", "Jones", "Smith-Jones", "Brown"]
HOMES = ["M1 1AA", "M2 2BB", "M3 3CC", ""]
SETTINGS = ResolveSettings(max_block=6, curated=("legacy.NOMINAL",))


def _record(rng: random.Random) -> list[Any]:
    """forename, surname, dob, estimated, pnc, gender, middle names, home: from small pools,
    so that records collide in blocks, names and PNC IDs."""
    # few DOBs: blocks fill up beyond max_block, and a change empties or fills one
    dob = dt.date(1980 + rng.randrange(2), rng.choice([1, 2]), rng.choice([1, 2, 3]))
    roll = rng.random()
    return [
        rng.choices(list(FORENAMES), weights=list(FORENAMES.values()))[0],
        rng.choice(SURNAMES),
        None if roll < 0.15 else dob,
        0.15 <= roll < 0.3,
        rng.choice([None, None, None, "PNC1", "PNC2"]),
        rng.choice(["M", "F", None]),
        rng.choice([None, None, "Lee", "Ray"]),
        rng.choice(HOMES),
    ]


def _identity(rng: random.Random, n: int) -> str:
    table = rng.choice(["legacy|NOMINAL", "policeworks|pw_person"])
    return f"{table}|{n:05d}"


def _order(identities: Any) -> list[str]:
    """A full run's order: legacy first, each in key order."""
    return sorted(identities, key=lambda i: (not i.startswith("legacy"), i))


def _resolve(population: dict[str, list[Any]]) -> Resolver:
    r = Resolver(SETTINGS)
    for identity in _order(population):
        r.add(identity, population[identity])
    r.finish()
    return r


def _keep(
    loader: Any, resolver: Resolver, population: dict[str, list[Any]], part: Any
) -> dict[str, Any]:
    read = {
        i: (
            resolution_state.digest_of(population[i], set()),
            (),
            resolution_state.seen_text(population[i]),
        )
        for i in resolver.identities()
    }
    with loader.transaction() as tx:
        return resolution_state.write(tx, "person", resolver, read, part, {})


@pytest.mark.parametrize("checkpoint", [True, False])
@pytest.mark.parametrize("seed", range(int(__import__("os").environ.get("SEEDS", "12"))))
def test_the_part_a_change_reaches_resolves_as_every_record_would(
    tmp_path: Path, seed: int, checkpoint: bool
) -> None:
    """With the state's checkpoint (counts, and the blocks too large to compare), as a run
    reads it, and without (every count asked of the state's rows)."""
    from continuity import people

    rng = random.Random(seed)
    population = {_identity(rng, n): _record(rng) for n in range(160)}
    url, loader = _state(tmp_path, population)
    kept = _keep_counts(population) if checkpoint else None
    # The review list, as a delta keeps it: the pairs of the part written again, the others
    # (a record resolved again paired with one not, neither changed) left as listed.
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    people.save_review(ledger, "person", "run-0", _resolve(population).review)
    resolved_again = []
    for _round in range(3):  # deltas one after another: each keeps the state the next reads
        changed = set(rng.sample(sorted(population), 4))
        deleted = set(rng.sample(sorted(population.keys() - changed), 3))
        for identity in changed:
            population[identity] = _record(rng)
        for identity in deleted:
            del population[identity]
        added = {_identity(rng, 1000 + 10 * _round + n) for n in range(5)} - population.keys()
        for identity in added:
            population[identity] = _record(rng)
        # read again but unchanged (a new alias or link of theirs): they seed nothing
        related = set(rng.sample(sorted(population.keys() - changed - added), 6))
        part = _part(url, population, changed | added | related, deleted, kept)
        try:
            whole = _resolve(population)
            assert part.total == len(population)
            assert part.gone == deleted
            for identity in population:
                assert part.resolved(identity) == whole.resolved(identity), identity
            for identity in part.resolver.identities():
                assert part.resolver.component(identity) == whole.component(identity)
            people.save_review(
                ledger,
                "person",
                f"run-{_round + 1}",
                part.resolver.review,
                only=set(part.resolver.identities()) | part.gone,
                stale=part.changed | part.gone,
            )
            assert _listed(ledger) == _listing(whole.review)
            resolved_again.append(len(part.resolver))
            held = _keep(loader, part.resolver, population, part)
        finally:
            part.prior.close()
        # The state the delta kept is the one a full resolution keeps, and so are the counts
        # its checkpoint keeps (the next delta reads them there).
        fresh_url, fresh = _state(tmp_path / f"fresh{_round}", population)
        fresh.close()
        assert _rows(url) == _rows(fresh_url)
        whole_kept = _keep_counts(population)
        assert whole_kept["capped"]  # (blocks fill up beyond max_block)
        if checkpoint:
            assert held == whole_kept
            kept = held
        else:  # (what no checkpoint said is not carried over)
            assert held == {k: v for k, v in whole_kept.items() if k != "capped"}
        counting = resolution_state.Prior(url, "person")  # (none kept: it counts the rows)
        try:
            assert held["forenames"] == dict(counting.forename_counts())
            assert held["records"] == counting.count()
        finally:
            counting.close()
    loader.close()
    assert min(resolved_again) < len(population)  # a part, not everything


def test_a_record_read_again_unchanged_is_not_resolved_again(tmp_path: Path) -> None:
    """A person record a delta reads again only because a child row of its changed (a new
    alias, a new link), of a person no change reaches, resolves as the state says: it is not
    part of what the delta resolves again."""
    rng = random.Random(3)
    population = {_identity(rng, n): _record(rng) for n in range(160)}
    alone = "legacy|NOMINAL|99999"
    population[alone] = ["Xavier", "Quist", dt.date(1950, 5, 5), False, None, "M", None, "Z1"]
    url, loader = _state(tmp_path, population)
    loader.close()
    changed = set(rng.sample(sorted(population.keys() - {alone}), 2))
    for identity in changed:
        population[identity] = _record(rng)
    part = _part(url, population, changed | {alone}, set())
    try:
        assert alone not in part.resolver
        whole = _resolve(population)
        for identity in population:
            assert part.resolved(identity) == whole.resolved(identity), identity
        assert part.resolved(alone) == whole.resolved(alone) is not None
    finally:
        part.prior.close()


def _listed(ledger: str) -> list[tuple[Any, ...]]:
    """The review list the work store holds, pair by pair (numbers and runs aside)."""
    from continuity import people

    fields = ("a", "b", "score", "rule", "reasons", "merged", "refused", "a_seen", "b_seen")
    return sorted(
        tuple(",".join(p[f]) if f == "reasons" else p[f] for f in fields)
        for p in people.review(ledger, "person")
    )


def _listing(pairs: list[Any]) -> list[tuple[Any, ...]]:
    """A resolution's review pairs as the work store lists them."""
    return sorted(
        (p.a, p.b, p.score, p.rule, ",".join(p.reasons), p.merged, p.refused, p.a_seen, p.b_seen)
        for p in pairs
    )


def _keep_counts(population: dict[str, list[Any]]) -> dict[str, Any]:
    """What a full resolution's write of ``population`` returns for its checkpoint."""
    metadata = MetaData()
    resolution_state.add_tables(metadata)
    loader = open_loader("sql", "sqlite://", metadata)
    try:
        engine = loader.engine  # type: ignore[attr-defined]
        create_tables(engine, metadata)
        return _keep(loader, _resolve(population), population, None)
    finally:
        loader.close()


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {t}"))
                for t in resolution_state.TABLES
            }
    finally:
        engine.dispose()


def _state(tmp_path: Path, population: dict[str, list[Any]]) -> tuple[str, Any]:
    """A state database holding a full resolution's state of ``population``, and its loader."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    metadata = MetaData()
    resolution_state.add_tables(metadata)
    engine = create_engine(url)
    create_tables(engine, metadata)
    engine.dispose()
    loader = open_loader("sql", url, metadata)
    _keep(loader, _resolve(population), population, None)
    return url, loader


def _part(
    url: str,
    population: dict[str, list[Any]],
    changed: set[str],
    deleted: set[str],
    kept: dict[str, Any] | None = None,
) -> Any:
    prior = resolution_state.Prior(url, "person", kept)
    part = resolution_state.resolve_part(
        prior,
        SETTINGS,
        {},
        changed,
        deleted,
        lambda ids: {i: (population[i], set()) for i in ids if i in population},
        lambda ids: [i for i in _order(population) if i in ids],
        set(),
        whole_above=1.0,
    )
    assert part is not None
    part.resolver.finish()
    return part


def test_a_forename_falling_out_of_use_reaches_records_no_change_touched(tmp_path: Path) -> None:
    """Jon and John are both names in use (held by three curated nominals each): Jon Smith
    and John Smith, born the same day, are twins. A Jon nominal deleted elsewhere leaves Jon a
    mere variant of John: the two are now one man, though neither changed."""
    day = dt.date(1985, 1, 2)
    population: dict[str, list[Any]] = {}
    for n, (forename, surname) in enumerate(
        [(f, s) for f in ("Jon", "John") for s in ("Adams", "Baker", "Carter")]
    ):
        population[f"legacy|NOMINAL|L{n}"] = [
            forename,
            surname,
            dt.date(1960 + n, 5, 5),
            False,
            None,
            "M",
            None,
            "",
        ]
    population["policeworks|pw_person|P1"] = ["Jon", "Smith", day, False, None, "M", None, ""]
    population["policeworks|pw_person|P2"] = ["John", "Smith", day, False, None, "M", None, ""]
    before = _resolve(population)
    apart = before.resolved("policeworks|pw_person|P2")
    assert apart is not None and apart.role == "anchor"
    url, loader = _state(tmp_path, population)
    del population["legacy|NOMINAL|L2"]
    part = _part(url, population, set(), {"legacy|NOMINAL|L2"})
    whole = _resolve(population)
    joined = whole.resolved("policeworks|pw_person|P2")
    assert joined is not None and joined.anchor == "policeworks|pw_person|P1"
    assert part.resolved("policeworks|pw_person|P2") == joined
    loader.close()
    part.prior.close()


def test_an_estimate_a_block_coming_under_its_cap_corroborates_weighs_all_it_fits(
    tmp_path: Path,
) -> None:
    """John Lee Smith, his DOB estimated as 1980, and John Lee Smith born in 1980 are never
    compared while their year's block is over max_block: nothing ties the estimate to John
    Smith born in 1981, whom it fits too (nothing corroborates that pair). Two deletions bring
    the block under its cap: the estimate, now enough to merge with the first, fits both men,
    and stays apart (ambiguous). The delta must weigh the second man, though no change touched
    him nor his block."""
    population: dict[str, list[Any]] = {
        "legacy|NOMINAL|E": ["John", "Smith", dt.date(1980, 1, 1), True, None, "M", "Lee", ""],
        "legacy|NOMINAL|X": ["John", "Smith", dt.date(1980, 5, 5), False, "P0", "M", "Lee", ""],
        "legacy|NOMINAL|C": ["John", "Smith", dt.date(1981, 3, 3), False, "P1", "M", None, ""],
    }
    for n in range(6):  # other men of the name born in 1980 (the year's block holds 8), each
        # with another middle name: none of them the estimate's man
        population[f"policeworks|pw_person|F{n}"] = [
            *("John", "Smith", dt.date(1980, 6, n + 1), False, f"Q{n}", "M", "Ray", "")
        ]
    estimate, first = "legacy|NOMINAL|E", "legacy|NOMINAL|X"
    assert _resolve(population).resolved(estimate).role == "anchor"  # type: ignore[union-attr]
    url, loader = _state(tmp_path, population)
    gone = {"policeworks|pw_person|F0", "policeworks|pw_person|F1"}
    for identity in gone:
        del population[identity]
    part = _part(url, population, set(), gone)
    whole = _resolve(population)
    assert any({p.a, p.b} == {estimate, first} and p.refused == "ambiguous" for p in whole.review)
    for identity in population:
        assert part.resolved(identity) == whole.resolved(identity), identity
    loader.close()
    part.prior.close()


def test_a_new_first_holder_of_a_pnc_id_leaves_two_others_to_their_names(
    tmp_path: Path,
) -> None:
    """Records sharing a PNC ID pair with its first holder. A new nominal holding the ID of
    John Lee Smith (DOB estimated as 1980) and John Lee Smith born in 1980 sorts before both:
    the two now pair by their names, a weak pair strong enough to merge, and the estimate weighs
    John Smith born in 1981 too, whom nothing tied to it before."""
    population: dict[str, list[Any]] = {
        "policeworks|pw_person|E": [
            "John",
            "Smith",
            dt.date(1980, 1, 1),
            True,
            "P",
            "M",
            "Lee",
            "",
        ],
        "policeworks|pw_person|X": [
            "John",
            "Smith",
            dt.date(1980, 5, 5),
            False,
            "P",
            None,
            "Lee",
            "",
        ],
        "policeworks|pw_person|K": [
            "John",
            "Smith",
            dt.date(1981, 3, 3),
            False,
            None,
            "M",
            None,
            "",
        ],
    }
    url, loader = _state(tmp_path, population)
    first = "legacy|NOMINAL|C"
    population[first] = ["Zed", "Other", None, False, "P", "F", None, ""]
    part = _part(url, population, {first}, set())
    whole = _resolve(population)
    try:
        for identity in population:
            assert part.resolved(identity) == whole.resolved(identity), identity
        for identity in part.resolver.identities():
            assert part.resolver.component(identity) == whole.component(identity)
        assert "policeworks|pw_person|K" in part.resolver
    finally:
        loader.close()
        part.prior.close()


def test_a_block_larger_than_its_cap_stays_uncompared_in_a_part_holding_few_of_it(
    tmp_path: Path,
) -> None:
    """Two records of one name and DOB in blocks larger than max_block are never compared: a
    delta migrating both again (a child row of each changed) must not compare them either,
    though the part it resolves holds only two records of those blocks."""
    day = dt.date(1990, 3, 4)
    rows = [("Mohammed", "Khan", day)] * 2
    rows += [(f, "Khan", day) for f in ("Ali", "Omar", "Yusuf", "Bilal", "Hamza")]
    rows += [("Mohammed", s, day) for s in ("Ahmed", "Patel", "Shah", "Iqbal", "Malik")]
    rows += [("Mohammed", "Khan", dt.date(1990, 5, d)) for d in range(1, 6)]
    population: dict[str, list[Any]] = {
        f"policeworks|pw_person|P{n:02d}": [f, s, d, False, None, None, None, ""]
        for n, (f, s, d) in enumerate(rows)
    }
    whole = _resolve(population)
    assert whole.resolved("policeworks|pw_person|P01").role == "anchor"  # type: ignore[union-attr]
    url, loader = _state(tmp_path, population)
    wanted = {"policeworks|pw_person|P00", "policeworks|pw_person|P01"}
    part = _part(url, population, wanted, set())
    assert len(part.resolver) < len(population)
    for identity in population:
        assert part.resolved(identity) == whole.resolved(identity), identity
    loader.close()
    part.prior.close()


@pytest.mark.parametrize("kept", [False, True])
def test_the_dependency_index_is_every_records_dependency_keys(kept: bool) -> None:
    """Written the other way round (kept from the blocking passes while finishing, or worked
    out again), the index holds each record's dependency keys, no more, no fewer."""
    rng = random.Random(3)
    r = Resolver(SETTINGS)
    r.keep_dependencies = kept
    for n in range(300):
        r.add(_identity(rng, n), _record(rng))
    r.finish()
    held: dict[str, set[int]] = {i: set() for i in r.identities()}
    names = r.identities()
    for key, members in r.dependency_index():
        for i in members:
            held[names[i]].add(key)
    assert held == {i: r.dependency_keys(i) for i in names}


def test_a_part_reaching_most_records_gives_way_to_resolving_them_all(tmp_path: Path) -> None:
    rng = random.Random(5)
    population = {_identity(rng, n): _record(rng) for n in range(160)}
    url, loader = _state(tmp_path, population)
    changed = set(rng.sample(sorted(population), 20))
    for identity in changed:
        population[identity] = _record(rng)
    prior = resolution_state.Prior(url, "person")
    found = resolution_state.resolve_part(
        prior,
        SETTINGS,
        {},
        changed,
        set(),
        lambda ids: {i: (population[i], set()) for i in ids if i in population},
        lambda ids: [i for i in _order(population) if i in ids],
        set(),
        whole_above=0.1,
    )
    assert found is None
    prior.close()
    loader.close()


def test_a_new_person_of_the_name_a_record_without_dob_bears_reaches_it(tmp_path: Path) -> None:
    """Zed Quinn with no DOB joins the Zed Quinn at his home: the only one of his name. A new
    Zed Quinn elsewhere, paired with no one, leaves him torn between two: apart again."""
    home = "M1 1AA"
    population: dict[str, list[Any]] = {
        "legacy|NOMINAL|A": ["Zed", "Quinn", dt.date(1970, 1, 2), False, None, "M", None, home],
        "policeworks|pw_person|E": ["Zed", "Quinn", None, False, None, "M", None, home],
    }
    before = _resolve(population).resolved("policeworks|pw_person|E")
    assert before is not None and before.anchor == "legacy|NOMINAL|A"
    url, loader = _state(tmp_path, population)
    new = "policeworks|pw_person|N"
    population[new] = ["Zed", "Quinn", dt.date(1990, 5, 6), False, None, "M", None, ""]
    part = _part(url, population, {new}, set())
    whole = _resolve(population)
    after = whole.resolved("policeworks|pw_person|E")
    assert after is not None and after.role == "anchor"
    for identity in population:
        assert part.resolved(identity) == whole.resolved(identity), identity
    loader.close()
    part.prior.close()


def test_an_earlier_versions_index_of_the_keys_by_record_is_dropped(tmp_path: Path) -> None:
    """The keys are no longer indexed by record (a delta works a record's keys out again
    from its state row): a database an earlier version made loses that index, keeping its
    rows, so that no write keeps it up."""
    url, loader = _state(tmp_path, {"legacy|NOMINAL|1": _record(random.Random(1))})
    loader.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE INDEX ix_migration_resolution_key "
                "ON migration_resolution_key (entity, identity, key_hash)"
            )
        before = _rows(url)
        metadata = MetaData()
        resolution_state.add_tables(metadata)
        resolution_state.create_tables(engine, metadata)
        indexes = inspect(engine).get_indexes(resolution_state.KEYS)
    finally:
        engine.dispose()
    assert indexes == []
    assert _rows(url) == before and before[resolution_state.KEYS]
