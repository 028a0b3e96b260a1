"""The `vigil` command: one entry point that dispatches to each component's subcommand.

Subcommands are imported lazily so that `vigil --help` and a bad flag answer at once,
without importing Prophet or SQLAlchemy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from vigil import __version__

__all__ = ["SUBCOMMANDS", "main"]

# name -> (module, function, one-line help). Each function takes argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("vigil.init", "main", "write a starter configuration for your own service"),
    "demo": ("vigil.demo.stack", "main", "run the whole loop on one machine on embedded defaults"),
    "demo-target": ("vigil.demo.target", "main", "run only the demo target web API"),
    "scenarios": ("vigil.demo.scenarios", "main", "run fault scenarios on the real loop and score them"),
    "validate": ("vigil.exporter.validate", "main", "run all checks once as a deploy gate"),
    "schema": ("vigil.exporter.schema.cli", "main", "schema tools (baseline, diff)"),
    "check-config": ("vigil.checkconfig", "main", "validate a Vigil configuration file"),
    "rules": ("vigil.rulegen", "main", "generate the Prometheus rules from the service spec"),
    "forecast": ("vigil.forecaster.cli", "forecast_main", "forecast one query and plot it"),
    "backtest": ("vigil.forecaster.backtest", "main", "replay CSVs causally and score detection"),
    "remediator": ("vigil.remediator.cli", "main", "remediator tools (simulate a payload)"),
    "incidents": ("vigil.remediator.incidents_cli", "main",
                  "show an incident: group, root cause, similar incidents, recommendation, impact"),
    "dashboards": ("vigil.grafana.cli", "main", "build Grafana dashboards as JSON"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        "usage: vigil [--version] COMMAND [ARGS...]",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, (_, _, text) in SUBCOMMANDS.items()),
        "",
        "Run `vigil COMMAND --help` for a command's flags.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch `vigil COMMAND ...`."""
    from vigil.service import exit_on_error

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        print(f"vigil, version {__version__}")
        sys.exit(0)
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"vigil: error: unknown command {name!r} (see vigil --help)", file=sys.stderr)
        sys.exit(2)
    module_name, func_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vigil"):
            print(f"vigil: error: command {name!r} is not available in this build", file=sys.stderr)
            sys.exit(2)
        raise
    func = getattr(module, func_name)
    exit_on_error(lambda a: int(func(a) or 0))(rest)


if __name__ == "__main__":
    main()
