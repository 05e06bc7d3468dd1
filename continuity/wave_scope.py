"""What a wave reads: its anchors' filters, and what they link to, pulled in as SQL.

A wave names filters on a few tables (its anchors: the crimes of a division). Every other read of
the same source database is scoped through the mappings' references, outward from the anchors:

- a read *belongs* to the record its first reference names (a crime's links and bail belong to
  the crime, a person's names, aliases, warnings and home links to the person): it takes the
  records that belong to a scoped record;
- a read referred to by a scoped read takes the records referred to (the persons of a crime's
  links, the crime scenes, the homes of those persons).

Each scope is a subquery run by the source database: nothing is gathered in memory. A read no
reference reaches is read whole; a table the wave names keeps the wave's filter. References
across source systems are not followed (a PoliceWorks person of a legacy crime is not pulled in;
resolution reads every person, whatever the wave). Scopes never depend on themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from continuity.project import WaveConfig
from mappings.spec import MappingSpec, SourceMapping

Node = tuple[str, str]  # (source, as_table)


@dataclass
class _Read:
    mapping: SourceMapping
    explicit: str | None
    round: int | None = None
    # (my columns, the neighbour read, its columns): my records are those whose my-columns
    # values are among the neighbour's records' its-columns values.
    through: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = field(default_factory=list)


def wave_scopes(
    specs: Sequence[MappingSpec],
    wave: WaveConfig,
    quoters: Mapping[str, Callable[[str], str]] | None = None,
) -> dict[int, str | None]:
    """Every read's filter in ``wave``, by ``id()`` of its SourceMapping (None: whole).

    Args:
        quoters: per source, how its database quotes a name where it must (PostgreSQL folds
            an unquoted ``CRIME`` to ``crime``); names are written as they are otherwise.
    """
    reads = [
        _Read(m, wave.filter_for(m.source, m.table or m.as_table)) for s in specs for m in s.sources
    ]
    if not any(r.explicit for r in reads):
        return {id(r.mapping): r.explicit for r in reads}
    by_node: dict[Node, list[int]] = {}
    for i, r in enumerate(reads):
        if r.mapping.table is not None:
            by_node.setdefault((r.mapping.source, r.mapping.as_table), []).append(i)
    owned: list[tuple[int, tuple[str, ...], int, tuple[str, ...]]] = []  # child belongs to
    referred: list[tuple[int, tuple[str, ...], int, tuple[str, ...]]] = []  # child refers to
    for i, r in enumerate(reads):
        for n, ref in enumerate(r.mapping.refs()):
            if ref.source != r.mapping.source or r.mapping.table is None:
                continue
            for j in by_node.get((ref.source, ref.table), []):
                theirs = reads[j].mapping.key
                mine = ref.key
                if j == i or len(mine) != len(theirs):
                    continue
                referred.append((i, mine, j, theirs))
                if n == 0:  # the first reference: the record it belongs to
                    owned.append((i, mine, j, theirs))
    for r in reads:
        if r.explicit:
            r.round = 0
    # Outward from the anchors, one ring at a time: a read is scoped by the reads of the
    # rings before its own, so a scope never leans on a read scoped after it.
    ring = 0
    while True:
        ring += 1
        found: dict[int, list[tuple[tuple[str, ...], int, tuple[str, ...]]]] = {}
        for child, mine, parent, theirs in owned:  # belongs to a scoped record
            if reads[child].round is None and _before(reads, parent, ring):
                found.setdefault(child, []).append((mine, parent, theirs))
        for child, mine, parent, theirs in referred:  # referred to by a scoped read
            if reads[parent].round is None and _before(reads, child, ring):
                found.setdefault(parent, []).append((theirs, child, mine))
        if not found:
            break
        for i, through in found.items():
            reads[i].round = ring
            reads[i].through = through
    # Then more reasons to read a referred-to record (a person's home, beside the crime
    # scenes), where that makes no read depend on itself.
    changed = True
    while changed:
        changed = False
        for child, mine, parent, theirs in referred:
            p, c = reads[parent], reads[child]
            if p.explicit or p.round is None or c.round is None:
                continue
            if any(o == child and m == theirs for m, o, _ in p.through):
                continue
            if parent in _depends(reads, child):
                continue
            p.through.append((theirs, child, mine))
            changed = True
    quote = quoters or {}
    return {
        id(r.mapping): _render(reads, i, quote.get(r.mapping.source, _as_is))
        for i, r in enumerate(reads)
    }


def _as_is(name: str) -> str:
    return name


def _before(reads: Sequence[_Read], i: int, ring: int) -> bool:
    r = reads[i].round
    return r is not None and r < ring


def _depends(reads: Sequence[_Read], i: int) -> set[int]:
    seen: set[int] = set()
    stack = [i]
    while stack:
        for _, other, _ in reads[stack.pop()].through:
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def _render(reads: Sequence[_Read], i: int, q: Callable[[str], str]) -> str | None:
    read = reads[i]
    if read.explicit:
        return read.explicit
    if not read.through:
        return None
    parts = []
    for mine, other, theirs in read.through:
        source = reads[other]
        inner = " AND ".join(
            f"({w})" for w in (source.mapping.where, _render(reads, other, q)) if w
        )
        columns = ", ".join(q(c) for c in mine)
        left = columns if len(mine) == 1 else f"({columns})"
        parts.append(
            f"{left} IN (SELECT {', '.join(q(c) for c in theirs)} "
            f"FROM {q(source.mapping.table or '')}" + (f" WHERE {inner}" if inner else "") + ")"
        )
    return " OR ".join(f"({p})" for p in parts)
