"""HELP text and label names of the per-check sample families, in one place.

Checks add samples by metric name (CheckResult.add_sample); the collector looks the family
up here. A family a check adds that is not listed is still exposed, with generic HELP.
"""

from __future__ import annotations

__all__ = ["CACHED_NOTE", "SAMPLE_FAMILIES"]

CACHED_NOTE = "Served from cache: the check's min_interval has not passed since its last run."

SAMPLE_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "vigil_cors_preflight_allowed": (
        "1 when a browser's CORS preflight from origin for method would succeed, else 0.",
        ("target", "origin", "method"),
    ),
    "vigil_endpoint_up": (
        "1 when the endpoint answered with an expected status and body, else 0.",
        ("target", "endpoint"),
    ),
    "vigil_endpoint_latency_seconds": (
        "Time the endpoint took to answer, in seconds (absent when it did not answer).",
        ("target", "endpoint"),
    ),
    "vigil_env_valid": (
        "1 when the declared variable is present (or optional) and valid, else 0.",
        ("target", "variable"),
    ),
    "vigil_env_drift": (
        "1 when the variable's salted hash differs from the recorded baseline, else 0.",
        ("target", "variable"),
    ),
    # The issue asked for "days left"; promtool insists on base units, so this is seconds
    # (dashboards show it with the `s` unit, which renders as days).
    "vigil_tls_cert_remaining_seconds": (
        "Seconds until the TLS certificate's notAfter (negative once expired).",
        ("target", "host"),
    ),
    "vigil_security_observatory_score": (
        "The first security path's score on the Mozilla HTTP Observatory's scale (grade label).",
        ("target", "path", "grade"),
    ),
    "vigil_journey_success": (
        "1 when every step of the synthetic journey passed, else 0.",
        ("target", "journey"),
    ),
    "vigil_journey_step_ok": (
        "1 when the journey step passed, 0 when it broke (skipped steps are absent).",
        ("target", "journey", "step"),
    ),
    "vigil_journey_duration_seconds": (
        "Wall time of the whole synthetic journey, in seconds.",
        ("target", "journey"),
    ),
    # vigil_schema_* families are described by vigil.exporter.schema.metrics (see below).
}

GENERIC_HELP = "A per-check value (see docs/checks/)."


def family_info(name: str, sample_labels: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """HELP text and label names of a sample family: ours, the schema checks', or generic."""
    if name in SAMPLE_FAMILIES:
        return SAMPLE_FAMILIES[name]
    if name.startswith("vigil_schema_"):
        try:  # vigil.exporter.schema keeps its own catalog; import it only when needed
            from vigil.exporter.schema.metrics import SAMPLE_FAMILIES as schema_families
        except ImportError:
            schema_families = {}
        if name in schema_families:
            return schema_families[name]
    return GENERIC_HELP, tuple(sorted(sample_labels))
