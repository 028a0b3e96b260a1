"""Every alert has a promtool boundary test and a runbook section; every recording rule has a
promql_expr_test; the remediable alerts match the bundled procedures."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from tests.rules.rulefiles import (
    load_rules,
    load_test_file,
    parse_duration,
    promtool_test_files,
    rule_files,
    runbook_anchors,
)
from vigil.paths import DEPLOY_DIR, RULES_DIR


def _tests_by_rule_file() -> dict[Path, list[dict[str, Any]]]:
    """rule file -> the promtool test groups of every test file that loads it."""
    out: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    for path in promtool_test_files():
        data = load_test_file(path)
        for rel in data.get("rule_files", []):
            out[(path.parent / rel).resolve()].append({**data, "_path": path})
    return out


def test_every_rule_file_has_its_own_test_file() -> None:
    loaded = _tests_by_rule_file()
    for rules in rule_files():
        assert (RULES_DIR / "tests" / rules.name.replace(".rules.yml", ".test.yml")).exists(), rules
        assert rules.resolve() in loaded, f"no test file loads {rules.name}"


def test_every_alert_has_a_boundary_test() -> None:
    """Nothing one evaluation interval before the alert fires, the exact alert when it does."""
    loaded = _tests_by_rule_file()
    missing = []
    for rule in (r for r in load_rules() if r.is_alert):
        found = False
        for data in loaded[rule.file.resolve()]:
            interval = parse_duration(data.get("evaluation_interval", "1m"))
            for group in data["tests"]:
                cases = [c for c in group.get("alert_rule_test", []) if c["alertname"] == rule.name]
                quiet = {parse_duration(c["eval_time"]) for c in cases if not c.get("exp_alerts")}
                for case in cases:
                    for exp in case.get("exp_alerts") or []:
                        at = parse_duration(case["eval_time"])
                        labels, annotations = exp.get("exp_labels", {}), exp.get("exp_annotations", {})
                        if (at - interval in quiet
                                and labels.get("severity") == rule.data["labels"]["severity"]
                                and set(annotations) >= {"summary", "description", "runbook_url"}):
                            found = True
        if not found:
            missing.append(rule.name)
    assert missing == [], f"alerts without a boundary test: {missing}"


def test_every_recording_rule_has_a_promql_expr_test() -> None:
    loaded = _tests_by_rule_file()
    missing = []
    for rule in (r for r in load_rules() if not r.is_alert):
        exprs = [case["expr"] for data in loaded[rule.file.resolve()] for group in data["tests"]
                 for case in group.get("promql_expr_test", [])]
        if not any(re.search(rf"(?<![\w:]){re.escape(rule.name)}(?![\w:])", e) for e in exprs):
            missing.append(rule.name)
    assert missing == [], f"recording rules without a promql_expr_test: {missing}"


def test_every_alert_has_a_runbook_section_and_no_section_is_orphaned() -> None:
    sections = runbook_anchors()
    alerts = {f"alert-name-{r.name.lower()}": r.name for r in load_rules() if r.is_alert}
    assert sorted(set(alerts) - set(sections)) == []
    # alerts `vigil rules generate` emits only for services with that signal (not the demo's)
    from vigil.rulegen import SIGNAL_ALERTS

    generated = {f"alert-name-{args[0].lower()}" for _, args, _ in SIGNAL_ALERTS}
    orphans = sorted(a for a in sections
                     if a.startswith("alert-name-") and a not in alerts and a not in generated)
    assert orphans == []
    for anchor, name in alerts.items():
        text = sections[anchor]
        for part in ("Meaning", "Confirm", "Fix by hand", "Automatic remediation"):
            assert f"**{part}" in text, f"runbook section {name} lacks {part}"


def test_remediable_alerts_match_the_bundled_procedures() -> None:
    """Each procedure's alertname exists with remediation=auto, and the other way round."""
    remediable = {r.name for r in load_rules()
                  if r.is_alert and (r.data.get("labels") or {}).get("remediation") == "auto"}
    assert {"TargetMemoryExhaustionPredicted", "TargetDiskFillPredicted", "TargetDownstreamErrors",
            "TargetConfigDrift", "CorsMethodBlocked", "TargetDbPoolExhausted"} <= remediable
    procedures_file = DEPLOY_DIR / "procedures.yml"
    if not procedures_file.exists():
        return
    procedures = yaml.safe_load(procedures_file.read_text())["procedures"]
    matched = set()
    for proc in procedures:
        for matcher in proc.get("match", []):
            m = re.fullmatch(r'alertname="([A-Za-z0-9]+)"', matcher)
            if m:
                matched.add(m.group(1))
    assert matched <= remediable, f"procedures for alerts the rules do not define: {matched - remediable}"
    assert remediable <= matched, f"remediation=auto alerts without a procedure: {remediable - matched}"
    # the runbook names the procedure that handles each remediable alert
    sections = runbook_anchors()
    for proc in procedures:
        for matcher in proc.get("match", []):
            m = re.fullmatch(r'alertname="([A-Za-z0-9]+)"', matcher)
            if m:
                assert proc["name"] in sections[f"alert-name-{m.group(1).lower()}"], proc["name"]
