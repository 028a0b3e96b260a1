"""Inspect any database URL: PostgreSQL through the catalog, others through SQLAlchemy's inspector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    relative_name,
)

__all__ = ["dialect_name", "inspect_sqlalchemy", "inspect_url", "is_postgres"]


def dialect_name(url: str) -> str:
    """`postgresql+psycopg2://...` -> `postgresql`."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


def is_postgres(url: str) -> bool:
    return dialect_name(url) in ("postgresql", "postgres")


def inspect_url(url: str, schemas: list[str], statement_timeout: float, connect_timeout: float,
                on_connect: Callable[[Callable[[], None]], None] | None = None,
                default_schema: str | None = None) -> Snapshot:
    """Snapshot the schema behind url (read-only); `default_schema` (PostgreSQL) names the
    schema whose objects get bare names."""
    if is_postgres(url):
        from .pg import inspect_postgres

        return inspect_postgres(url, schemas, statement_timeout, connect_timeout, on_connect,
                                default_schema)
    return inspect_sqlalchemy(url, schemas, connect_timeout)


def inspect_sqlalchemy(url: str, schemas: list[str], connect_timeout: float) -> Snapshot:
    """Snapshot through SQLAlchemy's inspector (no invalid-index or sequence information)."""
    import sqlalchemy as sa

    connect_args: dict[str, Any] = {}
    backend = dialect_name(url)
    if backend == "sqlite":
        connect_args["timeout"] = connect_timeout
        # open SQLite files read-only so that inspection can never create or change them
        u = sa.engine.make_url(url)
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            url = u.set(database=f"file:{u.database}?mode=ro",
                        query={**u.query, "uri": "true"}).render_as_string(hide_password=False)
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            default = insp.default_schema_name or "main"
            wanted = list(schemas) or [default]
            snap = Snapshot(dialect=backend, default_schema=default, schemas=wanted)
            for schema in wanted:
                _inspect_schema(insp, schema, default, snap)
    finally:
        engine.dispose()
    return snap


def _inspect_schema(insp: Any, schema: str, default: str, snap: Snapshot) -> None:
    sch = None if schema == default else schema

    def rel(name: str, sch_name: str | None = None) -> str:
        return relative_name(sch_name or schema, name, default)

    from sqlalchemy.engine.reflection import ObjectKind

    kinds = ObjectKind.TABLE | ObjectKind.VIEW
    columns = insp.get_multi_columns(schema=sch, kind=kinds)
    pks = insp.get_multi_pk_constraint(schema=sch)
    fks = insp.get_multi_foreign_keys(schema=sch)
    indexes = insp.get_multi_indexes(schema=sch)
    uniques = insp.get_multi_unique_constraints(schema=sch)
    views = set(insp.get_view_names(schema=sch))
    for (_, tname), cols in columns.items():
        if tname.startswith("sqlite_"):
            continue
        new = snap.tables[rel(tname)] = Table(name=rel(tname),
                                              kind="view" if tname in views else "table")
        for col in cols:
            default_expr = col.get("default")
            new.columns[col["name"]] = Column(
                name=col["name"], type=normalize_type(str(col["type"])),
                nullable=bool(col.get("nullable", True)),
                default=normalize_default(None if default_expr is None else str(default_expr)))
    for (_, tname), pk in pks.items():
        table = snap.tables.get(rel(tname))
        if table is None:
            continue
        if pk and pk.get("constrained_columns"):
            table.primary_key = PrimaryKey(tuple(pk["constrained_columns"]), pk.get("name") or "")
            for c in pk["constrained_columns"]:  # SQLite reports PK columns as nullable
                if c in table.columns:
                    table.columns[c].nullable = False
    for (_, tname), fk_list in fks.items():
        table = snap.tables.get(rel(tname))
        if table is None:
            continue
        for fk in fk_list:
            opts = fk.get("options") or {}
            table.foreign_keys.append(ForeignKey(
                columns=tuple(fk["constrained_columns"]),
                ref_table=rel(fk["referred_table"], fk.get("referred_schema")),
                ref_columns=tuple(fk["referred_columns"]),
                on_delete=normalize_action(opts.get("ondelete")),
                on_update=normalize_action(opts.get("onupdate")), name=fk.get("name") or ""))
    for (_, tname), uq_list in uniques.items():
        table = snap.tables.get(rel(tname))
        if table is None:
            continue
        for uq in uq_list:
            table.unique.append(UniqueConstraint(tuple(uq["column_names"]), uq.get("name") or ""))
    for (_, tname), idx_list in indexes.items():
        table = snap.tables.get(rel(tname))
        if table is None:
            continue
        for idx in idx_list:
            cols = [c if c is not None else str(e) for c, e in
                    zip(idx["column_names"], idx.get("expressions") or idx["column_names"])]
            table.indexes.append(Index(
                columns=tuple(cols), unique=bool(idx.get("unique")), name=idx.get("name") or "",
                constraint="unique" if idx.get("duplicates_constraint") else ""))
    for table in snap.tables.values():
        table.unique.sort(key=lambda u: u.columns)
        table.foreign_keys.sort(key=lambda f: (f.columns, f.ref_table, f.ref_columns))
        table.indexes.sort(key=lambda i: (i.columns, i.name))
