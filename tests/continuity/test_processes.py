"""Work run aside in a forked process (continuity.processes.Aside): its value, its error, and
the further piece of work it may be asked for."""

from __future__ import annotations

import os
import signal
import time

import pytest

from continuity.domain.errors import ContinuityError
from continuity.processes import Aside, ProcessDied

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_a_call_runs_in_another_process_and_returns_its_value() -> None:
    aside = Aside(lambda: os.getpid(), "pid")
    assert aside.result() != os.getpid()
    assert not aside.waiting


def test_what_the_call_raises_is_raised_by_result() -> None:
    def fail() -> None:
        raise ValueError("bad row 7")

    aside = Aside(fail, "failing")
    with pytest.raises(ValueError, match="bad row 7"):
        aside.result()


def test_a_process_that_dies_is_reported_not_waited_for() -> None:
    aside = Aside(lambda: os._exit(3), "dying")
    with pytest.raises(ContinuityError, match=r"dying: its process died \(exit 3"):
        aside.result()


def test_then_runs_on_the_request_in_the_same_process_with_what_it_had() -> None:
    state = {"seen": "at fork"}
    aside = Aside(lambda: os.getpid(), "first", then=lambda r: (os.getpid(), r, state["seen"]))
    first = aside.result()
    assert aside.waiting
    state["seen"] = "changed after the fork"  # (the process holds the memory of the fork)
    aside.ask({"rows": [1, 2]})
    assert not aside.waiting
    assert aside.answer("second") == (first, {"rows": [1, 2]}, "at fork")
    with pytest.raises(ProcessDied, match="not waiting"):
        aside.ask(1)


def test_what_then_raises_is_raised_by_answer() -> None:
    def fail(request: int) -> None:
        raise KeyError(request)

    aside = Aside(lambda: 1, "first", then=fail)
    assert aside.result() == 1
    aside.ask(42)
    with pytest.raises(KeyError, match="42"):
        aside.answer("second")


def test_an_unasked_process_ends_when_cancelled() -> None:
    aside = Aside(lambda: 1, "first", then=lambda r: r)
    assert aside.result() == 1
    began = time.perf_counter()
    aside.cancel()
    assert time.perf_counter() - began < 4  # it ends at once: it is not killed after waiting
    assert not aside.waiting
    assert aside._process.exitcode == 0


def test_a_process_at_work_is_stopped_when_cancelled() -> None:
    aside = Aside(lambda: 1, "first", then=lambda r: time.sleep(r))
    assert aside.result() == 1
    aside.ask(60)
    began = time.perf_counter()
    aside.cancel()
    assert time.perf_counter() - began < 4
    assert aside._process.exitcode is not None and aside._process.exitcode != 0


def test_a_process_still_at_its_first_call_is_stopped_at_once_when_cancelled() -> None:
    aside = Aside(lambda: time.sleep(60), "first", then=lambda r: r)
    began = time.perf_counter()
    aside.cancel()
    assert time.perf_counter() - began < 4
    assert aside._process.exitcode is not None and aside._process.exitcode != 0


def test_a_waiting_process_killed_meanwhile_is_reported_when_asked() -> None:
    aside = Aside(lambda: 1, "validation", then=lambda r: r)
    assert aside.result() == 1
    os.kill(aside._process.pid, signal.SIGKILL)
    aside._process.join()
    with pytest.raises(ProcessDied, match="validation"):
        aside.ask("rows")


def test_an_interrupted_wait_stops_the_process() -> None:
    """Ctrl-C while the run waits: the process is stopped, not waited for."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        aside = Aside(lambda: 1, "first", then=lambda r: time.sleep(r))
        assert aside.result() == 1
        aside.ask(60)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        began = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            aside.answer("second")
        assert time.perf_counter() - began < 4
        assert aside._process.exitcode is not None and aside._process.exitcode != 0
        plain = Aside(lambda: time.sleep(60), "plain")
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            plain.result()
        assert plain._process.exitcode is not None and plain._process.exitcode != 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
