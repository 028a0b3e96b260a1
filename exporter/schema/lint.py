"""Lints on the live schema: unindexed foreign keys, missing primary keys, invalid and duplicate
indexes, nullable foreign-key columns and sequences close to exhaustion."""

from __future__ import annotations

import fnmatch

from vigil.exporter.base import Finding, Severity

from .config import LintConfig
from .model import Sequence, Snapshot, Table

__all__ = ["TYPE_MAX", "lint_snapshot", "sequence_usage_percent"]

TYPE_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}

# at most this many per-sequence usage samples, the fullest first (label cardinality)
MAX_SEQUENCE_SAMPLES = 50


_CONSTRAINT_NAMES = {"primary": "primary key", "unique": "unique constraint",
                     "exclusion": "exclusion constraint"}


def _covered(fk_cols: tuple[str, ...], table: Table) -> bool:
    """A valid index whose leading key columns are exactly the FK columns (in any order)."""
    want = set(fk_cols)
    n = len(fk_cols)
    for idx in table.indexes:
        if idx.valid and not idx.predicate and set(idx.columns[:n]) == want:
            return True
    return False


def sequence_usage_percent(seq: Sequence) -> float:
    """How much of the usable range is spent; the owning column's type caps the range."""
    if seq.last_value is None:
        return 0.0
    maximum = seq.max_value
    cap = TYPE_MAX.get(seq.column_type.split("(")[0]) if seq.column_type else None
    if cap is not None:
        maximum = min(maximum, cap)
    if seq.increment < 0:
        span = seq.max_value - seq.min_value
        used = seq.max_value - seq.last_value
    else:
        span = maximum - seq.min_value
        used = seq.last_value - seq.min_value
    if span <= 0:
        return 100.0
    return max(0.0, min(100.0, 100.0 * (used + 1) / (span + 1)))


def lint_snapshot(snap: Snapshot, cfg: LintConfig) -> tuple[list[Finding], list[tuple[str, float]]]:
    """Return the lint findings and (sequence, percent used) samples."""
    out: list[Finding] = []
    off = set(cfg.disable)

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pat) for pat in cfg.ignore_tables)

    def add(rule: str, sev: Severity, subject: str, message: str, fix: str = "") -> None:
        if rule not in off:
            out.append(Finding(rule=rule, severity=sev, subject=subject, message=message, fix=fix))

    for name in sorted(snap.tables):
        t = snap.tables[name]
        if t.kind != "table" or ignored(name):
            continue
        if t.primary_key is None and not t.partition_of:
            add("table_without_primary_key", Severity.WARNING, name,
                f"table {name} has no primary key",
                "add a primary key: replication, ORMs and deduplication need one")
        for fk in t.foreign_keys:
            cols = ", ".join(fk.columns)
            subject = f"{name}({cols})"
            if not _covered(fk.columns, t):
                add("fk_without_index", Severity.WARNING, subject,
                    f"foreign key {subject} -> {fk.ref_table} has no index on its columns; "
                    f"deletes on {fk.ref_table} scan {name}",
                    f"CREATE INDEX CONCURRENTLY ON {name} ({cols})")
            nullable = [c for c in fk.columns if c in t.columns and t.columns[c].nullable]
            if nullable:
                composite = len(fk.columns) > 1
                add("nullable_fk_column",
                    Severity.WARNING if composite else Severity.INFO, subject,
                    f"foreign key {subject} has nullable column(s) {', '.join(nullable)}"
                    + ("; with MATCH SIMPLE a partly NULL key is never checked" if composite
                       else "; the reference is optional"),
                    "declare the column(s) NOT NULL if every row must reference a parent")
        seen: dict[tuple[object, ...], str] = {}
        # constraint indexes first, then unique ones: the index reported is the one to drop
        for idx in sorted(t.indexes, key=lambda i: (i.constraint == "", not i.unique, i.name)):
            if not idx.valid:
                add("invalid_index", Severity.WARNING, f"{name}.{idx.name}",
                    f"index {idx.name} on {name} is invalid (a failed CREATE INDEX "
                    "CONCURRENTLY); it is maintained on writes but never used",
                    f"DROP INDEX CONCURRENTLY {idx.name}; then create it again")
                continue
            key = idx.key()
            if key in seen:
                add("duplicate_index", Severity.WARNING, f"{name}.{idx.name}",
                    f"index {idx.name} on {name}({', '.join(idx.columns)}) duplicates "
                    f"{seen[key]}", f"DROP INDEX CONCURRENTLY {idx.name}")
            else:
                seen[key] = (f"the {_CONSTRAINT_NAMES[idx.constraint]}'s index {idx.name}"
                             if idx.constraint else idx.name)

    usage: list[tuple[str, float]] = []
    if "sequence_exhaustion" not in off:
        for name in sorted(snap.sequences):
            seq = snap.sequences[name]
            pct = sequence_usage_percent(seq)
            usage.append((name, pct))
            if seq.cycle:
                continue
            sev = (Severity.CRITICAL if pct >= cfg.sequence_critical_percent else
                   Severity.WARNING if pct >= cfg.sequence_warning_percent else None)
            if sev is not None:
                owner = f" (feeds {seq.owned_by}, {seq.column_type})" if seq.owned_by else ""
                add("sequence_exhaustion", sev, name,
                    f"sequence {name}{owner} has used {pct:.1f}% of its range",
                    "widen the column and the sequence to bigint")
    usage.sort(key=lambda u: (-u[1], u[0]))
    return out, usage[:MAX_SEQUENCE_SAMPLES]
