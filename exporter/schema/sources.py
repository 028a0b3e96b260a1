"""Build the expected schema from a YAML spec, SQLAlchemy metadata, a reference database or SQL."""

from __future__ import annotations

import importlib
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

from vigil.config import ConfigError, load_yaml, parse_model

from .config import ExpectedSchemaConfig, SchemaCheckConfig, SchemaSpec
from .model import (
    Column,
    ForeignKey,
    Index,
    PrimaryKey,
    Snapshot,
    Table,
    UniqueConstraint,
    normalize_action,
    normalize_default,
    normalize_type,
)
from .redact import Redactor

__all__ = [
    "load_expected",
    "load_metadata",
    "snapshot_from_metadata",
    "snapshot_from_spec",
    "snapshot_from_sql",
]


def load_expected(exp: ExpectedSchemaConfig, live: Snapshot, cfg: SchemaCheckConfig,
                  redactor: Redactor) -> Snapshot:
    """The expected schema, expressed relative to the live snapshot's default schema."""
    if exp.spec is not None:
        return snapshot_from_spec(exp.spec, live)
    if exp.spec_file is not None:
        spec = parse_model(SchemaSpec, load_yaml(exp.spec_file), exp.spec_file)
        return snapshot_from_spec(spec, live)
    if exp.sqlalchemy_metadata is not None:
        return snapshot_from_metadata(load_metadata(exp.sqlalchemy_metadata), live)
    if exp.reference is not None:
        from .checks import require_schemas
        from .inspect import inspect_url

        url = exp.reference.resolve_url("expected.reference.url")
        redactor.add_url(url)
        try:
            ref = inspect_url(url, exp.reference_schemas, cfg.statement_timeout_seconds,
                              cfg.connect_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - say which database could not be read
            raise ReferenceUnreachable(redactor.describe(exc)) from None
        require_schemas(ref, "expected.reference_schemas", "reference")
        return ref
    assert exp.sql_file is not None
    scratch = None
    if exp.scratch is not None:
        scratch = exp.scratch.resolve_url("expected.scratch.url")
        redactor.add_url(scratch)
    return snapshot_from_sql(exp.sql_file, live.dialect, scratch, cfg.statement_timeout_seconds,
                             cfg.connect_timeout_seconds, live)


class ReferenceUnreachable(Exception):
    """The reference (expected) database could not be inspected; the message is safe."""

    def __str__(self) -> str:
        return f"cannot inspect the reference database: {self.args[0]}"


def _split(name: str, live: Snapshot) -> str:
    """A spec name (`items`, `public.items`) as a name relative to the live default schema."""
    schema, dot, bare = name.rpartition(".")
    if dot and schema == live.default_schema:
        return bare
    return name


def snapshot_from_spec(spec: SchemaSpec, live: Snapshot) -> Snapshot:
    """Turn a declared spec into a Snapshot; unstated defaults are not compared."""
    snap = Snapshot(dialect="spec", default_schema=live.default_schema, schemas=live.schemas,
                    complete=False)
    for raw_name, st in spec.tables.items():
        name = _split(raw_name, live)
        table = snap.tables[name] = Table(name=name)
        for cname, col in st.columns.items():
            table.columns[cname] = Column(
                name=cname, type=normalize_type(col.type), nullable=col.nullable is not False,
                nullable_known=col.nullable is not None,
                default=normalize_default(col.default), default_known=col.default_set)
        if st.primary_key:
            table.primary_key = PrimaryKey(tuple(st.primary_key))
            for c in st.primary_key:
                if c in table.columns:
                    table.columns[c].nullable = False
                    table.columns[c].nullable_known = True
        table.unique = [UniqueConstraint(tuple(u)) for u in st.unique]
        for fk in st.foreign_keys:
            ref_table, ref_cols = fk.target()
            if not ref_cols:
                target_spec = spec.tables.get(ref_table)
                ref_cols = list(target_spec.primary_key or []) if target_spec else ["id"]
            table.foreign_keys.append(ForeignKey(
                columns=tuple(fk.columns), ref_table=_split(ref_table, live),
                ref_columns=tuple(ref_cols),
                on_delete=normalize_action(fk.on_delete) if fk.on_delete else "",
                on_update=normalize_action(fk.on_update) if fk.on_update else ""))
        table.indexes = [Index(columns=tuple(i.columns), unique=i.unique, name=i.name or "",
                               predicate=i.where or "") for i in st.indexes]
    for raw_name in spec.views:
        name = _split(raw_name, live)
        snap.tables.setdefault(name, Table(name=name, kind="view"))
    for raw_name in spec.required_tables:
        name = _split(raw_name, live)
        snap.tables.setdefault(name, Table(name=name, kind="required"))
    snap.enums = {_split(k, live): list(v) for k, v in spec.enums.items()}
    # a declared name, no definition: any overload of that name satisfies it
    snap.functions = {_split(f, live): "" for f in spec.functions}
    snap.extensions = {e: "" for e in spec.extensions}
    return snap


def load_metadata(ref: str) -> Any:
    """Import `package.module:attr` and return a MetaData (a declarative Base works too)."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(None, "expected.sqlalchemy_metadata",
                          f"cannot import module {module_name!r}: {exc.__class__.__name__}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(None, "expected.sqlalchemy_metadata",
                              f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    metadata = getattr(obj, "metadata", obj)
    if not hasattr(metadata, "sorted_tables"):
        raise ConfigError(None, "expected.sqlalchemy_metadata",
                          f"{ref!r} is not a SQLAlchemy MetaData or declarative base")
    return metadata


def snapshot_from_metadata(metadata: Any, live: Snapshot) -> Snapshot:
    """Turn SQLAlchemy MetaData into a Snapshot, compiling types for the live dialect."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql.dialect() if live.dialect == "postgresql" else (
        sqlite.dialect() if live.dialect == "sqlite" else sa.engine.default.DefaultDialect())
    snap = Snapshot(dialect=live.dialect, default_schema=live.default_schema,
                    schemas=live.schemas, complete=False)

    def rel(table: sa.Table) -> str:
        if table.schema and table.schema != live.default_schema:
            return f"{table.schema}.{table.name}"
        return table.name

    for t in metadata.sorted_tables:
        name = rel(t)
        table = snap.tables[name] = Table(name=name)
        for col in t.columns:
            default: str | None = None
            known = col.server_default is not None
            if known:
                arg: Any = getattr(col.server_default, "arg", None)
                if isinstance(arg, str):
                    default = f"'{arg}'"
                elif hasattr(arg, "text"):
                    default = str(arg.text)
                elif arg is not None:
                    default = str(arg)
            try:
                type_text = col.type.compile(dialect=dialect)
            except Exception:  # noqa: BLE001 - a type the dialect cannot render
                type_text = str(col.type)
            table.columns[col.name] = Column(
                name=col.name, type=normalize_type(type_text), nullable=bool(col.nullable),
                default=normalize_default(default), default_known=known)
            enum_name = getattr(col.type, "name", None)
            if (live.dialect == "postgresql" and enum_name and getattr(col.type, "native_enum", False)
                    and getattr(col.type, "enums", None)):
                schema = getattr(col.type, "schema", None)
                key = enum_name if not schema or schema == live.default_schema else (
                    f"{schema}.{enum_name}")
                snap.enums[key] = list(col.type.enums)
        if t.primary_key is not None and len(t.primary_key.columns):
            table.primary_key = PrimaryKey(tuple(c.name for c in t.primary_key.columns),
                                           t.primary_key.name or "")
        for cons in t.constraints:
            if isinstance(cons, sa.UniqueConstraint):
                table.unique.append(UniqueConstraint(tuple(c.name for c in cons.columns),
                                                     str(cons.name or "")))
        for col in t.columns:
            if col.unique and not col.index:
                cols = (col.name,)
                if all(u.columns != cols for u in table.unique):
                    table.unique.append(UniqueConstraint(cols))
        for fkc in t.foreign_key_constraints:
            elements = list(fkc.elements)
            ref_table = elements[0].column.table
            table.foreign_keys.append(ForeignKey(
                columns=tuple(e.parent.name for e in elements), ref_table=rel(ref_table),
                ref_columns=tuple(e.column.name for e in elements),
                on_delete=normalize_action(fkc.ondelete), on_update=normalize_action(fkc.onupdate),
                name=str(fkc.name or "")))
        for idx in t.indexes:
            keys: list[str] = []
            for expr in idx.expressions:
                keys.append(expr.name if isinstance(expr, sa.Column) else
                            str(expr.compile(dialect=dialect,
                                             compile_kwargs={"literal_binds": True})))
            where = idx.dialect_options.get("postgresql", {}).get("where")
            table.indexes.append(Index(columns=tuple(keys), unique=bool(idx.unique),
                                       name=str(idx.name or ""),
                                       predicate=str(where) if where is not None else ""))
    return snap


def snapshot_from_sql(path: Path, dialect: str, scratch_url: str | None,
                      statement_timeout: float, connect_timeout: float,
                      live: Snapshot | None = None) -> Snapshot:
    """Load a SQL file into a throwaway database (PostgreSQL) or a temporary SQLite file."""
    try:
        sql = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "expected.sql_file",
                          f"cannot read SQL file: {exc.__class__.__name__}") from None
    if dialect == "postgresql":
        if scratch_url is None:
            raise ConfigError(None, "expected.scratch",
                              "sql_file against PostgreSQL needs a scratch database "
                              "(the target is never written to)")
        return _sql_into_pg_scratch(path, strip_psql_meta_commands(sql, path), scratch_url,
                                    statement_timeout, connect_timeout, live)
    with tempfile.TemporaryDirectory(prefix="vigil-schema-") as tmp:
        db = Path(tmp) / "expected.db"
        conn = sqlite3.connect(db)
        try:
            conn.executescript(sql)
            conn.commit()
        finally:
            conn.close()
        from .inspect import inspect_sqlalchemy

        return inspect_sqlalchemy(f"sqlite:///{db}", [], connect_timeout)


# psql meta-commands a schema file cannot be loaded without following them
_UNFOLLOWABLE = {"c", "connect", "i", "include", "ir", "include_relative", "copy", "gexec",
                 "g", "gset", "if", "elif", "else", "endif"}


def strip_psql_meta_commands(sql: str, path: Path | None = None) -> str:
    """Blank out psql meta-command lines (`\\restrict`, `\\unrestrict`, `\\set`, ...) that
    `pg_dump` writes and the server does not understand, keeping line numbers.

    Meta-commands that change what is loaded (`\\connect`, `\\i`, `\\copy`, `\\if`, ...)
    are an error naming the line: silently skipping them would load something else."""
    out = []
    for number, line in enumerate(sql.split("\n"), 1):
        stripped = line.lstrip()
        if stripped.startswith("\\") and not stripped.startswith("\\."):
            command = stripped[1:].split(None, 1)[0] if len(stripped) > 1 else ""
            if command in _UNFOLLOWABLE:
                raise ConfigError(path, "expected.sql_file",
                                  f"line {number}: psql meta-command \\{command} cannot be "
                                  "followed when loading a schema; remove it")
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)


def _scratch_schemas(conn: Any, live: Snapshot | None) -> tuple[list[str], str]:
    """Which schemas of the loaded scratch database line up with the live inspection.

    A file with schema-qualified names (what `pg_dump -s` writes) created the live schemas
    themselves; an unqualified file loaded into `public`, which then stands for the live
    default schema."""
    wanted = list(live.schemas) if live is not None else []
    default = live.default_schema if live is not None else "public"
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                    (wanted + ["public"],))
        existing = {row[0] for row in cur.fetchall()}
    if default in existing:
        return [s for s in wanted if s in existing] or [default], default
    return ["public"] + [s for s in wanted if s in existing and s != "public"], "public"


def _sql_into_pg_scratch(path: Path, sql: str, scratch_url: str, statement_timeout: float,
                         connect_timeout: float, live: Snapshot | None) -> Snapshot:
    """Create a fresh database on the scratch server, load the file, inspect it, drop it.

    A database of its own (not a schema) keeps schema-qualified names inside it, and leaves
    nothing behind for the next run, whether the load worked or not."""
    import psycopg2
    from sqlalchemy.engine import make_url

    from .pg import connect_kwargs, inspect_postgres

    name = f"vigil_scratch_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(**connect_kwargs(scratch_url, connect_timeout))
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            try:
                cur.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            except psycopg2.Error as exc:
                raise ConfigError(None, "expected.scratch", "cannot create a scratch database "
                                  f"(the scratch user needs CREATEDB): {_pg_message(exc)}"
                                  ) from None
        try:
            db_url = make_url(scratch_url).set(database=name).render_as_string(
                hide_password=False)
            conn = psycopg2.connect(**connect_kwargs(db_url, connect_timeout))
            try:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = %s", (int(statement_timeout * 1000),))
                    try:
                        cur.execute(sql)
                    except psycopg2.Error as exc:
                        raise ConfigError(path, "expected.sql_file", _load_error(sql, exc)
                                          ) from None
                conn.commit()
                schemas, default = _scratch_schemas(conn, live)
            finally:
                conn.close()
            return inspect_postgres(db_url, schemas, statement_timeout, connect_timeout,
                                    default_schema=default)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"'
                            + (" WITH (FORCE)" if admin.server_version >= 130000 else ""))
    finally:
        admin.close()


def _pg_message(exc: Any) -> str:
    return (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()[0]


def _load_error(sql: str, exc: Any) -> str:
    """`line N: ERROR: ...` for a statement of the file that failed."""
    line = ""
    position = getattr(getattr(exc, "diag", None), "statement_position", None)
    if position and str(position).isdigit():
        line = f"line {sql[:int(position)].count(chr(10)) + 1}: "
    return f"{line}cannot load into the scratch database: {_pg_message(exc)}"
