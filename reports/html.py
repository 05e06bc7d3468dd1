"""The HTML rendering of a report: one self-contained file (no network, opens from disk, prints
on A4), rendered from the report document and nothing else.

The document is embedded as JSON; the page's own script pages, searches and filters the
exception table, drawing only the rows of the page shown, so a million exceptions do not freeze
it. The summary, chart and identities are rendered here, as HTML and SVG, so they print.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from reports.model import BLOCKED, CLEAN

#: Placements in the chart and filters, with their colours.
PALETTE = (
    ("MIGRATED", "#2e7d32"),
    ("MERGED", "#66bb6a"),
    ("EXCLUDED", "#90a4ae"),
    ("REJECTED", "#ffb300"),
    ("DEFERRED", "#b0bec5"),
    ("DELETED_AT_SOURCE", "#8d6e63"),
    ("DUPLICATED", "#ef6c00"),
    ("MISSING", "#c62828"),
    ("ALTERED", "#ad1457"),
    ("ORPHAN", "#6a1b9a"),
)
TERMS = (
    "migrated",
    "merged",
    "duplicated",
    "excluded",
    "rejected",
    "deferred",
    "deleted_at_source",
    "missing",
)


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _chart(document: dict[str, Any]) -> str:
    """A horizontal stacked bar per class: each disposition's share of the class's records
    (a non-zero share is drawn at least 2 px wide, so a single loss is visible)."""
    width, bar, gap, label = 760, 16, 8, 200
    classes = document["classes"]
    height = len(classes) * (bar + gap) + gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width + label}" '
        f'height="{height}" viewBox="0 0 {width + label} {height}" '
        'aria-label="Dispositions per class">'
    ]
    for i, c in enumerate(classes):
        y = gap + i * (bar + gap)
        counts = c["dispositions"]
        total = sum(counts.get(p, 0) for p, _ in PALETTE) or 1
        parts.append(f'<text x="0" y="{y + bar - 4}" font-size="12">{_escape(c["class"])}</text>')
        x = float(label)
        for placement, colour in PALETTE:
            n = counts.get(placement, 0)
            if not n:
                continue
            w = max(2.0, width * n / total)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="{colour}">'
                f"<title>{placement}: {n:,}</title></rect>"
            )
            x += w
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_html(document: dict[str, Any], digest: str) -> str:
    """The report page of ``document`` (whose JSON file has SHA-256 ``digest``)."""
    state = document["summary"]["state"]
    verdict = {
        CLEAN: "Every class clean: nothing lost",
        BLOCKED: "Blocked: critical exceptions await their owner",
    }.get(state, "Exceptions to review")
    signoffs: dict[str, Any] = {}
    for s in document.get("signoffs", []):
        signoffs[s["class"]] = s
    # inside <script>, "</" could end the element and "<!--" open a comment: every "<" is
    # written as the JSON escape \u003c, which JSON.parse reads back as "<"
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            doc=document,
            digest=digest,
            verdict=verdict,
            chart=_chart(document),
            palette=PALETTE,
            terms=TERMS,
            placements=[p for p, _ in PALETTE if p != "MIGRATED"],
            signoffs=signoffs,
            data=data,
        )
    )
