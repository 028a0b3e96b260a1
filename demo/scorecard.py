"""The scenario scorecard: per-scenario measurements, aggregates beside the mission's targets,
and outputs as a terminal table, JSON, markdown and one timeline PNG per scenario."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vigil.demo.scenarios import ScenarioResult

__all__ = ["TARGETS", "Scorecard"]

# The mission's success metrics: (label, target, higher is better)
TARGETS: dict[str, tuple[str, float, bool]] = {
    "predicted_share": ("issues predicted before they happen", 0.80, True),
    "auto_resolved_share": ("common issues resolved automatically", 0.70, True),
    "mttr_mean_seconds": ("mean time to recovery (s)", 120.0, False),
    "false_positive_rate": ("false-positive rate", 0.01, False),
    "config_identify_seconds": ("time to identify configuration issues (s)", 300.0, False),
    "root_cause_top1_accuracy": ("root cause ranked first (top-1 accuracy)", 0.90, True),
}


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    return f"{value:.0f}{unit}" if unit == "s" else f"{value:.0%}"


def _as_expected(r: ScenarioResult) -> bool:
    """Did the scenario end the way it declared it should?"""
    wanted = {"auto": ("auto_resolved",), "escalate": ("escalated",),
              "detect": ("detected", "escalated", "auto_resolved", "mitigated"),
              "none": ("quiet",)}
    return r.outcome in wanted.get(r.expect, ())


@dataclass
class Scorecard:
    results: list[ScenarioResult]

    def aggregate(self) -> dict[str, Any]:
        faults = [r for r in self.results if r.kind != "control"]
        predictable = [r for r in faults if r.predicted is not None]
        remediable = [r for r in faults if r.expect == "auto"]
        resolved = [r for r in faults if r.outcome == "auto_resolved"]
        mttrs = sorted(r.recovery_seconds for r in resolved if r.recovery_seconds is not None)
        all_alerts = sum(len(r.alerts) for r in self.results)
        false_alerts = sum(len(r.false_positive_alerts) for r in self.results)
        config = [r.detection_seconds for r in faults if r.kind == "config"]
        roots = [r for r in faults]
        return {
            "scenarios": len(self.results),
            "predicted_share": (sum(1 for r in predictable if r.predicted) / len(predictable))
            if predictable else None,
            "predictable_scenarios": len(predictable),
            "auto_resolved_share": len(resolved) / len(faults) if faults else None,
            # the strict share above counts every fault, including those whose right outcome is
            # a human (secret, schema, no procedure, failed verification); this one counts only
            # faults with a bundled procedure (expect == auto)
            "auto_resolved_share_remediable": (
                sum(1 for r in remediable if r.outcome == "auto_resolved") / len(remediable))
            if remediable else None,
            "expected_outcome_share": (sum(1 for r in faults if _as_expected(r)) / len(faults))
            if faults else None,
            "mttr_mean_seconds": statistics.fmean(mttrs) if mttrs else None,
            "mttr_p90_seconds": mttrs[min(len(mttrs) - 1, round(0.9 * (len(mttrs) - 1)))]
            if mttrs else None,
            "false_positive_rate": false_alerts / all_alerts if all_alerts else 0.0,
            "alerts_total": all_alerts,
            "false_positive_alerts": false_alerts,
            "config_identify_seconds": max((c for c in config if c is not None), default=None)
            if config and all(c is not None for c in config) else None,
            "config_scenarios_missed": sum(1 for c in config if c is None),
            "root_cause_detected_share": (sum(1 for r in roots if r.root_cause_detected) / len(roots))
            if roots else None,
            "root_cause_top1_accuracy": (
                sum(1 for r in roots if r.root_cause_ranked_first == r.root_cause) / len(roots))
            if roots else None,
        }

    def verdicts(self) -> list[dict[str, Any]]:
        agg = self.aggregate()
        out = []
        for key, (label, target, higher) in TARGETS.items():
            value = agg.get(key)
            met = None if value is None else (value >= target if higher else value <= target)
            out.append({"metric": key, "label": label, "value": value, "target": target, "met": met})
        return out

    def to_json(self) -> dict[str, Any]:
        """Every result; the aggregate over all of them; and each stack's own aggregate."""
        return {"scenarios": [r.as_dict() for r in self.results], "aggregate": self.aggregate(),
                "targets": self.verdicts(),
                "stacks": {name: {"aggregate": card.aggregate(), "targets": card.verdicts()}
                           for name, card in self.stacks().items()}}

    def rows(self) -> list[list[str]]:
        rows = []
        for r in self.results:
            rows.append([
                r.name, r.expect, _fmt(r.detection_seconds),
                "-" if r.predicted is None else ("yes" if r.predicted else "no"),
                _fmt(r.lead_seconds), _fmt(r.remediation_start_seconds), _fmt(r.recovery_seconds),
                r.outcome, str(len(r.false_positive_alerts)),
                "-" if r.kind == "control" else (
                    "yes" if r.root_cause_ranked_first == r.root_cause
                    else f"no ({r.root_cause_ranked_first or 'none'})"),
            ])
        return rows

    HEADER: ClassVar[list[str]] = ["scenario", "expect", "detect", "predicted", "lead", "remediation", "recovery",
              "outcome", "false alerts", "cause 1st"]

    def stacks(self) -> dict[str, Scorecard]:
        """One scorecard per stack the results ran on (demo, reference), in order of appearance."""
        out: dict[str, list[ScenarioResult]] = {}
        for r in self.results:
            out.setdefault(r.stack, []).append(r)
        return {name: Scorecard(results) for name, results in out.items()}

    def markdown(self) -> str:
        lines = ["# Vigil scenario scorecard", ""]
        for name, card in self.stacks().items():
            lines += [f"## {name}", ""] + card._markdown_section() + [""]
        return "\n".join(lines).rstrip("\n") + "\n"

    def _markdown_section(self) -> list[str]:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines += ["", "| mission metric | value | target | met |", "|---|---|---|---|"]
        for v in self.verdicts():
            pct = v["metric"].endswith(("share", "rate", "accuracy"))
            value = _fmt(v["value"], "%" if pct else "s")
            target = _fmt(v["target"], "%" if pct else "s")
            met = "-" if v["met"] is None else ("yes" if v["met"] else "no")
            lines.append(f"| {v['label']} | {value} | {target} | {met} |")
        lines += ["", self.secondary()]
        return lines

    def print(self) -> None:
        for name, card in self.stacks().items():
            card._print(name)

    def _print(self, stack: str) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=120)
        table = Table(title=f"Vigil scenarios: {stack} stack")
        for h in self.HEADER:
            table.add_column(h)
        for row in self.rows():
            table.add_row(*row)
        console.print(table)
        summary = Table(title=f"Mission metrics: {stack} stack")
        for h in ("metric", "value", "target", "met"):
            summary.add_column(h)
        for v in self.verdicts():
            pct = v["metric"].endswith(("share", "rate", "accuracy"))
            summary.add_row(v["label"], _fmt(v["value"], "%" if pct else "s"),
                            _fmt(v["target"], "%" if pct else "s"),
                            "-" if v["met"] is None else ("yes" if v["met"] else "NO"))
        console.print(summary)
        console.print(self.secondary())

    def secondary(self) -> str:
        """The figures printed beside the mission metrics."""
        agg = self.aggregate()
        return ("also: auto-resolved among faults with a bundled procedure "
                f"{_fmt(agg['auto_resolved_share_remediable'], '%')}; outcome as expected "
                f"{_fmt(agg['expected_outcome_share'], '%')}; MTTR p90 {_fmt(agg['mttr_p90_seconds'])}; "
                f"{agg['false_positive_alerts']} false of {agg['alerts_total']} alerts; "
                f"{agg['predictable_scenarios']} scenarios with a failure moment to predict")

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scorecard.json").write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        (out / "scorecard.md").write_text(self.markdown())
        for r in self.results:
            timeline_png(r, out / (f"{r.name}.png" if r.stack == "demo" else f"{r.stack}-{r.name}.png"))


def timeline_png(r: ScenarioResult, path: Path) -> None:
    """Draw the metric, the alert, remediation and recovery marks, and the failure moment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    if r.series:
        xs = [t - r.t0 for t, _ in r.series]
        ax.plot(xs, [v for _, v in r.series], color="tab:blue", label="metric")
    for name, band in r.forecast.items():
        ax.plot([t - r.t0 for t, _ in band], [v for _, v in band], linestyle=":", label=name)
    ax.axvline(0, color="black", linestyle="--", label="fault injected")
    if r.failure_moment is not None:
        ax.axvline(r.failure_moment - r.t0, color="tab:red", label="failure moment")
    for i, (name, span) in enumerate(sorted(r.alerts.items(), key=lambda kv: kv[1]["first"])):
        ax.axvspan(span["first"] - r.t0, span["last"] - r.t0, alpha=0.15,
                   color="tab:orange" if name not in r.false_positive_alerts else "tab:gray",
                   label=f"alert {name}" if i < 4 else None)
    if r.remediation_start_seconds is not None:
        ax.axvline(r.remediation_start_seconds, color="tab:purple", label="remediation start")
    if r.recovery_seconds is not None:
        ax.axvline(r.recovery_seconds, color="tab:green", label="recovered")
    ax.set_xlabel("seconds since the fault")
    ax.set_title(f"{r.name}: {r.outcome}")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
