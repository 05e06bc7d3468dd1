"""Every quirk of the estate appears at (at least) its stated rate, measured on the databases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from continuity.estate import quirks


def _urls(estate: Path) -> dict[str, str]:
    return {
        name: f"sqlite:///{estate / (name + '.sqlite')}"
        for name in ("legacy", "policeworks", "target", "truth")
    }


@pytest.fixture(scope="module")
def measured(small_estate: Path) -> dict[str, tuple[int, int]]:
    return quirks.measure(_urls(small_estate))


@pytest.mark.parametrize(
    "name,system,description,minimum", quirks.catalogue(), ids=lambda v: str(v)[:30]
)
def test_quirk_appears_at_its_stated_rate(
    measured: dict[str, tuple[int, int]], name: str, system: str, description: str, minimum: float
) -> None:
    shown, among = measured[name]
    assert among > 0, f"{name}: nothing to measure it on"
    rate = shown / among
    assert rate >= minimum, f"{name} ({description}): {rate:.4f} < stated minimum {minimum}"
    assert rate <= quirks.MAXIMUM.get(name, 1.0), f"{name}: {rate:.4f} above its stated maximum"


def test_docs_state_every_quirk_with_its_minimum() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "estate.md").read_text(encoding="utf-8")
    for name, _system, _description, minimum in quirks.catalogue():
        line = next((ln for ln in doc.splitlines() if f"`{name}`" in ln), None)
        assert line is not None, f"docs/estate.md does not list quirk {name}"
        assert re.search(rf"\b{minimum * 100:g}\s*%", line), (
            f"docs/estate.md states another rate for {name}"
        )


def test_quirks_are_measured_not_assumed(tmp_path: Path) -> None:
    """A legacy database with no quirks measures zero: the measure reads the data."""
    from sqlalchemy import create_engine, text

    from continuity.estate.generate import EstateOptions, generate_estate

    out = tmp_path / "e"
    generate_estate(EstateOptions(out=out, persons=300, seed=3, processes=1))
    engine = create_engine(f"sqlite:///{out / 'legacy.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text('UPDATE "NOMINAL" SET "DOB" = \'01-JAN-1970\', "FORENAME2" = \'\''))
    engine.dispose()
    measured = quirks.measure(_urls(out))
    assert measured["dob_two_digit_year"][0] == 0
    assert measured["placeholder_unknown_name"][0] == 0
    assert measured["dob_month_name"][0] == measured["dob_month_name"][1]
