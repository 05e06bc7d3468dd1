"""Loaders by name: built-ins, a third-party loader through a real entry point, broken plugins."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from continuity.domain.errors import ConfigError
from continuity.loaders import (
    BUILTIN_LOADERS,
    SqlLoader,
    StagingLoader,
    available_loaders,
    loader_class,
    open_loader,
)
from continuity.target_schema import metadata

PLUGIN = '''
from contextlib import contextmanager

from continuity.loaders import LoadBatch, Loader


class MemoryBatch(LoadBatch):
    def __init__(self, store):
        super().__init__()
        self.store = store

    def upsert(self, table, rows):
        for row in rows:
            self.store.setdefault(table, {})[row[0]] = row
        self._count(self.counts, table, len(rows))

    def delete(self, table, keys):
        for key in keys:
            self.store.get(table, {}).pop(key[0], None)

    def set_checkpoint(self, step, state):
        self._state(step, state)


class MemoryLoader(Loader):
    """Keeps rows in a dict: a vendor's API client would sit here."""

    kind = "memory"
    option_defaults = {"capacity": 10}

    def __init__(self, location, metadata, options=None):
        super().__init__(location, metadata, options)
        self.store, self.states = {}, {}

    def checkpoints(self):
        return dict(self.states)

    @contextmanager
    def transaction(self):
        batch = MemoryBatch({k: dict(v) for k, v in self.store.items()})
        yield batch
        self.store = batch.store
        self.states.update(batch.states)


class NotALoader:
    pass
'''


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``install(entry_points_lines)``: a distribution on sys.path whose module is PLUGIN."""

    def make(points: str) -> None:
        module = f"ct_plugin_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(PLUGIN)
        info = tmp_path / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[continuity.loaders]\n" + textwrap.dedent(points).format(module=module)
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setitem(sys.modules, module, None)  # removed from sys.modules afterwards
        del sys.modules[module]

    return make


def test_builtins_by_name(tmp_path: Path) -> None:
    assert loader_class("sql") is SqlLoader and loader_class("staging") is StagingLoader
    loader = open_loader("staging", str(tmp_path), metadata)
    assert isinstance(loader, StagingLoader) and loader.kind == "staging"
    assert set(BUILTIN_LOADERS) <= set(available_loaders())


def test_an_unknown_kind_lists_the_kinds(install: Callable[[str], None]) -> None:
    install("memory = {module}:MemoryLoader\n")
    with pytest.raises(
        ConfigError, match=r"unknown loader 'ftp' \(available: memory, sql, staging\)"
    ):
        open_loader("ftp", "x", metadata)


def test_a_third_party_loader_through_its_entry_point(install: Callable[[str], None]) -> None:
    install("memory = {module}:MemoryLoader\n")
    assert "memory" in available_loaders()
    loader = open_loader("memory", "anywhere", metadata, {"capacity": 3})
    assert loader.kind == "memory" and loader.options == {"capacity": 3}
    with loader.transaction() as batch:
        batch.upsert("ref_offence_code", [("8N", "Theft", "2024")])
        batch.set_checkpoint("wave", {"batch": 0})
    assert batch.counts == {"ref_offence_code": 1}
    assert loader.checkpoint("wave") == {"batch": 0}
    with pytest.raises(ConfigError, match="memory loader: unknown option speed"):
        open_loader("memory", "anywhere", metadata, {"speed": 3})


def test_a_broken_plugin_warns_and_is_skipped(install: Callable[[str], None]) -> None:
    install(
        """\
        memory = {module}:MemoryLoader
        broken = ct_no_such_module_anywhere:Loader
        notaloader = {module}:NotALoader
        """
    )
    with pytest.warns(UserWarning) as caught:
        loaders = available_loaders()
    assert "memory" in loaders and "broken" not in loaders and "notaloader" not in loaders
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith("loader plugin broken (ct_no_such_module_anywhere:Loader) failed")
    assert "ModuleNotFoundError" in messages[0]
    assert "notaloader" in messages[1] and "not a continuity Loader subclass" in messages[1]
    with pytest.raises(ConfigError, match=r"loader plugin broken .* failed to load"):
        loader_class("broken")


def test_a_plugin_cannot_replace_a_builtin(install: Callable[[str], None]) -> None:
    install("sql = {module}:MemoryLoader\n")
    with pytest.warns(UserWarning, match=r"loader plugin sql .* ignored: a built-in"):
        loaders = available_loaders()
    assert loaders["sql"] is SqlLoader
