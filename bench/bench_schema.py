"""Benchmark: our schema inspection + lint against schemainspect on a 1,000-table PostgreSQL schema.

Creates a scratch database on the server (VIGIL_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/test), builds N tables with columns, foreign keys, unique
constraints and indexes, plus functions, triggers, RLS policies and enum types, and times the
inspectors on it in the same run (best and median of --repeat runs after one warm-up each, the
tools interleaved), on a kept connection (how the exporter runs; schemainspect on a pooled
SQLAlchemy connection) and on a new connection per run (how `vigil schema` runs). It prints
what each side read, the figures and the ratios, then drops the database.

Like for like: schemainspect is limited to the object kinds Vigil reads (schemas, relations
with columns, constraints, indexes, sequences, enums, extensions, functions, triggers, RLS
policies, table privileges); its full load (which adds collations, composite and range types,
domains and the dependency graph) is timed too, for reference only.
Target: ratio (ours / schemainspect, same kinds) <= 0.5.

    .venv/bin/python bench/bench_schema.py            # 1,000 tables
    .venv/bin/python bench/bench_schema.py --quick    # 200 tables, 3 repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from vigil.exporter.base import Finding
from vigil.exporter.schema.config import LintConfig
from vigil.exporter.schema.lint import lint_snapshot
from vigil.exporter.schema.model import Snapshot
from vigil.exporter.schema.pg import PgSession, inspect_postgres

from vigil.db import create_engine


def build_ddl(tables: int) -> str:
    """N tables; each references an earlier one; most foreign keys are indexed."""
    out = []
    for i in range(tables):
        parent = f",\n  parent_id bigint REFERENCES t{i // 2:04d}(id) ON DELETE CASCADE" if i else ""
        out.append(
            f"CREATE TABLE t{i:04d} (\n  id bigserial PRIMARY KEY,\n  code varchar(50) NOT NULL,"
            f"\n  name text,\n  qty integer NOT NULL DEFAULT 0,\n  price numeric(12,2),"
            f"\n  active boolean NOT NULL DEFAULT true,"
            f"\n  created_at timestamptz NOT NULL DEFAULT now(){parent});")
        if i and i % 7:
            out.append(f"CREATE INDEX t{i:04d}_parent_idx ON t{i:04d} (parent_id);")
        if i % 10 == 0:
            out.append(f"ALTER TABLE t{i:04d} ADD CONSTRAINT t{i:04d}_code_key UNIQUE (code);")
        out.append(f"CREATE INDEX t{i:04d}_name_qty_idx ON t{i:04d} (name, qty);")
        if i % 20 == 0:  # the kinds beyond tables, so that both sides have them to read
            out.append(f"CREATE FUNCTION f{i:04d}() RETURNS trigger LANGUAGE plpgsql AS "
                       f"$$BEGIN NEW.qty := NEW.qty + {i}; RETURN NEW; END$$;")
            out.append(f"CREATE TRIGGER t{i:04d}_touch BEFORE UPDATE ON t{i:04d} "
                       f"FOR EACH ROW EXECUTE FUNCTION f{i:04d}();")
        if i % 50 == 0:
            out.append(f"ALTER TABLE t{i:04d} ENABLE ROW LEVEL SECURITY;")
            out.append(f"CREATE POLICY t{i:04d}_active ON t{i:04d} USING (active);")
            out.append(f"CREATE TYPE e{i:04d} AS ENUM ('new', 'paid', 'shipped');")
    return "\n".join(out)


def same_kinds_inspector() -> Any:
    """schemainspect limited to the object kinds Vigil reads (its own loaders, fewer of them)."""
    from collections import OrderedDict

    from schemainspect.pg.obj import PostgreSQL

    class SameKinds(PostgreSQL):  # type: ignore[misc]
        def load_all(self) -> None:
            self.load_schemas()
            self.load_all_relations()  # relations, columns, indexes, constraints, sequences,
            self.load_functions()      # enums, extensions; then functions
            self.selectables = OrderedDict()
            self.selectables.update(self.relations)
            self.selectables.update(self.composite_types)
            self.selectables.update(self.functions)
            self.load_privileges()
            self.load_triggers()
            self.load_rlspolicies()
            # not loaded (Vigil does not read them): collations, types, domains, dependencies
            empty: OrderedDict[str, Any] = OrderedDict()
            self.collations = self.types = self.domains = empty

    return SameKinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200 tables, 3 repeats")
    parser.add_argument("--server-url", default=os.environ.get(
        "VIGIL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    if args.quick:
        args.tables, args.repeat = 200, 3

    from schemainspect import get_inspector

    name = f"vigil_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.server_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(build_ddl(args.tables))
            conn.exec_driver_sql("ANALYZE")
        print(f"built {args.tables} tables in {time.perf_counter() - start:.1f}s "
              f"(database {name})")

        session = PgSession(url, statement_timeout=60, connect_timeout=5)

        def ours_warm() -> tuple[Snapshot, list[Finding]]:
            # how the exporter runs: one kept connection (keep_connection: true)
            snap = session.inspect(["public"])
            return snap, lint_snapshot(snap, LintConfig())[0]

        def ours_cold() -> tuple[Snapshot, list[Finding]]:
            # how `vigil schema` runs: a fresh connection (cold backend catalog caches)
            snap = inspect_postgres(url, ["public"], statement_timeout=60, connect_timeout=5)
            return snap, lint_snapshot(snap, LintConfig())[0]

        same_kinds = same_kinds_inspector()

        def theirs_warm() -> Any:  # a pooled connection, schemainspect's usual setup
            with engine.connect() as conn:
                return same_kinds(conn)

        cold_engine = create_engine(url, poolclass=sa.pool.NullPool)

        def theirs_cold() -> Any:
            with cold_engine.connect() as conn:
                return same_kinds(conn)

        def theirs_all() -> Any:  # everything schemainspect loads (for reference)
            with engine.connect() as conn:
                return get_inspector(conn)

        runs: dict[str, list[float]] = {}
        inspected: Any = None
        # interleave the two tools so that load from other jobs hits both alike
        for _ in range(args.repeat):
            for label, func in (("ours, kept connection", ours_warm),
                                ("schemainspect, pooled", theirs_warm),
                                ("ours, new connection", ours_cold),
                                ("schemainspect, new conn", theirs_cold),
                                ("schemainspect all, pooled", theirs_all)):
                if label not in runs:
                    func()  # warm-up run, not timed
                    runs[label] = []
                start = time.perf_counter()
                last: Any = func()
                runs[label].append(time.perf_counter() - start)
                if label == "ours, kept connection":
                    snap, findings = last
                elif label == "schemainspect, pooled":
                    inspected = last
        session.close()
        engine.dispose()
        cold_engine.dispose()

        tv = snap.tables.values()
        print("ours read (catalog queries + lint): "
              f"{sum(1 for t in tv if t.kind == 'table')} tables, "
              f"{sum(len(t.columns) for t in tv)} columns, "
              f"{sum(len(t.indexes) for t in tv)} indexes, "
              f"{sum(len(t.foreign_keys) + len(t.unique) + len(t.checks) + len(t.exclusions) + bool(t.primary_key) for t in tv)} constraints, "
              f"{len(snap.sequences)} sequences, {len(snap.enums)} enums, "
              f"{len(snap.functions)} functions, {sum(len(t.triggers) for t in tv)} triggers, "
              f"{sum(len(t.policies) for t in tv)} policies, {len(snap.extensions)} extensions, "
              f"privileges; {len(findings)} lint findings")
        print("schemainspect read (same kinds):     "
              f"{len(inspected.tables)} tables, "
              f"{sum(len(t.columns) for t in inspected.tables.values())} columns, "
              f"{len(inspected.indexes)} indexes, {len(inspected.constraints)} constraints, "
              f"{len(inspected.sequences)} sequences, {len(inspected.enums)} enums, "
              f"{len(inspected.functions)} functions, {len(inspected.triggers)} triggers, "
              f"{len(inspected.rlspolicies)} policies, {len(inspected.extensions)} extensions, "
              f"{len(inspected.privileges)} privileges")
        print("schemainspect all also reads:        collations, composite and range types, "
              "domains, the dependency graph")
        for label, times in runs.items():
            print(f"  {label:24} best {min(times) * 1000:8.1f} ms   median "
                  f"{statistics.median(times) * 1000:8.1f} ms   ({len(times)} runs)")

        def ratio(a: str, b: str) -> float:
            return statistics.median(runs[a]) / statistics.median(runs[b])

        warm = ratio("ours, kept connection", "schemainspect, pooled")
        cold = ratio("ours, new connection", "schemainspect, new conn")
        full = ratio("ours, kept connection", "schemainspect all, pooled")
        print(f"ratio ours/schemainspect, same kinds (median): {warm:.3f} steady state "
              f"(kept/pooled connection, as the exporter runs), {cold:.3f} on a new "
              "connection each")
        print(f"ratio ours/schemainspect all kinds (median, reference only): {full:.3f}")
        print(f"target <= 0.5: {'met' if max(warm, cold) <= 0.5 else 'NOT met'}"
              f" (worst of the two: {max(warm, cold):.3f})")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
