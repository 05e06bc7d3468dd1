"""Missing-person diagnostics: for a source person no crosswalk leads to, who in the target
might it be?

Diagnostic only: a candidate is never counted as a placement (a person found this way is still
MISSING until the crosswalk says where it went). Target persons are streamed once; each is
keyed by the phonetic keys of its names with its date of birth, and also with the day and month
swapped, and compared only with the missing persons sharing a key: memory grows with the
missing, not with the target.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from continuity.domain.names import name_similarity, phonetic_keys
from reconcile import normalisers
from reconcile.columns import SEP
from reconcile.spec import SurvivalSpec
from reconcile.sql import Relation, stream

#: Scores below this are not worth showing an owner.
MIN_SCORE = 0.75


def _swapped(iso: str) -> str | None:
    if len(iso) != 10:
        return None
    year, month, day = iso[:4], iso[5:7], iso[8:]
    if month == day or int(day) > 12:
        return None
    return f"{year}-{day}-{month}"


def _blocks(forename: str, surname: str, dob: str) -> set[tuple[str, str]]:
    """Blocking keys: each phonetic key of either name, with the DOB and the DOB swapped."""
    dobs = {d for d in (dob, _swapped(dob)) if d}
    keys = set()
    for part, name in (("F", forename), ("S", surname)):
        for code in phonetic_keys(name):
            if code:
                keys |= {(part + code, d) for d in dobs}
    return keys


def find_candidates(
    spec: SurvivalSpec,
    engine: Engine,
    missing: list[tuple[str, str, str, str]],
    limit: int = 5,
) -> dict[str, list[dict[str, Any]]]:
    """Candidates per missing record key: ``missing`` is (key, forename, surname, dob ISO)."""
    c = spec.candidates
    if c is None or not missing:
        return {}
    wanted: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (_, forename, surname, dob) in enumerate(missing):
        for block in _blocks(forename, surname, dob):
            wanted[block].append(i)
    fields = spec.fields
    columns = [
        spec.target.key_columns[0],
        fields[c.forename].target[0],
        fields[c.surname].target[0],
        fields[c.dob].target[0],
    ]
    rel = Relation(spec.target.population, columns)
    stmt = sa.select(*(rel.col(col) for col in columns)).select_from(rel.from_)
    if rel.filter is not None:
        stmt = stmt.where(rel.filter)
    scored: dict[int, dict[str, float]] = defaultdict(dict)
    for rows in stream(engine, stmt):
        for key, forename, surname, dob in rows:
            iso = _iso(dob)
            if iso is None:
                continue
            hits = {
                i for b in _blocks(forename or "", surname or "", iso) for i in wanted.get(b, ())
            }
            for i in hits:
                _, mf, ms, mdob = missing[i]
                score = (
                    name_similarity(mf, forename or "") + name_similarity(ms, surname or "")
                ) / 2
                if iso != mdob:
                    score -= 0.05  # matched only with day and month swapped
                if score >= MIN_SCORE:
                    scored[i][str(key)] = round(score, 3)
    out: dict[str, list[dict[str, Any]]] = {}
    for i, found in scored.items():
        best = sorted(found.items(), key=lambda kv: -kv[1])[:limit]
        out[missing[i][0]] = [{"target_key": k, "score": s} for k, s in best]
    return out


_read_date = normalisers.BUILDERS["date"]()


def _iso(value: Any) -> str | None:
    """A full date of birth as ISO text (the ``date`` normaliser's reading), else None."""
    try:
        day = _read_date(value)
    except normalisers.UnreadableValue:
        return None
    return day.isoformat() if isinstance(day, dt.date) else None


def missing_people(
    spec: SurvivalSpec, rows: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(key, forename, surname, dob) of missing records from their (key, canonical text) pairs."""
    c = spec.candidates
    assert c is not None
    names = list(spec.fields)
    fi, si, di = names.index(c.forename), names.index(c.surname), names.index(c.dob)
    out = []
    for key, canon in rows:
        texts = canon.split(SEP)
        dob = texts[di]
        if len(dob) != 10:  # unknown or year only: nothing to block on
            continue
        out.append((key, texts[fi], texts[si], dob))
    return out
