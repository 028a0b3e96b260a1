"""Inspect a PostgreSQL schema with four set-based catalog queries over psycopg2.

One query each for relations+columns, constraints, indexes and sequences, whatever the number
of tables. The session is read-only with a statement timeout, and nothing is ever written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from .model import (
    Column,
    ForeignKey,
    Index,
    PrimaryKey,
    Sequence,
    Snapshot,
    Table,
    UniqueConstraint,
    normalize_action,
    normalize_default,
    normalize_type,
    relative_name,
)

__all__ = ["inspect_postgres", "connect_kwargs"]

_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized_view", "f": "foreign_table"}

RELATIONS_SQL = """
SELECT n.nspname, c.relname, c.relkind, c.relispartition,
       coalesce(pn.nspname || '.' || pc.relname, '') AS parent,
       a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid AND c.relispartition
LEFT JOIN pg_class pc ON pc.oid = inh.inhparent
LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%(schemas)s)
"""

CONSTRAINTS_SQL = """
SELECT n.nspname, c.relname, k.conname, k.contype,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num ORDER BY u.ord),
       fn.nspname, fc.relname,
       ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(num, ord)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num ORDER BY u.ord),
       k.confdeltype, k.confupdtype, k.convalidated
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = k.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE k.contype IN ('p', 'u', 'f') AND n.nspname = ANY(%(schemas)s)
"""

INDEXES_SQL = """
SELECT n.nspname, c.relname, ic.relname, i.indisunique, i.indisprimary, i.indisvalid,
       am.amname, pg_get_expr(i.indpred, i.indrelid), i.indnkeyatts,
       ARRAY(SELECT CASE WHEN u.num = 0 THEN pg_get_indexdef(i.indexrelid, u.ord::int, true)
                         ELSE (SELECT a.attname FROM pg_attribute a
                               WHERE a.attrelid = i.indrelid AND a.attnum = u.num) END
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY u(num, ord) ORDER BY u.ord),
       k.contype
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
     AND k.contype IN ('p', 'u', 'x')
WHERE n.nspname = ANY(%(schemas)s)
"""

SEQUENCES_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqmin, s.seqmax,
       s.seqincrement, s.seqcycle,
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT') THEN pg_sequence_last_value(c.oid) END,
       tn.nspname, tc.relname, ta.attname, format_type(ta.atttypid, ta.atttypmod)
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class tc ON tc.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
LEFT JOIN pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
WHERE n.nspname = ANY(%(schemas)s)
"""


def connect_kwargs(url: str, connect_timeout: float) -> dict[str, Any]:
    """Turn a SQLAlchemy-style URL into psycopg2.connect keyword arguments."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    kwargs: dict[str, Any] = {k: v for k, v in u.query.items() if isinstance(v, str)}
    for key, value in (("host", u.host), ("port", u.port), ("user", u.username),
                       ("password", u.password), ("dbname", u.database)):
        if value is not None:
            kwargs[key] = value
    kwargs.setdefault("connect_timeout", max(1, int(round(connect_timeout))))
    kwargs.setdefault("application_name", "vigil-schema")
    return kwargs


def inspect_postgres(url: str, schemas: list[str], statement_timeout: float,
                     connect_timeout: float,
                     on_connect: Callable[[Callable[[], None]], None] | None = None) -> Snapshot:
    """Read the schema in a read-only transaction; `on_connect` receives a cancel function."""
    conn = psycopg2.connect(**connect_kwargs(url, connect_timeout))
    try:
        if on_connect is not None:
            on_connect(conn.cancel)
        conn.set_session(readonly=True, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (int(statement_timeout * 1000),))
            cur.execute("SET LOCAL lock_timeout = %s", (int(statement_timeout * 1000),))
            cur.execute("SELECT current_schema(), current_schemas(false)")
            current, path = cur.fetchone()
            wanted = list(schemas) or [s for s in path if not s.startswith("pg_")]
            default = current if current in wanted else (wanted[0] if wanted else "public")
            params = {"schemas": wanted}
            cur.execute(RELATIONS_SQL, params)
            relations = cur.fetchall()
            cur.execute(CONSTRAINTS_SQL, params)
            constraints = cur.fetchall()
            cur.execute(INDEXES_SQL, params)
            indexes = cur.fetchall()
            cur.execute(SEQUENCES_SQL, params)
            sequences = cur.fetchall()
        conn.rollback()
    finally:
        conn.close()
    return build_snapshot(default, wanted, relations, constraints, indexes, sequences)


def build_snapshot(default: str, schemas: list[str], relations: list[tuple[Any, ...]],
                   constraints: list[tuple[Any, ...]], indexes: list[tuple[Any, ...]],
                   sequences: list[tuple[Any, ...]]) -> Snapshot:
    """Assemble catalog rows into a Snapshot (pure; no database)."""
    snap = Snapshot(dialect="postgresql", default_schema=default, schemas=list(schemas))

    def rel(schema: str, name: str) -> str:
        return relative_name(schema, name, default)

    tables = snap.tables
    for (nsp, relname, relkind, _ispart, parent, attname, typ, notnull, default_expr,
         identity, generated) in relations:
        key = rel(nsp, relname)
        table = tables.get(key)
        if table is None:
            parent_rel = ""
            if parent:
                psch, _, pname = parent.partition(".")
                parent_rel = rel(psch, pname)
            table = tables[key] = Table(name=key, kind=_KINDS.get(relkind, "table"),
                                        partition_of=parent_rel)
        if attname is None:
            continue
        if default_expr and f"'{default}." in default_expr:
            default_expr = default_expr.replace(f"'{default}.", "'")
        gen = ""
        if generated:
            gen, default_expr = default_expr or "", None
        table.columns[attname] = Column(
            name=attname, type=normalize_type(typ), nullable=not notnull,
            default=normalize_default(default_expr),
            identity={"a": "always", "d": "by default"}.get(identity or "", ""), generated=gen)

    for (nsp, relname, conname, contype, cols, fnsp, frel, fcols, deltype, updtype,
         validated) in constraints:
        table = tables.get(rel(nsp, relname))
        if table is None:
            continue
        if contype == "p":
            table.primary_key = PrimaryKey(columns=tuple(cols), name=conname)
        elif contype == "u":
            table.unique.append(UniqueConstraint(columns=tuple(cols), name=conname))
        elif contype == "f":
            table.foreign_keys.append(ForeignKey(
                columns=tuple(cols), ref_table=rel(fnsp, frel), ref_columns=tuple(fcols),
                on_delete=normalize_action(deltype), on_update=normalize_action(updtype),
                name=conname, validated=bool(validated)))

    for (nsp, relname, idxname, isunique, isprimary, isvalid, amname, pred, nkey, cols,
         contype) in indexes:
        table = tables.get(rel(nsp, relname))
        if table is None:
            continue
        constraint = "primary" if isprimary else {"u": "unique", "x": "exclusion"}.get(
            contype or "", "")
        table.indexes.append(Index(
            columns=tuple(cols[:nkey]), include=tuple(cols[nkey:]), unique=bool(isunique),
            name=idxname, valid=bool(isvalid), method=amname, predicate=pred or "",
            constraint=constraint))

    for (nsp, seqname, dtype, smin, smax, incr, cycle, last, tnsp, trel, tatt,
         ttype) in sequences:
        key = rel(nsp, seqname)
        snap.sequences[key] = Sequence(
            name=key, data_type=normalize_type(dtype), min_value=int(smin), max_value=int(smax),
            increment=int(incr), cycle=bool(cycle),
            last_value=None if last is None else int(last),
            owned_by=f"{rel(tnsp, trel)}.{tatt}" if trel and tatt else "",
            column_type=normalize_type(ttype) if ttype else "")

    for table in tables.values():
        table.unique.sort(key=lambda u: u.columns)
        table.foreign_keys.sort(key=lambda f: (f.columns, f.ref_table, f.ref_columns))
        table.indexes.sort(key=lambda i: (i.columns, i.name))
    return snap
