"""CSV exception lists: one file per class and placement, for the team working them off."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

HEADER = (
    "class",
    "system",
    "table",
    "key",
    "placement",
    "integrity",
    "fields",
    "reason",
    "target_key",
    "candidates",
    "accepted",
    "acceptance_reason",
)


def _cell(value: str) -> str:
    """A text cell a spreadsheet will not run: one starting =, +, -, @ (or a tab or carriage
    return) is a formula to Excel and LibreOffice; a leading apostrophe makes it text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_csvs(document: dict[str, Any], folder: Path) -> list[Path]:
    """``folder/CLASS.DISPOSITION.csv`` for every class and disposition with exceptions (the
    placement, with ``-ALTERED`` when the record arrived altered: ``crimes.MIGRATED-ALTERED``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    columns = document["exceptions"]["columns"]
    at = {name: i for i, name in enumerate(columns)}
    handles: dict[tuple[str, str], Any] = {}
    writers: dict[tuple[str, str], Any] = {}
    try:
        for row in document["exceptions"]["rows"]:
            disposition = row[at["placement"]]
            if row[at["integrity"]] == "ALTERED":
                disposition += "-ALTERED"
            group = (row[at["class"]], disposition)
            writer = writers.get(group)
            if writer is None:
                handle = open(  # noqa: SIM115 - closed below, one per group
                    folder / f"{group[0]}.{group[1]}.csv", "w", newline="", encoding="utf-8"
                )
                handles[group] = handle
                writer = writers[group] = csv.writer(handle)
                writer.writerow(HEADER)
            acceptance = row[at["acceptance"]] or {}
            writer.writerow(
                _cell(str(v))
                for v in [
                    row[at["class"]],
                    row[at["system"]] or "target",
                    row[at["table"]],
                    row[at["key"]],
                    row[at["placement"]],
                    row[at["integrity"]] or "",
                    json.dumps(row[at["diffs"]], ensure_ascii=False) if row[at["diffs"]] else "",
                    row[at["reason"]] or "",
                    row[at["target_key"]] or "",
                    json.dumps(row[at["candidates"]]) if row[at["candidates"]] else "",
                    "yes" if row[at["accepted"]] else "no",
                    acceptance.get("reason", ""),
                ]
            )
    finally:
        for handle in handles.values():
            handle.close()
    return sorted(folder / f"{c}.{p}.csv" for c, p in handles)
