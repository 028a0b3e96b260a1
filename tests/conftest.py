"""Fixtures that start real components: Prometheus, Alertmanager, PostgreSQL and the demo target.

Missing binaries or databases fail the run when CI=true and skip elsewhere, with a message
saying what to install. Process logs are attached to the report of a failing test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from vigil.demo.client import DemoTarget, start_demo_target

from tests.harness import WebhookReceiver, in_ci, require_binary
from vigil.db import normalize_url
from vigil.procs import ManagedProcess, start_alertmanager, start_prometheus

_STARTED: list[ManagedProcess] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for proc in getattr(item, "_vigil_procs", []):
            report.sections.append((f"{proc.name} log ({proc.log_path})", proc.log_tail(80)))
    return report


def _track(request: pytest.FixtureRequest, proc: ManagedProcess) -> None:
    procs: list[ManagedProcess] = getattr(request.node, "_vigil_procs", [])
    procs.append(proc)
    request.node._vigil_procs = procs  # type: ignore[attr-defined]


@pytest.fixture
def start_process(request: pytest.FixtureRequest) -> Iterator[Callable[[ManagedProcess], ManagedProcess]]:
    """Start any ManagedProcess (unless already started), wait until ready, stop it after the
    test, keep its log."""
    started: list[ManagedProcess] = []

    def start(proc: ManagedProcess, timeout: float = 30.0) -> ManagedProcess:
        _track(request, proc)
        started.append(proc if proc.proc is not None else proc.start())
        return proc.wait_ready(timeout)

    yield start
    for proc in reversed(started):
        proc.stop()


Factory = Callable[..., tuple[ManagedProcess, str]]


def _server_factory(request: pytest.FixtureRequest, tmp_path: Path, binary: str,
                    start: Callable[..., tuple[ManagedProcess, str]], prefix: str
                    ) -> tuple[Factory, list[ManagedProcess]]:
    """A factory that starts a real server binary per call, each in its own workdir."""
    require_binary(binary)
    started: list[ManagedProcess] = []

    def factory(config: dict[str, Any] | Path, **kw: Any) -> tuple[ManagedProcess, str]:
        proc, url = start(tmp_path / f"{prefix}-{len(started)}", config, **kw)
        _track(request, proc)
        started.append(proc)
        proc.wait_ready(30)
        return proc, url

    return factory, started


@pytest.fixture
def prometheus_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Start real Prometheus servers: factory(config_dict_or_path, **kw) -> (process, base_url)."""
    factory, started = _server_factory(request, tmp_path, "prometheus", start_prometheus, "prometheus")
    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def alertmanager_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Start real Alertmanagers: factory(config_dict_or_path, **kw) -> (process, base_url)."""
    factory, started = _server_factory(request, tmp_path, "prometheus-alertmanager",
                                       start_alertmanager, "alertmanager")
    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP webhook sink on loopback that records what Alertmanager sends."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def demo_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoTarget]:
    """The demo target web API as a real process on a free loopback port (SQLite backend)."""
    target = start_demo_target(tmp_path / "demo-target")
    _track(request, target.process)
    try:
        target.process.wait_ready(30)
        yield target
    finally:
        target.process.stop()


# --- PostgreSQL -----------------------------------------------------------------------------

def _docker_reachable() -> bool:
    # docker.from_env() leaks its socket when the engine does not answer in its constructor:
    # with no DOCKER_HOST and no default socket there is nothing to ask
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    client = None
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env()
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False
    finally:
        # an unclosed client leaves its Unix socket for the garbage collector, and the
        # ResourceWarning (an error under filterwarnings=error) lands on a random later test
        if client is not None:
            client.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server: VIGIL_TEST_DATABASE_URL, else a testcontainers container."""
    url = os.environ.get("VIGIL_TEST_DATABASE_URL")
    if url:
        # psycopg2 is Vigil's driver; SQLAlchemy 2.1 would pick psycopg 3 for a bare URL
        url = normalize_url(url).render_as_string(hide_password=False)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            msg = f"PostgreSQL at VIGIL_TEST_DATABASE_URL is not reachable: {exc.__class__.__name__}"
            if in_ci():
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        finally:
            engine.dispose()
        yield url
        return
    if _docker_reachable():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="psycopg2") as container:
            yield normalize_url(container.get_connection_url()).render_as_string(hide_password=False)
        return
    msg = ("no PostgreSQL: set VIGIL_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
           " or run a Docker engine for testcontainers")
    if in_ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_server_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def pg_database_url(postgres_server_url: str) -> Iterator[str]:
    """A URL to a fresh, empty database, dropped after the test (for whole-catalog checks)."""
    name = f"vigil_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
