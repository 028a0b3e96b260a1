"""Endpoint budgets and synthetic journeys against the demo target over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.demo.client import DemoTarget
from vigil.exporter.config import parse_config

from tests.exporter.helpers import (
    RELAXED_BUDGET,
    arun_checks,
    demo_config,
    restore_target,
    rules,
    run_checks,
)

APP = "https://app.example.com"


def test_endpoints_status_latency_and_body(shared_demo_target: DemoTarget, tmp_path: Path) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("endpoints",))
    clean = run_checks(config)["endpoints"]
    assert clean.success and clean.findings == [], clean.findings
    up = {lab["endpoint"]: v for lab, v in clean.samples["vigil_endpoint_up"]}
    assert up == {"healthy": 1.0, "items": 1.0, "users": 1.0, "orders_summary": 1.0, "quote": 1.0}
    assert {lab["endpoint"] for lab, _ in clean.samples["vigil_endpoint_latency_seconds"]} == set(
        up
    )

    endpoints = config.targets[0].endpoints
    assert endpoints is not None
    api = [ep for ep in endpoints.items if ep.path.startswith("/api/")]
    for ep in api:
        ep.latency_budget = 0.5
    shared_demo_target.inject(latency_seconds=0.6)  # every /api/ route: always over 0.5 s
    slow = run_checks(config)["endpoints"]
    over = {f.subject.split()[0] for f in slow.findings if f.rule == "latency_over_budget"}
    assert over == {"items", "users", "orders_summary", "quote"}
    shared_demo_target.clear()
    for ep in api:
        ep.latency_budget = RELAXED_BUDGET

    shared_demo_target.inject(error_rate=1.0)
    failing = run_checks(config)["endpoints"]
    bad = {f.subject.split()[0]: f for f in failing.findings if f.rule == "unexpected_status"}
    assert set(bad) == {"items", "users", "orders_summary", "quote"}
    assert "HTTP 500" in bad["items"].message and bad["items"].severity.value == "critical"
    assert bad["quote"].severity.value == "warning"  # declared severity
    assert {lab["endpoint"]: v for lab, v in failing.samples["vigil_endpoint_up"]}["healthy"] == 1.0
    shared_demo_target.clear()

    shared_demo_target.admin("POST", "/admin/circuit-breaker", {"state": "open"})  # quote degrades
    degraded = run_checks(config)["endpoints"]
    assert [(f.rule, f.subject.split()[0]) for f in degraded.findings] == [
        ("body_mismatch", "quote")
    ]
    shared_demo_target.admin("POST", "/admin/circuit-breaker", {"state": "closed"})
    assert run_checks(config)["endpoints"].findings == []


def test_endpoint_timeout(shared_demo_target: DemoTarget, tmp_path: Path) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("endpoints",))
    config.targets[0].endpoints.items[1].timeout = 0.3  # type: ignore[union-attr]
    shared_demo_target.inject(latency_seconds=1.0)
    result = run_checks(config)["endpoints"]
    down = [f for f in result.findings if f.rule == "endpoint_down"]
    assert [f.subject.split()[0] for f in down] == ["items"] and "0.30s" in down[0].message


def test_journey_catches_missing_patch_like_a_user(
    shared_demo_target: DemoTarget, tmp_path: Path
) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("journeys",))
    clean = run_checks(config)["journeys"]
    assert clean.success and clean.findings == [], clean.findings
    steps = {lab["step"]: v for lab, v in clean.samples["vigil_journey_step_ok"]}
    assert steps == {"create": 1.0, "read": 1.0, "rename": 1.0, "delete": 1.0}

    shared_demo_target.inject(cors_drift=True)
    broken = run_checks(config)["journeys"]
    [finding] = broken.findings
    assert finding.rule == "journey_cors_blocked" and finding.subject == "item_lifecycle/rename"
    assert "PATCH" in finding.message
    steps = {lab["step"]: v for lab, v in broken.samples["vigil_journey_step_ok"]}
    # the step that broke is 0, the cleanup step still ran and deleted the item
    assert steps == {"create": 1.0, "read": 1.0, "rename": 0.0, "delete": 1.0}
    assert {lab["journey"]: v for lab, v in broken.samples["vigil_journey_success"]} == {
        "item_lifecycle": 0.0
    }
    items = shared_demo_target.api("GET", "/api/v1/items").json()
    assert not [i for i in items if str(i.get("name", "")).startswith("vigil-")], items

    restore_target(shared_demo_target)
    assert run_checks(config)["journeys"].findings == []


def test_journey_reports_status_and_body_breaks(
    shared_demo_target: DemoTarget, tmp_path: Path
) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("journeys",))
    steps = config.targets[0].journeys.items[0].steps  # type: ignore[union-attr]
    steps[1].expect_json = {"$.name": "something else"}
    result = run_checks(config)["journeys"]
    assert [(f.rule, f.subject) for f in result.findings] == [
        ("journey_unexpected_body", "item_lifecycle/read")
    ]
    shared_demo_target.inject(latency_seconds=0.3)
    steps[1].expect_json = {}
    steps[0].latency_budget = 0.1
    result = run_checks(config)["journeys"]
    assert rules(result) == {"journey_latency_over_budget"}


async def test_journey_step_failures_name_the_step(aiohttp_server: AiohttpServer) -> None:
    """A wrong status, a missing capture and a step that never answers are each reported at
    the step, with the severity docs/checks/journeys.md gives (held by the helpers)."""

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(2)
        headers = {"Access-Control-Allow-Origin": APP, "Access-Control-Allow-Credentials": "true",
                   "Vary": "Origin"}
        return web.json_response({"name": "x"}, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)

    def journey(name: str, **step: Any) -> dict[str, Any]:
        return {"name": name, "origin": APP, "steps": [{"name": "only", "path": "/x", **step}]}

    config = parse_config({"targets": [{
        "name": "j",
        "base_url": str(server.make_url("")).rstrip("/"),
        "journeys": {"request_timeout": 0.5, "items": [
            journey("status", expect_status=[201]),
            journey("capture", capture={"id": "$.id"}),
            journey("timeout", path="/slow"),
        ]},
    }]})
    result = (await arun_checks(config))["journeys"]
    assert result.success, result.error
    found = {(f.rule, f.subject, f.severity.value) for f in result.findings}
    assert found == {
        ("journey_unexpected_status", "status/only", "critical"),
        ("journey_capture_missing", "capture/only", "critical"),
        ("journey_request_failed", "timeout/only", "critical"),
    }, found
