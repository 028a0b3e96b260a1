"""The SQL-file source on real PostgreSQL: the server's own `pg_dump -s` as the expected schema,
psql meta-commands, failed loads, and the command line's errors and exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from vigil.exporter.schema import SchemaCheckConfig, make_schema_checks

from tests.exporter_schema.conftest import run_sql
from tests.exporter_schema.schemas import SHOP
from tests.exporter_schema.test_diff import consistent, run_check
from vigil.cli import main as vigil_main
from vigil.config import parse_model

SECRET = "s3cr3t-pw-77"


def _pg_dump() -> str:
    for candidate in (shutil.which("pg_dump"), "/usr/lib/postgresql/15/bin/pg_dump"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI") == "true":
        pytest.fail("pg_dump is not installed", pytrace=False)
    pytest.skip("pg_dump is not installed")


def dump_schema(url: str, out: Path) -> str:
    """`pg_dump -s` of url's schema (the one its search_path names), as the server's tool writes it."""
    u = make_url(url)
    schema = str(u.query["options"]).split("search_path=")[1]
    cmd = [_pg_dump(), "-s", "-n", schema, "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
           "-U", u.username or "postgres", u.database or "postgres"]
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    out.write_text(text)
    return text


def scratch_databases(server: str) -> list[str]:
    engine = sa.create_engine(server)
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT datname FROM pg_database "
                                     "WHERE datname LIKE 'vigil_scratch_%'")).scalars().all()
    engine.dispose()
    return list(names)


async def test_pg_dump_of_the_live_schema_is_consistent_then_names_the_one_change(
        pg_url: str, postgres_server_url: str, tmp_path: Path) -> None:
    run_sql(pg_url, SHOP + """
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
        ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON orders USING (quantity > 0);
        CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text COLLATE "C");
    """)
    dump = tmp_path / "schema.sql"
    text = dump_schema(pg_url, dump)
    assert 'CREATE TABLE ' in text and '.users' in text  # schema-qualified, as pg_dump writes
    before = scratch_databases(postgres_server_url)
    expected = {"sql_file": str(dump), "scratch": {"url": postgres_server_url}}
    for _ in range(2):  # a second load finds nothing left behind by the first
        result = await run_check(pg_url, expected)
        assert result.findings == []
        assert consistent(result) == 1.0

    run_sql(pg_url, "ALTER TABLE users ALTER COLUMN name TYPE varchar(50)")
    result = await run_check(pg_url, expected)
    assert [(f.rule, f.subject) for f in result.findings] == [("type_mismatch", "users.name")]
    assert consistent(result) == 0.0
    assert scratch_databases(postgres_server_url) == before


async def test_meta_commands_of_newer_pg_dump_are_skipped(pg_url: str, postgres_server_url: str,
                                                          tmp_path: Path) -> None:
    run_sql(pg_url, SHOP)
    dump = tmp_path / "schema.sql"
    text = dump_schema(pg_url, dump)
    # what pg_dump 17.6+ writes around the dump; PostgreSQL 15's pg_dump may not
    dump.write_text("\\restrict Qm3yJ1xZ\n\\set ON_ERROR_STOP on\n" + text
                    + "\n\\unrestrict Qm3yJ1xZ\n")
    result = await run_check(pg_url, {"sql_file": str(dump),
                                      "scratch": {"url": postgres_server_url}})
    assert result.findings == []


async def test_unqualified_file_still_lines_up_with_the_live_schema(
        pg_url: str, postgres_server_url: str, tmp_path: Path) -> None:
    run_sql(pg_url, SHOP)
    sql_file = tmp_path / "m.sql"
    sql_file.write_text(SHOP.replace("stock int", "stock bigint"))
    result = await run_check(pg_url, {"sql_file": str(sql_file),
                                      "scratch": {"url": postgres_server_url}})
    assert [(f.rule, f.subject) for f in result.findings] == [("type_mismatch", "items.stock")]


@pytest.mark.parametrize(("content", "error"), [
    ("CREATE TABLE a (id int);\n\nCREATE TABL b (id int);\n", "line 3: cannot load"),
    ("CREATE TABLE a (id int);\n\\connect other\n", "line 2: psql meta-command \\connect"),
])
async def test_a_failed_load_names_the_line_and_leaves_nothing_behind(
        pg_url: str, postgres_server_url: str, tmp_path: Path, content: str, error: str) -> None:
    sql_file = tmp_path / "bad.sql"
    sql_file.write_text(content)
    before = scratch_databases(postgres_server_url)
    cfg = parse_model(SchemaCheckConfig, {
        "url": pg_url, "lint": {"enabled": False},
        "expected": {"sql_file": str(sql_file), "scratch": {"url": postgres_server_url}}})
    result = await make_schema_checks("shop", cfg)[0](30.0)
    assert not result.success
    assert error in result.error and "bad.sql" in result.error
    assert scratch_databases(postgres_server_url) == before


# --- the command line -----------------------------------------------------------------------

def vigil(*args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        vigil_main(["schema", *args])
    return int(exc.value.code or 0)


def test_a_schema_that_does_not_exist_is_an_error(pg_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil("check", "--url", pg_url, "--schema", "no_such_schema") == 2
    assert vigil("fingerprint", "--url", pg_url, "--schema", "no_such_schema") == 2
    err = capsys.readouterr().err
    assert "no_such_schema" in err and "does not exist in the live database" in err
    assert "Traceback" not in err
    assert vigil("diff", "--url", pg_url, "--against-url", pg_url,
                 "--against-schema", "no_such_schema") == 2
    assert "does not exist in the reference database" in capsys.readouterr().err


def test_diff_and_check_exit_alike_on_info_only_findings(
        pg_url: str, pg_schema_factory: Callable[[], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    reference = pg_schema_factory()
    run_sql(reference, SHOP)
    run_sql(pg_url, SHOP + "CREATE TABLE audit (id int PRIMARY KEY);")
    assert vigil("diff", "--url", pg_url, "--against-url", reference) == 0
    assert "extra_table" in capsys.readouterr().out
    config = tmp_path / "schema.yml"
    config.write_text(f"schema:\n  url: '{pg_url}'\n  lint: {{enabled: false}}\n"
                      f"  expected: {{reference: {{url: '{reference}'}}}}\n")
    assert vigil("check", "--config.file", str(config)) == 0
    assert "extra_table" in capsys.readouterr().out
    run_sql(pg_url, "ALTER TABLE users DROP COLUMN name")
    assert vigil("diff", "--url", pg_url, "--against-url", reference) == 1
    assert vigil("check", "--config.file", str(config)) == 1


def test_unreachable_database_is_named_without_its_password(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from vigil.procs import free_port

    bad = f"postgresql://vigil:{SECRET}@127.0.0.1:{free_port()}/shop"
    assert vigil("diff", "--url", pg_url, "--against-url", bad, "--timeout", "10") == 3
    err = capsys.readouterr().err
    assert "cannot inspect the reference database" in err and SECRET not in err
    assert vigil("diff", "--url", bad, "--against-url", pg_url, "--timeout", "10") == 3
    err = capsys.readouterr().err
    assert "cannot inspect the live database" in err and SECRET not in err


def test_against_schema_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil("diff", "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--against-schema SCHEMA" in out and "compared by bare name" in out
