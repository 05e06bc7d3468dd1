"""Extractors: pluggable readers that stream row batches out of legacy and PoliceWorks sources.

Built-in kinds are ``sql`` (any SQLAlchemy URL) and ``csv``; third-party kinds register in the
entry-point group ``continuity.extractors`` (see ``docs/extractors.md``). Stages import only
:mod:`continuity.domain` from the core package.
"""

from __future__ import annotations

from extractors.base import Extractor, KeyProblem, Selection
from extractors.registry import BUILT_INS, available, extractor_class, open_extractor

__all__ = [
    "BUILT_INS",
    "Extractor",
    "KeyProblem",
    "Selection",
    "available",
    "extractor_class",
    "open_extractor",
]
