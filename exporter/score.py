"""vigil_config_score: one 0-100 number per target, from its check results.

    score = 100 * sum(1 - penalty(check)) / number_of_checks

    penalty(check) = 1                                  when the check could not run
                   = max(weight(severity) of findings)  otherwise (0 without findings)
    weight: critical = 1.0, warning = 0.5, info = 0.1

So a target whose checks all pass scores 100; one critical finding in one of four checks
scores 75; a warning there instead scores 87.5. Several findings in one check count once
(the worst), so one noisy check cannot sink the score alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from vigil.exporter.base import CheckResult, Severity

__all__ = ["SEVERITY_WEIGHT", "check_penalty", "config_score"]

SEVERITY_WEIGHT = {Severity.CRITICAL: 1.0, Severity.WARNING: 0.5, Severity.INFO: 0.1}


def check_penalty(result: CheckResult) -> float:
    """1 for a check that did not run; else the weight of its worst finding (0 if none)."""
    if not result.success:
        return 1.0
    return max((SEVERITY_WEIGHT[Severity(f.severity)] for f in result.findings), default=0.0)


def config_score(results: Iterable[CheckResult]) -> float:
    """The score of one target's results (100 when it has no checks)."""
    penalties = [check_penalty(r) for r in results]
    if not penalties:
        return 100.0
    return 100.0 * sum(1.0 - p for p in penalties) / len(penalties)
