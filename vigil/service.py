"""Plumbing every Vigil service shares: Prometheus-style flags, logging, health routes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

__all__ = [
    "ArgumentParser",
    "ReadyCheck",
    "add_service_flags",
    "add_standard_routes",
    "parse_listen_address",
    "run_app",
    "setup_logging",
]

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]

LOG_LEVELS = ("debug", "info", "warn", "error")


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_listen_address(value: str) -> tuple[str, int]:
    """Parse `host:port` (or `[v6]:port`, or `:port` for all interfaces)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid listen address {value!r}: want host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def add_service_flags(
    parser: argparse.ArgumentParser, *, default_config: str | None, default_listen: str
) -> None:
    """Add --config.file, --web.listen-address and --log.level the way Prometheus spells them."""
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=default_config,
        help="path to the YAML configuration file"
        + (" (default: embedded defaults)" if default_config is None else ""),
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        type=parse_listen_address,
        default=parse_listen_address(default_listen),
        metavar="HOST:PORT",
        help=f"address to serve HTTP on (default: {default_listen})",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=LOG_LEVELS,
        default="info",
        help="log level (default: info)",
    )


def setup_logging(level: str) -> None:
    """Log to stderr in logfmt-like lines, the way Prometheus binaries do."""
    numeric = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}[level]
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
    )
    # aiohttp's access log is noisy at 1 s scrape intervals
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))


def add_standard_routes(
    app: web.Application, registry: CollectorRegistry, ready: ReadyCheck | None = None
) -> None:
    """Serve /-/healthy, /-/ready and /metrics from the given registry."""

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready_handler(_: web.Request) -> web.Response:
        if ready is None:
            return web.Response(text="Ready.\n")
        ok, reason = await ready()
        if ok:
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text=f"Not ready: {reason}\n")

    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready_handler)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))


def run_app(app: web.Application, listen: tuple[str, int], name: str) -> None:
    """Run an aiohttp app until SIGINT/SIGTERM."""
    host, port = listen
    logging.getLogger(name).info("listening on http://%s:%d", host, port)
    web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)


def exit_on_error(func: Callable[[Sequence[str] | None], int]) -> Callable[..., NoReturn]:
    """Wrap a main(): ConfigError and OSError become one line on stderr, never a traceback."""
    from vigil.config import ConfigError

    def wrapper(argv: Sequence[str] | None = None) -> NoReturn:
        prog = "vigil"
        try:
            code = func(argv)
        except ConfigError as exc:
            print(f"{prog}: config error: {exc}", file=sys.stderr)
            code = 2
        except OSError as exc:
            print(f"{prog}: error: {exc.strerror or exc}"
                  + (f": {exc.filename}" if getattr(exc, "filename", None) else ""),
                  file=sys.stderr)
            code = 1
        except KeyboardInterrupt:
            code = 130
        sys.exit(code)

    wrapper.__doc__ = func.__doc__
    return wrapper
