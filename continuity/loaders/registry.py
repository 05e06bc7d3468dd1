"""Loaders by name: the built-ins, and third-party ones from the ``continuity.loaders`` group.

A third-party package registers its :class:`~continuity.loaders.base.Loader` subclass in its
packaging metadata::

    [options.entry_points]
    continuity.loaders =
        vendor_api = vendor_loader.api:VendorApiLoader

Built-ins win over a plugin of the same name. A plugin that fails to import is warned about and
left out; asking for it by name is a one-line ConfigError naming the failure.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sqlalchemy import MetaData

from continuity.domain.errors import ConfigError
from continuity.loaders.base import Loader
from continuity.loaders.sql import SqlLoader
from continuity.loaders.staging import StagingLoader

ENTRY_POINT_GROUP = "continuity.loaders"

#: The loaders shipped with Continuity, by kind.
BUILTIN_LOADERS: dict[str, type[Loader]] = {
    SqlLoader.kind: SqlLoader,
    StagingLoader.kind: StagingLoader,
}


def _plugins() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILTIN_LOADERS:
            warnings.warn(
                f"loader plugin {point.name} ({point.value}) ignored: "
                "a built-in loader has that name",
                stacklevel=3,
            )
        else:
            found.setdefault(point.name, point)
    return found


def _load(point: EntryPoint) -> type[Loader]:
    """Import a plugin's class; any failure is a one-line ConfigError naming the plugin."""
    try:
        cls = point.load()
    except Exception as exc:  # a plugin may fail in any way while importing
        raise ConfigError(
            f"loader plugin {point.name} ({point.value}) failed to load: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Loader)):
        raise ConfigError(
            f"loader plugin {point.name} ({point.value}) is not a continuity Loader subclass"
        )
    return cls


def available_loaders() -> dict[str, type[Loader]]:
    """Every usable loader by kind: built-ins, then plugins (a broken plugin warns, is skipped)."""
    loaders = dict(BUILTIN_LOADERS)
    for name, point in sorted(_plugins().items()):
        try:
            loaders[name] = _load(point)
        except ConfigError as exc:
            warnings.warn(str(exc), stacklevel=2)
    return loaders


def loader_class(kind: str) -> type[Loader]:
    """The loader class of ``kind``.

    Raises:
        ConfigError: no such loader (the message lists the kinds there are), or its plugin
            failed to load.
    """
    if kind in BUILTIN_LOADERS:
        return BUILTIN_LOADERS[kind]
    plugins = _plugins()
    if kind in plugins:
        return _load(plugins[kind])
    kinds = ", ".join(sorted({*BUILTIN_LOADERS, *plugins}))
    raise ConfigError(f"unknown loader {kind!r} (available: {kinds})")


def open_loader(
    kind: str, location: str, metadata: MetaData, options: Mapping[str, Any] | None = None
) -> Loader:
    """A loader of ``kind`` writing ``metadata``'s tables at ``location``.

    Args:
        kind: ``"sql"``, ``"staging"`` or a plugin's name.
        location: a SQLAlchemy URL (``sql``) or a directory (``staging``).
        metadata: the target tables.
        options: the loader's own settings.
    """
    return loader_class(kind)(location, metadata, options)
