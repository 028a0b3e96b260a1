"""Pure logic: correlation rules, root-cause ranking evidence, recommendations and flagging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.remediator.config import IntelligenceSettings, parse_config
from vigil.remediator.intelligence.correlation import GroupView, pick_group
from vigil.remediator.intelligence.rootcause import Member, Signal, rank
from vigil.remediator.intelligence.similarity import recommend, similar

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def settings(**kw: Any) -> IntelligenceSettings:
    return parse_config({"intelligence": kw}).intelligence


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_failing_dependency_outranks_its_callers_even_when_it_alerts_later() -> None:
    st = settings(dependencies={"api": ["pricing"], "pricing": ["pricing-db"]})
    ranked = rank([Member(1, "ApiErrors", "api", at(0), True),
                   Member(2, "PricingDbDown", "pricing-db", at(20), True)], [], st)
    assert [r["alertname"] for r in ranked] == ["PricingDbDown", "ApiErrors"]
    kinds = {e["kind"] for e in ranked[0]["evidence"]}
    assert "dependency" in kinds and "first_started" not in kinds
    assert any(e["kind"] == "dependent" for e in ranked[1]["evidence"])


def test_config_finding_that_changed_before_beats_the_first_symptom() -> None:
    st = settings()
    cors = Signal("finding", "cors", at(-60), False, {"target": "shop", "subject": "PATCH"})
    ranked = rank([Member(1, "TargetErrorRateHigh", "shop", at(0), True),
                   Member(2, "CorsMethodBlocked", "shop", at(30), True)], [cors], st)
    assert ranked[0]["alertname"] == "CorsMethodBlocked"
    finding = next(e for e in ranked[0]["evidence"] if e["kind"] == "finding")
    assert finding["weight"] == 3.0 and "60s before" in finding["detail"]
    assert any(e["kind"] == "symptom_class" for e in ranked[1]["evidence"])


def test_one_finding_is_one_piece_of_evidence_however_many_series_carry_it() -> None:
    """A CORS finding has a series per origin and method: it must not outvote the drift that
    started first (as it did when each series added its own +3)."""
    st = settings()
    cors = [Signal("finding", "cors", at(-2 + i * 0.1), False, {"target": "demo", "origin": o})
            for i, o in enumerate(("https://a", "https://b", "https://c"))]
    ranked = rank([Member(1, "TargetConfigDrift", "demo", at(0), True),
                   Member(2, "CorsMethodBlocked", "demo", at(2), True)], cors, st)
    assert ranked[0]["alertname"] == "TargetConfigDrift"
    cors_ev = [e for e in ranked[1]["evidence"] if e["kind"] == "finding"]
    assert len(cors_ev) == 1 and "https://a" in cors_ev[0]["detail"]  # the earliest onset


def test_a_specific_finding_alert_beats_the_aggregate_verdict_beside_it() -> None:
    """vigil_env_valid is 0 whenever any finding of the variable is: EnvInvalid beside
    SecretPlaceholder is the aggregate, the placeholder the cause."""
    st = settings()
    secret = Signal("finding", "env", at(-5), False, {"target": "demo"})
    ranked = rank([Member(1, "EnvInvalid", "demo", at(0), False),
                   Member(2, "SecretPlaceholder", "demo", at(0), False)], [secret], st)
    assert [r["alertname"] for r in ranked] == ["SecretPlaceholder", "EnvInvalid"]
    assert any(e["kind"] == "derived_signal" for e in ranked[1]["evidence"])
    # alone, the aggregate is still the cause
    assert rank([Member(1, "EnvInvalid", "demo", at(0), False)], [secret], st)[0]["alertname"] \
        == "EnvInvalid"


def test_a_burn_rate_firing_first_does_not_outrank_the_error_alert_it_derives_from() -> None:
    st = settings()
    ranked = rank([Member(1, "ErrorBudgetBurnFast", "demo", at(0), False),
                   Member(2, "TargetErrorRateHigh", "demo", at(3), False),
                   Member(3, "ConfigScoreDropping", "demo", at(12), False)], [], st)
    assert ranked[0]["alertname"] == "TargetErrorRateHigh"
    assert any(e["kind"] == "first_started" for e in ranked[0]["evidence"])
    burn = next(r for r in ranked if r["alertname"] == "ErrorBudgetBurnFast")
    assert not any(e["kind"] == "first_started" for e in burn["evidence"])
    # a group of derived alerts only: the earliest still gets the credit
    only = rank([Member(1, "ErrorBudgetBurnFast", "demo", at(0), False),
                 Member(2, "ErrorBudgetBurnSlow", "demo", at(5), False)], [], st)
    assert only[0]["alertname"] == "ErrorBudgetBurnFast"


def test_a_config_drift_explains_the_cors_finding_that_follows_it() -> None:
    """Both fire within a second (one evaluation apart), the CORS finding changed just before
    the group: the declared alert link still puts the drift first."""
    st = settings()
    cors = Signal("finding", "cors", at(-1), False, {"target": "demo"})
    ranked = rank([Member(1, "TargetConfigDrift", "demo", at(0), True),
                   Member(2, "CorsMethodBlocked", "demo", at(1), True)], [cors], st)
    assert ranked[0]["alertname"] == "TargetConfigDrift"
    assert any(e["kind"] == "explains_alert" for e in ranked[0]["evidence"])
    assert any(e["kind"] == "explained_by" for e in ranked[1]["evidence"])
    # on another service, or alone, the CORS alert is its own cause
    apart = rank([Member(1, "TargetConfigDrift", "billing", at(0), True),
                  Member(2, "CorsMethodBlocked", "demo", at(1), True)], [cors], st)
    assert apart[0]["alertname"] == "CorsMethodBlocked"


def test_a_long_standing_finding_counts_less_and_an_earlier_anomaly_counts() -> None:
    st = settings()
    old = Signal("finding", "schema", at(-600), True)
    leak = Signal("anomaly", "memory", at(-120), False, {"job": "demo"})
    ranked = rank([Member(1, "SchemaDrift", "demo", at(0), False),
                   Member(2, "TargetMemoryExhaustionPredicted", "demo", at(0.5), True)],
                  [old, leak], st)
    assert ranked[0]["alertname"] == "TargetMemoryExhaustionPredicted"
    weights = {e["kind"]: e["weight"] for e in ranked[1]["evidence"]}
    assert weights["finding"] == 1.0


def test_correlation_needs_a_connection_and_the_window() -> None:
    st = settings(window="2m", dependencies={"api": ["db"]})
    groups = [GroupView(1, at(0), ["api"]), GroupView(2, at(0), ["batch"], {"instance": ["h:1"]})]
    assert pick_group(groups, at(60), "db", {}, st) == 1  # dependency
    assert pick_group(groups, at(60), "mail", {"instance": ["h:1"]}, st) == 2  # shared label
    assert pick_group(groups, at(60), "mail", {}, st) is None  # unrelated: its own group
    assert pick_group(groups, at(600), "api", {}, st) is None  # outside the window


def _past(inc: int, state: str, attempts: list[tuple[str, str]], root: tuple[tuple[str, str], ...] = (),
          labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": inc, "state": state, "reason": "", "procedure": None, "labels": labels or {},
            "findings": ["cors"],
            "attempts": [{"procedure": p, "state": s} for p, s in attempts],
            "root_attempts": [{"procedure": p, "state": s} for p, s in root]}


def test_recommendation_prefers_verified_success_and_flags_a_procedure_that_keeps_failing() -> None:
    history = [_past(1, "escalated", [("restart", "failed")]),
               _past(2, "escalated", [("restart", "rolled_back")]),
               _past(3, "escalated", [("restart", "failed")]),
               _past(4, "resolved", [("restore", "succeeded")]),
               _past(5, "resolved", [], root=(("restore", "succeeded"),))]
    rec = recommend("X/-", history, flag_after=3)
    assert rec["procedure"] == "restore" and rec["success_rate"] == 1.0
    assert rec["flagged"] == ["restart"]
    assert recommend("X/-", [], flag_after=3)["procedure"] is None


def test_similar_orders_by_labels_and_findings_and_says_how_they_ended() -> None:
    history = [_past(1, "resolved", [("restore", "succeeded")], labels={"target": "shop"}),
               _past(2, "escalated", [], labels={"target": "other"})]
    out = similar({"alertname": "A", "target": "shop"}, ["cors"], history)
    assert [s["incident"] for s in out] == [1, 2]
    assert out[0]["fixed_by"] == "restore" and out[1]["fixed_by"] is None


def test_offline_ranking_for_the_scenario_runner() -> None:
    from vigil.remediator.intelligence.offline import top_root_cause

    alerts = [{"alertname": "TargetErrorRateHigh", "labels": {"job": "demo"}, "starts_at": 100.0},
              {"alertname": "ErrorBudgetBurnFast", "labels": {"job": "demo"}, "starts_at": 101.0},
              {"alertname": "TargetDownstreamErrors", "labels": {"job": "demo"}, "starts_at": 100.5}]
    assert top_root_cause(alerts, procedures=["TargetDownstreamErrors"]) == "TargetDownstreamErrors"
    assert top_root_cause([]) is None
