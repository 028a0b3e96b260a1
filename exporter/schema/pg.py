"""Inspect a PostgreSQL schema with set-based catalog queries over psycopg2.

One query each for relations+columns, relation properties, constraints, indexes, sequences,
enum types, triggers, RLS policies, functions, extensions and schemas, whatever the number of
tables (plus one for foreign keys that point outside the inspected schemas).
The session is read-only with a statement timeout, and nothing is ever written.
"""

from __future__ import annotations

import contextlib
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
    normalize_sql,
    normalize_type,
    relative_name,
)

__all__ = ["connect_kwargs", "inspect_postgres"]

_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized_view", "f": "foreign_table"}

# Attribute numbers come back raw and are mapped to names in Python: no per-row subqueries.
RELATIONS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, inh.inhparent,
       a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       CASE WHEN c.relkind IN ('v', 'm') AND a.attnum = 1 THEN pg_get_viewdef(c.oid) END,
       co.collname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid AND c.relispartition
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> ty.typcollation
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%(schemas)s)
"""

# one row per relation: persistence, partitioning, inheritance, row security, grants
RELINFO_SQL = """
SELECT c.oid, c.relpersistence,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       c.relrowsecurity, c.relforcerowsecurity,
       ARRAY(SELECT h.inhparent::bigint FROM pg_inherits h
             WHERE h.inhrelid = c.oid AND NOT c.relispartition ORDER BY h.inhseqno),
       CASE WHEN c.relacl IS NOT NULL THEN
            ARRAY(SELECT coalesce(r.rolname, 'PUBLIC') || ':' || x.privilege_type
                  FROM aclexplode(c.relacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
                  WHERE x.grantee <> c.relowner) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%(schemas)s)
"""

TRIGGERS_SQL = """
SELECT t.tgrelid, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND n.nspname = ANY(%(schemas)s) {clone_filter}
"""

POLICIES_SQL = """
SELECT p.polrelid, p.polname, p.polpermissive, p.polcmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END
             FROM unnest(p.polroles) r ORDER BY 1),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s)
"""

# functions and procedures the schema itself defines (not those an extension installed)
FUNCTIONS_SQL = """
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE p.prokind IN ('f', 'p') AND d.objid IS NULL AND n.nspname = ANY(%(schemas)s)
"""

EXTENSIONS_SQL = """
SELECT e.extname, e.extversion
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY(%(schemas)s)
"""

NAMESPACES_SQL = "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)"

CONSTRAINTS_SQL = """
SELECT k.conrelid, k.conname, k.contype, k.conkey, k.confrelid, k.confkey,
       k.confdeltype, k.confupdtype, k.convalidated,
       CASE WHEN k.contype IN ('c', 'x') THEN pg_get_constraintdef(k.oid) END,
       k.condeferrable, k.condeferred, k.conparentid <> 0
FROM pg_constraint k
JOIN pg_namespace n ON n.oid = k.connamespace
WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND k.conrelid <> 0 AND n.nspname = ANY(%(schemas)s)
"""

INDEXES_SQL = """
SELECT i.indrelid, ic.relname, i.indisunique, i.indisprimary, i.indisvalid, am.amname,
       CASE WHEN i.indpred IS NOT NULL THEN pg_get_expr(i.indpred, i.indrelid) END,
       i.indnkeyatts, i.indkey::int2[],
       CASE WHEN i.indexprs IS NOT NULL THEN
            ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                  FROM generate_series(1, i.indnatts) k) END,
       k.contype, ih.inhparent IS NOT NULL
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_inherits ih ON ih.inhrelid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
     AND k.contype IN ('p', 'u', 'x')
WHERE n.nspname = ANY(%(schemas)s)
"""

SEQUENCES_SQL = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqmin, s.seqmax,
       s.seqincrement, s.seqcycle, s.seqstart, s.seqcache,
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT') THEN pg_sequence_last_value(c.oid) END,
       d.refobjid, d.refobjsubid
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
WHERE n.nspname = ANY(%(schemas)s)
"""

ENUMS_SQL = """
SELECT n.nspname, t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE n.nspname = ANY(%(schemas)s)
GROUP BY n.nspname, t.typname
"""

# referenced tables outside the inspected schemas (rare): their names and key columns
OUTSIDE_SQL = """
SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
WHERE c.oid = ANY(%(oids)s::oid[])
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
    kwargs.setdefault("connect_timeout", max(1, round(connect_timeout)))
    kwargs.setdefault("application_name", "vigil-schema")
    return kwargs


def connect(url: str, statement_timeout: float, connect_timeout: float) -> Any:
    """A psycopg2 connection that is read-only and time-bounded from its first statement."""
    kwargs = connect_kwargs(url, connect_timeout)
    ms = max(1, int(statement_timeout * 1000))
    kwargs["options"] = (kwargs.get("options", "") + " -c default_transaction_read_only=on"
                         f" -c statement_timeout={ms} -c lock_timeout={ms}"
                         " -c idle_in_transaction_session_timeout=" + str(ms)).strip()
    conn = psycopg2.connect(**kwargs)
    conn.set_session(readonly=True, autocommit=False)
    return conn


class PgSession:
    """One connection kept between inspections (warm catalog caches, no reconnect per run).

    Not thread-safe: the caller runs one inspection at a time. A failed inspection drops the
    connection; the next one reconnects. Between inspections no transaction is open.
    """

    def __init__(self, url: str, statement_timeout: float, connect_timeout: float) -> None:
        self._url = url
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._conn: Any = None

    def inspect(self, schemas: list[str],
                on_connect: Callable[[Callable[[], None]], None] | None = None,
                default_schema: str | None = None) -> Snapshot:
        reused = self._conn is not None and not self._conn.closed
        try:
            return self._inspect_once(schemas, on_connect, default_schema)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if not reused:
                raise
        # the kept connection died between runs (server restart, idle kill): once more, fresh
        return self._inspect_once(schemas, on_connect, default_schema)

    def _inspect_once(self, schemas: list[str],
                      on_connect: Callable[[Callable[[], None]], None] | None,
                      default_schema: str | None = None) -> Snapshot:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, self._statement_timeout, self._connect_timeout)
        conn = self._conn
        try:
            if on_connect is not None:
                on_connect(conn.cancel)
            rows = _read_catalog(conn, schemas, default_schema)
        except BaseException:
            self.close()
            raise
        return build_snapshot(rows)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def inspect_postgres(url: str, schemas: list[str], statement_timeout: float,
                     connect_timeout: float,
                     on_connect: Callable[[Callable[[], None]], None] | None = None,
                     default_schema: str | None = None) -> Snapshot:
    """Read the schema over a fresh connection; `on_connect` receives a cancel function.

    `default_schema` names the schema whose objects get bare names (default: the current
    schema when it is inspected, else the first inspected one)."""
    session = PgSession(url, statement_timeout, connect_timeout)
    try:
        return session.inspect(schemas, on_connect, default_schema)
    finally:
        session.close()


def _read_catalog(conn: Any, schemas: list[str], default_schema: str | None = None
                  ) -> dict[str, Any]:
    """Run the catalog queries in one read-only transaction (rolled back at the end)."""
    rows: dict[str, Any] = {}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_schema(), current_schemas(false), "
                        "current_setting('server_version_num')::int")
            current, path, version = cur.fetchone()
            wanted = list(schemas) or [s for s in path if not s.startswith("pg_")]
            default = default_schema or (
                current if current in wanted else (wanted[0] if wanted else "public"))
            params = {"schemas": wanted}
            # triggers cloned onto partitions (PostgreSQL 13+) follow their parent's
            clone = "AND t.tgparentid = 0" if version >= 130000 else ""
            for key, sql in (("relations", RELATIONS_SQL), ("relinfo", RELINFO_SQL),
                             ("constraints", CONSTRAINTS_SQL), ("indexes", INDEXES_SQL),
                             ("sequences", SEQUENCES_SQL), ("enums", ENUMS_SQL),
                             ("triggers", TRIGGERS_SQL.format(clone_filter=clone)),
                             ("policies", POLICIES_SQL), ("functions", FUNCTIONS_SQL),
                             ("extensions", EXTENSIONS_SQL), ("namespaces", NAMESPACES_SQL)):
                cur.execute(sql, params)
                rows[key] = cur.fetchall()
            known = {row[0] for row in rows["relations"]}
            outside = sorted({row[4] for row in rows["constraints"]
                              if row[4] and row[4] not in known})
            rows["outside"] = []
            if outside:
                cur.execute(OUTSIDE_SQL, {"oids": outside})
                rows["outside"] = cur.fetchall()
    finally:
        if not conn.closed:
            conn.rollback()
    rows["default"], rows["schemas"] = default, wanted
    return rows


_POLICY_CMDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


def build_snapshot(rows: dict[str, Any]) -> Snapshot:
    """Assemble catalog rows (as _read_catalog returns them) into a Snapshot (pure)."""
    default: str = rows["default"]
    snap = Snapshot(dialect="postgresql", default_schema=default, schemas=list(rows["schemas"]))
    qualifiers = (f'"{default}".', f"{default}.")

    def unqualify(text: str) -> str:
        """Catalog functions qualify names of a schema not on the search path: drop that."""
        for q in qualifiers:
            if q in text:
                text = text.replace(q, "")
        return text

    names: dict[int, str] = {}  # relation oid -> relative name
    attnames: dict[int, dict[int, str]] = {}  # relation oid -> attnum -> column name
    tables = snap.tables

    for (oid, nsp, relname, relkind, parent, attnum, attname, typ, notnull, default_expr,
         identity, generated, viewdef, collation) in rows["relations"]:
        table = tables.get(names.get(oid, ""))
        if table is None:
            key = names[oid] = relname if nsp == default else f"{nsp}.{relname}"
            table = tables[key] = Table(name=key, kind=_KINDS.get(relkind, "table"),
                                        partition_of=parent or "")
            attnames[oid] = {}
        if viewdef:
            table.definition = normalize_sql(unqualify(viewdef))
        if attname is None:
            continue
        attnames[oid][attnum] = attname
        if default_expr and default in default_expr:
            default_expr = unqualify(default_expr)
        if default in typ:
            typ = unqualify(typ)
        gen = ""
        if generated:
            gen, default_expr = default_expr or "", None
        table.columns[attname] = Column(
            name=attname, type=normalize_type(typ), nullable=not notnull,
            default=normalize_default(default_expr),
            identity={"a": "always", "d": "by default"}.get(identity or "", ""), generated=gen,
            collation=collation or "")
    for oid, nsp, relname, attnum, attname in rows.get("outside", ()):
        names.setdefault(oid, relative_name(nsp, relname, default))
        attnames.setdefault(oid, {})[attnum] = attname
    for table in tables.values():  # partitions: parent oid -> name
        if table.partition_of:
            table.partition_of = names.get(int(table.partition_of), "")
    for (oid, persistence, partkey, bound, rls, force_rls, parents,
         acl) in rows.get("relinfo", ()):
        table = tables.get(names.get(oid, ""))
        if table is None:
            continue
        table.persistence = "unlogged" if persistence == "u" else "permanent"
        table.partition_by = partkey or ""
        table.partition_bound = unqualify(bound or "")
        table.rls = "forced" if rls and force_rls else ("enabled" if rls else "")
        table.inherits = [names.get(p, str(p)) for p in parents or ()]
        table.privileges = sorted(acl or ())

    def cols(oid: int, nums: list[int] | None) -> tuple[str, ...]:
        m = attnames.get(oid, {})
        return tuple(m.get(n, str(n)) for n in nums or ())

    for (relid, conname, contype, conkey, frelid, confkey, deltype, updtype,
         validated, condef, deferrable, deferred, inherited) in rows["constraints"]:
        table = tables.get(names.get(relid, ""))
        if table is None:
            continue
        if inherited and table.partition_of:
            continue  # a partition's copy of its parent's constraint: compared on the parent
        if contype == "c":
            table.checks.append(normalize_sql(unqualify(condef or "")))
        elif contype == "x":
            table.exclusions.append(normalize_sql(unqualify(condef or "")))
        elif contype == "p":
            table.primary_key = PrimaryKey(columns=cols(relid, conkey), name=conname)
        elif contype == "u":
            table.unique.append(UniqueConstraint(columns=cols(relid, conkey), name=conname))
        else:
            table.foreign_keys.append(ForeignKey(
                columns=cols(relid, conkey), ref_table=names.get(frelid, str(frelid)),
                ref_columns=cols(frelid, confkey), on_delete=normalize_action(deltype),
                on_update=normalize_action(updtype), name=conname, validated=bool(validated),
                deferrable=bool(deferrable), initially_deferred=bool(deferred)))

    for (relid, idxname, isunique, isprimary, isvalid, amname, pred, nkey, indkey, exprs,
         contype, inherited) in rows["indexes"]:
        table = tables.get(names.get(relid, ""))
        if table is None or (inherited and table.partition_of):
            continue  # a partition's copy of its parent's index: compared on the parent
        m = attnames.get(relid, {})
        keys = [m.get(num, str(num)) if num else unqualify(exprs[pos] if exprs else "?")
                for pos, num in enumerate(indkey)]
        constraint = "primary" if isprimary else {"u": "unique", "x": "exclusion"}.get(
            contype or "", "")
        table.indexes.append(Index(
            columns=tuple(keys[:nkey]), include=tuple(keys[nkey:]), unique=bool(isunique),
            name=idxname, valid=bool(isvalid), method=amname, predicate=unqualify(pred or ""),
            constraint=constraint))

    for (nsp, seqname, dtype, smin, smax, incr, cycle, start, cache, last, owner,
         ownercol) in rows["sequences"]:
        key = relative_name(nsp, seqname, default)
        owned_by = column_type = ""
        owner_table = tables.get(names.get(owner, "")) if owner else None
        if owner_table is not None and ownercol:
            col = attnames[owner].get(ownercol, "")
            owned_by = f"{owner_table.name}.{col}"
            if col in owner_table.columns:
                column_type = owner_table.columns[col].type
        snap.sequences[key] = Sequence(
            name=key, data_type=normalize_type(dtype), min_value=int(smin), max_value=int(smax),
            increment=int(incr), cycle=bool(cycle), start_value=int(start),
            cache_size=int(cache), last_value=None if last is None else int(last),
            owned_by=owned_by, column_type=column_type)

    for nsp, typname, labels in rows["enums"]:
        snap.enums[relative_name(nsp, typname, default)] = list(labels)

    for relid, tgname, tgdef in rows.get("triggers", ()):
        table = tables.get(names.get(relid, ""))
        if table is not None:
            table.triggers[tgname] = normalize_sql(unqualify(tgdef))
    for relid, polname, permissive, cmd, roles, qual, check in rows.get("policies", ()):
        table = tables.get(names.get(relid, ""))
        if table is None:
            continue
        text = (f"AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} FOR "
                f"{_POLICY_CMDS.get(cmd, cmd)} TO {', '.join(roles)}")
        if qual:
            text += f" USING ({unqualify(qual)})"
        if check:
            text += f" WITH CHECK ({unqualify(check)})"
        table.policies[polname] = normalize_sql(text)
    for nsp, proname, args, fdef in rows.get("functions", ()):
        key = relative_name(nsp, f"{proname}({unqualify(args)})", default)
        snap.functions[key] = normalize_sql(unqualify(fdef))
    snap.extensions = {name: version for name, version in rows.get("extensions", ())}
    existing = {n for (n,) in rows.get("namespaces", ())}
    snap.namespaces = sorted(existing - {default})
    snap.missing_schemas = [n for n in snap.schemas if n not in existing]

    for table in tables.values():
        table.checks.sort()
        table.exclusions.sort()
        table.unique.sort(key=lambda u: u.columns)
        table.foreign_keys.sort(key=lambda f: (f.columns, f.ref_table, f.ref_columns))
        table.indexes.sort(key=lambda i: (i.columns, i.name))
    return snap
