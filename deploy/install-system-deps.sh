#!/usr/bin/env bash
# Install the binaries Vigil runs and is tested against, from Debian's packages,
# when they are missing: Prometheus and Alertmanager, the third-party exporters the
# presets are proven on, Chromium for the console's browser tests, supervisor for the
# reference stack, and openssl for the TLS tests.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have prometheus && have promtool || need+=(prometheus)
have prometheus-alertmanager && have amtool || need+=(prometheus-alertmanager)
have prometheus-node-exporter || need+=(prometheus-node-exporter)
have prometheus-postgres-exporter || need+=(prometheus-postgres-exporter)
have prometheus-blackbox-exporter || need+=(prometheus-blackbox-exporter)
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
have supervisord || need+=(supervisor)
# the exporter's TLS tests mint short-lived certificates with the openssl CLI
have openssl || need+=(openssl)
# the preset tests start their own PostgreSQL cluster with initdb/pg_ctl
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
# the dashboard schema is regenerated from the npm registry's @grafana/schema in a test
have npm || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then
  echo "vigil: system packages already installed"
  exit 0
fi
if ! have apt-get; then
  echo "vigil: cannot install ${need[*]}: this is not a Debian-like system (no apt-get)." >&2
  echo "vigil: install these Debian package equivalents so their binaries are on PATH, then re-run." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  if have sudo && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "vigil: cannot install ${need[*]}: not root. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "vigil: installing ${need[*]} from Debian packages"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
# Debian's packages start services where systemd runs; Vigil starts its own instances.
