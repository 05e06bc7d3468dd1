"""Driving Debian's Chromium, headless, by its executable path: print a report to PDF, take a
screenshot, or load it and read back the page as the browser built it (with any script error).

No browser is downloaded: ``make setup`` installs the ``chromium`` package, and
``CONTINUITY_CHROMIUM`` may name another executable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from continuity.domain.errors import ConfigError

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
#: Chromium's own console lines on stderr: "[...:CONSOLE(12)] "message", source: ..."
_CONSOLE = re.compile(r':CONSOLE(?:\(\d+\))?\]\s*"(?P<message>.*)", source: (?P<source>.*)')


def executable() -> str:
    """The Chromium to run; a one-line error when there is none."""
    named = os.environ.get("CONTINUITY_CHROMIUM")
    if named:
        return named
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        "no Chromium found (make setup installs Debian's chromium; or set CONTINUITY_CHROMIUM)"
    )


def _run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="continuity-chromium-") as profile:
        argv = [
            executable(),
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            *args,
        ]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"chromium did not finish in {timeout:.0f} s") from None
        except OSError as exc:
            raise ConfigError(f"cannot run chromium ({argv[0]}): {exc.strerror}") from exc


def _last_line(stderr: str) -> str:
    """Chromium's last words, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


@dataclass(frozen=True)
class Loaded:
    """A page as Chromium built it: its DOM after scripts ran, console errors, and time."""

    dom: str
    console: list[str]
    seconds: float


def load(page: Path, budget_ms: int = 10_000) -> Loaded:
    """Load ``page`` from disk and dump its DOM once its scripts ran."""
    started = time.perf_counter()
    done = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()])
    seconds = time.perf_counter() - started
    console = [m.group("message") for m in _CONSOLE.finditer(done.stderr)]
    if done.returncode != 0 and not done.stdout:
        raise ConfigError(f"chromium could not load {page}: {_last_line(done.stderr)}")
    return Loaded(done.stdout, console, seconds)


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1800) -> Path:
    out.unlink(missing_ok=True)  # a picture left by an earlier run is not this one
    done = _run(
        [
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
    )
    if not out.exists():
        raise ConfigError(f"chromium made no screenshot of {page}: {_last_line(done.stderr)}")
    return out


def print_pdf(page: Path, out: Path) -> Path:
    """Print ``page`` to PDF (A4, as the page's print styles lay it out)."""
    out.unlink(missing_ok=True)  # a PDF left by an earlier run is not this one
    done = _run(
        ["--no-pdf-header-footer", f"--print-to-pdf={out.resolve()}", page.resolve().as_uri()]
    )
    if not out.exists():
        raise ConfigError(f"chromium printed no PDF of {page}: {_last_line(done.stderr)}")
    return out
