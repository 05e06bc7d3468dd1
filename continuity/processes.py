"""Work done in other processes while a run goes on: how many, and one call run aside.

A run uses as many processes as the machine has cores (``CONTINUITY_PROCESSES``; 1 does all
its work in the run's own process). Workers are forked: they share what the run has read, and
open their own connections (none of the run's may cross a fork).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from continuity.domain.errors import ConfigError, ContinuityError

T = TypeVar("T")


def scan_processes() -> int:
    """How many processes a run works with (``CONTINUITY_PROCESSES``, else the machine's
    cores)."""
    raw = os.environ.get("CONTINUITY_PROCESSES", "")
    if raw.strip():
        try:
            return max(1, int(raw))
        except ValueError:
            raise ConfigError(
                f"CONTINUITY_PROCESSES must be a number of processes, not {raw!r}"
            ) from None
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether work may go to forked processes: more than one process wanted, and the
    platform forks."""
    return scan_processes() > 1 and "fork" in mp.get_all_start_methods()


def worker_started() -> None:
    """In each worker: Ctrl-C is the run's to handle (it stops the workers); and on Linux a
    worker dies with the run, killed or not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it crosses a pipe intact, else a ContinuityError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ContinuityError(f"{type(exc).__name__}: {exc}")
    return exc


def _run_aside(call: Callable[[], Any], sender: Any) -> None:
    worker_started()
    try:
        outcome: tuple[bool, Any] = (True, call())
    except BaseException as exc:
        outcome = (False, _sendable(exc))
    try:
        sender.send(outcome)
    except Exception as exc:  # the result would not pickle
        sender.send((False, ContinuityError(f"{type(exc).__name__}: {exc}")))
    finally:
        sender.close()


class Aside(Generic[T]):
    """``call()`` run in a forked process while the caller goes on; :meth:`result` waits for
    its value, or raises what it raised. The call must open its own connections and return
    something that pickles."""

    def __init__(self, call: Callable[[], T], what: str) -> None:
        self.what = what
        context = mp.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_aside, args=(call, sender), daemon=True)
        # The child flushes its copy of these buffers when it ends: the text would show twice.
        sys.stdout.flush()
        sys.stderr.flush()
        self._process.start()
        sender.close()  # the child's end: once it exits, a read here ends instead of waiting

    def result(self) -> T:
        try:
            ok, value = self._receiver.recv()
        except EOFError:
            self._process.join()
            raise ContinuityError(
                f"{self.what}: its process died (exit {self._process.exitcode}; out of "
                "memory?); CONTINUITY_PROCESSES=1 does it in the run's own process"
            ) from None
        finally:
            self._receiver.close()
        self._process.join()
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the call if it still runs (the run failed meanwhile)."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        with contextlib.suppress(OSError):
            self._receiver.close()
