"""docs/checks/*.md list every finding a check can report, and nothing it cannot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from vigil.exporter.cors import PROBE_KINDS

from tests.exporter.docs_claims import documented

EXPORTER = Path(__file__).parents[2] / "exporter"
MODULES = {
    "cors": ["cors.py"],
    "security": ["security.py"],
    "env": ["env.py"],
    "endpoints": ["endpoints.py"],
    "journeys": ["journeys.py"],
}
RUNNER_RULES = {"check_failed"}  # reported by the runner for any check that cannot run


def emitted(check: str) -> set[str]:
    rules: set[str] = set()
    for name in MODULES[check]:
        rules |= set(re.findall(r'(?:Finding|_StepFailed)\(\s*"([a-z0-9_]+)"', (EXPORTER / name).read_text()))
    if check == "cors":
        rules |= {rule for rule, _ in PROBE_KINDS.values()}
    return rules


@pytest.mark.parametrize("check", sorted(MODULES))
def test_every_finding_is_documented_and_every_documented_finding_exists(check: str) -> None:
    table = set(documented(check))
    code = emitted(check)
    assert code - table == set(), f"undocumented in docs/checks/{check}.md"
    assert table - code - RUNNER_RULES == set(), f"docs/checks/{check}.md lists rules never emitted"
