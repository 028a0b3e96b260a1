"""The checks as the exporter runs them: failure semantics, timeouts, secrets, SQLite, drift."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.exporter.base import Severity
from vigil.exporter.schema import CHECK_NAMES, SchemaCheckConfig, make_schema_checks
from vigil.exporter.schema.cli import main as schema_main

from tests.exporter_schema.conftest import run_sql
from tests.exporter_schema.schemas import SHOP, SHOP_REORDERED
from vigil.config import ConfigError, parse_model
from vigil.procs import free_port

SECRET = "S3cret-Pa55word"


def config(url: str, **extra: object) -> SchemaCheckConfig:
    return parse_model(SchemaCheckConfig, {"url": url, **extra})


class SilentServer:
    """A TCP server that accepts connections and never answers (a hung database)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_check_names_and_interface(tmp_path: Path) -> None:
    cfg = config("postgresql://u@127.0.0.1/db", expected={"spec": {}},
                 drift={"baseline_file": str(tmp_path / "b.json")},
                 code_references={"paths": [str(tmp_path)]}, min_interval=120)
    checks = make_schema_checks("shop", cfg)
    assert [c.name for c in checks] == list(CHECK_NAMES)
    assert all(c.target == "shop" and c.min_interval == 120 for c in checks)
    assert [c.name for c in make_schema_checks("shop", config("sqlite://",
                                                              lint={"enabled": False}))] == []


async def test_database_down_fails_the_check_without_leaking_the_password(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://vigil:{SECRET}@127.0.0.1:{free_port()}/shop?sslmode=disable"
    cfg = config(url, connect_timeout_seconds=2)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())
    (check,) = make_schema_checks("shop", cfg)
    result = await check(10.0)
    assert not result.success
    assert "OperationalError" in result.error and "refused" in result.error.lower()
    assert result.findings == [] and result.samples == {}
    everything = result.error + caplog.text + repr(result)
    assert SECRET not in everything


async def test_hung_database_times_out_and_checks_share_one_connection(
        silent_server: SilentServer, tmp_path: Path) -> None:
    url = f"postgresql://vigil:{SECRET}@127.0.0.1:{silent_server.port}/shop?sslmode=disable"
    cfg = config(url, connect_timeout_seconds=60, drift={"baseline_file": str(tmp_path / "b")},
                 expected={"spec": {}})
    checks = make_schema_checks("shop", cfg)
    results = await asyncio.gather(*(c(0.5) for c in checks))
    assert [r.success for r in results] == [False, False, False]
    assert all(r.error == "timed out after 0.5s" for r in results)
    # a second round joins the inspection still in flight instead of stacking another one
    again = await checks[0](0.3)
    assert not again.success
    assert len(silent_server.accepted) == 1


async def test_url_from_env_and_file(pg_url: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run_sql(pg_url, SHOP)
    monkeypatch.setenv("SHOP_DB_URL", pg_url)
    (check,) = make_schema_checks("shop", parse_model(SchemaCheckConfig,
                                                      {"url_env": "SHOP_DB_URL"}))
    assert (await check(30)).success
    url_file = tmp_path / "db-url"
    url_file.write_text(pg_url + "\n")
    (check,) = make_schema_checks("shop", parse_model(SchemaCheckConfig,
                                                      {"url_file": str(url_file)}))
    assert (await check(30)).success
    (check,) = make_schema_checks("shop", parse_model(SchemaCheckConfig,
                                                      {"url_env": "NOT_SET_ANYWHERE"}))
    result = await check(30)
    assert not result.success and "NOT_SET_ANYWHERE is not set" in result.error


def test_config_errors_name_the_key_and_never_the_url() -> None:
    with pytest.raises(ConfigError) as err:
        parse_model(SchemaCheckConfig, {"url": f"postgresql://u:{SECRET}@h/db", "url_env": "X"})
    assert "exactly one" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_model(SchemaCheckConfig, {"url": f"postgresql://u:{SECRET}@h/db",
                                        "expected": {"spec": {}, "sql_file": "x.sql"}})
    assert str(err.value).startswith("<config>: expected:") and SECRET not in str(err.value)


# --- drift -------------------------------------------------------------------------------------

async def test_drift_baseline_then_change(pg_url: str, pg_schema_factory: Callable[[], str],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    run_sql(pg_url, SHOP)
    baseline = tmp_path / "baseline.json"
    assert schema_main(["baseline", "--url", pg_url, "--output", str(baseline)]) == 0
    assert "recorded baseline" in capsys.readouterr().out

    def drift_check(url: str):  # type: ignore[no-untyped-def]
        cfg = config(url, lint={"enabled": False}, drift={"baseline_file": str(baseline)})
        return make_schema_checks("shop", cfg)[0]

    result = await drift_check(pg_url)(30)
    assert result.success and result.findings == []
    assert result.samples["vigil_schema_drift"] == [({"target": "shop"}, 0.0)]

    # the same schema built in another order, in another schema: no drift
    other = pg_schema_factory()
    run_sql(other, SHOP_REORDERED)
    result = await drift_check(other)(30)
    assert result.samples["vigil_schema_drift"] == [({"target": "shop"}, 0.0)]

    run_sql(pg_url, "ALTER TABLE items DROP COLUMN stock; CREATE INDEX ON users (name)")
    result = await drift_check(pg_url)(30)
    assert result.samples["vigil_schema_drift"] == [({"target": "shop"}, 1.0)]
    got = {(f.rule, f.severity, f.subject) for f in result.findings}
    assert got == {("drift_missing_column", Severity.CRITICAL, "items.stock"),
                   ("drift_extra_index", Severity.INFO, "users(name)")}

    assert schema_main(["diff", "--url", pg_url, "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "items.stock" in out and "drift: True" in out
    assert schema_main(["diff", "--url", other, "--baseline", str(baseline)]) == 0
    assert schema_main(["diff", "--url", pg_url, "--against-url", other]) == 1


async def test_missing_baseline(pg_url: str, tmp_path: Path) -> None:
    cfg = config(pg_url, lint={"enabled": False}, drift={"baseline_file": str(tmp_path / "no")})
    result = await make_schema_checks("shop", cfg)[0](30)
    assert not result.success and "vigil schema baseline" in result.error
    cfg = config(pg_url, lint={"enabled": False},
                 drift={"baseline_file": str(tmp_path / "no"), "missing_baseline": "ignore"})
    result = await make_schema_checks("shop", cfg)[0](30)
    assert result.success and "vigil_schema_drift" not in result.samples
    recorded = tmp_path / "first-use.json"
    cfg = config(pg_url, lint={"enabled": False},
                 drift={"baseline_file": str(recorded), "missing_baseline": "record"})
    result = await make_schema_checks("shop", cfg)[0](30)
    assert result.success and result.samples["vigil_schema_drift"] == [({"target": "shop"}, 0.0)]
    assert recorded.exists()


def test_cli_errors_hide_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://vigil:{SECRET}@127.0.0.1:{free_port()}/shop"
    assert schema_main(["check", "--url", url, "--timeout", "10"]) == 3
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and SECRET not in captured.err + captured.out


# --- SQLite through the SQLAlchemy inspector --------------------------------------------------

def _sqlite_demo(path: Path) -> str:
    from vigil.demo.db import metadata

    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url


async def test_sqlite_expected_schema_and_lints(tmp_path: Path) -> None:
    url = _sqlite_demo(tmp_path / "demo.db")
    cfg = config(url, expected={"sqlalchemy_metadata": "vigil.demo.db:metadata"})
    schema, lint = make_schema_checks("demo", cfg)
    result = await schema(30)
    assert result.success, result.error
    assert result.findings == []
    assert result.samples["vigil_schema_consistent"] == [({"target": "demo"}, 1.0)]
    assert (await lint(30)).findings == []

    conn = sqlite3.connect(tmp_path / "demo.db")
    conn.executescript("ALTER TABLE items DROP COLUMN stock;"
                       "CREATE TABLE notes (body TEXT, order_id INTEGER REFERENCES orders(id));"
                       "CREATE INDEX ix1 ON users (name); CREATE INDEX ix2 ON users (name);")
    conn.close()
    # fresh checks: the checks of one target reuse an inspection for a few seconds
    schema, lint = make_schema_checks("demo", cfg)
    result = await schema(30)
    got = {(f.rule, f.severity, f.subject) for f in result.findings}
    assert got == {("missing_column", Severity.CRITICAL, "items.stock"),
                   ("extra_table", Severity.INFO, "notes")}
    result = await lint(30)
    linted = {(f.rule, f.subject) for f in result.findings}
    assert linted == {("table_without_primary_key", "notes"), ("fk_without_index", "notes(order_id)"),
                   ("nullable_fk_column", "notes(order_id)"), ("duplicate_index", "users.ix2")}


async def test_sqlite_missing_file_fails_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    (check,) = make_schema_checks("demo", config(f"sqlite:///{path}"))
    result = await check(30)
    assert not result.success and result.error
    assert not path.exists()


async def test_sqlite_drift(tmp_path: Path) -> None:
    url = _sqlite_demo(tmp_path / "demo.db")
    baseline = tmp_path / "b.json"
    assert schema_main(["baseline", "--url", url, "-o", str(baseline)]) == 0
    cfg = config(url, lint={"enabled": False}, drift={"baseline_file": str(baseline)})
    (check,) = make_schema_checks("demo", cfg)
    assert (await check(30)).samples["vigil_schema_drift"][0][1] == 0.0
    conn = sqlite3.connect(tmp_path / "demo.db")
    conn.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY)")
    conn.close()
    check = make_schema_checks("demo", cfg)[0]
    result = await check(30)
    assert result.samples["vigil_schema_drift"][0][1] == 1.0
    assert [(f.rule, f.subject) for f in result.findings] == [("drift_extra_table", "extra")]


def test_cli_check_json_report(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    run_sql(pg_url, SHOP + "CREATE TABLE loose (a int)")
    assert schema_main(["check", "--url", pg_url, "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["metrics"]["vigil_schema_tables"] == 4.0
    assert [(f["rule"], f["subject"]) for f in doc["findings"]] == [
        ("schema_lint/table_without_primary_key", "loose")]


async def test_every_sample_family_is_documented(pg_url: str, tmp_path: Path) -> None:
    from vigil.exporter.schema import SAMPLE_FAMILIES

    run_sql(pg_url, SHOP)
    baseline = tmp_path / "b.json"
    assert schema_main(["baseline", "--url", pg_url, "-o", str(baseline)]) == 0
    cfg = config(pg_url, expected={"spec": {}}, drift={"baseline_file": str(baseline)},
                 code_references={"paths": [str(tmp_path)]})
    seen: set[str] = set()
    for check in make_schema_checks("shop", cfg):
        result = await check(30)
        assert result.success, result.error
        for name, rows in result.samples.items():
            seen.add(name)
            assert all(tuple(labels) == SAMPLE_FAMILIES[name][1] for labels, _ in rows)
    assert seen == set(SAMPLE_FAMILIES)


async def test_kept_connection_is_reused_and_survives_a_server_side_kill(
        pg_url: str, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from vigil.exporter.schema import checks as checks_module

    monkeypatch.setattr(checks_module, "_REUSE_SECONDS", 0.0)  # every run inspects afresh
    app = f"vigil-test-{uuid.uuid4().hex[:8]}"
    run_sql(pg_url, SHOP)
    (check,) = make_schema_checks("shop", config(pg_url + f"&application_name={app}"))

    def backends() -> list[int]:
        from vigil.db import create_engine

        engine = create_engine(postgres_server_url)
        with engine.connect() as conn:
            pids = list(conn.execute(sa.text("SELECT pid FROM pg_stat_activity "
                                             "WHERE application_name = :a"), {"a": app}).scalars())
        engine.dispose()
        return pids

    assert (await check(30)).success
    first = backends()
    assert len(first) == 1  # kept, idle, between runs
    assert (await check(30)).success
    assert backends() == first  # the same backend served the second run
    run_sql(postgres_server_url, f"SELECT pg_terminate_backend({first[0]})")
    result = await check(30)  # the dead connection is replaced transparently
    assert result.success, result.error
    assert len(backends()) == 1 and backends() != first
    check.close()
    assert backends() == []
