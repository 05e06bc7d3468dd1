"""Name cleansing shared by the estate, resolution, search and reconciliation diagnostics."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def strip_diacritics(text: str) -> str:
    """Drop combining marks and fold letters with no decomposition (``ł`` → ``l``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.translate(_FOLD)


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "đ": "d", "Đ": "D"})


_NAME_DROP = str.maketrans("", "", "'’`-. ")


def name_key(text: str) -> str | None:
    """A name as compared across systems: no diacritics, case, apostrophes, hyphens or spaces.

    ``O'Brien``, ``OBRIEN`` and ``o brien`` agree; ``Siobhán`` and ``SIOBHAN`` agree; a name
    mangled by a wrong encoding (``SiobhÃ¡n``) does not.
    """
    return strip_diacritics(text).casefold().translate(_NAME_DROP) or None
