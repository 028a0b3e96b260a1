#!/usr/bin/env bash
# Install the Prometheus and Alertmanager binaries Vigil runs and tests against,
# from Debian's packages, when they are missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# the exporter's TLS tests mint short-lived certificates with the openssl CLI
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then
  echo "vigil: prometheus, prometheus-alertmanager and openssl already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "vigil: cannot install ${need[*]}: this is not a Debian-like system (no apt-get)." >&2
  echo "vigil: install Prometheus and Alertmanager so that 'prometheus', 'promtool'," >&2
  echo "vigil: 'prometheus-alertmanager' and 'amtool' are on PATH, then re-run." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
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
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
# Debian's packages start services where systemd runs; Vigil starts its own instances.
