"""vigil-exporter: run the configured checks when Prometheus scrapes /metrics.

Each scrape brings the results up to date within the scrape's own budget (the
X-Prometheus-Scrape-Timeout-Seconds header minus --scrape.timeout-offset); checks inside
their min_interval are served from cache. A failing check shows as vigil_check_success 0
and never breaks /metrics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, ProcessCollector
from vigil.exporter.checks import build_checks
from vigil.exporter.collector import ExporterCollector
from vigil.exporter.config import ExporterConfig, load_config
from vigil.exporter.runner import CheckRunner

from vigil.paths import DEPLOY_DIR
from vigil.service import (
    ArgumentParser,
    add_service_flags,
    add_standard_routes,
    exit_on_error,
    run_app,
    setup_logging,
)

__all__ = ["RUNNER", "ExporterSettings", "create_app", "main", "scrape_budget"]

log = logging.getLogger("vigil.exporter")

RUNNER = web.AppKey("runner", CheckRunner)
MIN_BUDGET = 0.1


@dataclass
class ExporterSettings:
    config: ExporterConfig
    timeout_offset: float = 0.5


def scrape_budget(header: str | None, default: float, offset: float) -> float:
    """Seconds the checks may take: Prometheus' scrape timeout minus the offset."""
    try:
        timeout = float(header) if header is not None else default
    except ValueError:
        timeout = default
    if math.isnan(timeout) or timeout <= 0:
        timeout = default
    return max(MIN_BUDGET, timeout - offset)


def scrape_middleware(settings: ExporterSettings) -> web.middleware:  # type: ignore[valid-type]
    """Before /metrics renders, run the due checks within the scrape's budget."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics" and request.method == "GET":
            budget = scrape_budget(
                request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
                settings.config.scrape_timeout,
                settings.timeout_offset,
            )
            await request.app[RUNNER].refresh(budget)
        return await handler(request)

    return middleware


def create_app(settings: ExporterSettings) -> web.Application:
    """The exporter's aiohttp app: /metrics (checks on scrape), /-/healthy, /-/ready."""
    config = settings.config
    runner = CheckRunner(build_checks(config))
    registry = CollectorRegistry()
    registry.register(
        ExporterCollector(runner, [t.name for t in config.targets], config.max_finding_series)
    )
    ProcessCollector(registry=registry)
    app = web.Application(middlewares=[scrape_middleware(settings)])
    app[RUNNER] = runner

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[RUNNER].close()

    app.cleanup_ctx.append(lifecycle)
    add_standard_routes(app, registry)
    return app


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vigil-exporter", description=__doc__.splitlines()[0])
    add_service_flags(
        parser, default_config=str(DEPLOY_DIR / "exporter.yml"), default_listen="127.0.0.1:9115"
    )
    parser.add_argument(
        "--scrape.timeout-offset",
        dest="timeout_offset",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="subtracted from Prometheus' scrape timeout to leave time for the "
        "answer (default: 0.5)",
    )
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    config = load_config(args.config_file)
    log.info("loaded %d target(s) from %s", len(config.targets), args.config_file)
    run_app(
        create_app(ExporterSettings(config, args.timeout_offset)),
        args.listen_address,
        "vigil.exporter",
    )
    return 0


main = exit_on_error(_main)


if __name__ == "__main__":
    main()
