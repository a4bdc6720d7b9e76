"""History fixtures: the same contract over SQLite and a PostgreSQL server the tests start."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from callsbot.history.sql import SQLHistory
from callsbot.testing.pg_server import PostgresServer

BACKENDS = ("sqlite", "postgresql")
_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (tests that stop it start their own)."""
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


async def new_database(server: PostgresServer) -> str:
    """A fresh, empty database on ``server``; its URL."""
    name = f"t{next(_numbers)}"
    conn = await asyncpg.connect(server.url().replace("postgresql://", "postgres://"))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.url(name)


@pytest.fixture
async def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the backend the test is parametrised with."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        yield await new_database(server)


@pytest.fixture
async def history(history_url: str) -> AsyncIterator[SQLHistory]:
    """A migrated, empty history store."""
    store = SQLHistory(history_url)
    await store.upgrade()
    yield store
    await store.aclose()


def both_backends() -> pytest.MarkDecorator:
    """Run a test (or a whole class) once per backend."""
    return pytest.mark.parametrize("history_url", BACKENDS, indirect=True)
