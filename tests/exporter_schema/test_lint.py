"""Each lint finding, built for real in PostgreSQL, and a clean schema that gives none."""

from __future__ import annotations

import pytest
from vigil.exporter.base import CheckResult, Severity
from vigil.exporter.schema import SchemaCheckConfig, make_schema_checks
from vigil.exporter.schema.lint import sequence_usage_percent
from vigil.exporter.schema.model import Sequence

from tests.exporter_schema.conftest import run_sql
from tests.exporter_schema.schemas import SHOP
from vigil.config import parse_model

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO


async def lint(url: str, **lint_cfg: object) -> CheckResult:
    cfg = parse_model(SchemaCheckConfig, {"url": url, "lint": lint_cfg})
    (check,) = make_schema_checks("shop", cfg)
    assert check.name == "schema_lint"
    result = await check(30.0)
    assert result.success, result.error
    return result


async def test_clean_schema_has_no_lint_findings(pg_url: str) -> None:
    run_sql(pg_url, SHOP)
    result = await lint(pg_url)
    assert result.findings == []
    assert result.samples["vigil_schema_tables"] == [({"target": "shop"}, 3.0)]
    usage = {labels["sequence"]: v
                 for labels, v in result.samples["vigil_schema_sequence_usage_percent"]}
    assert set(usage) == {"users_id_seq", "items_id_seq", "orders_id_seq"}


LINTS = [
    (("CREATE TABLE parent (id int PRIMARY KEY);"
     "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id))"),
     ("fk_without_index", W, "child(parent_id)")),
    ("CREATE TABLE loose (a int, b text)", ("table_without_primary_key", W, "loose")),
    (("CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v1 ON t (v);"
     "CREATE INDEX t_v2 ON t (v)"), ("duplicate_index", W, "t.t_v2")),
    (("CREATE TABLE p (a int, b int, PRIMARY KEY (a, b));"
     "CREATE TABLE c (id int PRIMARY KEY, a int NOT NULL, b int,"
     " FOREIGN KEY (a, b) REFERENCES p (a, b)); CREATE INDEX ON c (a, b)"),
     ("nullable_fk_column", W, "c(a, b)")),
    (("CREATE TABLE p (id int PRIMARY KEY);"
     "CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p(id)); CREATE INDEX ON c (p_id)"),
     ("nullable_fk_column", I, "c(p_id)")),
    ("CREATE TABLE big (id serial PRIMARY KEY); SELECT setval('big_id_seq', 2000000000)",
     ("sequence_exhaustion", C, "big_id_seq")),
    ("CREATE SEQUENCE small MAXVALUE 100; SELECT setval('small', 80)",
     ("sequence_exhaustion", W, "small")),
]


@pytest.mark.parametrize(("ddl", "expected"), LINTS, ids=[x[1][0] + "-" + x[1][1].value
                                                          for x in LINTS])
async def test_each_lint_finding(pg_url: str, ddl: str, expected: tuple) -> None:
    run_sql(pg_url, ddl)
    result = await lint(pg_url)
    assert [(f.rule, f.severity, f.subject) for f in result.findings] == [expected]


async def test_invalid_index_from_a_failed_concurrent_build(pg_url: str) -> None:
    run_sql(pg_url, "CREATE TABLE dup (id int PRIMARY KEY, v int);"
                    "INSERT INTO dup VALUES (1, 7), (2, 7)")
    with pytest.raises(Exception, match="(?i)duplicate|unique"):
        run_sql(pg_url, "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v)", autocommit=True)
    result = await lint(pg_url)
    assert [(f.rule, f.severity, f.subject) for f in result.findings] == [
        ("invalid_index", W, "dup.dup_v")]


async def test_sequence_usage_metric_and_disable(pg_url: str) -> None:
    run_sql(pg_url, "CREATE TABLE big (id serial PRIMARY KEY); SELECT setval('big_id_seq', 2000000000);"
                    "CREATE TABLE loose (a int)")
    result = await lint(pg_url, disable=["table_without_primary_key"])
    assert [f.rule for f in result.findings] == ["sequence_exhaustion"]
    ((labels, value),) = result.samples["vigil_schema_sequence_usage_percent"]
    assert labels == {"target": "shop", "sequence": "big_id_seq"}
    assert value == pytest.approx(100 * 2000000000 / (2**31 - 1), rel=1e-6)
    assert "integer" in result.findings[0].message  # the column type, not bigint, caps it


def test_sequence_usage_percent_counts_descending_and_unused() -> None:
    assert sequence_usage_percent(Sequence("s", last_value=None)) == 0.0
    # -1 .. -51 handed out: 51 of the 100 values
    down = Sequence("d", min_value=-100, max_value=-1, increment=-1, last_value=-51)
    assert sequence_usage_percent(down) == pytest.approx(51.0)
