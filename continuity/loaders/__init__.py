"""Loaders: write a wave's target rows, batch by batch, each batch committed with its checkpoints.

Built-in kinds: ``sql`` (straight into the target database through the driver's bulk path) and
``staging`` (CSV files and a manifest a vendor applies). Third-party loaders register in the
entry-point group ``continuity.loaders``. See ``docs/loaders.md``.
"""

from __future__ import annotations

from continuity.loaders.base import LoadBatch, Loader, LoadError
from continuity.loaders.registry import (
    BUILTIN_LOADERS,
    ENTRY_POINT_GROUP,
    available_loaders,
    loader_class,
    open_loader,
)
from continuity.loaders.sql import SqlLoader
from continuity.loaders.staging import StagingLoader, apply_staging

__all__ = [
    "BUILTIN_LOADERS",
    "ENTRY_POINT_GROUP",
    "LoadBatch",
    "LoadError",
    "Loader",
    "SqlLoader",
    "StagingLoader",
    "apply_staging",
    "available_loaders",
    "loader_class",
    "open_loader",
]
