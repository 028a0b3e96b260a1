"""`vigil schema`: record a baseline, diff two schemas, run the schema checks once, scan code.

Exit codes (the same for every command): 0 no finding at warning level or above (info-only
findings, such as extra objects, still exit 0), 1 a warning or critical finding, 2 bad usage
or configuration (including a --schema that does not exist), 3 a database (live or reference)
could not be inspected.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.exporter.base import Finding, Severity

from vigil.config import ConfigError, load_yaml, parse_model
from vigil.service import ArgumentParser

from .config import DatabaseSource, SchemaCheckConfig
from .redact import Redactor

__all__ = ["main"]

EXIT_FINDINGS, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class _Unreachable(Exception):
    pass


def _db_flags(parser: ArgumentParser, prefix: str = "", what: str = "database") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{prefix}url", dest=f"{prefix.replace('-', '_')}url",
                       help=f"{what} URL (visible in `ps`: prefer --{prefix}url-env)")
    group.add_argument(f"--{prefix}url-env", dest=f"{prefix.replace('-', '_')}url_env",
                       metavar="VAR", help=f"environment variable holding the {what} URL")
    group.add_argument(f"--{prefix}url-file", dest=f"{prefix.replace('-', '_')}url_file",
                       type=Path, metavar="FILE", help=f"file holding the {what} URL")


def _common(parser: ArgumentParser) -> None:
    parser.add_argument("--config.file", dest="config_file", type=Path,
                        help="exporter config (with --target) or a file holding one schema: block")
    parser.add_argument("--target", help="target name in an exporter config")
    _db_flags(parser)
    parser.add_argument("--schema", dest="schemas", action="append", default=[],
                        help="schema to inspect (repeatable; default: the search path)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for the whole inspection (default: 30)")


def _source(args: Any, prefix: str = "") -> DatabaseSource | None:
    fields = {k: getattr(args, f"{prefix}{k}", None) for k in ("url", "url_env", "url_file")}
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        return None
    return DatabaseSource(**fields)


def _load_cfg(args: Any) -> SchemaCheckConfig:
    """The SchemaCheckConfig from --config.file (+ --target) and/or the URL flags."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    if args.config_file is not None:
        raw = load_yaml(args.config_file)
        base = args.config_file.resolve().parent
        if isinstance(raw, dict) and "targets" in raw:
            targets = raw["targets"]
            items = (list(targets.items()) if isinstance(targets, dict) else
                     [(t.get("name"), t) for t in targets if isinstance(t, dict)])
            matches = [(n, t) for n, t in items if args.target is None or n == args.target]
            matches = [(n, t) for n, t in matches if isinstance(t, dict) and "schema" in t]
            if len(matches) != 1:
                raise ConfigError(args.config_file, "targets",
                                  "name one target with a schema: block using --target"
                                  if matches else "no target with a schema: block"
                                  + (f" named {args.target!r}" if args.target else ""))
            data = dict(matches[0][1]["schema"] or {})
        elif isinstance(raw, dict):
            data = dict(raw.get("schema", raw))
    src = _source(args)
    if src is not None:
        for key in ("url", "url_env", "url_file"):
            data.pop(key, None)
        data.update({k: v for k, v in src.model_dump().items() if v is not None})
        if src.url is not None:
            data["url"] = src.url.get_secret_value()
    if args.schemas:
        data["schemas"] = args.schemas
    cfg = parse_model(SchemaCheckConfig, data, args.config_file)
    return cfg.resolve_paths(base)


def _snapshot(cfg: SchemaCheckConfig, timeout: float, redactor: Redactor) -> Any:
    from .checks import SnapshotProvider

    provider = SnapshotProvider(cfg.model_copy(update={"keep_connection": False}), redactor)
    try:
        return provider.get_sync(timeout)
    except ConfigError:
        raise
    except TimeoutError:
        raise _Unreachable(f"the live database: inspection timed out after {timeout:g}s"
                           ) from None
    except Exception as exc:  # noqa: BLE001
        raise _Unreachable(f"the live database: {redactor.describe(exc)}") from None


def _print_findings(findings: list[Finding], fmt: str, extra: dict[str, Any] | None = None) -> None:
    if fmt == "json":
        doc = dict(extra or {})
        doc["findings"] = [{"rule": f.rule, "severity": f.severity.value, "subject": f.subject,
                            "message": f.message, "fix": f.fix, "location": f.location}
                           for f in findings]
        print(json.dumps(doc, indent=2))
        return
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")
    if not findings:
        print("no differences")
        return
    for f in findings:
        where = f" ({f.location})" if f.location else ""
        print(f"{f.severity.value.upper():8} {f.rule:28} {f.subject}{where}: {f.message}")
        if f.fix:
            print(f"{'':38}fix: {f.fix}")
    counts = {s.value: sum(1 for f in findings if f.severity == s) for s in Severity}
    print(f"{len(findings)} findings: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def _exit_for(findings: list[Finding]) -> int:
    return EXIT_FINDINGS if any(f.severity != Severity.INFO for f in findings) else 0


def _cmd_baseline(args: Any) -> int:
    from .fingerprint import write_baseline

    cfg = _load_cfg(args)
    out = args.output or (cfg.drift.baseline_file if cfg.drift else None)
    if out is None:
        raise ConfigError(None, "drift.baseline_file", "give --output or a drift.baseline_file")
    redactor = Redactor()
    snap = _snapshot(cfg, args.timeout, redactor)
    fp = write_baseline(snap, Path(out))
    tables = sum(1 for t in snap.tables.values() if t.kind == "table")
    print(f"recorded baseline {out}: {fp} ({tables} tables, {len(snap.sequences)} sequences)")
    return 0


def _cmd_fingerprint(args: Any) -> int:
    from .fingerprint import fingerprint

    snap = _snapshot(_load_cfg(args), args.timeout, Redactor())
    print(fingerprint(snap))
    return 0


def _cmd_diff(args: Any) -> int:
    """Diff the live schema against a baseline file or another database."""
    from .checks import require_schemas
    from .diff import diff_snapshots
    from .fingerprint import drift_findings, read_baseline
    from .inspect import inspect_url

    cfg = _load_cfg(args)
    redactor = Redactor()
    live = _snapshot(cfg, args.timeout, redactor)
    against = _source(args, "against_")
    if against is not None:
        url = against.resolve_url("against_url")
        redactor.add_url(url)
        try:
            other = inspect_url(url, args.against_schemas, cfg.statement_timeout_seconds,
                                cfg.connect_timeout_seconds,
                                default_schema=(args.against_schemas or [None])[0])
        except Exception as exc:  # noqa: BLE001
            raise _Unreachable(f"the reference database: {redactor.describe(exc)}") from None
        require_schemas(other, "--against-schema", "reference")
        findings = diff_snapshots(other, live, privileges=args.privileges)
        _print_findings(findings, args.format)
        return _exit_for(findings)
    baseline = args.baseline or (cfg.drift.baseline_file if cfg.drift else None)
    if baseline is None:
        raise ConfigError(None, "drift.baseline_file", "give --baseline, --against-url* or a "
                          "drift.baseline_file")
    from .config import DriftConfig

    fp, _ = read_baseline(Path(baseline))
    drifted, findings = drift_findings(live, DriftConfig(baseline_file=Path(baseline)))
    _print_findings(findings, args.format, {"baseline": fp, "drift": bool(drifted)})
    return _exit_for(findings)


def _cmd_check(args: Any) -> int:
    """Run every configured schema check once and print the findings."""
    from .checks import make_schema_checks

    cfg = _load_cfg(args)
    checks = make_schema_checks(args.target or "cli", cfg)
    if not checks:
        print("no schema checks configured", file=sys.stderr)
        return EXIT_USAGE
    worst = 0
    all_findings: list[Finding] = []
    metrics: dict[str, float] = {}
    for check in checks:
        result = check.run_sync(args.timeout)
        if not result.success:
            print(f"{check.name}: FAILED: {result.error}", file=sys.stderr)
            # Redactor.describe renders configuration errors (a missing --schema, an
            # unloadable sql_file) with this prefix: bad usage, not an unreachable database
            config_error = (result.error or "").startswith("config error:")
            worst = max(worst, EXIT_USAGE if config_error else EXIT_UNREACHABLE)
            continue
        for metric, samples in sorted(result.samples.items()):
            for labels, value in samples[:5]:
                extra = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "target")
                metrics[f"{metric}{{{extra}}}" if extra else metric] = value
        all_findings.extend(Finding(rule=f"{check.name}/{f.rule}", severity=f.severity,
                                    subject=f.subject, message=f.message, fix=f.fix,
                                    location=f.location) for f in result.findings)
    if worst and not all_findings and not metrics:
        return worst  # nothing ran: "no differences" would be a lie
    _print_findings(all_findings, args.format, {"metrics": metrics} if args.format == "json"
                    else {name: f"{value:g}" for name, value in metrics.items()})
    return max(worst, _exit_for(all_findings))


def _cmd_scan(args: Any) -> int:
    """Scan code for table names and check them against the database."""
    from .codescan import reference_findings
    from .config import CodeReferencesConfig

    cfg = _load_cfg(args)
    code = cfg.code_references or CodeReferencesConfig(paths=args.paths or [Path(".")])
    if args.paths:
        code = code.model_copy(update={"paths": args.paths})
    snap = _snapshot(cfg, args.timeout, Redactor())
    findings, stats = reference_findings(snap, code)
    if not args.unreferenced:
        findings = [f for f in findings if f.rule != "unreferenced_table"]
    _print_findings(findings, args.format, {"files": stats["files"], "references": stats["refs"]})
    return _exit_for(findings)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vigil schema", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("baseline", help="record the live schema's fingerprint as the baseline")
    _common(p)
    p.add_argument("--output", "-o", type=Path, help="baseline file (default: drift.baseline_file)")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("fingerprint", help="print the live schema's canonical fingerprint")
    _common(p)
    p.set_defaults(func=_cmd_fingerprint)

    p = sub.add_parser("diff", help="what changed: live vs a baseline file or another database")
    _common(p)
    p.add_argument("--baseline", type=Path, help="baseline file (default: drift.baseline_file)")
    _db_flags(p, "against-", "reference database")
    p.add_argument("--against-schema", dest="against_schemas", action="append", default=[],
                   metavar="SCHEMA",
                   help="schema of the reference database to compare (repeatable; default: "
                        "the reference's search path, which misses objects in other schemas). "
                        "The first one is compared by bare name with the live default schema "
                        "(the current schema, else the first --schema), so `public` can "
                        "stand against `app`; the others by `schema.name`")
    p.add_argument("--privileges", action="store_true",
                   help="also compare table grants (off by default)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser("check", help="run the configured schema checks once")
    _common(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("scan", help="report table names in code that the database lacks")
    _common(p)
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: config or .)")
    p.add_argument("--unreferenced", action="store_true", help="also list unreferenced tables")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_scan)
    for name, p in sub.choices.items():
        p.prog = f"vigil schema {name}"
        p.error = parser.error  # type: ignore[method-assign]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vigil schema` (the dispatcher handles ConfigError and exit codes)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except _Unreachable as exc:
        print(f"vigil schema {args.command}: error: cannot inspect {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ValueError as exc:  # pydantic validation of flag combinations
        raise ConfigError(None, "", str(exc).splitlines()[0]) from None
