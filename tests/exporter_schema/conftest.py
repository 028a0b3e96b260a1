"""Fixtures for the schema checks: extra fresh schemas and SQL helpers on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from vigil.db import create_engine


def run_sql(url: str, sql: str, autocommit: bool = False) -> None:
    """Execute SQL (several statements allowed) against url."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT" if autocommit else None)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture
def pg_schema_factory(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Make more fresh schemas on the test server: factory() -> URL whose search_path is one."""
    made: list[str] = []

    def factory() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        run_sql(postgres_server_url, f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        url = make_url(postgres_server_url).update_query_dict(
            {"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield factory
    engine = create_engine(postgres_server_url)
    with engine.begin() as conn:
        for schema in made:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
