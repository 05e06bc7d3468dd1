"""A load killed by SIGKILL at a random moment leaves exactly the batches up to its last checkpoint,
and resumes (``--resume``) to the same target as an uninterrupted run.

``load_loop.py`` (beside this file) loads batches in a loop, each with its checkpoint, in a
subprocess. Each test kills it three times at random moments (a seeded random number of
committed batches, then a random delay of up to 25 ms, a batch taking about 20 ms), checks the
target against the batches replayed in memory after each, then resumes to the end and runs the
finished wave again (in this process: only the killed runs need one of their own).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from continuity.loaders import SqlLoader, StagingLoader, apply_staging
from continuity.target_schema import metadata

LOOP = Path(__file__).with_name("load_loop.py")
KILLS = 3


def _load_loop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_loop", LOOP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loop = _load_loop()


def _run(kind: str, location: str, *args: str) -> int:
    """Run the loop to its end in this process; return the number of batches it committed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert loop.main([kind, location, *args]) == 0
    return len(out.getvalue().split())


def _kill(kind: str, location: str, tmp_path: Path, resume: bool, rng: random.Random) -> None:
    """Run the loop in a subprocess and SIGKILL it after a random number of committed batches
    and a random delay."""
    errors = tmp_path / "stderr.txt"
    args = [sys.executable, str(LOOP), kind, location, *(["--resume"] if resume else [])]
    with errors.open("w") as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 6)):
            if not proc.stdout.readline():
                break
        time.sleep(rng.uniform(0, 0.025))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, errors.read_text()


def _sql_state(url: str) -> tuple[int, dict[str, Any]]:
    """The last checkpointed batch and the target's rows by key."""
    with SqlLoader(url, metadata) as loader:
        state = loader.checkpoint(loop.STEP)
    engine = create_engine(url)
    content = {}
    with engine.connect() as conn:
        for name in ("location", "event"):
            table = metadata.tables[name]
            content[name] = {(r[0],): tuple(r) for r in conn.execute(select(table))}
    engine.dispose()
    return (state["batch"] if state else -1), content


def _staging_state(directory: Path, applied_url: str) -> tuple[int, dict[str, Any]]:
    """The last committed batch, and the content of a target the files were applied to."""
    with SqlLoader(applied_url, metadata) as target:
        target.prepare()
        apply_staging(directory, target)
    last, content = _sql_state(applied_url)
    assert StagingLoader(str(directory), metadata).checkpoint(loop.STEP) == (
        {"batch": last} if last >= 0 else None
    )
    return last, content


def _kill_resume_and_finish(
    kind: str, location: str, tmp_path: Path, state: Callable[[], Any], seed: int
) -> None:
    rng = random.Random(seed)
    last = -1
    for attempt in range(KILLS):
        _kill(kind, location, tmp_path, resume=attempt > 0, rng=rng)
        before, (last, content) = last, state()
        assert last >= before + 1, "the killed run committed at least the batches it reported"
        assert content == loop.expected(last), f"kill {attempt}: target is not batches 0..{last}"
    end = last + 4
    assert _run(kind, location, "--resume", f"--batches={end}") == 3
    assert state() == (end - 1, loop.expected(end - 1))
    # A finished wave run again, from its checkpoint or from the start, changes nothing.
    assert _run(kind, location, "--resume", f"--batches={end}") == 0
    assert _run(kind, location, f"--batches={end}") == end
    assert state() == (end - 1, loop.expected(end - 1))


def _target(url: str) -> str:
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


def test_sqlite(tmp_path: Path) -> None:
    url = _target(f"sqlite:///{tmp_path / 'target.sqlite'}")
    _kill_resume_and_finish("sql", url, tmp_path, lambda: _sql_state(url), seed=1)


@pytest.mark.postgres
def test_postgresql(tmp_path: Path, pg_database: Any) -> None:
    url = _target(pg_database())
    _kill_resume_and_finish("sql", url, tmp_path, lambda: _sql_state(url), seed=2)


@pytest.mark.mariadb
def test_mariadb(tmp_path: Path, mariadb_database: Any) -> None:
    url = _target(mariadb_database())
    _kill_resume_and_finish("sql", url, tmp_path, lambda: _sql_state(url), seed=3)


def test_staging(tmp_path: Path) -> None:
    """Killed staging runs: the committed manifest lines, applied in order, are the batches."""
    directory = tmp_path / "staging"
    applied = _target(f"sqlite:///{tmp_path / 'applied.sqlite'}")
    _kill_resume_and_finish(
        "staging", str(directory), tmp_path, lambda: _staging_state(directory, applied), seed=4
    )
    names = sorted(p.name for p in directory.iterdir())
    assert names[-1] == "manifest.jsonl" and not any(n.endswith(".tmp") for n in names)
