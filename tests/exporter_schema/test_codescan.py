"""Table references in code: the fixture tree's true reports, and none of its traps."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.exporter.base import Severity
from vigil.exporter.schema.codescan import (
    ScanResult,
    reference_findings,
    refs_in_sql,
    scan_paths,
    scan_python,
)
from vigil.exporter.schema.config import CodeReferencesConfig
from vigil.exporter.schema.inspect import inspect_url
from vigil.exporter.schema.model import Snapshot, Table

from tests.exporter_schema.conftest import run_sql
from vigil.paths import DEMO_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "code"

SHOP_DDL = """
CREATE TABLE users (id serial PRIMARY KEY, email text);
CREATE TABLE items (id serial PRIMARY KEY, name text, price numeric, stock int,
                    created_at timestamptz);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users(id),
                     item_id int REFERENCES items(id), quantity int, created_at timestamptz);
CREATE TABLE ai_insights (id serial PRIMARY KEY, body text);
CREATE TABLE "MixedCase" (id int PRIMARY KEY);
CREATE TABLE unused_table (id int PRIMARY KEY);
CREATE VIEW order_summary AS SELECT count(*) AS n FROM orders;
"""


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_fixture_tree_reports_exactly_the_missing_tables(pg_database_url: str) -> None:
    run_sql(pg_database_url, SHOP_DDL)
    snap = inspect_url(pg_database_url, [], 10, 5)
    cfg = CodeReferencesConfig(paths=[FIXTURES],
                               include=["**/*.py", "**/*.sql", "templates/*.sqlt"])
    findings, stats = reference_findings(snap, cfg)

    missing = {(f.subject, f.location) for f in findings if f.rule == "unknown_table"}
    app, sql = FIXTURES / "app", FIXTURES / "sql"
    assert missing == {
        ("ai_comments", f"{app / 'queries.py'}:{_line_of(app / 'queries.py', 'ai_comments WHERE')}"),
        ("mixedcase", f"{app / 'queries.py'}:{_line_of(app / 'queries.py', 'FROM MixedCase')}"),
        ("legacy_payments", f"{app / 'models.py'}:{_line_of(app / 'models.py', 'legacy_payments')}"),
        ("audit_log", f"{sql / 'report.sql'}:{_line_of(sql / 'report.sql', 'audit_log')}"),
        ("template_missing", f"{FIXTURES / 'templates' / 'report.sqlt'}:1"),
    }
    by_subject = {f.subject: f for f in findings if f.rule == "unknown_table"}
    assert by_subject["ai_comments"].severity == Severity.CRITICAL
    assert "did you mean ai_insights" in by_subject["ai_comments"].message
    assert "case differs" in by_subject["mixedcase"].message
    unreferenced = {f.subject for f in findings if f.rule == "unreferenced_table"}
    assert unreferenced == {"unused_table"}
    assert all(f.severity == Severity.INFO for f in findings if f.rule == "unreferenced_table")
    assert stats["files"] == 4  # node_modules/ is excluded by default


def test_demo_application_code_references_only_real_tables(pg_database_url: str) -> None:
    import sqlalchemy as sa
    from vigil.demo.db import metadata

    engine = sa.create_engine(pg_database_url.replace("postgresql://", "postgresql+psycopg2://"))
    metadata.create_all(engine)
    engine.dispose()
    snap = inspect_url(pg_database_url, [], 10, 5)
    # the target's own code (other demo modules talk to the remediator's database)
    app_code = [DEMO_DIR / "db.py", DEMO_DIR / "repository.py"]
    findings, stats = reference_findings(snap, CodeReferencesConfig(paths=app_code))
    assert stats["refs"] > 5
    assert [f for f in findings if f.rule == "unknown_table"] == []
    assert {f.subject for f in findings if f.rule == "unreferenced_table"} == set()


def test_sqlite_comparisons_ignore_case(tmp_path: Path) -> None:
    src = tmp_path / "q.py"
    src.write_text('q = text("SELECT * FROM ITEMS JOIN \\"Users\\" ON true JOIN nope ON true")\n')
    snap = Snapshot(dialect="sqlite", default_schema="main", schemas=["main"],
                    tables={"items": Table("items"), "users": Table("users")})
    findings, _ = reference_findings(snap, CodeReferencesConfig(paths=[src]))
    assert [(f.subject, f.location) for f in findings] == [("nope", f"{src}:1")]


@pytest.mark.parametrize(("sql", "names"), [
    ("SELECT * FROM a, b AS x, c y WHERE z IN (SELECT 1 FROM d)", ["a", "b", "c", "d"]),
    ("WITH w AS (SELECT 1 FROM t) SELECT * FROM w", ["t"]),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", []),
    ('SELECT * FROM "S"."Tab" JOIN s2.tab2 ON true', ["S.Tab", "s2.tab2"]),
    ("SELECT extract(year FROM ts), a IS NOT DISTINCT FROM b FROM t", ["t"]),
    ("SELECT * FROM json_each(x) j, LATERAL (SELECT * FROM t2) l", ["t2"]),
    ("INSERT INTO t (a) SELECT a FROM u ON CONFLICT DO NOTHING", ["t", "u"]),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", ["t", "s"]),
    ("SELECT * FROM t FOR NO KEY UPDATE", ["t"]),
    ("TRUNCATE TABLE t1, t2; LOCK TABLE t3", ["t1", "t3"]),
    ("SELECT 'FROM x' FROM t -- FROM y\n/* FROM z */", ["t"]),
    ("COPY t (a) FROM STDIN", ["t"]),
    ("SELECT * FROM %(tbl)s JOIN ? ON true JOIN $1 ON true", []),
])
def test_sql_reference_extraction(sql: str, names: list[str]) -> None:
    refs, _ = refs_in_sql(sql)
    assert [f"{r.schema}.{r.name}" if r.schema else r.name for r in refs] == names


def test_python_strings_that_are_not_sql_are_ignored() -> None:
    source = '''
"""Select an item from the list."""
def f():
    """DELETE FROM nothing: a docstring."""
    print("Select one from these")
    log("updated items from the feed")
    query = f"SELECT * FROM {name}"
    search_query = "pick one from the list"
    return "SELECT id FROM real_table"
'''
    result = ScanResult()
    scan_python(source, "m.py", result)
    assert [(r.name, r.line) for r in result.refs] == [("real_table", 9)]


def test_unparsable_python_is_skipped_and_listed() -> None:
    result = ScanResult()
    scan_python('def oops(:\n    return "SELECT * FROM nowhere"\n', "broken.py", result)
    assert result.refs == [] and result.unparsable == ["broken.py"]


def test_excludes_match_below_the_root_only(tmp_path: Path) -> None:
    root = tmp_path / "venv" / "project"  # the root itself sits under a "venv" folder
    (root / "node_modules").mkdir(parents=True)
    (root / "app.sql").write_text("SELECT * FROM kept")
    (root / "node_modules" / "lib.sql").write_text("SELECT * FROM dropped")
    result = scan_paths(CodeReferencesConfig(paths=[root]))
    assert [(r.name, r.file) for r in result.refs] == [("kept", str(root / "app.sql"))]


def test_cache_rescans_only_changed_files(tmp_path: Path) -> None:
    import os

    (tmp_path / "a.sql").write_text("SELECT * FROM one")
    cfg = CodeReferencesConfig(paths=[tmp_path])
    cache: dict = {}
    assert [r.name for r in scan_paths(cfg, cache).refs] == ["one"]
    (tmp_path / "a.sql").write_text("SELECT * FROM two")
    os.utime(tmp_path / "a.sql", ns=(1, 1))  # a different mtime than the cached one
    assert [r.name for r in scan_paths(cfg, cache).refs] == ["two"]
    assert [r.name for r in scan_paths(cfg, cache).refs] == ["two"]
