"""What docs/checks/<check>.md claims about each finding: its rule and severities, read from
the findings table, so tests can hold every finding they see to the documentation."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from vigil.exporter.base import CheckResult

DOCS = Path(__file__).parents[2] / "docs" / "checks"
_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*([^|]+)\|")


@cache
def documented(check: str) -> dict[str, frozenset[str]]:
    """rule -> the severities its row names (critical, warning, info)."""
    out: dict[str, frozenset[str]] = {}
    for line in (DOCS / f"{check}.md").read_text().splitlines():
        match = _ROW.match(line)
        if match:
            words = frozenset(re.findall(r"critical|warning|info", match.group(2)))
            # A row without a severity word defers to config ("the endpoint's `severity`").
            out[match.group(1)] = words or frozenset({"critical", "warning", "info"})
    return out


def assert_documented(check: str, result: CheckResult) -> None:
    """Every finding's rule has a row in the check's doc, with its severity."""
    table = documented(check)
    for f in result.findings:
        assert f.rule in table, f"{check}.md has no row for {f.rule}"
        assert f.severity.value in table[f.rule], (
            f"{check}.md says {f.rule} is {'/'.join(sorted(table[f.rule]))}, "
            f"but it was {f.severity.value}: {f.message}"
        )
