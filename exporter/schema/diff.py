"""Compare an expected schema with the live one, object by object, with severities.

Missing tables, views and columns are critical; type, nullability, default, key, constraint
and index differences are warnings; extra objects are info. Objects are matched by structure
(columns, referenced table), never by their generated names.
"""

from __future__ import annotations

from vigil.exporter.base import Finding, Severity

from .model import Column, Index, Snapshot, Table

__all__ = ["diff_snapshots", "sqlite_affinity"]

C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO


def sqlite_affinity(type_text: str) -> str:
    """SQLite's type affinity rules (https://sqlite.org/datatype3.html, section 3.1)."""
    t = type_text.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _effective_default(col: Column) -> str | None:
    if col.identity:
        return f"generated {col.identity} as identity"
    if col.generated:
        return f"generated always as ({col.generated}) stored"
    return col.default


def _types_equal(a: str, b: str, loose: bool) -> bool:
    if a == b:
        return True
    return loose and sqlite_affinity(a) == sqlite_affinity(b)


def _cols(cols: tuple[str, ...]) -> str:
    return ", ".join(cols)


def diff_snapshots(expected: Snapshot, actual: Snapshot, ignore_extra: bool = False,
                   check: str = "schema") -> list[Finding]:
    """Findings for every difference between expected and actual, sorted by severity then subject."""
    out: list[Finding] = []
    loose = "sqlite" in (expected.dialect, actual.dialect)
    check_actions = not loose

    def add(rule: str, sev: Severity, subject: str, message: str, fix: str = "") -> None:
        out.append(Finding(rule=rule, severity=sev, subject=subject, message=message, fix=fix))

    for name in sorted(expected.tables):
        exp = expected.tables[name]
        act = actual.tables.get(name)
        if act is None:
            what = "view" if exp.kind in ("view", "materialized_view") else "table"
            add(f"missing_{what}", C, name, f"{what} {name} is expected but does not exist",
                f"create the {what} {name} (run the pending migration)")
            continue
        if exp.kind == "required":
            continue
        if exp.kind != act.kind and exp.kind in ("table", "view", "materialized_view"):
            add("kind_mismatch", W, name, f"{name} is a {act.kind}, expected a {exp.kind}")
        _diff_columns(name, exp, act, add, loose, ignore_extra)
        _diff_keys(name, exp, act, add, check_actions, expected.complete and not ignore_extra)
        if expected.complete and exp.definition and act.definition and (
                exp.definition != act.definition):
            add("view_definition_mismatch", W, name, f"the query of view {name} differs from "
                f"the expected one (expected: {exp.definition[:200]})")
        if expected.complete and act.kind == "table":
            for body in sorted(set(exp.checks) - set(act.checks)):
                add("missing_check", W, name, f"table {name} lacks {body}")
            if not ignore_extra:
                for body in sorted(set(act.checks) - set(exp.checks)):
                    add("extra_check", I, name, f"table {name} has an unexpected {body}")

    if not ignore_extra:
        for name in sorted(set(actual.tables) - set(expected.tables)):
            act = actual.tables[name]
            if act.partition_of and act.partition_of in expected.tables:
                continue  # partitions follow their parent
            add(f"extra_{'view' if act.kind != 'table' else 'table'}", I, name,
                f"{act.kind} {name} exists but is not in the expected schema")

    if expected.complete:
        for name in sorted(set(expected.sequences) - set(actual.sequences)):
            add("missing_sequence", W, name, f"sequence {name} is expected but does not exist")
        if not ignore_extra:
            for name in sorted(set(actual.sequences) - set(expected.sequences)):
                add("extra_sequence", I, name, f"sequence {name} is not in the expected schema")
        for name in sorted(set(expected.sequences) & set(actual.sequences)):
            e, a = expected.sequences[name], actual.sequences[name]
            if (e.data_type, e.increment, e.max_value, e.cycle) != (
                    a.data_type, a.increment, a.max_value, a.cycle):
                add("sequence_mismatch", W, name,
                    f"sequence {name} is {a.data_type} increment {a.increment} max {a.max_value}"
                    f", expected {e.data_type} increment {e.increment} max {e.max_value}")

    for enum in sorted(expected.enums):
        labels = expected.enums[enum]
        have = actual.enums.get(enum)
        if have is None:
            add("missing_enum", W, enum, f"enum type {enum} ({', '.join(labels)}) does not exist")
            continue
        missing = [v for v in labels if v not in have]
        if missing:
            add("enum_values_mismatch", W, enum,
                f"enum {enum} lacks value(s) {', '.join(missing)}",
                f"ALTER TYPE {enum} ADD VALUE '{missing[0]}'")
        extra = [v for v in have if v not in labels]
        if extra and not ignore_extra:
            add("extra_enum_values", I, enum, f"enum {enum} has extra value(s) {', '.join(extra)}")
    if expected.complete and not ignore_extra:
        for enum in sorted(set(actual.enums) - set(expected.enums)):
            add("extra_enum", I, enum, f"enum type {enum} is not in the expected schema")

    order = {C: 0, W: 1, I: 2}
    out.sort(key=lambda f: (order[f.severity], f.subject, f.rule))
    return out


def _diff_columns(name: str, exp: Table, act: Table, add, loose: bool,  # type: ignore[no-untyped-def]
                  ignore_extra: bool) -> None:
    for cname in sorted(exp.columns):
        ec = exp.columns[cname]
        ac = act.columns.get(cname)
        subject = f"{name}.{cname}"
        if ac is None:
            add("missing_column", C, subject, f"column {subject} ({ec.type}) does not exist",
                f"ALTER TABLE {name} ADD COLUMN {cname} {ec.type}")
            continue
        if ec.type and not _types_equal(ec.type, ac.type, loose):
            add("type_mismatch", W, subject, f"column {subject} is {ac.type}, expected {ec.type}")
        if ec.nullable_known and ec.nullable != ac.nullable and act.kind == "table":
            add("nullability_mismatch", W, subject,
                f"column {subject} is {'NULL' if ac.nullable else 'NOT NULL'}, expected "
                f"{'NULL' if ec.nullable else 'NOT NULL'}")
        if ec.default_known and ac.default_known and act.kind == "table":
            e_def, a_def = _effective_default(ec), _effective_default(ac)
            if e_def != a_def:
                add("default_mismatch", W, subject,
                    f"column {subject} default is {a_def or 'none'}, expected {e_def or 'none'}")
    if not ignore_extra and exp.columns:  # a view or table declared by name only: no extras
        for cname in sorted(set(act.columns) - set(exp.columns)):
            add("extra_column", I, f"{name}.{cname}",
                f"column {name}.{cname} exists but is not in the expected schema")


def _named(idx: Index) -> str:
    return f"{idx.name} " if idx.name else ""


def _unique_sets(t: Table) -> set[frozenset[str]]:
    keys = {frozenset(u.columns) for u in t.unique}
    keys |= {frozenset(i.columns) for i in t.indexes if i.unique and not i.predicate}
    return keys


def _index_matches(e: Index, candidates: list[Index], strict: bool) -> Index | None:
    for a in candidates:
        if a.columns != e.columns:
            continue
        if strict and (a.method, a.predicate, a.include) != (e.method, e.predicate, e.include):
            continue
        return a
    return None


def _diff_keys(name: str, exp: Table, act: Table, add, check_actions: bool,  # type: ignore[no-untyped-def]
               report_extra: bool) -> None:
    if exp.kind != "table" or act.kind != "table":
        return
    if exp.primary_key is not None:
        if act.primary_key is None:
            add("missing_primary_key", W, name,
                f"table {name} has no primary key, expected ({_cols(exp.primary_key.columns)})")
        elif set(act.primary_key.columns) != set(exp.primary_key.columns):
            add("primary_key_mismatch", W, name,
                f"primary key of {name} is ({_cols(act.primary_key.columns)}), expected "
                f"({_cols(exp.primary_key.columns)})")
    elif report_extra and act.primary_key is not None:
        add("extra_primary_key", I, name, f"table {name} has a primary key the expected schema lacks")

    act_unique = _unique_sets(act)
    for u in exp.unique:
        if frozenset(u.columns) not in act_unique:
            add("missing_unique", W, f"{name}({_cols(u.columns)})",
                f"unique constraint on {name}({_cols(u.columns)}) does not exist")
    if report_extra:
        exp_unique = _unique_sets(exp)
        for u in act.unique:
            if frozenset(u.columns) not in exp_unique:
                add("extra_unique", I, f"{name}({_cols(u.columns)})",
                    f"unique constraint on {name}({_cols(u.columns)}) is not expected")

    def fk_key(f):  # type: ignore[no-untyped-def]
        return (f.columns, f.ref_table, f.ref_columns)

    act_fks = {fk_key(f): f for f in act.foreign_keys}
    for f in exp.foreign_keys:
        subject = f"{name}({_cols(f.columns)})"
        a = act_fks.get(fk_key(f))
        if a is None:
            add("missing_foreign_key", W, subject,
                f"foreign key {subject} -> {f.ref_table}({_cols(f.ref_columns)}) does not exist")
            continue
        if check_actions:
            for what, e_act, a_act in (("ON DELETE", f.on_delete, a.on_delete),
                                       ("ON UPDATE", f.on_update, a.on_update)):
                if e_act and e_act != a_act:
                    add("foreign_key_action_mismatch", W, subject,
                        f"foreign key {subject} has {what} {a_act}, expected {e_act}")
    if report_extra:
        exp_fks = {fk_key(f) for f in exp.foreign_keys}
        for f in act.foreign_keys:
            if fk_key(f) not in exp_fks:
                add("extra_foreign_key", I, f"{name}({_cols(f.columns)})",
                    f"foreign key {name}({_cols(f.columns)}) -> {f.ref_table} is not expected")

    strict = report_extra  # complete sources describe method/predicate in catalog form
    for e in exp.indexes:
        if e.constraint:
            continue
        subject = f"{name}({_cols(e.columns)})"
        match = _index_matches(e, act.indexes, strict)
        if match is None:
            add("missing_index", W, subject, f"index on {subject} does not exist",
                f"CREATE INDEX ON {name} ({_cols(e.columns)})")
        elif e.unique and not match.unique:
            add("index_not_unique", W, subject, f"index {_named(match)}on {subject} is not unique")
    if report_extra:
        for idx in act.indexes:
            if not idx.constraint and _index_matches(idx, exp.indexes, strict) is None:
                add("extra_index", I, f"{name}({_cols(idx.columns)})",
                    f"index {_named(idx)}on {name}({_cols(idx.columns)}) is not expected")
