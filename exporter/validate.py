"""`vigil validate`: run every configured check once, as a deploy-pipeline gate.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 the configuration or a check
itself could not run (2 wins over 1: a gate that could not look must not pass).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from vigil.exporter.base import CheckError, CheckResult, Severity
from vigil.exporter.checks import build_checks
from vigil.exporter.config import ExporterConfig, load_config
from vigil.exporter.env import write_baseline
from vigil.exporter.report import (
    FORMATS,
    Threshold,
    at_or_above,
    render,
    render_table,
    threshold_of,
)
from vigil.exporter.runner import CheckRunner

from vigil.paths import DEPLOY_DIR
from vigil.service import ArgumentParser, setup_logging

__all__ = [
    "EXIT_CLEAN",
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "exit_code",
    "gate_policy",
    "main",
    "run_once",
]

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FAIL_ON = ("critical", "warning", "info", "never")


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vigil validate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=str(DEPLOY_DIR / "exporter.yml"),
        help="exporter configuration (default: deploy/exporter.yml)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target (repeatable)",
    )
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME",
        help="only this check, e.g. cors (repeatable)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="report format (default: table)"
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the report here (machine formats); the table still goes to stdout",
    )
    parser.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default=None,
        help="lowest severity that fails the gate, for every check (default: the config's "
        "gate.fail_on and gate.checks, else warning)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time budget per check (default: the config's scrape_timeout)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=("debug", "info", "warn", "error"),
        default="error",
        help="log level on stderr (default: error; the report already lists failures)",
    )
    parser.add_argument(
        "--write-env-baseline",
        action="store_true",
        help="record the env check's salted-hash baselines from the current values, then exit",
    )
    return parser


async def run_once(
    config: ExporterConfig, timeout: float, targets: Sequence[str] = (), checks: Sequence[str] = ()
) -> list[CheckResult]:
    """Run the selected checks once, concurrently, each within `timeout`."""
    runner = CheckRunner(build_checks(config, list(targets) or None, list(checks) or None))
    try:
        return await runner.refresh(timeout)
    finally:
        await runner.close()


def gate_policy(config: ExporterConfig, fail_on: str | None) -> Threshold:
    """--fail-on when given (one threshold for every check), else the config's gate policy."""

    def severity(name: str) -> Severity | None:
        return None if name == "never" else Severity(name)

    if fail_on is not None:
        return severity(fail_on)
    gate = config.gate
    return lambda check: severity(gate.threshold(check))


def exit_code(results: Sequence[CheckResult], fail_on: Threshold) -> int:
    if any(not r.success for r in results):
        return EXIT_ERROR
    if any(at_or_above(f, threshold_of(fail_on, r.check)) for r in results for f in r.findings):
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _write_baselines(config: ExporterConfig, targets: Sequence[str]) -> int:
    wrote = 0
    for target in config.targets:
        if targets and target.name not in targets:
            continue
        if target.env is not None and target.env.baseline_file:
            try:
                path = write_baseline(target.env)
            except CheckError as exc:
                print(f"vigil validate: {target.name}: {exc}", file=sys.stderr)
                return EXIT_ERROR
            print(f"{target.name}: wrote env baseline {path}")
            wrote += 1
    if not wrote:
        print("vigil validate: no target has env.baseline_file configured", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_CLEAN


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    config = load_config(args.config_file)  # ConfigError -> exit 2 via exit_on_error
    known = {t.name for t in config.targets}
    unknown = [t for t in args.target if t not in known]
    if unknown:
        print(
            f"vigil validate: unknown target(s): {', '.join(unknown)}; the config has "
            f"{', '.join(sorted(known))}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.write_env_baseline:
        return _write_baselines(config, args.target)
    results = asyncio.run(
        run_once(config, args.timeout or config.scrape_timeout, args.target, args.check)
    )
    if not results:
        print("vigil validate: no checks selected", file=sys.stderr)
        return EXIT_ERROR
    fail_on = gate_policy(config, args.fail_on)
    if args.format == "table":
        render_table(results, Console(soft_wrap=False))
    else:
        text = render(args.format, results, fail_on=fail_on, config_file=args.config_file)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            render_table(results, Console(soft_wrap=False))
        else:
            sys.stdout.write(text)
    code = exit_code(results, fail_on)
    summary = {
        EXIT_CLEAN: "passed",
        EXIT_FINDINGS: "failed: findings at or above "
        + (args.fail_on or "the gate policy (gate.fail_on, default warning)"),
        EXIT_ERROR: "failed: a check could not run",
    }[code]
    print(f"vigil validate: {summary}", file=sys.stderr)
    return code
