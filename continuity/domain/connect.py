"""Database connections every stage opens the same way: one-line errors, redacted URLs."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from continuity.domain.errors import ContinuityError, driver_message

#: SQLAlchemy's names for MySQL-compatible servers (``mariadb://`` URLs use the second).
MYSQL_FAMILY = frozenset({"mysql", "mariadb"})


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


#: The least ``work_mem`` of Continuity's PostgreSQL sessions (default 64MB; empty: as set).
WORK_MEM_VARIABLE = "CONTINUITY_PG_WORK_MEM"


def engine_for(url: str) -> Engine:
    """An engine for ``url``, tuned for bulk work; a bad URL is a one-line error."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ContinuityError(f"not a database URL: {url!r}") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        # Writers in several processes take turns on one file: wait for the lock, don't fail.
        kwargs["connect_args"] = {"timeout": 600}
    if parsed.get_backend_name() in MYSQL_FAMILY:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise ContinuityError(f"no driver for {redact(url)}: {exc}") from exc
    except ImportError as exc:
        raise ContinuityError(f"driver for {redact(url)} is not installed ({exc.name})") from exc
    work_mem = os.environ.get(WORK_MEM_VARIABLE, "64MB")
    if parsed.get_backend_name() == "postgresql" and work_mem:
        # Continuity's queries join million-row tables: with PostgreSQL's default 4 MB per hash
        # a semi-join on a crosswalk becomes a probe per row (2.5 times slower). Raised (never
        # lowered: a setting of the role, the database, PGOPTIONS or the URL stands) once per
        # new connection, not as a startup option, which connection poolers refuse.
        def _tune(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('work_mem', %s, false) WHERE "
                    "pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
                    (work_mem, work_mem),
                )
            dbapi_connection.commit()

        event.listen(engine, "connect", _tune)
    return engine


def check_reachable(engine: Engine) -> None:
    """Connect once; an unreachable server is a one-line error naming the (redacted) URL."""
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = driver_message(exc)
        raise ContinuityError(f"cannot reach {redact(str(engine.url))}: {reason}") from exc
