"""Build the list of checks a config declares, including the schema checks of
vigil.exporter.schema (imported only when a target configures `schema:`)."""

from __future__ import annotations

from vigil.exporter.base import Check
from vigil.exporter.config import ExporterConfig, TargetConfig
from vigil.exporter.cors import CorsCheck
from vigil.exporter.endpoints import EndpointsCheck
from vigil.exporter.env import EnvCheck
from vigil.exporter.journeys import JourneysCheck
from vigil.exporter.security import SecurityCheck

__all__ = ["build_checks", "target_checks"]


def target_checks(target: TargetConfig) -> list[Check]:
    """The enabled checks of one target, in a stable order."""
    checks: list[Check] = []
    pairs = [
        (target.cors, CorsCheck),
        (target.env, EnvCheck),
        (target.security, SecurityCheck),
        (target.endpoints, EndpointsCheck),
        (target.journeys, JourneysCheck),
    ]
    for cfg, cls in pairs:
        if cfg is not None and cfg.enabled:
            check = cls(target, cfg)  # type: ignore[arg-type]
            check.timeout = cfg.timeout  # type: ignore[attr-defined]
            checks.append(check)
    if target.schema_ is not None:
        from vigil.exporter.schema import make_schema_checks

        if getattr(target.schema_, "enabled", True):
            checks.extend(make_schema_checks(target.name, target.schema_))
    return checks


def build_checks(
    config: ExporterConfig,
    only_targets: list[str] | None = None,
    only_checks: list[str] | None = None,
) -> list[Check]:
    """Every check of every (selected) target."""
    out: list[Check] = []
    for target in config.targets:
        if only_targets and target.name not in only_targets:
            continue
        out += [c for c in target_checks(target) if not only_checks or c.name in only_checks]
    return out
