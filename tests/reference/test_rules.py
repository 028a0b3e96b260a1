"""The reference stack's rules pass promtool and its unit tests (series shaped like the real
exporters' scrapes), and its service spec validates (no stack needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from vigil.demo.reference import REFERENCE_DIR

from tests.harness import require_binary
from vigil.timescale import scale_rule_file


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REFERENCE_DIR / "tests")


def test_rules_check_and_unit_tests() -> None:
    checked = promtool("check", "rules", str(REFERENCE_DIR / "reference.rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "reference.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_time_compressed_rules_still_check(tmp_path: Path) -> None:
    """What the stack loads: the same rules with durations divided by 60 (subqueries too)."""
    out = scale_rule_file(REFERENCE_DIR / "reference.rules.yml", tmp_path / "r.yml", 60)
    assert "[5s:]" in out.read_text()
    checked = promtool("check", "rules", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_service_spec_validates() -> None:
    spec = pytest.importorskip("vigil.spec", reason="the service spec model is not in this tree")
    loaded = spec.load_config(REFERENCE_DIR / "services.yml")
    assert set(loaded.services) == {"kinto", "datasette"}
