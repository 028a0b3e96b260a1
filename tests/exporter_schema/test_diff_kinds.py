"""Before/after schema pairs on real PostgreSQL: each difference is reported exactly once.

Each pair is an expected schema (loaded into a reference schema) and a live one that differs
from it in one respect; the live schema built from the expected DDL reports nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url
from vigil.exporter.base import Severity
from vigil.exporter.schema.config import DriftConfig, LintConfig
from vigil.exporter.schema.diff import diff_snapshots
from vigil.exporter.schema.fingerprint import drift_findings, fingerprint, write_baseline
from vigil.exporter.schema.inspect import inspect_url
from vigil.exporter.schema.lint import lint_snapshot

from tests.exporter_schema.conftest import run_sql

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO

BASE = "CREATE TABLE t (id int PRIMARY KEY, code text, r int4range, qty int);\n"

# (id, expected DDL, live DDL, the findings (rule, severity, subject), in order)
PAIRS = [
    ("unique_index_hidden_by_primary_key",
     BASE + "CREATE UNIQUE INDEX t_id_uq ON t (id);", BASE,
     [("missing_index", W, "t(id)")]),
    ("index_duplicating_primary_key",
     BASE, BASE + "CREATE INDEX t_id_idx ON t (id);",
     [("extra_index", I, "t(id)")]),
    ("plain_index_is_not_a_unique_constraint",
     BASE + "CREATE INDEX ON t (code);", BASE + "ALTER TABLE t ADD UNIQUE (code);",
     [("missing_index", W, "t(code)"), ("extra_unique", I, "t(code)")]),
    ("index_uniqueness", BASE + "CREATE UNIQUE INDEX ON t (code);",
     BASE + "CREATE INDEX ON t (code);",
     [("missing_index", W, "t(code)"), ("extra_index", I, "t(code)")]),
    ("index_method", BASE + "CREATE INDEX ON t (code);",
     BASE + "CREATE INDEX ON t USING hash (code);",
     [("missing_index", W, "t(code)"), ("extra_index", I, "t(code)")]),
    ("index_predicate", BASE + "CREATE INDEX ON t (code) WHERE qty > 0;",
     BASE + "CREATE INDEX ON t (code);",
     [("missing_index", W, "t(code)"), ("extra_index", I, "t(code)")]),
    ("index_include", BASE + "CREATE INDEX ON t (code) INCLUDE (qty);",
     BASE + "CREATE INDEX ON t (code);",
     [("missing_index", W, "t(code)"), ("extra_index", I, "t(code)")]),
    ("foreign_key_deferrable",
     BASE + "CREATE TABLE c (id int PRIMARY KEY, t_id int REFERENCES t(id) "
            "DEFERRABLE INITIALLY DEFERRED);",
     BASE + "CREATE TABLE c (id int PRIMARY KEY, t_id int REFERENCES t(id));",
     [("foreign_key_deferrability_mismatch", W, "c(t_id)")]),
    ("foreign_key_not_valid",
     BASE + "CREATE TABLE c (id int PRIMARY KEY, t_id int REFERENCES t(id));",
     BASE + "CREATE TABLE c (id int PRIMARY KEY, t_id int);"
            "ALTER TABLE c ADD FOREIGN KEY (t_id) REFERENCES t(id) NOT VALID;",
     [("foreign_key_validation_mismatch", W, "c(t_id)")]),
    ("sequence_owned_by", BASE + "CREATE SEQUENCE s OWNED BY t.qty;",
     BASE + "CREATE SEQUENCE s;", [("sequence_mismatch", W, "s")]),
    ("sequence_minvalue", BASE + "CREATE SEQUENCE s MINVALUE 10;",
     BASE + "CREATE SEQUENCE s MINVALUE 5 START 10;", [("sequence_mismatch", W, "s")]),
    ("exclusion_constraint", BASE + "ALTER TABLE t ADD EXCLUDE USING gist (r WITH &&);", BASE,
     [("missing_exclusion", W, "t")]),
    ("extra_partition",
     ("CREATE TABLE m (k int, v text) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);"),
     ("CREATE TABLE m (k int, v text) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);"
     "CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);"),
     [("extra_partition", I, "m2")]),
    ("parent_column_reported_once",
     ("CREATE TABLE m (k int, v text) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);"
     "CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);"),
     ("CREATE TABLE m (k int) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);"
     "CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2);"),
     [("missing_column", C, "m.v")]),
    ("partition_bound",
     ("CREATE TABLE m (k int) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);"),
     ("CREATE TABLE m (k int) PARTITION BY LIST (k);"
     "CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1, 2);"),
     [("partition_mismatch", W, "m1")]),
    ("schema_collation", BASE.replace("code text", 'code text COLLATE "C"'), BASE,
     [("collation_mismatch", W, "t.code")]),
    ("unlogged", "CREATE UNLOGGED TABLE u (id int PRIMARY KEY);",
     "CREATE TABLE u (id int PRIMARY KEY);", [("persistence_mismatch", W, "u")]),
    ("partitioned_vs_plain", "CREATE TABLE m (k int) PARTITION BY RANGE (k);",
     "CREATE TABLE m (k int);", [("partitioning_mismatch", W, "m")]),
    ("inheritance",
     "CREATE TABLE p (id int); CREATE TABLE ch (extra text) INHERITS (p);",
     "CREATE TABLE p (id int); CREATE TABLE ch (id int, extra text);",
     [("inheritance_mismatch", W, "ch")]),
    # the object kinds a schema differ compares beyond tables
    ("enum_value", "CREATE TYPE st AS ENUM ('a', 'b');", "CREATE TYPE st AS ENUM ('a');",
     [("enum_values_mismatch", W, "st")]),
    ("view_body",
     BASE + "CREATE VIEW v AS SELECT id, code FROM t WHERE qty > 0;",
     BASE + "CREATE VIEW v AS SELECT id, code FROM t WHERE qty > 1;",
     [("view_definition_mismatch", W, "v")]),
    ("function_body",
     "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a + 1';",
     "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a + 2';",
     [("function_definition_mismatch", W, "f(a integer)")]),
    ("function_signature",
     "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a';",
     "CREATE FUNCTION f(a bigint) RETURNS bigint LANGUAGE sql AS 'SELECT a';",
     [("missing_function", W, "f(a integer)"), ("extra_function", I, "f(a bigint)")]),
    ("trigger_missing",
     BASE + "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RETURN NEW; END$$; "
            "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION tg();",
     BASE + "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RETURN NEW; END$$;",
     [("missing_trigger", W, "t.t_touch")]),
    ("trigger_timing",
     BASE + "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RETURN NEW; END$$; "
            "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION tg();",
     BASE + "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RETURN NEW; END$$; "
            "CREATE TRIGGER t_touch AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION tg();",
     [("trigger_mismatch", W, "t.t_touch")]),
    ("rls_policy_missing",
     BASE + "ALTER TABLE t ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY own ON t USING (qty > 0);",
     BASE + "ALTER TABLE t ENABLE ROW LEVEL SECURITY;",
     [("missing_policy", W, "t.own")]),
    ("rls_policy_changed",
     BASE + "ALTER TABLE t ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY own ON t USING (qty > 0);",
     BASE + "ALTER TABLE t ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY own ON t FOR SELECT USING (qty > 0);",
     [("policy_mismatch", W, "t.own")]),
    ("rls_disabled",
     BASE + "ALTER TABLE t ENABLE ROW LEVEL SECURITY;", BASE,
     [("row_security_mismatch", W, "t")]),
]


@pytest.mark.parametrize(("expected_sql", "live_sql", "want"), [p[1:] for p in PAIRS],
                         ids=[p[0] for p in PAIRS])
def test_each_pair_gives_exactly_its_findings(pg_url: str, pg_schema_factory: Callable[[], str],
                                              expected_sql: str, live_sql: str,
                                              want: list[tuple[str, Severity, str]]) -> None:
    reference = pg_schema_factory()
    run_sql(reference, expected_sql)
    run_sql(pg_url, live_sql)
    expected, live = inspect_url(reference, [], 10, 5), inspect_url(pg_url, [], 10, 5)
    got = [(f.rule, f.severity, f.subject) for f in diff_snapshots(expected, live)]
    assert got == sorted(want, key=lambda w: ({C: 0, W: 1, I: 2}[w[1]], w[2], w[0]))
    # the expected DDL itself, in another schema, is consistent: no false findings
    twin = pg_schema_factory()
    run_sql(twin, expected_sql)
    assert diff_snapshots(expected, inspect_url(twin, [], 10, 5)) == []
    # and the fingerprint tells the two apart (drift sees the difference)
    assert fingerprint(expected) != fingerprint(live)
    assert fingerprint(expected) == fingerprint(inspect_url(twin, [], 10, 5))


def test_sequence_minvalue_drift_names_the_option(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_sql(pg_url, "CREATE SEQUENCE s MINVALUE 10")
    baseline = tmp_path / "base.json"
    write_baseline(inspect_url(pg_url, [], 10, 5), baseline)
    run_sql(pg_url, "ALTER SEQUENCE s MINVALUE 5")
    drifted, findings = drift_findings(inspect_url(pg_url, [], 10, 5),
                                       DriftConfig(baseline_file=baseline))
    assert drifted
    assert [(f.rule, f.subject) for f in findings] == [("drift_sequence_mismatch", "s")]
    assert "minvalue 5 (expected 10)" in findings[0].message


def test_exclusion_constraint_changes_the_fingerprint_and_drifts(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_sql(pg_url, BASE)
    baseline = tmp_path / "base.json"
    write_baseline(inspect_url(pg_url, [], 10, 5), baseline)
    run_sql(pg_url, "ALTER TABLE t ADD EXCLUDE USING gist (r WITH &&)")
    drifted, findings = drift_findings(inspect_url(pg_url, [], 10, 5),
                                       DriftConfig(baseline_file=baseline))
    assert drifted
    assert [(f.rule, f.severity, f.subject) for f in findings] == [
        ("drift_extra_exclusion", I, "t")]


def test_a_baseline_without_the_newer_kinds_does_not_drift(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    run_sql(pg_url, BASE + "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';")
    baseline = tmp_path / "base.json"
    write_baseline(inspect_url(pg_url, [], 10, 5), baseline)
    doc = json.loads(baseline.read_text())
    for key in ("functions", "extensions", "schemas"):  # what an older baseline lacks
        del doc["schema"][key]
    for table in doc["schema"]["tables"].values():
        del table["triggers"], table["persistence"]
    doc["fingerprint"] = "sha256:recorded-by-an-older-version"
    baseline.write_text(json.dumps(doc))
    live = inspect_url(pg_url, [], 10, 5)
    assert drift_findings(live, DriftConfig(baseline_file=baseline)) == (False, [])
    run_sql(pg_url, "ALTER TABLE t ADD COLUMN note text")
    drifted, findings = drift_findings(inspect_url(pg_url, [], 10, 5),
                                       DriftConfig(baseline_file=baseline))
    assert drifted and [f.rule for f in findings] == ["drift_extra_column"]


def test_missing_view_column_is_fixed_by_redefining_the_view(
        pg_url: str, pg_schema_factory: Callable[[], str]) -> None:
    reference = pg_schema_factory()
    run_sql(reference, BASE + "CREATE VIEW v AS SELECT id, code FROM t;")
    run_sql(pg_url, BASE + "CREATE VIEW v AS SELECT id FROM t;")
    findings = diff_snapshots(inspect_url(reference, [], 10, 5), inspect_url(pg_url, [], 10, 5))
    (missing,) = [f for f in findings if f.rule == "missing_column"]
    assert missing.subject == "v.code"
    assert "CREATE OR REPLACE VIEW v" in missing.fix and "ALTER TABLE" not in missing.fix


def test_an_index_duplicating_a_constraint_is_a_lint(pg_url: str) -> None:
    run_sql(pg_url, BASE + "CREATE INDEX t_id_idx ON t (id); ALTER TABLE t ADD UNIQUE (code);"
                           "CREATE INDEX t_code_idx ON t (code); CREATE INDEX t_qty ON t (qty);")
    findings, _ = lint_snapshot(inspect_url(pg_url, [], 10, 5), LintConfig())
    dups = {(f.subject, f.message.split(" duplicates ")[1]) for f in findings
            if f.rule == "duplicate_index"}
    assert dups == {("t.t_id_idx", "the primary key's index t_pkey"),
                    ("t.t_code_idx", "the unique constraint's index t_code_key")}


def test_privileges_are_compared_only_when_asked(pg_url: str, pg_schema_factory: Callable[[], str],
                                                 postgres_server_url: str) -> None:
    role = f"schema_r_{uuid.uuid4().hex[:8]}"
    run_sql(postgres_server_url, f'CREATE ROLE "{role}" NOLOGIN')
    try:
        reference = pg_schema_factory()
        run_sql(reference, BASE + f'GRANT SELECT ON t TO "{role}";')
        run_sql(pg_url, BASE)
        expected, live = inspect_url(reference, [], 10, 5), inspect_url(pg_url, [], 10, 5)
        assert diff_snapshots(expected, live) == []
        got = [(f.rule, f.subject) for f in diff_snapshots(expected, live, privileges=True)]
        assert got == [("missing_privilege", f"t:{role}:SELECT")]
    finally:
        run_sql(postgres_server_url, f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


@pytest.fixture
def database_factory(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Fresh databases on the test server (for what is per database: schemas, extensions)."""
    made: list[str] = []

    def factory() -> str:
        name = f"schema_{uuid.uuid4().hex[:10]}"
        run_sql(postgres_server_url, f'CREATE DATABASE "{name}"', autocommit=True)
        made.append(name)
        return make_url(postgres_server_url).set(database=name).render_as_string(
            hide_password=False)

    yield factory
    for name in made:
        run_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                autocommit=True)


def test_schemas_and_extensions_are_compared(database_factory: Callable[[], str]) -> None:
    reference, live = database_factory(), database_factory()
    run_sql(reference, "CREATE SCHEMA audit; CREATE EXTENSION citext; CREATE TABLE t (id int)")
    run_sql(live, "CREATE SCHEMA scratchpad; CREATE TABLE t (id int)")
    expected = inspect_url(reference, ["public", "audit", "scratchpad"], 10, 5)
    actual = inspect_url(live, ["public", "audit", "scratchpad"], 10, 5)
    got = [(f.rule, f.severity, f.subject) for f in diff_snapshots(expected, actual)]
    assert got == [("missing_schema", W, "audit"), ("missing_extension", W, "citext"),
                   ("extra_schema", I, "scratchpad")]
    # citext's own functions are the extension's, not the schema's
    assert not any(name.startswith("citext") for name in expected.functions)


async def test_a_spec_declares_functions_and_extensions_by_name(pg_url: str) -> None:
    from tests.exporter_schema.test_diff import run_check

    run_sql(pg_url, "CREATE FUNCTION touch(a int) RETURNS int LANGUAGE sql AS 'SELECT a';")
    spec = {"functions": ["touch"], "extensions": []}
    result = await run_check(pg_url, {"spec": spec, "ignore_extra": True})
    assert result.findings == []
    spec = {"functions": ["touch", "audit_row"], "extensions": ["no_such_extension"]}
    result = await run_check(pg_url, {"spec": spec, "ignore_extra": True})
    assert [(f.rule, f.severity, f.subject) for f in result.findings] == [
        ("missing_function", W, "audit_row"), ("missing_extension", W, "no_such_extension")]
