"""Shared helpers for the exporter tests: configs for the demo target, running checks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from vigil.demo.client import DemoTarget
from vigil.exporter.base import CheckResult
from vigil.exporter.checks import build_checks
from vigil.exporter.config import ExporterConfig, parse_config
from vigil.exporter.runner import CheckRunner

from tests.exporter.docs_claims import DOCS, assert_documented
from vigil.paths import DEPLOY_DIR

# Latency budgets of deploy/exporter.yml are tight; on a loaded test machine a clean target
# can miss them. Tests that are about latency set their own budgets below injected latency.
RELAXED_BUDGET = 30.0


def relax_budgets(data: dict[str, Any]) -> None:
    for target in data["targets"]:
        for ep in target.get("endpoints", {}).get("items", []):
            ep["latency_budget"] = RELAXED_BUDGET
        for journey in target.get("journeys", {}).get("items", []):
            for step in journey["steps"]:
                step["latency_budget"] = RELAXED_BUDGET


def demo_config_dict(target: DemoTarget, workdir: Path) -> dict[str, Any]:
    """deploy/exporter.yml, rewritten for a demo target started by the test (budgets relaxed)."""
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    for name in ("admin-token", "api-key"):
        (secrets_dir / f"demo-{name}").write_text((target.state_dir / name).read_text())
    text = (DEPLOY_DIR / "exporter.yml").read_text()
    text = (
        text.replace("http://127.0.0.1:8080", target.url)
        .replace("${VIGIL_DEMO_STATE_DIR}", str(target.state_dir))
        .replace("${VIGIL_DEPLOY_DIR}", str(DEPLOY_DIR))
        .replace("${VIGIL_SECRETS_DIR}", str(secrets_dir))
        .replace("${VIGIL_STATE_DIR}", str(workdir))
    )
    data: dict[str, Any] = yaml.safe_load(text)
    relax_budgets(data)
    return data


def demo_config(
    target: DemoTarget, workdir: Path, *, only: tuple[str, ...] = (), **overrides: Any
) -> ExporterConfig:
    """The demo config, optionally with only some checks and per-check overrides, cache off."""
    data = demo_config_dict(target, workdir)
    tconf = data["targets"][0]
    for check in ("cors", "env", "security", "endpoints", "journeys", "schema"):
        if only and check not in only:
            tconf.pop(check, None)
        elif check in tconf:
            tconf[check]["min_interval"] = 0
    for key, value in overrides.items():
        tconf[key] = {**tconf.get(key, {}), **value}
    return parse_config(data)


def held_to_docs(results: list[CheckResult]) -> dict[str, CheckResult]:
    """Results by check name, each finding held to the severity its docs/checks page gives it
    (checks without a page there, such as the schema checks, are documented elsewhere)."""
    for r in results:
        if (DOCS / f"{r.check}.md").exists():
            assert_documented(r.check, r)
    return {r.check: r for r in results}


def run_checks(config: ExporterConfig, timeout: float = 10.0) -> dict[str, CheckResult]:
    """Run every check of the config once; results by check name."""

    async def go() -> list[CheckResult]:
        runner = CheckRunner(build_checks(config))
        try:
            return await runner.refresh(timeout)
        finally:
            await runner.close()

    return held_to_docs(asyncio.run(go()))


def rules(result: CheckResult) -> set[str]:
    return {f.rule for f in result.findings}


def patch_target(target: DemoTarget, patch: dict[str, Any]) -> None:
    target.inject(config_patch=patch)


def restore_target(target: DemoTarget) -> None:
    target.admin("POST", "/admin/config/restore")
    target.clear()


async def arun_checks(config: ExporterConfig, timeout: float = 10.0) -> dict[str, CheckResult]:
    """run_checks for async tests."""
    runner = CheckRunner(build_checks(config))
    try:
        return held_to_docs(await runner.refresh(timeout))
    finally:
        await runner.close()
