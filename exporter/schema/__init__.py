"""Database schema checks: expected-schema diff, lints, drift and table references in code.

The exporter plugs these in through `make_schema_checks(target, cfg)`; each returned object
satisfies `vigil.exporter.base.Check`.
"""

from __future__ import annotations

from .checks import CHECK_NAMES, SchemaCheck, make_schema_checks
from .config import SchemaCheckConfig
from .metrics import SAMPLE_FAMILIES

__all__ = ["CHECK_NAMES", "SAMPLE_FAMILIES", "SchemaCheck", "SchemaCheckConfig", "make_schema_checks"]
