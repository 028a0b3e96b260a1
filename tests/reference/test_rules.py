"""The reference stack's rules pass promtool and its unit tests (series shaped like the real
exporters' scrapes), and its service spec validates (no stack needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from vigil.demo.reference import REFERENCE_DIR, RULE_FILES

from tests.harness import require_binary
from vigil.rulegen import promtool_check, render, stale
from vigil.spec import load_config
from vigil.timescale import scale_rule_file


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REFERENCE_DIR / "tests")


def test_rules_check_and_unit_tests() -> None:
    checked = promtool("check", "rules", str(REFERENCE_DIR / "reference.rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "reference.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_generated_rules_are_up_to_date() -> None:
    """deploy/reference/rules/ is what `vigil rules generate` renders from the stack's spec,
    and promtool passes it and its generated tests."""
    require_binary("promtool")
    files = render(load_config(REFERENCE_DIR / "services.yml"))
    assert stale(files, REFERENCE_DIR / "rules") == [], (
        "run `vigil rules generate --spec deploy/reference/services.yml --out deploy/reference/rules`")
    promtool_check(files)


def test_spec_overrides_reach_the_generated_alerts() -> None:
    rules = {r["alert"]: r for name in RULE_FILES
             for g in yaml.safe_load((REFERENCE_DIR / name).read_text())["groups"]
             for r in g["rules"] if "alert" in r}
    assert rules["TargetProbeFailing"]["for"] == "5m"
    assert rules["TargetProbeFailing"]["labels"]["remediation"] == "auto"
    assert rules["TargetDbPoolExhaustionPredicted"]["labels"]["remediation"] == ""
    # the generic signals cover the probe and disk alerts; the drift and the near-limit stay
    assert {"TargetDbPoolExhausted", "TargetDiskFillPredicted", "ReferenceConfigDrift"} <= set(rules)
    assert not {"ReferenceAppDown", "ReferenceSpoolFilling"} & set(rules)


def test_time_compressed_rules_still_check(tmp_path: Path) -> None:
    """What the stack loads: the same rules with durations divided by 60 (subqueries too)."""
    outs = [scale_rule_file(REFERENCE_DIR / name, tmp_path / Path(name).name, 60) for name in RULE_FILES]
    assert "[5s:]" in outs[-1].read_text()
    checked = promtool("check", "rules", *map(str, outs))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_service_spec_validates() -> None:
    loaded = load_config(REFERENCE_DIR / "services.yml")
    assert set(loaded.services) == {"kinto", "datasette"}
