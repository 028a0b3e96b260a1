"""A short subset of the fault scenarios on the whole real loop: detection, remediation and
the scorecard's fields (never timings; the full suite is bench/bench_scenarios.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.demo.scenarios import SCENARIOS, ScenarioResult, _human_receivers, run_scenario
from vigil.demo.scorecard import Scorecard
from vigil.demo.stack import Stack

from tests.harness import require_binary
from vigil.sink import WebhookReceiver

BY_NAME = {s.name: s for s in SCENARIOS}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, WebhookReceiver]]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    human = WebhookReceiver().start()
    stack = Stack(tmp_path_factory.mktemp("loop"), am_transform=lambda d: _human_receivers(d, human.url),
                  prefer_default_ports=False)
    try:
        stack.start(log=lambda m: None)
        yield stack, human
    finally:
        stack.stop()
        human.stop()
        for proc in stack.processes:
            print(f"--- {proc.name} ---\n{proc.log_tail(30)}")


@pytest.fixture(scope="module")
def results() -> list[ScenarioResult]:
    return []


def test_stack_runs_every_service(loop: tuple[Stack, WebhookReceiver]) -> None:
    stack, _ = loop
    assert stack.skipped == []
    assert set(stack.services) == {"vigil-exporter", "vigil-forecaster", "vigil-remediator"}


def test_short_control_run(loop: tuple[Stack, WebhookReceiver], results: list[ScenarioResult]) -> None:
    stack, human = loop
    result = run_scenario(stack, BY_NAME["control"], human, duration=20, log=print)
    results.append(result)
    # with no fault, any alert at all is a false alarm
    assert result.alerts == {}, result.alerts
    assert result.outcome == "quiet", result.incidents


def test_memory_leak_is_predicted_and_restarted(loop: tuple[Stack, WebhookReceiver],
                                                results: list[ScenarioResult]) -> None:
    stack, human = loop
    result = run_scenario(stack, BY_NAME["memory_leak"], human, log=print)
    results.append(result)
    assert result.root_cause_detected, result.alerts
    assert result.root_cause_ranked_first == BY_NAME["memory_leak"].root_cause, result.alerts
    assert result.predicted is True  # the first alert came before the declared failure moment
    assert result.outcome == "auto_resolved", result.incidents
    assert any(i["procedure"] for i in result.incidents)
    assert result.recovery_seconds is not None and result.remediation_start_seconds is not None


def test_cors_drift_is_detected_and_restored(loop: tuple[Stack, WebhookReceiver],
                                             results: list[ScenarioResult]) -> None:
    stack, human = loop
    result = run_scenario(stack, BY_NAME["cors_drift"], human, log=print)
    results.append(result)
    assert "CorsMethodBlocked" in result.alerts or "TargetConfigDrift" in result.alerts
    assert result.root_cause_ranked_first == BY_NAME["cors_drift"].root_cause, result.alerts
    assert result.outcome == "auto_resolved", result.incidents
    assert stack.target is not None
    assert stack.target.metric("demo_config_drift") == 0


def test_pool_leak_is_predicted_and_restarted(loop: tuple[Stack, WebhookReceiver],
                                             results: list[ScenarioResult]) -> None:
    stack, human = loop
    result = run_scenario(stack, BY_NAME["pool_exhaustion"], human, log=print)
    results.append(result)
    assert "TargetDbPoolExhaustionPredicted" in result.alerts, result.alerts
    assert result.root_cause_ranked_first == BY_NAME["pool_exhaustion"].root_cause, result.alerts
    assert result.predicted is True  # the leak alert came before the pool was full
    assert result.outcome == "auto_resolved", result.incidents
    assert any(i["procedure"] == "restart-pool-leaking-target" for i in result.incidents)
    assert stack.target is not None
    assert stack.target.metric("demo_db_pool_connections_in_use") == 0


def test_scorecard(results: list[ScenarioResult], tmp_path: Path) -> None:
    assert [r.name for r in results] == ["control", "memory_leak", "cors_drift", "pool_exhaustion"]
    card = Scorecard(results)
    card.write(tmp_path)
    data = json.loads((tmp_path / "scorecard.json").read_text())
    assert {"predicted_share", "auto_resolved_share", "mttr_mean_seconds", "mttr_p90_seconds",
            "false_positive_rate", "config_identify_seconds"} <= set(data["aggregate"])
    assert [t["metric"] for t in data["targets"]] == ["predicted_share", "auto_resolved_share",
                                                      "mttr_mean_seconds", "false_positive_rate",
                                                      "config_identify_seconds",
                                                      "root_cause_top1_accuracy"]
    assert data["aggregate"]["root_cause_top1_accuracy"] is not None
    assert data["aggregate"]["auto_resolved_share_remediable"] is not None
    assert data["aggregate"]["expected_outcome_share"] is not None
    assert data["aggregate"]["scenarios"] == len(results)
    for r in results:
        assert (tmp_path / f"{r.name}.png").stat().st_size > 1000
    assert "| memory_leak |" in (tmp_path / "scorecard.md").read_text()


def test_cli_runs_the_control_beside_the_faults(tmp_path: Path) -> None:
    """`vigil scenarios` with a control and a fault: two stacks, one scorecard with both."""
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "scenarios", "control", "cors_drift",
         "--control-duration", "15", "--output-dir", str(tmp_path / "out"),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=280, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "the control on its own stack beside the faults" in out.stdout
    assert (tmp_path / "work" / "control" / "state").is_dir()  # the control's own stack
    data = json.loads((tmp_path / "out" / "scorecard.json").read_text())
    assert [r["name"] for r in data["scenarios"]] == ["control", "cors_drift"]
    assert data["scenarios"][1]["outcome"] == "auto_resolved"
