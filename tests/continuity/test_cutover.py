"""`continuity cutover plan|freeze|run|verify`: rehearsal timings, a freeze in the audit ledger,
the final delta under it, and a go/no-go on the whole estate."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from continuity import cutover, target_schema
from continuity.cli import main
from continuity.db import create_tables
from continuity.domain.errors import ConfigError
from continuity.estate.evolve import evolve_estate
from continuity.estate.generate import EstateOptions, generate_estate
from continuity.ledger import AuditLedger
from continuity.project import Project, load_project
from continuity.waves import run_wave

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gmp"


def _env(base: Path) -> dict[str, str]:
    return {
        "CONTINUITY_ESTATE": str(base / "estate"),
        "CONTINUITY_TARGET": f"sqlite:///{base / 'product.sqlite'}",
        "CONTINUITY_LEDGER": f"sqlite:///{base / 'ledger.sqlite'}",
        "CONTINUITY_FINGERPRINT_KEY": "test",
    }


def _project(base: Path) -> Project:
    return load_project(base / "project", _env(base))


@pytest.fixture
def rehearsed(tmp_path: Path) -> Path:
    """An estate migrated whole, then 20 days later a rehearsal delta, then 5 more days."""
    base = tmp_path / "b"
    generate_estate(EstateOptions(out=base / "estate", persons=900, seed=31, processes=1))
    engine = create_engine(_env(base)["CONTINUITY_TARGET"])
    create_tables(engine, target_schema.metadata)
    engine.dispose()
    shutil.copytree(EXAMPLE, base / "project", ignore=shutil.ignore_patterns(".continuity"))
    urls = EstateOptions(out=base / "estate").urls()
    run_wave(_project(base), "all")
    evolve_estate(base / "estate", 20, urls, processes=1)
    run_wave(_project(base), "all", delta=True)
    evolve_estate(base / "estate", 5, urls, processes=1)
    return base


def _cli(base: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["cutover", *args, "--project", str(base / "project")], env=_env(base)
    )
    return result.exit_code, result.output


def _sign_everything(base: Path) -> None:
    """Every owner makes a key, registers it, and approves each of their classes in the
    cut-over report (built from the reconciliation verify recorded)."""
    import re

    from continuity import reporting
    from reports.signing import generate

    folder, keys = base / "project", base / "keys"
    text = (folder / "continuity.yml").read_text()
    project = _project(base)
    for owner in project.owners:
        _, _, public = generate(keys, owner)
        text = re.sub(
            rf"(\n  {owner}:\n    name: [^\n]*\n)", rf"\1    public_key: {public}\n", text
        )
    (folder / "continuity.yml").write_text(text)
    project = _project(base)
    document = reporting.build(project, wave="all", kind="cutover")
    assert document["checked"]["freeze"] is not None
    reporting.write(project, document, base / "report")
    for owner in project.owners.values():
        for cls in owner.classes:
            reporting.signoff(
                project, base / "report" / "report.json", cls, keys / f"{owner.key}.key", "approve"
            )


def test_the_plan_shows_each_rehearsal_what_changed_since_and_a_prediction(
    rehearsed: Path,
) -> None:
    found = cutover.plan(_project(rehearsed), "all")
    assert [r.kind for r in found.history] == ["full", "delta"]
    full, delta = found.history
    assert delta.changes < full.changes and delta.rows < full.rows
    assert found.pending["policeworks.pw_occurrence"]["added"] > 0
    assert found.pending_total > 0
    assert found.predicted is not None and found.predicted >= delta.seconds
    code, out = _cli(rehearsed, "plan")
    assert code == 0
    assert "Predicted delta:" in out and "Changed at source since the last run" in out


def test_the_delta_runs_only_under_a_freeze_and_a_freeze_is_lifted_with_a_reason(
    rehearsed: Path,
) -> None:
    project = _project(rehearsed)
    with pytest.raises(ConfigError, match="not frozen"):
        cutover.run_delta(project, "all")
    cutover.freeze(project, "all", "cut-over weekend")
    with pytest.raises(ConfigError, match="frozen already"):
        cutover.freeze(project, "all")
    with pytest.raises(ConfigError, match="needs --reason"):
        cutover.freeze(project, "all", lift=True)
    cutover.freeze(project, "all", "the board said no-go", lift=True)
    code, out = _cli(rehearsed, "run")
    assert code == 2 and "not frozen" in out
    code, out = _cli(rehearsed, "freeze")
    assert code == 0 and "recorded" in out


def test_go_needs_the_freeze_held_the_estate_clean_and_every_class_signed(
    rehearsed: Path,
) -> None:
    code, out = _cli(rehearsed, "verify")
    assert code == 1
    assert "no freeze in force" in out and "no cut-over delta" in out

    assert _cli(rehearsed, "freeze")[0] == 0
    code, out = _cli(rehearsed, "run")
    assert code == 0, out
    code, out = _cli(rehearsed, "verify")
    assert code == 1, out
    assert "unchanged since the delta (the freeze held)" in out
    assert "NOT CLEAN" not in out
    assert "no sign-off since the freeze" in out
    assert "x the rehearsal deltas'" in out

    ledger = AuditLedger(_env(rehearsed)["CONTINUITY_LEDGER"])
    try:  # a sign-off entry nobody signed is no sign-off
        for spec in (EXAMPLE.parents[1] / "reconcile" / "specs").glob("*.yml"):
            ledger.append("sign-off", {"class": spec.stem, "decision": "approve"})
    finally:
        ledger.close()
    code, out = _cli(rehearsed, "verify")
    assert code == 1 and "no sign-off since the freeze" in out

    _sign_everything(rehearsed)
    code, out = _cli(rehearsed, "verify")
    assert code == 0, out
    assert "Decision: GO" in out
    ledger = AuditLedger(_env(rehearsed)["CONTINUITY_LEDGER"])
    try:
        decisions = [e.payload["decision"] for e in ledger.entries(cutover.VERIFIED)]
        history = cutover.rehearsals(ledger, "all")
    finally:
        ledger.close()
    assert decisions == ["NO-GO", "NO-GO", "NO-GO", "GO"]
    assert [r.kind for r in history] == ["full", "delta", "cut-over delta"]

    # A write to the sources after the delta breaks the freeze: no-go.
    with sqlite3.connect(rehearsed / "estate" / "policeworks.sqlite") as conn:
        conn.execute("UPDATE pw_intel SET review_state = 'REVIEWED'")
    code, out = _cli(rehearsed, "verify")
    assert code == 1
    assert "the sources changed since the delta" in out


def test_the_prediction_follows_the_rehearsal_deltas() -> None:
    import datetime as dt

    at = dt.datetime(2026, 11, 1)

    def run(delta: bool, seconds: float, changes: int) -> cutover.Rehearsal:
        return cutover.Rehearsal("r", at, delta, seconds, changes * 3, changes)

    assert cutover.predict([run(False, 800.0, 10**6)], 500) is None
    one = [run(False, 800.0, 10**6), run(True, 20.0, 1000)]
    assert cutover.predict(one, 500) == 20.0  # never less than a delta took
    assert cutover.predict(one, 3000) == pytest.approx(60.0)
    two = [*one, run(True, 40.0, 3000)]  # 10 s fixed + 10 ms a change
    assert cutover.predict(two, 5000) == pytest.approx(60.0)
    assert cutover.predict(two, 0) == pytest.approx(20.0)


def test_an_approval_from_before_the_freeze_replayed_after_it_does_not_count(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from continuity.project import OwnerConfig
    from reports.signing import generate, read_private, sign

    _, _, public = generate(tmp_path, "registrar")
    key = read_private(tmp_path / "registrar.key")
    owner = OwnerConfig("registrar", "R", "", ("crimes",), public)
    project = SimpleNamespace(owners={"registrar": owner}, class_owners=lambda: {"crimes": owner})
    ledger = AuditLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:

        def approval(digest: str, at: str) -> dict[str, Any]:
            fields = {
                "project": "p",
                "report_digest": digest,
                "class": "crimes",
                "owner": "registrar",
                "decision": "approve",
                "comment": "",
                "signed_at": at,
            }
            return {**fields, "public_key": public, "signature": sign(key, fields)}

        ledger.append("report", {"digest": "old", "kind": "cutover"}, wave="all")
        old = approval("old", "2000-01-01T00:00:00Z")
        ledger.append("sign-off", old, wave="all")
        frozen = ledger.append(cutover.FREEZE, {"reason": "cut-over"}, wave="all")
        ledger.append("sign-off", old, wave="all")  # replayed
        assert cutover._approved_since(project, ledger, frozen) == set()  # type: ignore[arg-type]
        ledger.append("report", {"digest": "new", "kind": "cutover"}, wave="all")
        ledger.append("sign-off", approval("new", "2999-01-01T00:00:00Z"), wave="all")
        assert cutover._approved_since(project, ledger, frozen) == {"crimes"}  # type: ignore[arg-type]
    finally:
        ledger.close()
