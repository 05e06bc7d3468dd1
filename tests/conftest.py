"""Shared fixtures: real databases (never mocks) and a small estate with defects.

PostgreSQL and MariaDB URLs come from ``CONTINUITY_PG_URL`` and ``CONTINUITY_MARIADB_URL``
(defaults: the servers on 127.0.0.1). Each test that asks for one gets a fresh database, dropped
afterwards. An unreachable server skips those tests locally and fails them in CI (``CI=true``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

PG_URL = os.environ.get("CONTINUITY_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CONTINUITY_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _server_unavailable(name: str, exc: Exception) -> None:
    message = f"{name} server unreachable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if IN_CI:
        pytest.fail(f"{message}: CI requires it")
    pytest.skip(message)


def _database_factory(admin_url: str, kind: str) -> Callable[[], Iterator[Callable[[], str]]]:
    def fixture() -> Iterator[Callable[[], str]]:
        url = make_url(admin_url)
        try:
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect():
                pass
        except Exception as exc:
            _server_unavailable(kind, exc)
        created: list[str] = []

        def new_database() -> str:
            name = f"ct_{uuid.uuid4().hex[:12]}"
            charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if kind == "MariaDB" else ""
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}{charset}"))
            created.append(name)
            return url.set(database=name).render_as_string(hide_password=False)

        yield new_database
        with admin.connect() as conn:
            for name in created:
                if kind == "PostgreSQL":
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()

    return fixture


pg_database = pytest.fixture(_database_factory(PG_URL, "PostgreSQL"))
pg_database_for_module = pytest.fixture(scope="module")(_database_factory(PG_URL, "PostgreSQL"))
mariadb_database = pytest.fixture(_database_factory(MARIADB_URL, "MariaDB"))
mariadb_database_for_module = pytest.fixture(scope="module")(
    _database_factory(MARIADB_URL, "MariaDB")
)

#: ``any_database``'s kinds, as ``pytest.mark.parametrize("kind", EVERY_DATABASE)``
EVERY_DATABASE = [
    "sqlite",
    pytest.param("pg_database", marks=pytest.mark.postgres),
    pytest.param("mariadb_database", marks=pytest.mark.mariadb),
]


@pytest.fixture
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database of the test's ``kind`` (see EVERY_DATABASE): a SQLite file, or
    one on the PostgreSQL or MariaDB server."""
    kind = request.getfixturevalue("kind")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return str(request.getfixturevalue(kind)())


@pytest.fixture(scope="session")
def small_estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An estate of 2,500 persons with defects, on SQLite, shared by the session (read only)."""
    from continuity.estate.generate import EstateOptions, generate_estate

    out = tmp_path_factory.mktemp("estate") / "e"
    generate_estate(EstateOptions(out=out, persons=2500, seed=7, defects=True, processes=1))
    return out
