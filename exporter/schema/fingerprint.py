"""Canonical schema fingerprints, baseline files and drift findings.

The fingerprint hashes the canonical form (model.Snapshot.to_canonical): everything sorted, no
OIDs, no generated index/constraint names, no sequence positions, no column order. The
baseline file keeps the canonical form too, so drift can say what changed, not only that
something did.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from vigil.exporter.base import Finding

from vigil.config import ConfigError

from .config import DriftConfig
from .diff import diff_snapshots
from .model import (
    Column,
    ForeignKey,
    Index,
    PrimaryKey,
    Sequence,
    Snapshot,
    Table,
    UniqueConstraint,
)

__all__ = [
    "BASELINE_VERSION",
    "drift_findings",
    "fingerprint",
    "read_baseline",
    "snapshot_from_canonical",
    "write_baseline",
]

BASELINE_VERSION = 1


def fingerprint(snap: Snapshot) -> str:
    """sha256 of the canonical JSON form; identical schemas give identical fingerprints."""
    text = json.dumps(snap.to_canonical(), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def write_baseline(snap: Snapshot, path: Path) -> str:
    """Record snap as the baseline (atomically) and return its fingerprint."""
    fp = fingerprint(snap)
    doc = {
        "version": BASELINE_VERSION,
        "fingerprint": fp,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dialect": snap.dialect,
        "default_schema": snap.default_schema,
        "schema": snap.to_canonical(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return fp


def read_baseline(path: Path) -> tuple[str, Snapshot]:
    """Return (fingerprint, snapshot) from a baseline file; ConfigError when unusable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "drift.baseline_file",
                          "baseline file not found: record one with `vigil schema baseline`"
                          ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(path, "drift.baseline_file",
                          f"cannot read baseline: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or doc.get("version") != BASELINE_VERSION or "schema" not in doc:
        raise ConfigError(path, "drift.baseline_file",
                          f"not a version {BASELINE_VERSION} Vigil schema baseline")
    snap = snapshot_from_canonical(doc["schema"], doc.get("dialect", ""),
                                   doc.get("default_schema", ""))
    return str(doc.get("fingerprint") or fingerprint(snap)), snap


def snapshot_from_canonical(data: dict[str, Any], dialect: str, default_schema: str) -> Snapshot:
    """Rebuild a Snapshot from its canonical form (the inverse of to_canonical)."""
    snap = Snapshot(dialect=dialect, default_schema=default_schema, schemas=[default_schema])
    for tname, t in data.get("tables", {}).items():
        table = snap.tables[tname] = Table(
            name=tname, kind=t["kind"], partition_of=t.get("partition_of", ""),
            checks=list(t.get("checks", [])), definition=t.get("definition", ""),
            persistence=t.get("persistence", "permanent"),
            partition_by=t.get("partition_by", ""), partition_bound=t.get("partition_bound", ""),
            inherits=list(t.get("inherits", [])), exclusions=list(t.get("exclusions", [])),
            triggers=dict(t.get("triggers", {})), rls=t.get("rls", ""),
            policies=dict(t.get("policies", {})))
        for cname, c in t["columns"].items():
            table.columns[cname] = Column(name=cname, **c)
        if t.get("primary_key"):
            table.primary_key = PrimaryKey(tuple(t["primary_key"]))
        table.unique = [UniqueConstraint(tuple(u)) for u in t.get("unique", [])]
        table.foreign_keys = [
            ForeignKey(columns=tuple(fk[0]), ref_table=fk[1], ref_columns=tuple(fk[2]),
                       on_delete=fk[3], on_update=fk[4],
                       # baselines recorded before these were compared: the defaults
                       deferrable=bool(fk[5]) if len(fk) > 5 else False,
                       initially_deferred=bool(fk[6]) if len(fk) > 6 else False,
                       validated=bool(fk[7]) if len(fk) > 7 else True)
            for fk in t.get("foreign_keys", [])]
        table.indexes = [
            Index(columns=tuple(cols), unique=uniq, method=method, predicate=pred,
                  include=tuple(inc))
            for cols, uniq, method, pred, inc in t.get("indexes", [])]
        # constraint-backed indexes are not in the canonical form; keep uniques matchable
    for sname, s in data.get("sequences", {}).items():
        snap.sequences[sname] = Sequence(name=sname, **s)
    snap.enums = {k: list(v) for k, v in data.get("enums", {}).items()}
    snap.namespaces = list(data.get("schemas", []))
    snap.functions = dict(data.get("functions", {}))
    snap.extensions = dict(data.get("extensions", {}))
    return snap


def _fields(items: Any) -> set[str] | None:
    """The union of the keys of a name-keyed collection's items (None: nothing to go by)."""
    if not isinstance(items, dict) or not items:
        return None
    return set().union(*(v.keys() for v in items.values() if isinstance(v, dict)))


def _restrict(base: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """`live`'s canonical form reduced to what `base` records.

    A baseline recorded by an older Vigil lacks the object kinds and fields added since; they
    are left out of the comparison instead of all showing up as drift."""
    out = {k: v for k, v in live.items() if k in base}
    base_tables = base.get("tables", {})
    table_fields = _fields(base_tables)
    col_fields = _fields({f"{t}.{c}": v for t, tv in base_tables.items()
                          for c, v in tv.get("columns", {}).items()})
    fk_len = max((len(fk) for tv in base_tables.values() for fk in tv.get("foreign_keys", [])),
                 default=None)
    tables = {}
    for name, t in out.get("tables", {}).items():
        t = {k: v for k, v in t.items() if table_fields is None or k in table_fields}
        if col_fields is not None and "columns" in t:
            t["columns"] = {c: {k: v for k, v in cv.items() if k in col_fields}
                            for c, cv in t["columns"].items()}
        if fk_len is not None and "foreign_keys" in t:
            t["foreign_keys"] = [fk[:fk_len] for fk in t["foreign_keys"]]
        tables[name] = t
    if "tables" in out:
        out["tables"] = tables
    seq_fields = _fields(base.get("sequences"))
    if seq_fields is not None and "sequences" in out:
        out["sequences"] = {n: {k: v for k, v in sv.items() if k in seq_fields}
                            for n, sv in out["sequences"].items()}
    return out


def _canonical_fp(canon: dict[str, Any]) -> str:
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def drift_findings(snap: Snapshot, cfg: DriftConfig) -> tuple[bool | None, list[Finding]]:
    """(drifted, findings naming each change); drifted is None when no baseline is usable."""
    if not cfg.baseline_file.exists():
        if cfg.missing_baseline == "ignore":
            return None, []
        if cfg.missing_baseline == "record":
            write_baseline(snap, cfg.baseline_file)
            return False, []
    base_fp, base = read_baseline(cfg.baseline_file)
    base_canon = base.to_canonical()
    live_canon = _restrict(_recorded_kinds(cfg.baseline_file), snap.to_canonical())
    live_fp = fingerprint(snap)
    if live_fp == base_fp or _canonical_fp(live_canon) == _canonical_fp(
            _restrict(_recorded_kinds(cfg.baseline_file), base_canon)):
        return False, []
    live_cmp = snapshot_from_canonical(live_canon, snap.dialect, snap.default_schema)
    findings = diff_snapshots(base, live_cmp, check="schema_drift")
    if not findings:  # e.g. a sequence option or a generated expression changed
        findings = [Finding(rule="schema_changed", severity=_info(), subject="schema",
                            message=f"fingerprint {live_fp[:19]} differs from baseline "
                                    f"{base_fp[:19]}")]
    findings = [Finding(rule=f"drift_{f.rule}", severity=f.severity, subject=f.subject,
                        message=f"changed since baseline: {f.message}", fix=f.fix)
                for f in findings]
    return True, findings


def _recorded_kinds(path: Path) -> dict[str, Any]:
    """The canonical form as the baseline file recorded it (read_baseline checked it)."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["schema"])


def _info():  # type: ignore[no-untyped-def]
    from vigil.exporter.base import Severity

    return Severity.INFO
