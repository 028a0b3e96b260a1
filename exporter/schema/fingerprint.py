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
        table = snap.tables[tname] = Table(name=tname, kind=t["kind"],
                                           partition_of=t.get("partition_of", ""),
                                           checks=list(t.get("checks", [])),
                                           definition=t.get("definition", ""))
        for cname, c in t["columns"].items():
            table.columns[cname] = Column(name=cname, **c)
        if t.get("primary_key"):
            table.primary_key = PrimaryKey(tuple(t["primary_key"]))
        table.unique = [UniqueConstraint(tuple(u)) for u in t.get("unique", [])]
        table.foreign_keys = [
            ForeignKey(columns=tuple(cols), ref_table=ref, ref_columns=tuple(rcols),
                       on_delete=od, on_update=ou)
            for cols, ref, rcols, od, ou in t.get("foreign_keys", [])]
        table.indexes = [
            Index(columns=tuple(cols), unique=uniq, method=method, predicate=pred,
                  include=tuple(inc))
            for cols, uniq, method, pred, inc in t.get("indexes", [])]
        # constraint-backed indexes are not in the canonical form; keep uniques matchable
    for sname, s in data.get("sequences", {}).items():
        snap.sequences[sname] = Sequence(name=sname, **s)
    snap.enums = {k: list(v) for k, v in data.get("enums", {}).items()}
    return snap


def _without_constraint_indexes(snap: Snapshot) -> Snapshot:
    """A live snapshot reduced to what the canonical form keeps, for a like-for-like diff."""
    canon = snap.to_canonical()
    return snapshot_from_canonical(canon, snap.dialect, snap.default_schema)


def drift_findings(snap: Snapshot, cfg: DriftConfig) -> tuple[bool | None, list[Finding]]:
    """(drifted, findings naming each change); drifted is None when no baseline is usable."""
    if not cfg.baseline_file.exists():
        if cfg.missing_baseline == "ignore":
            return None, []
        if cfg.missing_baseline == "record":
            write_baseline(snap, cfg.baseline_file)
            return False, []
    base_fp, base = read_baseline(cfg.baseline_file)
    live_fp = fingerprint(snap)
    if live_fp == base_fp:
        return False, []
    findings = diff_snapshots(base, _without_constraint_indexes(snap), check="schema_drift")
    if not findings:  # e.g. a sequence option or a generated expression changed
        findings = [Finding(rule="schema_changed", severity=_info(), subject="schema",
                            message=f"fingerprint {live_fp[:19]} differs from baseline "
                                    f"{base_fp[:19]}")]
    findings = [Finding(rule=f"drift_{f.rule}", severity=f.severity, subject=f.subject,
                        message=f"changed since baseline: {f.message}", fix=f.fix)
                for f in findings]
    return True, findings


def _info():  # type: ignore[no-untyped-def]
    from vigil.exporter.base import Severity

    return Severity.INFO
