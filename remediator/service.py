"""`vigil-remediator`: serve the Alertmanager webhook and the incident admin API."""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web
from vigil.remediator.app import create_app
from vigil.remediator.config import RemediatorConfig, load_config, parse_config

from vigil.service import (
    ArgumentParser,
    add_service_flags,
    exit_on_error,
    parse_listen_address,
    setup_logging,
)

__all__ = ["main", "run"]

DEFAULT_LISTEN = "127.0.0.1:9095"


def ssl_context(config: RemediatorConfig) -> ssl.SSLContext | None:
    """TLS for the listener; with client_ca_file, clients must present a certificate it signed."""
    if config.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.path(config.tls.cert_file), config.path(config.tls.key_file))
    if config.tls.client_ca_file:
        ctx.load_verify_locations(config.path(config.tls.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def run(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="vigil-remediator", description=__doc__)
    add_service_flags(parser, default_config=None, default_listen=DEFAULT_LISTEN)
    parser.add_argument("--dry-run", action="store_true",
                        help="run every procedure in dry-run mode (overrides the config)")
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    setup_logging(args.log_level)
    config = load_config(args.config_file) if args.config_file else parse_config({})
    if args.dry_run:
        config.dry_run = True
    listen = args.listen_address
    if not any(a.startswith("--web.listen-address") for a in args_list):
        listen = parse_listen_address(config.listen_address)
    app = create_app(config)
    host, port = listen
    tls = ssl_context(config)
    logging.getLogger("vigil.remediator").info(
        "listening on %s://%s:%d", "https" if tls else "http", host, port)
    web.run_app(app, host=host, port=port, ssl_context=tls, print=None, access_log=None,
                handle_signals=True)
    return 0


main = exit_on_error(run)


if __name__ == "__main__":
    main()
