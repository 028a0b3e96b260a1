"""Expected schema vs live schema on real PostgreSQL: every kind of difference, and none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.exporter.base import CheckResult, Severity
from vigil.exporter.schema import SchemaCheckConfig, make_schema_checks
from vigil.exporter.schema.fingerprint import fingerprint
from vigil.exporter.schema.inspect import inspect_url

from tests.exporter_schema.conftest import run_sql
from tests.exporter_schema.schemas import SHOP, SHOP_REORDERED
from vigil.config import parse_model

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO


async def run_check(target_url: str, expected: dict, name: str = "schema") -> CheckResult:
    cfg = parse_model(SchemaCheckConfig, {"url": target_url, "expected": expected,
                                          "lint": {"enabled": False}})
    (check,) = [c for c in make_schema_checks("shop", cfg) if c.name == name]
    result = await check(30.0)
    assert result.success, result.error
    return result


def consistent(result: CheckResult) -> float:
    (sample,) = result.samples["vigil_schema_consistent"]
    assert sample[0] == {"target": "shop"}
    return sample[1]


async def test_identical_schemas_created_in_different_order_report_nothing(
        pg_url: str, pg_schema_factory: Callable[[], str]) -> None:
    other = pg_schema_factory()
    run_sql(pg_url, SHOP)
    run_sql(other, SHOP_REORDERED)
    result = await run_check(pg_url, {"reference": {"url": other}})
    assert result.findings == []
    assert consistent(result) == 1.0
    assert fingerprint(inspect_url(pg_url, [], 10, 5)) == fingerprint(inspect_url(other, [], 10, 5))


MUTATIONS = [
    # (SQL applied to the live copy, expected (rule, severity, subject), only finding?)
    ("DROP VIEW order_counts; DROP TABLE orders", ("missing_table", C, "orders"), False),
    ("DROP VIEW order_counts", ("missing_view", C, "order_counts"), True),
    ("ALTER TABLE users DROP COLUMN name", ("missing_column", C, "users.name"), True),
    ("ALTER TABLE items ALTER COLUMN name TYPE varchar(50)", ("type_mismatch", W, "items.name"),
     True),
    ("ALTER TABLE users ALTER COLUMN name SET NOT NULL",
     ("nullability_mismatch", W, "users.name"), True),
    ("ALTER TABLE items ALTER COLUMN stock SET DEFAULT 5", ("default_mismatch", W, "items.stock"),
     True),
    ("ALTER TABLE users ADD COLUMN nickname text", ("extra_column", I, "users.nickname"), True),
    ("CREATE TABLE audit (id int PRIMARY KEY)", ("extra_table", I, "audit"), True),
    ("DROP INDEX orders_item_id_idx", ("missing_index", W, "orders(item_id)"), True),
    ("CREATE INDEX extra_idx ON items (stock)", ("extra_index", I, "items(stock)"), True),
    ("ALTER TABLE orders DROP CONSTRAINT orders_item_id_fkey",
     ("missing_foreign_key", W, "orders(item_id)"), True),
    ("ALTER TABLE users DROP CONSTRAINT users_email_key", ("missing_unique", W, "users(email)"),
     True),
    (("ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey, "
     "ADD FOREIGN KEY (user_id) REFERENCES users(id)"),
     ("foreign_key_action_mismatch", W, "orders(user_id)"), True),
    ("ALTER TABLE items DROP CONSTRAINT items_pkey CASCADE",
     ("missing_primary_key", W, "items"), False),
    ("ALTER TABLE items DROP CONSTRAINT items_price_check", ("missing_check", W, "items"), True),
    (("CREATE OR REPLACE VIEW order_counts AS "
     "SELECT user_id, count(*) + 0 AS n FROM orders GROUP BY user_id"),
     ("view_definition_mismatch", W, "order_counts"), True),
    ("ALTER TYPE order_status ADD VALUE 'refunded'",
     ("extra_enum_values", I, "order_status"), True),
    ("ALTER TABLE orders ALTER COLUMN status DROP DEFAULT",
     ("default_mismatch", W, "orders.status"), True),
]


@pytest.mark.parametrize(("mutation", "expected", "only"), MUTATIONS,
                         ids=[m[1][0] for m in MUTATIONS])
async def test_each_difference_is_reported(pg_url: str, pg_schema_factory: Callable[[], str],
                                           mutation: str, expected: tuple, only: bool) -> None:
    reference = pg_schema_factory()
    run_sql(reference, SHOP)
    run_sql(pg_url, SHOP + mutation)
    result = await run_check(pg_url, {"reference": {"url": reference}})
    got = [(f.rule, f.severity, f.subject) for f in result.findings]
    assert expected in got
    if only:
        assert got == [expected]
    assert consistent(result) == (1.0 if expected[1] == I else 0.0)


SPEC: dict[str, Any] = {
    "tables": {
        "users": {"columns": {"id": {"type": "serial", "nullable": False},
                              "email": {"type": "text", "nullable": False},
                              "name": "varchar(100)",
                              "created_at": {"type": "timestamptz", "nullable": False,
                                             "default": "now()"}},
                  "primary_key": ["id"], "unique": [["email"]]},
        "orders": {"columns": {"id": "int", "user_id": {"type": "integer", "nullable": False},
                               "item_id": {"type": "int4", "nullable": False},
                               "quantity": {"type": "int", "nullable": False},
                               "status": {"type": "order_status", "default": "'new'"}},
                   "primary_key": ["id"],
                   "foreign_keys": [{"columns": ["user_id"], "references": "users(id)",
                                     "on_delete": "cascade"},
                                    {"columns": ["item_id"],
                                     "references": {"table": "items", "columns": ["id"]}}],
                   "indexes": [{"columns": ["user_id"]}, {"columns": ["item_id"]}]},
    },
    "views": ["order_counts"],
    "required_tables": ["items"],
    "enums": {"order_status": ["new", "paid", "shipped"]},
}


async def test_declared_spec_matches_and_then_reports(pg_url: str, tmp_path: Path) -> None:
    run_sql(pg_url, SHOP)
    result = await run_check(pg_url, {"spec": SPEC, "ignore_extra": True})
    assert result.findings == []
    assert consistent(result) == 1.0

    import yaml

    spec_file = tmp_path / "schema.yaml"
    bad = {**SPEC, "required_tables": ["items", "ai_insights"],
           "enums": {"order_status": ["new", "paid", "shipped", "refunded"]}}
    bad["tables"] = {**SPEC["tables"], "users": {**SPEC["tables"]["users"], "columns": {
        **SPEC["tables"]["users"]["columns"], "name": "text", "age": "int",
        "email": {"type": "text", "nullable": True}}}}
    spec_file.write_text(yaml.safe_dump(bad))
    result = await run_check(pg_url, {"spec_file": str(spec_file)})
    got = {(f.rule, f.severity, f.subject) for f in result.findings}
    assert {("missing_table", C, "ai_insights"), ("missing_column", C, "users.age"),
            ("type_mismatch", W, "users.name"), ("nullability_mismatch", W, "users.email"),
            ("enum_values_mismatch", W, "order_status")} == got
    assert consistent(result) == 0.0


async def test_sqlalchemy_metadata_of_the_demo_matches_what_it_creates(pg_url: str) -> None:
    from vigil.demo.db import metadata

    from vigil.db import create_engine

    engine = create_engine(pg_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE items DROP COLUMN stock"))
        conn.execute(sa.text("ALTER TABLE users ALTER COLUMN name TYPE text"))
    engine.dispose()
    result = await run_check(pg_url, {"sqlalchemy_metadata": "vigil.demo.db:metadata"})
    got = [(f.rule, f.severity, f.subject) for f in result.findings]
    assert got == [("missing_column", C, "items.stock"), ("type_mismatch", W, "users.name")]


async def test_demo_metadata_on_a_fresh_database_reports_nothing(pg_url: str) -> None:
    from vigil.demo.db import metadata

    from vigil.db import create_engine

    engine = create_engine(pg_url)
    metadata.create_all(engine)
    engine.dispose()
    result = await run_check(pg_url, {"sqlalchemy_metadata": "vigil.demo.db:metadata"})
    assert result.findings == []


async def test_sql_file_is_loaded_into_a_scratch_database_and_dropped(
        pg_url: str, postgres_server_url: str, tmp_path: Path) -> None:
    run_sql(pg_url, SHOP.replace("varchar(100)", "varchar(200)"))
    sql_file = tmp_path / "migrations.sql"
    sql_file.write_text(SHOP)
    result = await run_check(pg_url, {"sql_file": str(sql_file),
                                      "scratch": {"url": postgres_server_url}})
    assert [(f.rule, f.subject) for f in result.findings] == [("type_mismatch", "users.name")]
    engine = sa.create_engine(postgres_server_url.replace("postgresql://",
                                                          "postgresql+psycopg2://"))
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM pg_database "
                                    "WHERE datname LIKE 'vigil_scratch_%'")).scalar_one()
    engine.dispose()
    assert left == 0


async def test_sql_file_without_scratch_fails_and_writes_nothing(pg_url: str,
                                                                  tmp_path: Path) -> None:
    run_sql(pg_url, SHOP)
    sql_file = tmp_path / "m.sql"
    sql_file.write_text(SHOP)
    cfg = parse_model(SchemaCheckConfig, {"url": pg_url, "expected": {"sql_file": str(sql_file)}})
    result = await make_schema_checks("shop", cfg)[0](30.0)
    assert not result.success
    assert "scratch" in result.error
