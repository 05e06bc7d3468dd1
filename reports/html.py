"""The HTML rendering of a report: one self-contained file (no network, opens from disk, prints
on A4), rendered from the report document and nothing else.

The document is embedded as JSON; the page's own script pages, searches and filters the
exception table, drawing only the rows of the page shown, so a million exceptions do not freeze
it. The summary, chart and identities are rendered here, as HTML and SVG, so they print.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
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
        parts.append(
            f'<text x="0" y="{y + bar - 4}" font-size="12">{escape(c["class"], quote=False)}</text>'
        )
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


def _trend_chart(document: dict[str, Any]) -> str:
    """Open exceptions at each reconciliation of this target, oldest first: all classes, and
    each critical class on its own line."""
    trend = document.get("trend", [])
    if len(trend) < 2:
        return ""
    width, height, left, bottom = 760, 160, 48, 22
    critical = [c["class"] for c in document["classes"] if c["severity"] == "critical"]
    series = [
        ("all classes", "#1d1d1f", [sum(v or 0 for v in t["exceptions"].values()) for t in trend])
    ]
    colours = ("#b00020", "#6a1b9a", "#ef6c00", "#00695c")
    for i, name in enumerate(critical):
        series.append(
            (name, colours[i % len(colours)], [t["exceptions"].get(name) or 0 for t in trend])
        )
    top = max(1, *(v for _, _, values in series for v in values))
    step = (width - left - 10) / (len(trend) - 1)

    def point(i: int, v: int) -> tuple[float, float]:
        return left + i * step, 8 + (height - bottom - 8) * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="Open exceptions per reconciliation">',
        f'<text x="0" y="14" font-size="11">{top:,}</text>',
        f'<text x="0" y="{height - bottom}" font-size="11">0</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#d9d9de"/>',
    ]
    for i, t in enumerate(trend):
        x, _ = point(i, 0)
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">'
            f"{int(t['reconcile_run'])}</text>"
        )
    for name, colour, values in series:
        points = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (point(i, v) for i, v in enumerate(values))
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{escape(name, quote=False)}: {', '.join(f'{v:,}' for v in values)}"
            "</title></polyline>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{escape(name, quote=False)}</span>'
        for name, colour, _ in series
    )
    return f'<div class="legend">{legend}</div>' + "".join(parts)


def render_html(document: dict[str, Any], digest: str) -> str:
    """The report page of ``document`` (whose JSON file has SHA-256 ``digest``)."""
    state = document["summary"]["state"]
    verdict = {
        CLEAN: "Every class clean: nothing lost",
        BLOCKED: "Blocked: critical exceptions await their owner",
    }.get(state, "Exceptions to review")
    signoffs: dict[str, Any] = {}
    for s in document.get("signoffs", []):
        signoffs[str(s.get("class"))] = s
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
            trend_chart=_trend_chart(document),
            palette=PALETTE,
            terms=TERMS,
            placements=[p for p, _ in PALETTE if p != "MIGRATED"],
            signoffs=signoffs,
            data=data,
        )
    )
