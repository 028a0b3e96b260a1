"""A short run of the reference stack's fault scenarios through the whole real loop (probe or
exporter -> Prometheus rule -> Alertmanager -> vigil-remediator -> supervisorctl / SQL / files
-> verification in Prometheus), scored per stack. The full set is bench/bench_reference.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vigil.demo.reference import ReferenceStack
from vigil.demo.reference_scenarios import REFERENCE_SCENARIOS
from vigil.demo.scenarios import ScenarioResult, run_scenario
from vigil.demo.scorecard import Scorecard

from vigil.sink import WebhookReceiver

BY_NAME = {s.name: s for s in REFERENCE_SCENARIOS}


@pytest.fixture(scope="module")
def results() -> list[ScenarioResult]:
    return []


def test_reference_scenarios_are_scored_on_their_own_stack() -> None:
    assert {s.stack for s in REFERENCE_SCENARIOS} == {"reference"}
    assert {"app_hung", "app_killed", "db_connections", "spool_fill", "config_drift"} <= set(BY_NAME)


@pytest.mark.parametrize("name, procedure", [
    ("app_killed", "restart-unresponsive-app"),
    ("db_connections", "terminate-idle-db-connections"),
    ("config_drift", "restore-kinto-config"),
])
def test_fault_is_detected_and_remediated(reference: ReferenceStack, human: WebhookReceiver,
                                          results: list[ScenarioResult], name: str,
                                          procedure: str) -> None:
    scenario = BY_NAME[name]
    result = run_scenario(reference, scenario, human, log=print)
    results.append(result)
    assert result.stack == "reference"
    assert result.root_cause_detected, result.alerts
    assert result.false_positive_alerts == []
    assert any(i["procedure"] == procedure and i["remediating_at"] for i in result.incidents), \
        result.incidents
    assert result.outcome in ("auto_resolved", "mitigated"), result.incidents
    if scenario.kind == "resource":
        assert result.predicted is True  # alerted before the connection limit was reached


def test_scorecard_reports_each_stack(results: list[ScenarioResult], tmp_path: Path) -> None:
    if not results:
        pytest.skip("the scenarios did not run")
    assert [r.name for r in results] == ["app_killed", "db_connections", "config_drift"]
    card = Scorecard(results)
    card.write(tmp_path)
    data = json.loads((tmp_path / "scorecard.json").read_text())
    assert set(data["stacks"]) == {"reference"}
    assert data["stacks"]["reference"]["aggregate"]["scenarios"] == 3
    assert "## reference" in (tmp_path / "scorecard.md").read_text()
