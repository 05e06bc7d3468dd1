"""Run a command and measure its wall time and the peak memory of its whole process tree.

``ru_maxrss`` reports only the largest single process; Continuity's commands run worker
processes, so the tree's memory is summed, sampled every 50 ms from /proc. Each process counts
its proportional set size (PSS: a page shared by n processes counts 1/n in each), not its
resident set: a forked worker shares its parent's pages, which a sum of resident sets would
count twice. Where the kernel gives no PSS, the resident set is summed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                stack.extend(int(c) for c in task.read_text().split())
    return pids


def _memory_kb(pid: int) -> int:
    """A process's proportional set size in kB (its resident set where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return _rss_kb(pid)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(argv: list[str], env: dict[str, str] | None = None) -> Measurement:
    """Run ``argv`` to completion; return its wall time and peak summed RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_memory_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    return Measurement(time.perf_counter() - started, peak / 1024, proc.returncode, output)


def continuity(*args: str, env: dict[str, str] | None = None) -> Measurement:
    """Run the ``continuity`` command line (of the interpreter running the benchmark)."""
    import sys

    return run([sys.executable, "-m", "continuity.cli", *args], env=env)


def generate_estate(out: Path, persons: int, defects: bool = False) -> bool:
    """Generate the benchmarks' estate (seed 1) into ``out``; say why and return False if not."""
    made = continuity(
        "estate",
        "generate",
        "--out",
        str(out),
        "--persons",
        str(persons),
        "--seed",
        "1",
        *(["--defects"] if defects else []),
    )
    if made.returncode != 0:
        print(made.output[-2000:])
    return made.returncode == 0


PROJECT = Path(__file__).resolve().parents[1] / "examples" / "gmp"


def bundled_env(estate: Path, target: str, ledger: Path) -> dict[str, str]:
    """What the bundled project reads from the environment: the estate, the target database
    and the ledger (a SQLite file)."""
    return {
        "CONTINUITY_ESTATE": str(estate),
        "CONTINUITY_TARGET": target,
        "CONTINUITY_LEDGER": f"sqlite:///{ledger}",
    }


def run_bundled(
    work: Path, env: dict[str, str], label: str, *extra: str
) -> tuple[Measurement, dict[str, Any]]:
    """``continuity run all`` of the bundled project (no search index), measured; its JSON
    summary (empty, with the output printed, if it failed)."""
    import json

    summary = work / f"{label}.json"
    m = continuity(
        "run",
        "all",
        "--project",
        str(PROJECT),
        "--no-search-index",
        "--json",
        str(summary),
        *extra,
        env=env,
    )
    if m.returncode != 0:
        print(m.output[-2000:])
        return m, {}
    return m, json.loads(summary.read_text())


def phases(summary: dict[str, Any]) -> str:
    """Where a run's time went, from its JSON summary: ``phase 1.2 s, ...``."""
    from continuity.waves import phases_text

    return phases_text(summary.get("phases", {}))
