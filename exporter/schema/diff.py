"""Compare an expected schema with the live one, object by object, with severities.

Missing tables, views and columns are critical; type, nullability, default, key, constraint
and index differences are warnings; extra objects are info. Objects are matched by structure
(columns, referenced table), never by their generated names.
"""

from __future__ import annotations

from vigil.exporter.base import Finding, Severity

from .model import Column, ForeignKey, Index, Snapshot, Table

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
                   check: str = "schema", privileges: bool = False) -> list[Finding]:
    """Findings for every difference between expected and actual, sorted by severity then subject.

    `privileges` also compares table grants (off by default: grants usually differ between
    environments on purpose)."""
    out: list[Finding] = []
    loose = "sqlite" in (expected.dialect, actual.dialect)
    check_actions = not loose
    complete = expected.complete

    def add(rule: str, sev: Severity, subject: str, message: str, fix: str = "") -> None:
        out.append(Finding(rule=rule, severity=sev, subject=subject, message=message, fix=fix))

    if complete:
        for nsp in sorted(set(expected.namespaces) - set(actual.namespaces)):
            add("missing_schema", W, nsp, f"schema {nsp} is expected but does not exist",
                f"CREATE SCHEMA {nsp}")
        if not ignore_extra:
            for nsp in sorted(set(actual.namespaces) - set(expected.namespaces)):
                add("extra_schema", I, nsp, f"schema {nsp} exists but is not in the expected "
                    "schema")

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
        if complete:
            _diff_table_properties(name, exp, act, add, ignore_extra, privileges)
        if not (exp.partition_of and act.partition_of):  # a partition's columns are its parent's
            _diff_columns(name, exp, act, add, loose, ignore_extra, complete)
        _diff_keys(name, exp, act, add, check_actions, complete, ignore_extra)
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
                add("extra_partition", I, name, f"table {name} is a partition of "
                    f"{act.partition_of} ({act.partition_bound}) that the expected schema lacks")
                continue
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
            diffs = [f"{label} {_option(getattr(a, attr))} (expected "
                     f"{_option(getattr(e, attr))})"
                     for label, attr in _SEQUENCE_OPTIONS if getattr(e, attr) != getattr(a, attr)]
            if diffs:
                add("sequence_mismatch", W, name, f"sequence {name} has " + ", ".join(diffs))
    _diff_functions_and_extensions(expected, actual, add, complete and not ignore_extra)

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


_SEQUENCE_OPTIONS = (("type", "data_type"), ("increment", "increment"),
                     ("minvalue", "min_value"), ("maxvalue", "max_value"),
                     ("start", "start_value"), ("cache", "cache_size"), ("cycle", "cycle"),
                     ("owned by", "owned_by"))


def _option(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value == "" else str(value)


def _diff_functions_and_extensions(expected: Snapshot, actual: Snapshot, add,  # type: ignore[no-untyped-def]
                                   report_extra: bool) -> None:
    by_name = {f.split("(", 1)[0] for f in actual.functions}
    for fname in sorted(expected.functions):
        want = expected.functions[fname]
        if not want and "(" not in fname:  # a spec names the function only
            if fname not in by_name:
                add("missing_function", W, fname, f"function {fname} does not exist",
                    "create it (run the pending migration)")
        elif fname not in actual.functions:
            add("missing_function", W, fname, f"function {fname} does not exist",
                "create it (run the pending migration)")
        elif actual.functions[fname] != want:
            add("function_definition_mismatch", W, fname, f"function {fname} differs from "
                f"the expected one (expected: {want[:200]})")
    if report_extra:
        for fname in sorted(set(actual.functions) - set(expected.functions)):
            add("extra_function", I, fname, f"function {fname} is not in the expected schema")
    for ext in sorted(expected.extensions):
        if ext not in actual.extensions:
            add("missing_extension", W, ext, f"extension {ext} is not installed",
                f"CREATE EXTENSION {ext}")
        elif expected.extensions[ext] and actual.extensions[ext] != expected.extensions[ext]:
            add("extension_version_mismatch", I, ext,
                f"extension {ext} is version {actual.extensions[ext]}, expected "
                f"{expected.extensions[ext]}",
                f"ALTER EXTENSION {ext} UPDATE TO '{expected.extensions[ext]}'")
    if report_extra:
        for ext in sorted(set(actual.extensions) - set(expected.extensions)):
            add("extra_extension", I, ext, f"extension {ext} is not in the expected schema")


def _diff_columns(name: str, exp: Table, act: Table, add, loose: bool,  # type: ignore[no-untyped-def]
                  ignore_extra: bool, complete: bool = False) -> None:
    for cname in sorted(exp.columns):
        ec = exp.columns[cname]
        ac = act.columns.get(cname)
        subject = f"{name}.{cname}"
        if ac is None:
            if act.kind in ("view", "materialized_view"):
                fix = (f"redefine the view: CREATE OR REPLACE VIEW {name} with the expected "
                       f"query (a materialized view: DROP and CREATE it)")
            else:
                fix = f"ALTER TABLE {name} ADD COLUMN {cname} {ec.type}"
            add("missing_column", C, subject, f"column {subject} ({ec.type}) does not exist", fix)
            continue
        if ec.type and not _types_equal(ec.type, ac.type, loose):
            add("type_mismatch", W, subject, f"column {subject} is {ac.type}, expected {ec.type}")
        if (complete or ec.collation) and ec.collation != ac.collation and not loose:
            add("collation_mismatch", W, subject,
                f"column {subject} has collation {ac.collation or 'default'}, expected "
                f"{ec.collation or 'default'}",
                f'ALTER TABLE {name} ALTER COLUMN {cname} TYPE {ec.type} COLLATE '
                f'"{ec.collation or "default"}"')
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


def _pair_indexes(exp: list[Index], act: list[Index]) -> tuple[list[Index], list[Index]]:
    """(expected without a twin, live without a twin): standalone indexes paired one to one
    on key columns, uniqueness, method, predicate and INCLUDE columns. Indexes that back a
    constraint are compared as constraints, never as indexes."""
    pool: dict[tuple[object, ...], int] = {}
    for a in act:
        if not a.constraint:
            pool[a.identity()] = pool.get(a.identity(), 0) + 1
    missing = []
    for e in exp:
        if e.constraint:
            continue
        if pool.get(e.identity(), 0):
            pool[e.identity()] -= 1
        else:
            missing.append(e)
    extra = []
    for a in act:
        if not a.constraint and pool.get(a.identity(), 0):
            pool[a.identity()] -= 1
            extra.append(a)
    return missing, extra


def _describe_index(idx: Index) -> str:
    text = f"{'unique ' if idx.unique else ''}{idx.method} index"
    if idx.include:
        text += f" INCLUDE ({_cols(idx.include)})"
    if idx.predicate:
        text += f" WHERE {idx.predicate}"
    return text


def _index_sql(name: str, idx: Index) -> str:
    sql = (f"CREATE {'UNIQUE ' if idx.unique else ''}INDEX ON {name}"
           f"{'' if idx.method == 'btree' else ' USING ' + idx.method} ({_cols(idx.columns)})")
    if idx.include:
        sql += f" INCLUDE ({_cols(idx.include)})"
    if idx.predicate:
        sql += f" WHERE {idx.predicate}"
    return sql


def _diff_table_properties(name: str, exp: Table, act: Table, add,  # type: ignore[no-untyped-def]
                           ignore_extra: bool, privileges: bool) -> None:
    """What only a complete (database or SQL) source states: persistence, partitioning,
    inheritance, exclusion constraints, triggers, row security, policies, grants."""
    if exp.kind == "table" and act.kind == "table":
        if exp.persistence != act.persistence:
            add("persistence_mismatch", W, name, f"table {name} is {act.persistence}, expected "
                f"{exp.persistence}",
                f"ALTER TABLE {name} SET {'UNLOGGED' if exp.persistence == 'unlogged' else 'LOGGED'}")
        if exp.partition_by != act.partition_by:
            add("partitioning_mismatch", W, name,
                f"table {name} is {_partitioning(act)}, expected {_partitioning(exp)}",
                "a table cannot be partitioned in place: create the partitioned table and "
                "move the rows")
        if (exp.partition_of, exp.partition_bound) != (act.partition_of, act.partition_bound):
            add("partition_mismatch", W, name,
                f"table {name} is {_partition_text(act)}, expected {_partition_text(exp)}")
        if exp.inherits != act.inherits:
            add("inheritance_mismatch", W, name,
                f"table {name} inherits from ({_cols(tuple(act.inherits)) or 'nothing'}), "
                f"expected ({_cols(tuple(exp.inherits)) or 'nothing'})")
        for body in sorted(set(exp.exclusions) - set(act.exclusions)):
            add("missing_exclusion", W, name, f"table {name} lacks the constraint {body}",
                f"ALTER TABLE {name} ADD {body}")
        if not ignore_extra:
            for body in sorted(set(act.exclusions) - set(exp.exclusions)):
                add("extra_exclusion", I, name, f"table {name} has an unexpected {body}")
        if exp.rls != act.rls:
            add("row_security_mismatch", W, name, f"row level security on {name} is "
                f"{act.rls or 'disabled'}, expected {exp.rls or 'disabled'}")
        for pname in sorted(exp.policies):
            subject = f"{name}.{pname}"
            if pname not in act.policies:
                add("missing_policy", W, subject, f"policy {pname} on {name} does not exist "
                    f"(expected {exp.policies[pname]})")
            elif act.policies[pname] != exp.policies[pname]:
                add("policy_mismatch", W, subject, f"policy {pname} on {name} is "
                    f"{act.policies[pname]}, expected {exp.policies[pname]}")
        if not ignore_extra:
            for pname in sorted(set(act.policies) - set(exp.policies)):
                add("extra_policy", I, f"{name}.{pname}",
                    f"policy {pname} on {name} is not in the expected schema")
    for tname in sorted(exp.triggers):
        subject = f"{name}.{tname}"
        if tname not in act.triggers:
            add("missing_trigger", W, subject, f"trigger {tname} on {name} does not exist",
                exp.triggers[tname])
        elif act.triggers[tname] != exp.triggers[tname]:
            add("trigger_mismatch", W, subject, f"trigger {tname} on {name} differs "
                f"(expected: {exp.triggers[tname]})")
    if not ignore_extra:
        for tname in sorted(set(act.triggers) - set(exp.triggers)):
            add("extra_trigger", I, f"{name}.{tname}",
                f"trigger {tname} on {name} is not in the expected schema")
    if privileges:
        for grant in sorted(set(exp.privileges) - set(act.privileges)):
            grantee, _, priv = grant.partition(":")
            add("missing_privilege", W, f"{name}:{grant}", f"{grantee} lacks {priv} on {name}",
                f"GRANT {priv} ON {name} TO {grantee}")
        for grant in sorted(set(act.privileges) - set(exp.privileges)):
            grantee, _, priv = grant.partition(":")
            add("extra_privilege", W, f"{name}:{grant}", f"{grantee} has {priv} on {name}, "
                "which the expected schema does not grant", f"REVOKE {priv} ON {name} FROM "
                f"{grantee}")


def _partitioning(t: Table) -> str:
    return f"partitioned by {t.partition_by}" if t.partition_by else "a plain table"


def _partition_text(t: Table) -> str:
    return f"a partition of {t.partition_of} {t.partition_bound}" if t.partition_of else (
        "not a partition")


def _diff_keys(name: str, exp: Table, act: Table, add, check_actions: bool,  # type: ignore[no-untyped-def]
               complete: bool, ignore_extra: bool) -> None:
    report_extra = complete and not ignore_extra
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

    act_unique = {frozenset(u.columns) for u in act.unique} if complete else _unique_sets(act)
    for u in exp.unique:
        if frozenset(u.columns) not in act_unique:
            add("missing_unique", W, f"{name}({_cols(u.columns)})",
                f"unique constraint on {name}({_cols(u.columns)}) does not exist")
    if report_extra:
        exp_unique = {frozenset(u.columns) for u in exp.unique}
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
        if complete and check_actions:
            if (f.deferrable, f.initially_deferred) != (a.deferrable, a.initially_deferred):
                add("foreign_key_deferrability_mismatch", W, subject,
                    f"foreign key {subject} is {_deferral(a)}, expected {_deferral(f)}",
                    f"ALTER TABLE {name} ALTER CONSTRAINT {a.name or '<name>'} {_deferral(f)}")
            if f.validated != a.validated:
                add("foreign_key_validation_mismatch", W, subject,
                    f"foreign key {subject} is {'validated' if a.validated else 'NOT VALID'}, "
                    f"expected {'validated' if f.validated else 'NOT VALID'}",
                    f"ALTER TABLE {name} VALIDATE CONSTRAINT {a.name or '<name>'}"
                    if f.validated else "")
    if report_extra:
        exp_fks = {fk_key(f) for f in exp.foreign_keys}
        for f in act.foreign_keys:
            if fk_key(f) not in exp_fks:
                add("extra_foreign_key", I, f"{name}({_cols(f.columns)})",
                    f"foreign key {name}({_cols(f.columns)}) -> {f.ref_table} is not expected")

    if complete:  # database and SQL sources: each standalone index has a twin, or is reported
        missing, extra = _pair_indexes(exp.indexes, act.indexes)
        for e in missing:
            subject = f"{name}({_cols(e.columns)})"
            add("missing_index", W, subject, f"{_describe_index(e)} on {subject} does not exist",
                _index_sql(name, e))
        if not ignore_extra:
            for x in extra:
                subject = f"{name}({_cols(x.columns)})"
                add("extra_index", I, subject,
                    f"{_describe_index(x)} {_named(x)}on {subject} is not expected")
        return
    for e in exp.indexes:  # a declared spec or model: the key columns must be indexed
        if e.constraint:
            continue
        subject = f"{name}({_cols(e.columns)})"
        match = _index_matches(e, act.indexes, False)
        if match is None:
            add("missing_index", W, subject, f"index on {subject} does not exist",
                f"CREATE INDEX ON {name} ({_cols(e.columns)})")
        elif e.unique and not match.unique:
            add("index_not_unique", W, subject, f"index {_named(match)}on {subject} is not unique")


def _deferral(f: ForeignKey) -> str:
    if not f.deferrable:
        return "NOT DEFERRABLE"
    return f"DEFERRABLE INITIALLY {'DEFERRED' if f.initially_deferred else 'IMMEDIATE'}"
