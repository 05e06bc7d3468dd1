"""People review: merges near the threshold for a human to confirm or split, and the decisions.

Each wave that resolves persons rewrites the review list of its entity in the work store (the
ledger's database): the pairs whose score fell within the mapping's ``review_margin`` of its
``match`` threshold, merged or not, and those a hard rule refused. A reviewer's decision
(``confirm`` or ``split``) is kept in the work store for good, written to the audit ledger with
the operator and the reason, and applied by every later resolution: a split pair is never merged
again, a confirmed one always is (unless their PNC IDs differ).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)

from continuity.db import stream
from continuity.domain.errors import ContinuityError
from continuity.ledger import AuditLedger, open_store, operator

metadata = MetaData()

person_review = Table(
    "person_review",
    metadata,
    Column("entity", String(60), primary_key=True),
    Column("pair_id", Integer, primary_key=True),
    Column("record_a", String(200), nullable=False),
    Column("record_b", String(200), nullable=False),
    Column("score", Float, nullable=False),
    Column("rule", String(40), nullable=False),
    Column("reasons", String(200), nullable=False),
    Column("merged", Integer, nullable=False),
    Column("refused", String(20), nullable=False),
    Column("a_seen", String(200), nullable=False),
    Column("b_seen", String(200), nullable=False),
    Column("run_id", String(64)),
)
person_decision = Table(
    "person_decision",
    metadata,
    Column("entity", String(60), primary_key=True),
    Column("record_a", String(200), primary_key=True),
    Column("record_b", String(200), primary_key=True),
    Column("decision", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator", String(80), nullable=False),
    Column("decided_at", DateTime, nullable=False),
)

DECISIONS = ("confirm", "split")


class ReviewError(ContinuityError):
    """A review command that cannot be done (no such pair, no reason)."""


def _engine(url: str) -> Engine:
    return open_store(url, metadata)


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def decisions(url: str, entity: str) -> dict[tuple[str, str], str]:
    """Every decision on ``entity``'s pairs: (record, record) -> confirm or split."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    person_decision.c.record_a,
                    person_decision.c.record_b,
                    person_decision.c.decision,
                ).where(person_decision.c.entity == entity)
            )
            return {(a, b): d for a, b, d in rows}
    finally:
        engine.dispose()


def decisions_digest(found: Mapping[tuple[str, str], str]) -> str:
    """A digest of a set of decisions, for the run's settings (a resumed run uses the same)."""
    body = json.dumps(sorted(f"{a}\t{b}\t{d}" for (a, b), d in found.items()))
    return hashlib.sha256(body.encode()).hexdigest()


def save_review(
    url: str,
    entity: str,
    run_id: str | None,
    pairs: Iterable[Any],
    only: set[str] | None = None,
    stale: set[str] | None = None,
) -> int:
    """Replace ``entity``'s review list with ``pairs`` (:class:`mappings.resolution.Pair`);
    with ``only``, just the pairs of those records (a delta resolved them again): a pair
    listed already as it is now keeps its number and the run that listed it, the others of
    those records go, and the new ones are added. With ``stale`` (the records changed or
    gone), a listed pair of a record of ``only`` with one outside it stays as listed unless
    either is stale (a pair too weak to merge ties no component: see
    ``mappings.resolution.Resolver._links``). Returns how many pairs were written."""
    engine = _engine(url)
    t = person_review.c
    written = (t.score, t.rule, t.reasons, t.merged, t.refused, t.a_seen, t.b_seen)
    rows = [
        (
            p.a,
            p.b,
            p.score,
            p.rule,
            ",".join(p.reasons),
            int(p.merged),
            p.refused,
            p.a_seen[:200],
            p.b_seen[:200],
        )
        for p in pairs
    ]
    doomed: list[int] = []
    first = 1
    if only is not None:
        now = {(r[0], r[1]): r for r in rows}
        kept: set[tuple[str, str]] = set()
        with engine.connect() as conn:
            for number, a, b, *values in stream(
                conn, select(t.pair_id, t.record_a, t.record_b, *written).where(t.entity == entity)
            ):
                first = max(first, number + 1)
                if a not in only and b not in only:
                    continue
                if (
                    stale is not None
                    and (a not in only or b not in only)
                    and a not in stale
                    and b not in stale
                ):
                    continue  # (resolved again on one side only, and neither changed)
                same = now.get((a, b))
                if same is not None and _same_pair(same[2:], values) and (a, b) not in kept:
                    kept.add((a, b))
                else:
                    doomed.append(number)
        rows = [r for r in rows if (r[0], r[1]) not in kept]
    fresh = [
        {
            "entity": entity,
            "pair_id": number,
            "record_a": a,
            "record_b": b,
            "score": score,
            "rule": rule,
            "reasons": reasons,
            "merged": merged,
            "refused": refused,
            "a_seen": a_seen,
            "b_seen": b_seen,
            "run_id": run_id,
        }
        for number, (a, b, score, rule, reasons, merged, refused, a_seen, b_seen) in enumerate(
            rows, start=first
        )
    ]
    try:
        with engine.begin() as conn:
            gone = delete(person_review).where(person_review.c.entity == entity)
            if only is not None:
                doomed.sort()
                for start in range(0, len(doomed), 500):
                    conn.execute(
                        gone.where(person_review.c.pair_id.in_(doomed[start : start + 500]))
                    )
            else:
                conn.execute(gone)
            if fresh:
                conn.execute(insert(person_review), fresh)
    finally:
        engine.dispose()
    return len(fresh)


def _same_pair(now: Sequence[Any], listed: Sequence[Any]) -> bool:
    """Whether a pair's listed values are those worked out now (its score as a database's
    float keeps it: to a millionth)."""
    score, *rest = now
    was, *listed_rest = listed
    return abs(float(score) - float(was)) < 1e-6 and list(rest) == list(listed_rest)


def review(url: str, entity: str) -> list[dict[str, Any]]:
    """The review list of ``entity`` with any decision already made on each pair."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            made = {
                (r.record_a, r.record_b): r
                for r in conn.execute(
                    select(person_decision).where(person_decision.c.entity == entity)
                )
            }
            out = []
            for r in conn.execute(
                select(person_review)
                .where(person_review.c.entity == entity)
                .order_by(person_review.c.pair_id)
            ):
                d = made.get(_ordered(r.record_a, r.record_b))
                out.append(
                    {
                        "pair": r.pair_id,
                        "a": r.record_a,
                        "b": r.record_b,
                        "a_seen": r.a_seen,
                        "b_seen": r.b_seen,
                        "score": r.score,
                        "rule": r.rule,
                        "reasons": r.reasons.split(",") if r.reasons else [],
                        "merged": bool(r.merged),
                        "refused": r.refused,
                        "decision": d.decision if d else None,
                        "decided_by": d.operator if d else None,
                    }
                )
            return out
    finally:
        engine.dispose()


def state_of(pair: Mapping[str, Any]) -> str:
    """``merged``, ``refused`` (a hard rule or ambiguity said no) or ``near`` (a near miss)."""
    if pair["merged"]:
        return "merged"
    return "refused" if pair["refused"] else "near"


#: Bands of the review order: a merge near the threshold first (a wrong one puts one person's
#: warnings and convictions on another), then a hard rule's refusal, then a near miss, then the
#: bulk: pairs left apart for want of evidence (``ambiguous``, ``weak``).
_BANDS = {"merged": 0, "refused": 1, "near": 2, "wanting": 3}


def priority(pair: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of the review order: undecided before decided, then by band; merges weakest
    first, the others strongest first (the likeliest to be one person)."""
    state = state_of(pair)
    if state == "refused" and pair["refused"] in ("ambiguous", "weak"):
        state = "wanting"
    score = pair["score"] if state == "merged" else -pair["score"]
    return (pair["decision"] is not None, _BANDS[state], score, pair["pair"])


def decide(
    url: str, entity: str, pair: int | tuple[str, str], decision: str, reason: str
) -> dict[str, Any]:
    """Record a reviewer's ``confirm`` or ``split`` of a pair (by review number or records)."""
    if decision not in DECISIONS:
        raise ReviewError(f"decision {decision!r}: say confirm or split")
    if not reason.strip():
        raise ReviewError("a decision needs a --reason")
    engine = _engine(url)
    try:
        if isinstance(pair, int):
            with engine.connect() as conn:
                row = conn.execute(
                    select(person_review.c.record_a, person_review.c.record_b).where(
                        person_review.c.entity == entity, person_review.c.pair_id == pair
                    )
                ).first()
            if row is None:
                raise ReviewError(
                    f"no pair {pair} in the review list of {entity!r} "
                    "(continuity people review lists them)"
                )
            a, b = _ordered(row[0], row[1])
        else:
            a, b = _ordered(*pair)
            if a == b:
                raise ReviewError("a pair needs two different records")
        who = operator()
        at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        entry = {"entity": entity, "a": a, "b": b, "decision": decision, "reason": reason}
        # The audit entry first: no decision is ever applied that the ledger does not hold.
        ledger = AuditLedger(url)
        try:
            ledger.append("people-decision", entry)
        finally:
            ledger.close()
        with engine.begin() as conn:
            conn.execute(
                delete(person_decision).where(
                    person_decision.c.entity == entity,
                    person_decision.c.record_a == a,
                    person_decision.c.record_b == b,
                )
            )
            conn.execute(
                insert(person_decision).values(
                    entity=entity,
                    record_a=a,
                    record_b=b,
                    decision=decision,
                    reason=reason,
                    operator=who,
                    decided_at=at,
                )
            )
    finally:
        engine.dispose()
    return {**entry, "operator": who}
