"""A database-neutral snapshot of a schema, in canonical (sorted, name-keyed) form.

Tables are keyed by their *relative* name: the bare name in the snapshot's default schema,
`schema.name` elsewhere. So a schema compared with a copy of itself in another schema (a
scratch schema, a staging database) lines up, and column order and catalog order never matter.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Column",
    "ForeignKey",
    "Index",
    "PrimaryKey",
    "Sequence",
    "Snapshot",
    "Table",
    "UniqueConstraint",
    "normalize_action",
    "normalize_default",
    "normalize_type",
    "relative_name",
]


@dataclass
class Column:
    name: str
    type: str  # normalized, see normalize_type
    nullable: bool = True
    default: str | None = None  # normalized expression, None = no default
    default_known: bool = True  # False: the source did not say (a YAML spec without default:)
    nullable_known: bool = True  # False: a YAML spec without nullable:
    identity: str = ""  # "", "always", "by default"
    generated: str = ""  # generated column expression
    collation: str = ""  # "" = the type's default collation


@dataclass
class PrimaryKey:
    columns: tuple[str, ...]
    name: str = ""


@dataclass
class UniqueConstraint:
    columns: tuple[str, ...]
    name: str = ""


@dataclass
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str  # relative name
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    on_update: str = "NO ACTION"
    name: str = ""
    validated: bool = True  # False: added NOT VALID and never validated
    deferrable: bool = False
    initially_deferred: bool = False


@dataclass
class Index:
    columns: tuple[str, ...]  # key columns or expressions, in key order
    unique: bool = False
    name: str = ""
    valid: bool = True
    method: str = "btree"
    predicate: str = ""
    constraint: str = ""  # "primary" / "unique" / "exclusion" when it backs a constraint
    include: tuple[str, ...] = ()

    def key(self) -> tuple[Any, ...]:
        """What makes one index serve another's lookups (names and uniqueness do not count)."""
        return (self.columns, self.method, self.predicate, self.include)

    def identity(self) -> tuple[Any, ...]:
        """What makes two indexes the same index: key columns, uniqueness, method, predicate
        and INCLUDE columns."""
        return (self.columns, self.unique, self.method, self.predicate, self.include)


@dataclass
class Table:
    name: str  # relative name
    kind: str = "table"  # table | view | materialized_view | foreign_table
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: PrimaryKey | None = None
    unique: list[UniqueConstraint] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    partition_of: str = ""  # parent table when this is a partition
    checks: list[str] = field(default_factory=list)  # CHECK constraint bodies, as the catalog prints them
    definition: str = ""  # a view's query, whitespace-normalized (PostgreSQL)
    persistence: str = "permanent"  # permanent | unlogged
    partition_by: str = ""  # a partitioned table's key, e.g. "RANGE (created_at)"
    partition_bound: str = ""  # a partition's bound, e.g. "FOR VALUES IN (1)"
    inherits: list[str] = field(default_factory=list)  # INHERITS parents (not partitioning)
    exclusions: list[str] = field(default_factory=list)  # EXCLUDE constraint definitions
    triggers: dict[str, str] = field(default_factory=dict)  # name -> CREATE TRIGGER text
    rls: str = ""  # "" | "enabled" | "forced"
    policies: dict[str, str] = field(default_factory=dict)  # name -> normalized definition
    privileges: list[str] = field(default_factory=list)  # "grantee:PRIVILEGE" (opt-in compare)


@dataclass
class Sequence:
    name: str  # relative name
    data_type: str = "bigint"
    min_value: int = 1
    max_value: int = 2**63 - 1
    increment: int = 1
    cycle: bool = False
    start_value: int = 1
    cache_size: int = 1
    last_value: int | None = None  # None: never used or not readable
    owned_by: str = ""  # "table.column"
    column_type: str = ""  # the owning column's type (caps the usable range)


@dataclass
class Snapshot:
    """What one inspection (or one expected-schema source) says the schema is."""

    dialect: str  # postgresql | sqlite | ...
    default_schema: str
    schemas: list[str]
    tables: dict[str, Table] = field(default_factory=dict)
    sequences: dict[str, Sequence] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)  # enum type -> labels in order
    namespaces: list[str] = field(default_factory=list)  # inspected schemas that exist
    missing_schemas: list[str] = field(default_factory=list)  # asked for, but do not exist
    functions: dict[str, str] = field(default_factory=dict)  # name(args) -> normalized definition
    extensions: dict[str, str] = field(default_factory=dict)  # extension -> version
    # the source only declares what it lists; e.g. a YAML spec has no sequences
    complete: bool = True

    def to_canonical(self) -> dict[str, Any]:
        """A JSON-ready, order-independent form: everything sorted, volatile fields dropped."""
        tables: dict[str, Any] = {}
        for tname in sorted(self.tables):
            t = self.tables[tname]
            tables[tname] = {
                "kind": t.kind,
                "partition_of": t.partition_of,
                "columns": {c: _strip(asdict(t.columns[c]), "name", "default_known", "nullable_known")
                            for c in sorted(t.columns)},
                "primary_key": list(t.primary_key.columns) if t.primary_key else None,
                "unique": sorted([list(u.columns) for u in t.unique]),
                "foreign_keys": sorted(
                    [[list(f.columns), f.ref_table, list(f.ref_columns), f.on_delete,
                      f.on_update, f.deferrable, f.initially_deferred, f.validated]
                     for f in t.foreign_keys]),
                "indexes": sorted(
                    [[list(i.columns), i.unique, i.method, i.predicate, list(i.include)]
                     for i in t.indexes if not i.constraint]),
                "checks": sorted(t.checks),
                "definition": t.definition,
                "persistence": t.persistence,
                "partition_by": t.partition_by,
                "partition_bound": t.partition_bound,
                "inherits": sorted(t.inherits),
                "exclusions": sorted(t.exclusions),
                "triggers": dict(sorted(t.triggers.items())),
                "rls": t.rls,
                "policies": dict(sorted(t.policies.items())),
            }
        sequences = {
            s: _strip(asdict(self.sequences[s]), "name", "last_value")
            for s in sorted(self.sequences)
        }
        enums = {e: list(self.enums[e]) for e in sorted(self.enums)}
        # privileges are compared only on request, so they stay out of the fingerprint
        return {"tables": tables, "sequences": sequences, "enums": enums,
                "schemas": sorted(self.namespaces),
                "functions": dict(sorted(self.functions.items())),
                "extensions": dict(sorted(self.extensions.items()))}


def normalize_sql(text: str) -> str:
    """Collapse whitespace and drop a trailing semicolon (view definitions, check bodies)."""
    return " ".join(text.split()).rstrip(";").strip()


def _strip(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    for k in keys:
        d.pop(k, None)
    return d


def relative_name(schema: str, name: str, default_schema: str) -> str:
    """`name` in the default schema, `schema.name` elsewhere."""
    return name if schema == default_schema else f"{schema}.{name}"


# --- normalization ----------------------------------------------------------------------------

_TYPE_ALIASES = {
    "int": "integer", "int4": "integer", "serial": "integer", "serial4": "integer",
    "int8": "bigint", "bigserial": "bigint", "serial8": "bigint",
    "int2": "smallint", "smallserial": "smallint", "serial2": "smallint",
    "varchar": "character varying", "char": "character", "bpchar": "character",
    "bool": "boolean", "float8": "double precision", "double": "double precision",
    "float": "double precision", "float4": "real", "decimal": "numeric",
    "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
    "datetime": "timestamp without time zone",
    "time": "time without time zone", "timetz": "time with time zone",
    "varbit": "bit varying",
}


@functools.lru_cache(maxsize=4096)
def normalize_type(raw: str) -> str:
    """Lower-case, alias-resolved, whitespace-normalized type: `VARCHAR(20)` -> `character varying(20)`."""
    t = " ".join(raw.strip().lower().replace('"', "").split())
    t = re.sub(r"\s*\(\s*", "(", t)
    t = re.sub(r"\s*,\s*", ",", t)
    t = re.sub(r"\s*\)", ")", t)
    array = ""
    while t.endswith("[]"):
        array += "[]"
        t = t[:-2].rstrip()
    m = re.match(r"^(?P<base>[a-z_][a-z0-9_ ]*?)\s*(?P<args>\([^)]*\))?\s*"
                 r"(?P<tz>with(?:out)? time zone)?$", t)
    if m:
        base, args, tz = m.group("base").strip(), m.group("args") or "", m.group("tz") or ""
        base = _TYPE_ALIASES.get(base, base)
        for word in ("timestamp", "time"):
            for zone in ("without time zone", "with time zone"):
                if base == f"{word} {zone}":
                    base, tz = word, tz or zone
        if base in ("timestamp", "time") and not tz:
            tz = "without time zone"
        t = f"{base}{args}" + (f" {tz}" if tz else "")
    return t + array


_CAST_SUFFIX = re.compile(r"::[a-z_][a-z0-9_ ]*(\([^)]*\))?(\[\])*$", re.IGNORECASE)


@functools.lru_cache(maxsize=8192)
def normalize_default(raw: str | None) -> str | None:
    """Drop casts and outer parentheses so `'x'::text` equals `'x'` and `(0)` equals `0`."""
    if raw is None:
        return None
    d = raw.strip()
    for _ in range(5):
        before = d
        while d.startswith("(") and d.endswith(")") and _balanced(d[1:-1]):
            d = d[1:-1].strip()
        d = _CAST_SUFFIX.sub("", d).strip()
        if d == before:
            break
    if re.fullmatch(r"'-?\d+(\.\d+)?'", d):  # DEFAULT '0' on a number column is stored as 0
        d = d[1:-1]
    low = d.lower()
    if low in ("current_timestamp", "now()", "transaction_timestamp()", "current_timestamp()"):
        return "now()"
    if low in ("true", "false", "null"):
        return low
    return d


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
            "d": "SET DEFAULT"}


def normalize_action(raw: str | None) -> str:
    """FK action from a catalog code or free text: 'c' / 'cascade' -> 'CASCADE'."""
    if not raw:
        return "NO ACTION"
    if raw in _ACTIONS:
        return _ACTIONS[raw]
    return " ".join(raw.upper().split())
