"""The one exception root of Continuity.

The CLI catches :class:`ContinuityError` in one place, prints its message on one line and exits 2.
"""

from __future__ import annotations


class ContinuityError(Exception):
    """Root of every error Continuity raises on purpose; its message is one line for the user."""


class ConfigError(ContinuityError):
    """A project file, spec, mapping or command-line argument is wrong."""


class ExtractError(ContinuityError):
    """A source could not be read (unreachable database, unknown table or column)."""


class MappingError(ContinuityError):
    """A mapping could not be compiled or applied."""


class ValidationError(ContinuityError):
    """A validation suite is malformed or a critical expectation failed."""


class ReconcileError(ContinuityError):
    """A survival spec is malformed or reconciliation could not run."""


class LedgerError(ContinuityError):
    """The ledger is unreachable or inconsistent."""


class EstateError(ContinuityError):
    """The estate generator was asked for something it cannot write."""


def driver_message(exc: BaseException) -> str:
    """What the database driver said, first line only: SQLAlchemy wraps the driver's error
    (``orig``) and drivers add hint and context lines after the message."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]
