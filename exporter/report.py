"""Render check results for people (a rich table) and for pipelines (JSON, JUnit XML, SARIF).

Every renderer reads only Finding fields and check errors, which never hold secret values.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from rich.console import Console
from rich.table import Table
from rich.text import Text
from vigil.exporter.base import SEVERITY_ORDER, CheckResult, Finding, Severity
from vigil.exporter.score import config_score

from vigil import __version__

__all__ = ["FORMATS", "Threshold", "at_or_above", "render", "render_table", "threshold_of", "to_json", "to_junit", "to_sarif"]

FORMATS = ("table", "json", "junit", "sarif")
_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_SARIF_LEVEL = {Severity.CRITICAL: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


# The gate's threshold: one severity for every check, or per check name (None: never fails).
Threshold: TypeAlias = Severity | None | Callable[[str], Severity | None]


def threshold_of(fail_on: Threshold, check: str) -> Severity | None:
    return fail_on(check) if callable(fail_on) else fail_on


def at_or_above(finding: Finding, threshold: Severity | None) -> bool:
    """Whether a finding meets the --fail-on threshold (None: nothing does)."""
    return (
        threshold is not None
        and SEVERITY_ORDER[Severity(finding.severity)] >= SEVERITY_ORDER[threshold]
    )


def _by_target(results: Sequence[CheckResult]) -> dict[str, list[CheckResult]]:
    out: dict[str, list[CheckResult]] = defaultdict(list)
    for r in results:
        out[r.target].append(r)
    return dict(out)


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(
        findings, key=lambda f: (-SEVERITY_ORDER[Severity(f.severity)], f.rule, f.subject)
    )


def render_table(results: Sequence[CheckResult], console: Console) -> None:
    """One table per target: each check with its status, then its findings and fixes."""
    for target, rows in _by_target(results).items():
        table = Table(
            title=f"target {target}: score {config_score(rows):.1f}/100",
            title_justify="left",
            show_lines=False,
            expand=False,
        )
        table.add_column("check", style="bold")
        table.add_column("severity")
        table.add_column("rule")
        table.add_column("subject", overflow="fold")
        table.add_column("finding", overflow="fold")
        table.add_column("fix", overflow="fold", style="dim")
        for r in rows:
            if not r.success:
                table.add_row(
                    r.check, Text("ERROR", style="bold magenta"), "check_failed", "", r.error, ""
                )
                continue
            if not r.findings:
                table.add_row(
                    r.check,
                    Text("ok", style="green"),
                    "",
                    "",
                    f"passed in {r.duration_seconds:.2f}s",
                    "",
                )
                continue
            for i, f in enumerate(_sorted(r.findings)):
                sev = Severity(f.severity)
                table.add_row(
                    r.check if i == 0 else "",
                    Text(sev.value, style=_STYLE[sev]),
                    f.rule,
                    f.subject,
                    f.message,
                    f.fix,
                )
        console.print(table)


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": Severity(f.severity).value,
        "subject": f.subject,
        "message": f.message,
        "fix": f.fix,
        "location": f.location,
    }


def to_json(results: Sequence[CheckResult]) -> str:
    """A JSON document: per target its score and checks, per check its findings."""
    doc = {
        "vigil_version": __version__,
        "targets": [
            {
                "target": target,
                "score": round(config_score(rows), 2),
                "checks": [
                    {
                        "check": r.check,
                        "success": r.success,
                        "error": r.error,
                        "duration_seconds": round(r.duration_seconds, 4),
                        "findings": [_finding_dict(f) for f in _sorted(r.findings)],
                    }
                    for r in rows
                ],
            }
            for target, rows in _by_target(results).items()
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def to_junit(results: Sequence[CheckResult], fail_on: Threshold) -> str:
    """JUnit XML: a testsuite per target, a testcase per check; findings at or above
    fail_on make the case fail, a check that could not run is an error."""
    suites = ET.Element("testsuites", name="vigil validate")
    for target, rows in _by_target(results).items():
        suite = ET.SubElement(suites, "testsuite", name=target, tests=str(len(rows)))
        failures = errors = 0
        for r in rows:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"vigil.{target}",
                name=r.check,
                time=f"{r.duration_seconds:.3f}",
            )
            if not r.success:
                errors += 1
                ET.SubElement(case, "error", message=r.error, type="check_failed").text = r.error
                continue
            limit = threshold_of(fail_on, r.check)
            failing = [f for f in _sorted(r.findings) if at_or_above(f, limit)]
            lines = [
                f"[{Severity(f.severity).value}] {f.rule} {f.subject}: {f.message}"
                + (f" -- fix: {f.fix}" if f.fix else "")
                for f in _sorted(r.findings)
            ]
            if failing:
                failures += 1
                ET.SubElement(
                    case,
                    "failure",
                    message=f"{len(failing)} finding(s) at or above "
                    f"{limit.value if limit else 'never'}",
                    type="findings",
                ).text = "\n".join(lines)
            elif lines:
                ET.SubElement(case, "system-out").text = "\n".join(lines)
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def to_sarif(results: Sequence[CheckResult], config_file: str) -> str:
    """SARIF 2.1.0 for code-scanning UIs: one rule per check/rule, results located at the
    config file (the thing a developer edits) with the subject as a logical location."""
    rules: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        items = list(r.findings)
        for f in items:
            rule_id = f"{r.check}/{f.rule}"
            rules.setdefault(
                rule_id,
                {
                    "id": rule_id,
                    "name": f.rule,
                    "shortDescription": {"text": f"{r.check}: {f.rule.replace('_', ' ')}"},
                    "help": {"text": f.fix or "see docs/checks/"},
                    "helpUri": f"docs/checks/{r.check}.md",
                    "defaultConfiguration": {"level": _SARIF_LEVEL[Severity(f.severity)]},
                },
            )
            out.append(
                {
                    "ruleId": rule_id,
                    "level": _SARIF_LEVEL[Severity(f.severity)],
                    "message": {
                        "text": f"[{r.target}] {f.subject}: {f.message}"
                        + (f" Fix: {f.fix}" if f.fix else "")
                    },
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": config_file},
                                "region": {"startLine": 1},
                            },
                            "logicalLocations": [
                                {
                                    "name": f.subject,
                                    "kind": "resource",
                                    "fullyQualifiedName": f"{r.target}/{r.check}/{f.subject}",
                                }
                            ],
                        }
                    ],
                    "partialFingerprints": {
                        "vigil/v1": f"{r.target}/{r.check}/{f.rule}/{f.subject}"
                    },
                }
            )
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "vigil",
                        "version": __version__,
                        "informationUri": "https://github.com/vigil/vigil",
                        "rules": sorted(rules.values(), key=lambda x: x["id"]),
                    }
                },
                "results": out,
                "invocations": [
                    {
                        "executionSuccessful": all(r.success for r in results),
                        "toolExecutionNotifications": [
                            {
                                "level": "error",
                                "message": {"text": f"[{r.target}] {r.check}: {r.error}"},
                            }
                            for r in results
                            if not r.success
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def render(
    fmt: str, results: Sequence[CheckResult], *, fail_on: Threshold, config_file: str
) -> str:
    """Machine output in one of json, junit, sarif."""
    if fmt == "json":
        return to_json(results)
    if fmt == "junit":
        return to_junit(results, fail_on)
    if fmt == "sarif":
        return to_sarif(results, config_file)
    raise ValueError(f"unknown format {fmt}")
