"""`vigil-forecaster`: fit forecasts on a schedule and serve them on /metrics and as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from vigil.forecaster.config import ForecasterConfig, load_config
from vigil.forecaster.engine import Engine
from vigil.forecaster.metrics import ForecastCollector
from vigil.forecaster.model import quiet_prophet

from vigil.service import (
    ArgumentParser,
    add_service_flags,
    add_standard_routes,
    exit_on_error,
    run_app,
    setup_logging,
)

__all__ = ["ENGINE", "Settings", "create_app", "main", "parse_shard"]

log = logging.getLogger("vigil.forecaster")

ENGINE = web.AppKey("engine", Engine)


@dataclass
class Settings:
    """What the service needs: the parsed config, its shard and how to run fits."""

    config: ForecasterConfig
    shard: tuple[int, int] = (0, 1)
    use_processes: bool = True
    run_loop: bool = True


SETTINGS_KEY = web.AppKey("settings", Settings)


def parse_shard(value: str) -> tuple[int, int]:
    """Parse `i/n` with 0 <= i < n."""
    import argparse

    idx, sep, total = value.partition("/")
    if not sep or not idx.isdigit() or not total.isdigit() or not 0 <= int(idx) < int(total):
        raise argparse.ArgumentTypeError(f"invalid shard {value!r}: want i/n with 0 <= i < n")
    return int(idx), int(total)


def _jsonable(value: Any) -> Any:
    """Floats as JSON allows them: +Inf/-Inf/NaN become strings, the way Prometheus does."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def forecasts_json(engine: Engine, *, include_band: bool) -> dict[str, Any]:
    """The /api/v1/forecasts body: every forecast, its series, age and (optionally) the band."""
    now = engine.clock()
    data = []
    for f in engine.snapshot(now):
        for s in f["series"]:
            grid = s.pop("grid", None)
            band = s.pop("band", None)
            if include_band and grid is not None and band is not None:
                s["forecast"] = [[float(t), float(y), float(lo), float(hi)]
                                 for t, y, lo, hi in zip(grid, *band, strict=True)]
        data.append(f)
    return {"status": "success", "time": now, "data": _jsonable(data)}


async def api_forecasts(request: web.Request) -> web.Response:
    """GET /api/v1/forecasts[?band=1][&forecast=name]: the current forecasts as JSON."""
    engine = request.app[ENGINE]
    body = await asyncio.get_running_loop().run_in_executor(
        None, lambda: forecasts_json(engine, include_band=request.query.get("band") in ("1", "true")))
    wanted = request.query.get("forecast")
    if wanted:
        body["data"] = [f for f in body["data"] if f["name"] == wanted]
    return web.json_response(body)


async def _loop_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[SETTINGS_KEY]
    engine = app[ENGINE]
    if settings.use_processes:
        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(max_workers=settings.config.workers,
                                       mp_context=multiprocessing.get_context("spawn"),
                                       initializer=quiet_prophet)

        engine.executor_factory = new_pool
    stop = asyncio.Event()

    async def loop() -> None:
        running = asyncio.get_running_loop()
        while not stop.is_set():
            started = time.monotonic()
            try:
                await running.run_in_executor(None, engine.run_cycle)
            except Exception:
                log.exception("forecast cycle failed")
            wait = max(0.0, settings.config.interval - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass

    task = asyncio.create_task(loop()) if settings.run_loop else None
    yield
    stop.set()
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if engine.executor is not None:
        engine.executor.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings, engine: Engine | None = None) -> web.Application:
    """Build the forecaster's aiohttp app; its background loop starts with the app."""
    app = web.Application()
    engine = engine or Engine(settings.config, shard=settings.shard)
    app[ENGINE] = engine
    app[SETTINGS_KEY] = settings
    registry = CollectorRegistry()
    registry.register(ForecastCollector(engine))

    async def ready() -> tuple[bool, str]:
        if engine.cycles == 0:
            return False, "first forecast cycle has not finished"
        return True, ""

    add_standard_routes(app, registry, ready)
    app.router.add_get("/api/v1/forecasts", api_forecasts)
    app.cleanup_ctx.append(_loop_ctx)
    return app


def _main(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog="vigil-forecaster", description=__doc__)
    add_service_flags(parser, default_config="forecasts.yml", default_listen="127.0.0.1:9116")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="I/N",
                        help="fit only series whose stable hash mod N is I (default 0/1)")
    parser.add_argument("--prometheus.url", dest="prometheus_url", default=None,
                        help="override prometheus.url from the config file")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    quiet_prophet()
    config = load_config(Path(args.config_file))
    if args.prometheus_url:
        config.prometheus.url = args.prometheus_url
    app = create_app(Settings(config=config, shard=args.shard))
    run_app(app, args.listen_address, "vigil.forecaster")
    return 0


main = exit_on_error(_main)
