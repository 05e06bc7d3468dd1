"""Work done in other processes while a run goes on: how many, and one call run aside.

A run uses as many processes as the machine has cores (``CONTINUITY_PROCESSES``; 1 does all
its work in the run's own process). Workers are forked: they share what the run has read, and
open their own connections (none of the run's may cross a fork).
"""

from __future__ import annotations

import contextlib
import gc
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


def _outcome(call: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return (True, call())
    except BaseException as exc:
        return (False, _sendable(exc))


def _send(sender: Any, outcome: tuple[bool, Any]) -> None:
    try:
        sender.send(outcome)
    except Exception as exc:  # the result would not pickle
        sender.send((False, ContinuityError(f"{type(exc).__name__}: {exc}")))


def _give_back() -> None:
    """Collect what is garbage and give the heap's free memory back to the system (glibc's
    ``malloc_trim``; elsewhere, only the collection)."""
    gc.collect()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _run_aside(
    call: Callable[[], Any],
    sender: Any,
    then: Callable[[Any], Any] | None,
    requests: Any,
    asking: Any,
) -> None:
    worker_started()
    # What the run had at the fork is the run's: the collector leaves it alone here (walking
    # it would copy each page it touches into this process).
    gc.freeze()
    if asking is not None:
        asking.close()  # (the run's end of the requests, copied by the fork)
    try:
        _send(sender, _outcome(call))
        if then is None:
            return
        _give_back()  # (it may wait a long time: what the first call freed goes back now)
        # Then, asked once, ``then(request)``; the run's end (or None) ends the process.
        try:
            request = requests.recv()
        except EOFError:
            return
        if request is not None:
            _send(sender, _outcome(lambda: then(request)))
    finally:
        sender.close()


class ProcessDied(ContinuityError):
    """A process working aside ended without an answer (killed: out of memory?)."""


class Aside(Generic[T]):
    """``call()`` run in a forked process while the caller goes on; :meth:`result` waits for
    its value, or raises what it raised. The call must open its own connections and return
    something that pickles.

    With ``then``, the process stays for one more piece of work: :meth:`ask` sends it a
    request (something that pickles), on which it runs ``then(request)`` while the caller goes
    on again; :meth:`answer` waits for that value. Work given to a process forked early runs
    in what the caller had then: what it imported since (a library imported for the first
    call), not the memory it has grown to since.

    Whatever interrupts a wait (Ctrl-C included) stops the process."""

    def __init__(
        self, call: Callable[[], T], what: str, then: Callable[[Any], Any] | None = None
    ) -> None:
        self.what = what
        context = mp.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._requests: Any = None
        requests = None
        if then is not None:
            requests, self._requests = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run_aside, args=(call, sender, then, requests, self._requests), daemon=True
        )
        # The child flushes its copy of these buffers when it ends: the text would show twice.
        sys.stdout.flush()
        sys.stderr.flush()
        self._process.start()
        sender.close()  # the child's end: once it exits, a read here ends instead of waiting
        if requests is not None:
            requests.close()
        self._received = False  # the first call's outcome
        self._asked = False

    def _receive(self, what: str) -> Any:
        """The next outcome; the process is stopped if none comes (or the wait is cut)."""
        try:
            ok, value = self._receiver.recv()
        except EOFError:
            self.cancel()
            raise ProcessDied(
                f"{what}: its process died (exit {self._process.exitcode}; out of "
                "memory?); CONTINUITY_PROCESSES=1 does it in the run's own process"
            ) from None
        except BaseException:
            self.cancel()
            raise
        if not ok:
            self.cancel()  # (it has nothing more to give)
            raise value
        return value

    def result(self) -> T:
        value = self._receive(self.what)
        self._received = True
        if self._requests is None:  # (the process ends)
            self._end()
        return value

    @property
    def waiting(self) -> bool:
        """Whether the process waits for a request (:meth:`ask`)."""
        return (
            self._requests is not None
            and self._received
            and not self._asked
            and self._process.is_alive()
        )

    def ask(self, request: Any) -> None:
        """Give the process its further work (once): ``then(request)``. Raises ProcessDied if
        it is gone."""
        if not self.waiting:
            self.cancel()
            raise ProcessDied(f"{self.what}: its process is not waiting (it died?)")
        self._asked = True
        try:
            self._requests.send(request)
        except OSError:
            self.cancel()
            raise ProcessDied(f"{self.what}: its process died (out of memory?)") from None

    def answer(self, what: str) -> Any:
        """Wait for what ``then`` returned (or raise what it raised); the process ends."""
        value = self._receive(what)
        self._end()
        return value

    def _end(self) -> None:
        """The process has answered: it ends by itself."""
        self._process.join()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for end in (self._receiver, self._requests):
            if end is not None:
                with contextlib.suppress(OSError):
                    end.close()

    def cancel(self) -> None:
        """End the process: let it go if it waits for a request, else stop it at once (the
        run failed meanwhile, or was interrupted)."""
        if self._process.is_alive() and self.waiting:
            self._asked = True
            with contextlib.suppress(OSError):
                self._requests.send(None)  # (a process waiting for a request ends)
            self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._close_pipes()
