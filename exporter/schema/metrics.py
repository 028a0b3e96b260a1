"""HELP text and labels of the sample families the schema checks add (for the exporter's table).

`vigil_schema_consistent` and `vigil_schema_drift` are already in vigil.exporter.metrics;
merge the rest: `SAMPLE_FAMILIES.update(vigil.exporter.schema.metrics.SAMPLE_FAMILIES)`.
"""

from __future__ import annotations

__all__ = ["SAMPLE_FAMILIES"]

SAMPLE_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "vigil_schema_consistent": (
        "1 when the live schema has no critical or warning difference from the expected one.",
        ("target",),
    ),
    "vigil_schema_drift": (
        "1 when the schema fingerprint differs from the recorded baseline, else 0.",
        ("target",),
    ),
    "vigil_schema_sequence_usage_percent": (
        ("Share of the sequence's usable range already used, 0-100 (capped by the owning "
        "column's type; the 50 fullest sequences)."),
        ("target", "sequence"),
    ),
    "vigil_schema_tables": (
        "Number of tables in the inspected schemas.",
        ("target",),
    ),
    "vigil_schema_code_references_missing": (
        "References in code (name and file:line) to tables the database does not have.",
        ("target",),
    ),
    "vigil_schema_code_files_scanned": (
        "Source files the code-reference check scanned.",
        ("target",),
    ),
}
