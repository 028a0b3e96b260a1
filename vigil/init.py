"""`vigil init`: a starter configuration for your own service, ready for `vigil check-config`.

Writes, into one directory: the exporter's target (exporter.yml), the remediator with one
procedure whose patterns accept only your service's own labels (remediator.yml,
procedures.yml), Alertmanager routing of `remediation="auto"` alerts to the remediator
(alertmanager.yml), Prometheus scrape jobs for the service and Vigil (prometheus.yml), the
service spec (services.yml) and fresh webhook and admin tokens (secrets/). Asks nothing
unless --interactive; never overwrites a file.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from vigil.paths import RULES_DIR
from vigil.service import ArgumentParser

__all__ = ["main", "render"]

NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}")
HTTP_PRESETS = ("opentelemetry", "prometheus-fastapi-instrumentator", "starlette_exporter",
                "prometheus-flask-exporter", "django-prometheus", "promhttp")


class InitError(Exception):
    """Bad input to `vigil init`: one line naming what and where."""


def _url(value: str) -> tuple[str, str]:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise InitError(f"--url: expected http(s)://HOST:PORT, got {value!r}")
    return parts.scheme, f"{parts.hostname}:{parts.port}"


def _dump(data: Any, header: str) -> str:
    return header + yaml.safe_dump(data, sort_keys=False, width=100)


def render(out: Path, *, service: str, url: str, preset: str, unit: str, health_path: str,
           metrics_path: str) -> dict[str, str]:
    """File name -> text of the starter configuration (paths absolute under `out`)."""
    if not NAME.fullmatch(service):
        raise InitError(f"--service: expected lower-case letters, digits, _ or - (got {service!r})")
    if preset not in HTTP_PRESETS:
        raise InitError(f"--preset: expected one of {', '.join(HTTP_PRESETS)} (got {preset!r})")
    if not health_path.startswith("/") or not metrics_path.startswith("/"):
        raise InitError("--health-path and --metrics-path must start with /")
    scheme, address = _url(url)
    base_url = f"{scheme}://{address}"
    secrets_dir = out / "secrets"
    files: dict[str, str] = {}
    files["exporter.yml"] = _dump({
        "scrape_timeout": 10,
        "targets": [{
            "name": service,
            "base_url": base_url,
            "security": {"paths": [health_path]},
            "endpoints": {"items": [{"name": "healthy", "path": health_path,
                                     "latency_budget": 0.5}]},
        }],
    }, f"# vigil-exporter: the checks of {service}. Add cors, env, journeys and schema checks:\n"
       "# docs/exporter.md. Validate: vigil check-config exporter.yml\n")
    files["procedures.yml"] = _dump({"procedures": [{
        "name": f"restart-{service}",
        "description": f"Memory of {service} grows towards its limit; a restart frees it.",
        # strict: only this service's alerts, only its own instance
        "match": ['alertname="TargetMemoryExhaustionPredicted"', f'job="{service}"',
                  'remediation="auto"'],
        "params": {"instance": {"label": "instance", "pattern": re.escape(address)}},
        "target": "${instance}",
        "requires_approval": True,
        "idempotent": True,
        "cooldown": "10m",
        "max_attempts": 2,
        "attempts_window": "1h",
        "steps": [{"name": "restart", "action": "systemd_restart", "unit": unit}],
        "verify": {"query": f'up{{job="{service}",instance="${{instance}}"}} == 1',
                   "timeout": "2m", "interval": "5s", "consecutive": 3},
    }]}, "# What the remediator may do, and only for these exact labels: docs/remediator.md.\n"
         "# requires_approval: approve each run in the console (/console) until you trust it.\n")
    files["remediator.yml"] = _dump({
        "listen_address": "127.0.0.1:9095",
        "database_url": f"sqlite:///{out / 'state' / 'remediator.db'}",
        "webhook": {"bearer_token_file": str(secrets_dir / "webhook-token")},
        "admin": {"bearer_token_file": str(secrets_dir / "admin-token")},
        "prometheus_url": "http://127.0.0.1:9090",
        "alertmanager_url": "http://127.0.0.1:9093",
        "dry_run": True,
        "procedures": "procedures.yml",
    }, "# vigil-remediator. dry_run: true shows what would run; set false when ready.\n"
       "# Use PostgreSQL for database_url in production. Console: http://127.0.0.1:9095/console\n")
    files["alertmanager.yml"] = _dump({
        "route": {"receiver": "default", "group_by": ["alertname", "job"],
                  "routes": [{"receiver": "vigil-remediator", "matchers": ['remediation="auto"'],
                              "group_wait": "10s", "group_interval": "1m",
                              "repeat_interval": "1h", "continue": True}]},
        "receivers": [
            {"name": "default"},
            {"name": "vigil-remediator", "webhook_configs": [{
                "url": "http://127.0.0.1:9095/api/v1/alerts", "send_resolved": True,
                "http_config": {"authorization": {
                    "type": "Bearer", "credentials_file": str(secrets_dir / "webhook-token")}}}]},
        ],
    }, "# Alertmanager: alerts labelled remediation=\"auto\" go to the remediator.\n"
       "# Add your own receivers (mail, chat, paging) to `default`. Check: amtool check-config\n")
    files["prometheus.yml"] = _dump({
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [str(RULES_DIR / "*.rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]},
        "scrape_configs": [
            {"job_name": service, "scheme": scheme, "metrics_path": metrics_path,
             "static_configs": [{"targets": [address]}]},
            {"job_name": "vigil-exporter", "static_configs": [{"targets": ["127.0.0.1:9115"]}]},
            {"job_name": "vigil-forecaster", "static_configs": [{"targets": ["127.0.0.1:9116"]}]},
            {"job_name": "vigil-remediator", "static_configs": [{"targets": ["127.0.0.1:9095"]}]},
        ],
    }, "# Prometheus: your service and Vigil's components, with Vigil's rules.\n"
       "# Check: promtool check config prometheus.yml\n")
    files["services.yml"] = _dump({
        "vigil": {"exporter": "vigil-exporter", "forecaster": "vigil-forecaster",
                  "remediator": "vigil-remediator"},
        "services": {service: {"job": service, "http": {"preset": preset},
                               "slo": {"objective": 0.999}, "checks": service}},
    }, "# The service spec: which services Vigil watches and where their signals are.\n"
       "# Pick the http preset of your instrumentation library and add resources: docs/services.md\n")
    return files


NEXT_STEPS = """\
Wrote a starter configuration for {service} in {out}:
{listing}
Edit next:
  1. procedures.yml: the systemd unit ({unit}) and the alerts you want remediated.
  2. services.yml: http.preset ({preset}) to your instrumentation library; add resources.
  3. exporter.yml: the paths to probe; add cors, env and schema checks (docs/exporter.md).
  4. remediator.yml: dry_run: false once the dry runs look right.
Check it:   vigil check-config {out}/exporter.yml {out}/remediator.yml
            promtool check config {out}/prometheus.yml
            amtool check-config {out}/alertmanager.yml
Run:        vigil-remediator --config.file {out}/remediator.yml   (console: /console, admin
            token in {out}/secrets/admin-token)
"""


def _ask(prompt: str, default: str) -> str:
    answer = input(f"{prompt} [{default}]: ").strip()
    return answer or default


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="vigil init", description=__doc__)
    parser.add_argument("directory", nargs="?", default="vigil",
                        help="where to write the files (default: ./vigil)")
    parser.add_argument("--service", default="app", help="your service's name (default: app)")
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="where it listens (default: http://127.0.0.1:8000)")
    parser.add_argument("--preset", default="opentelemetry", choices=HTTP_PRESETS,
                        help="its HTTP instrumentation (default: opentelemetry)")
    parser.add_argument("--unit", default=None, help="its systemd unit (default: SERVICE.service)")
    parser.add_argument("--health-path", default="/", help="a path that answers 200 (default: /)")
    parser.add_argument("--metrics-path", default="/metrics", help="default: /metrics")
    parser.add_argument("--interactive", "-i", action="store_true",
                        help="ask for each value instead of taking the flags")
    args = parser.parse_args(argv)
    if args.interactive:
        args.service = _ask("service name", args.service)
        args.url = _ask("service URL", args.url)
        args.preset = _ask(f"HTTP preset ({', '.join(HTTP_PRESETS)})", args.preset)
        args.health_path = _ask("health path", args.health_path)
    unit = args.unit or f"{args.service}.service"
    out = Path(args.directory).resolve()
    try:
        files = render(out, service=args.service, url=args.url, preset=args.preset, unit=unit,
                       health_path=args.health_path, metrics_path=args.metrics_path)
    except InitError as exc:
        print(f"vigil init: error: {exc}", file=sys.stderr)
        return 2
    written = [*files, "secrets/webhook-token", "secrets/admin-token"]
    existing = [name for name in written if (out / name).exists()]
    if existing:
        print(f"vigil init: error: {out}: {', '.join(existing)} already exist; nothing written "
              "(choose another directory or remove them)", file=sys.stderr)
        return 1
    (out / "secrets").mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / "state").mkdir(exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    for name in ("webhook-token", "admin-token"):  # two tokens: the webhook's cannot sign in
        path = out / "secrets" / name
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    listing = "".join(f"  {name}\n" for name in written)
    print(NEXT_STEPS.format(service=args.service, out=out, listing=listing, unit=unit,
                            preset=args.preset), end="")
    return 0
