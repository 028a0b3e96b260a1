"""`vigil dashboards`: render the dashboards to JSON, check the committed JSON, list them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vigil.grafana.render import DASHBOARDS_DIR, build_all, iter_panels, render_all, stale_files

from vigil.service import ArgumentParser

__all__ = ["main"]


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vigil dashboards",
                            description="Build Vigil's Grafana dashboards as JSON.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser("build", help="write every dashboard's JSON")
    build.add_argument("--output-dir", type=Path, default=DASHBOARDS_DIR,
                       help=f"where to write the JSON (default: {DASHBOARDS_DIR})")
    build.add_argument("--forecasts.file", dest="forecasts_file", type=Path, default=None,
                       help="the forecaster's config to draw forecast panels from "
                            "(default: deploy/forecasts.yml)")
    check = sub.add_parser("check", help="exit 1 when the JSON in --output-dir is stale")
    check.add_argument("--output-dir", type=Path, default=DASHBOARDS_DIR)
    sub.add_parser("list", help="print each dashboard's uid, title and panel count")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `vigil dashboards COMMAND`."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "build":
        for path in build_all(args.output_dir, args.forecasts_file):
            print(f"wrote {path}")
        return 0
    if args.command == "check":
        stale = stale_files(args.output_dir)
        for name in stale:
            print(f"stale: {args.output_dir / name} (run `vigil dashboards build`)",
                  file=sys.stderr)
        return 1 if stale else 0
    for name, text in render_all().items():
        board = json.loads(text)
        panels = sum(1 for _ in iter_panels(board))
        print(f"{name:<20} {board['uid']:<22} {panels:>3} panels  {board['title']}")
    return 0
