"""Phonetic keys and name similarity, on names cleansed by :func:`continuity.domain.names.name_key`.

Shared by reconciliation's missing-person diagnostics (and, later, person resolution and search):
one implementation, so that a name two stages compare is keyed the same way in both.
"""

from __future__ import annotations

from functools import lru_cache

import jellyfish

from continuity.domain.names import name_key


@lru_cache(maxsize=65536)
def phonetic_keys(name: str) -> tuple[str, str, str]:
    """NYSIIS, Metaphone and Soundex keys of a cleansed name (empty strings for no name)."""
    key = name_key(name) or ""
    if not key:
        return "", "", ""
    return jellyfish.nysiis(key), jellyfish.metaphone(key), jellyfish.soundex(key)


def name_similarity(a: str, b: str) -> float:
    """Jaro-Winkler similarity of two cleansed names (0.0 when either is missing)."""
    ka, kb = name_key(a) or "", name_key(b) or ""
    if not ka or not kb:
        return 0.0
    return float(jellyfish.jaro_winkler_similarity(ka, kb))
