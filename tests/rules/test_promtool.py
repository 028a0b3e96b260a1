"""`promtool check rules` and `promtool test rules` on every rule file, so a broken rule fails
`make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import require_binary
from tests.rules.rulefiles import promtool_test_files, rule_files
from vigil.paths import RULES_DIR


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def test_check_rules() -> None:
    files = rule_files()
    assert files, "no rules/*.rules.yml"
    result = promtool("check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


@pytest.mark.parametrize("test_file", promtool_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    result = promtool("test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_changed_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests pin behaviour: a longer `for` on one alert makes promtool fail."""
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES_DIR / "tests" / "target.test.yml", tmp_path / "tests")
    text = (RULES_DIR / "target.rules.yml").read_text()
    assert text.count("for: 2m") >= 1
    (tmp_path / "target.rules.yml").write_text(text.replace("for: 2m", "for: 3m", 1))
    result = promtool("test", "rules", "target.test.yml", cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "TargetConfigDrift" in result.stdout + result.stderr
