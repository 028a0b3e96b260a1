"""Pure logic: type and default normalization, redaction, canonical form."""

from __future__ import annotations

import pytest
from vigil.exporter.schema.diff import sqlite_affinity
from vigil.exporter.schema.fingerprint import fingerprint, snapshot_from_canonical
from vigil.exporter.schema.model import (
    Column,
    Index,
    Snapshot,
    Table,
    normalize_default,
    normalize_type,
)
from vigil.exporter.schema.redact import Redactor, redact_url, scrub


@pytest.mark.parametrize(("raw", "norm"), [
    ("VARCHAR(255)", "character varying(255)"),
    ("int4", "integer"), ("serial", "integer"), ("BIGSERIAL", "bigint"),
    ("NUMERIC(10, 2)", "numeric(10,2)"), ("decimal(10,2)", "numeric(10,2)"),
    ("timestamptz", "timestamp with time zone"),
    ("TIMESTAMP WITHOUT TIME ZONE", "timestamp without time zone"),
    ("timestamp(3)", "timestamp(3) without time zone"), ("DateTime", "timestamp without time zone"),
    ("int[]", "integer[]"), ("bool", "boolean"), ("float8", "double precision"),
])
def test_normalize_type(raw: str, norm: str) -> None:
    assert normalize_type(raw) == norm


@pytest.mark.parametrize(("raw", "norm"), [
    ("'x'::text", "'x'"), ("(0)", "0"), ("'0'", "0"), ("'0'::integer", "0"),
    ("CURRENT_TIMESTAMP", "now()"), ("now()", "now()"), (None, None), ("TRUE", "true"),
])
def test_normalize_default(raw: str | None, norm: str | None) -> None:
    assert normalize_default(raw) == norm


def test_sqlite_affinity() -> None:
    assert [sqlite_affinity(t) for t in ("BIGINT", "VARCHAR(5)", "BLOB", "DOUBLE", "DECIMAL")] == [
        "INTEGER", "TEXT", "BLOB", "REAL", "NUMERIC"]


def test_redaction_of_urls_and_errors() -> None:
    assert redact_url("postgresql://u:pw123@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "s3cr3t" not in redact_url("postgresql://u@h/db?password=s3cr3t")
    assert scrub("could not connect: host=h password=s3cr3t user=u") == (
        "could not connect: host=h password=*** user=u")
    redactor = Redactor()
    redactor.add_url("postgresql://u:hunter22@h/db")
    err = RuntimeError("(psycopg2.OperationalError) FATAL for hunter22\nDETAIL: more")
    assert redactor.describe(err) == "RuntimeError: FATAL for ***"


def test_canonical_form_ignores_order_and_names_and_round_trips() -> None:
    def snap(names: list[str], index_name: str) -> Snapshot:
        t = Table("t", columns={n: Column(n, "integer") for n in names},
                  indexes=[Index(("b",), name=index_name), Index(("a",), name="x" + index_name)])
        return Snapshot("postgresql", "public", ["public"], tables={"t": t})

    one, two = snap(["a", "b"], "i1"), snap(["b", "a"], "other")
    two.tables["t"].indexes.reverse()
    assert fingerprint(one) == fingerprint(two)
    again = snapshot_from_canonical(one.to_canonical(), "postgresql", "public")
    assert fingerprint(again) == fingerprint(one)
    two.tables["t"].columns["a"].nullable = False
    assert fingerprint(two) != fingerprint(one)
