"""Which extractor kinds exist: the built-ins, then plugins of the ``continuity.extractors`` group.

A third-party package adds a kind by declaring an entry point, e.g. in its ``setup.cfg``::

    [options.entry_points]
    continuity.extractors =
        oracle_forms = acme_continuity.forms:FormsExtractor

The entry point's name is the kind a project file asks for. A plugin that fails to import (or is
not an :class:`~extractors.base.Extractor`) is reported with a warning and skipped, so one
broken package does not stop a run that does not use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from continuity.domain.errors import ConfigError
from extractors.base import Extractor, one_line
from extractors.csv import CsvExtractor
from extractors.sql import SqlExtractor

#: The entry-point group third-party extractors register under.
ENTRY_POINT_GROUP = "continuity.extractors"

#: Kinds shipped with Continuity; they win over a plugin of the same name.
BUILT_INS: dict[str, type[Extractor]] = {
    SqlExtractor.kind: SqlExtractor,
    CsvExtractor.kind: CsvExtractor,
}


def _plugins() -> dict[str, EntryPoint]:
    """Entry points of the group by name, first found first (as ``sys.path`` orders them)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
    return found


def _load(entry: EntryPoint) -> type[Extractor] | None:
    """The plugin's class, or ``None`` after a warning when it cannot be used."""
    try:
        loaded = entry.load()
    except Exception as exc:  # any failure inside a third-party import must not stop the run
        problem = f"failed to import: {type(exc).__name__}: {one_line(exc)}"
    else:
        if isinstance(loaded, type) and issubclass(loaded, Extractor):
            return loaded
        problem = "is not a subclass of extractors.base.Extractor"
    warnings.warn(
        f"extractor plugin {entry.name} ({entry.value}) {problem}; skipped",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _usable(entries: dict[str, EntryPoint]) -> dict[str, type[Extractor]]:
    kinds = dict(BUILT_INS)
    for name, entry in entries.items():
        if name not in kinds:
            cls = _load(entry)
            if cls is not None:
                kinds[name] = cls
    return kinds


def available() -> dict[str, type[Extractor]]:
    """Every usable kind: the built-ins, then each plugin that loads (the others warn)."""
    return _usable(_plugins())


def extractor_class(kind: str) -> type[Extractor]:
    """The class of extractor ``kind``: a built-in, else the plugin of that name.

    Raises:
        ConfigError: no built-in or loadable plugin has that name; the message lists the
            kinds there are.
    """
    if kind in BUILT_INS:
        return BUILT_INS[kind]
    entries = _plugins()
    entry = entries.pop(kind, None)
    if entry is not None:
        cls = _load(entry)
        if cls is not None:
            return cls
    kinds = ", ".join(sorted(_usable(entries)))
    broken = " (its plugin could not be loaded)" if entry is not None else ""
    raise ConfigError(f"unknown extractor kind {kind!r}{broken}; available: {kinds}")


def open_extractor(
    kind: str, name: str, location: str, options: Mapping[str, Any] | None = None
) -> Extractor:
    """A new extractor of ``kind`` for source ``name`` at ``location``.

    Nothing is read yet; call :meth:`~extractors.base.Extractor.check` to test the source.
    """
    return extractor_class(kind)(name, location, options)
