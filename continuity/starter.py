"""``continuity init``: a commented starter project a force edits into its own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from continuity.domain.errors import ConfigError

_FILES = ("continuity.yml", "mappings/location.yml", "suites/legacy.ADDRESS.yml")


def write_starter(folder: Path) -> list[Path]:
    """Write the starter project into ``folder``; never overwrite an existing file."""
    folder = Path(folder)
    targets = [folder / name for name in _FILES]
    present = [str(p) for p in targets if p.exists()]
    if present:
        raise ConfigError(f"{present[0]} already exists: init writes only into a new project")
    templates = resources.files("continuity").joinpath("templates")
    for name, path in zip(_FILES, targets, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        text = templates.joinpath(name).read_text(encoding="utf-8")
        path.write_text(text, encoding="utf-8")
    return targets
