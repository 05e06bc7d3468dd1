"""Deterministic person resolution: which source records are one human.

The first cut merges records that share a PNC ID, or a cleansed name and date of birth, within
and across systems, and never merges two records whose PNC IDs differ: a merge rule that would
join two clusters holding different PNC IDs is refused (twins share a surname and a date of
birth; a father and son share names). Records are taken in a fixed order (the mapping's sources
in order, each in key order), so the same input always gives the same clusters, the same anchor
(the cluster's first record) and the same rule for each merged record.

Memory holds one small entry per record and per distinct rule value: the resolution of a whole
estate is a pre-pass over the person sources' key columns, not a load of their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResolveRule:
    """Records whose ``fields`` are all set and equal are one person."""

    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Resolved:
    """Where one record went: its cluster's anchor record and the rule that joined it."""

    anchor: str  # the anchor's identity: "source|table|key"
    rule: str  # "anchor", or the merge rule ("merge:same_pnc")
    role: str  # "anchor" or "merged"


class Resolver:
    """Union-find over records, fed in order; :meth:`resolved` answers per record.

    Args:
        rules: merge rules, tried in order for each record.
        forbid: fields whose differing values forbid a merge (the PNC ID).
    """

    def __init__(self, rules: Sequence[ResolveRule], forbid: Sequence[str] = ()) -> None:
        self.rules = list(rules)
        self.forbid = list(forbid)
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._parent: list[int] = []
        self._rule: list[str] = []  # how each record joined its cluster ("" for an anchor)
        self._forbidden: dict[int, frozenset[Any]] = {}  # root -> forbid values in its cluster
        self._seen: list[dict[Any, int]] = [{} for _ in self.rules]
        self.refused = 0

    def __len__(self) -> int:
        return len(self._names)

    def _find(self, i: int) -> int:
        parent = self._parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def add(self, identity: str, values: dict[str, Any]) -> None:
        """Add one record (``source|table|key``) with its rule and forbid field values."""
        if identity in self._ids:
            return
        me = len(self._names)
        self._ids[identity] = me
        self._names.append(identity)
        self._parent.append(me)
        self._rule.append("")
        forbidden = frozenset(
            (f, values[f]) for f in self.forbid if values.get(f) not in (None, "")
        )
        if forbidden:
            self._forbidden[me] = forbidden
        for number, rule in enumerate(self.rules):
            parts = tuple(values.get(f) for f in rule.fields)
            if any(p is None or p == "" for p in parts):
                continue
            seen = self._seen[number]
            other = seen.get(parts)
            if other is None:
                seen[parts] = me
                continue
            self._union(other, me, f"merge:{rule.name}")

    def _union(self, earlier: int, me: int, rule: str) -> None:
        a, b = self._find(earlier), self._find(me)
        if a == b:
            return
        fa, fb = self._forbidden.get(a, frozenset()), self._forbidden.get(b, frozenset())
        if fa and fb and _conflict(fa, fb):
            self.refused += 1
            return
        # The cluster whose anchor came first absorbs the other: anchors are first records.
        root, child = (a, b) if a < b else (b, a)
        self._parent[child] = root
        if fa or fb:
            self._forbidden[root] = fa | fb
            self._forbidden.pop(child, None)
        if not self._rule[me] and me != root:
            self._rule[me] = rule
        if child != me and not self._rule[child]:
            self._rule[child] = rule

    def resolved(self, identity: str) -> Resolved | None:
        """The record's cluster anchor and rule, or None if it was never added."""
        i = self._ids.get(identity)
        if i is None:
            return None
        root = self._find(i)
        if root == i:
            return Resolved(identity, "anchor", "anchor")
        return Resolved(self._names[root], self._rule[i] or "merge:resolved", "merged")

    def clusters(self) -> int:
        """How many persons the records resolve to."""
        return sum(1 for i in range(len(self._parent)) if self._find(i) == i)


def _conflict(a: frozenset[Any], b: frozenset[Any]) -> bool:
    """Whether two clusters hold different values of a forbid field."""
    by_field: dict[str, set[Any]] = {}
    for f, v in a:
        by_field.setdefault(f, set()).add(v)
    return any(f in by_field and v not in by_field[f] for f, v in b)
