#!/bin/sh
# Render Vigil's shipped configs for an installation: replace the ${VIGIL_*} placeholders of
# deploy/*.yml (which `vigil demo` rewrites for itself) with real directories.
# ${VIGIL_DEPLOY_DIR} stays the source folder: procedures.yml and the demo's code are read
# from there. Used by the
# vigil-configs.service unit and by docker-compose's `configs` service.
#
#   render-configs.sh SRC_DIR DST_DIR
#
# Environment:
#   VIGIL_SECRETS_DIR    (required) directory with one file per secret (deploy/secrets/README)
#   VIGIL_STATE_ROOT     state root, default /var/lib/vigil; each service gets ROOT/<service>
#   VIGIL_DEMO_STATE_DIR the demo target's --state-dir, default ROOT/demo-target
#   VIGIL_REMEDIATOR_DATABASE_URL_FILE
#                        when set, the remediator reads its database URL from this file
#                        (PostgreSQL for several replicas) instead of the SQLite default
# Fails, writing nothing partial, when a placeholder is left or a source file is missing.
set -eu

src="${1:?usage: render-configs.sh SRC_DIR DST_DIR}"
dst="${2:?usage: render-configs.sh SRC_DIR DST_DIR}"
: "${VIGIL_SECRETS_DIR:?set VIGIL_SECRETS_DIR to the directory holding the secret files}"
root="${VIGIL_STATE_ROOT:-/var/lib/vigil}"
demo_state="${VIGIL_DEMO_STATE_DIR:-$root/demo-target}"
db_url_file="${VIGIL_REMEDIATOR_DATABASE_URL_FILE:-}"

mkdir -p "$dst"
tmp="$(mktemp -d "$dst/.render.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

render() {  # render FILE STATE_DIR
    sed -e "s#\${VIGIL_SECRETS_DIR}#$VIGIL_SECRETS_DIR#g" \
        -e "s#\${VIGIL_STATE_DIR}#$2#g" \
        -e "s#\${VIGIL_DEMO_STATE_DIR}#$demo_state#g" \
        -e "s#\${VIGIL_DEPLOY_DIR}#$src#g" \
        "$src/$1" > "$tmp/$1"
}

render exporter.yml "$root/exporter"
render forecasts.yml "$root/forecaster"
render remediator.yml "$root/remediator"
render alertmanager.yml "$root/alertmanager"
if [ -n "$db_url_file" ]; then
    sed -i -e "s#^database_url: .*#database_url_file: $db_url_file#" "$tmp/remediator.yml"
fi

if grep -n '${VIGIL_[A-Z_]*}' "$tmp"/*.yml; then
    echo "render-configs.sh: unrendered placeholders above: extend this script" >&2
    exit 1
fi
chmod 0644 "$tmp"/*.yml
mv -f "$tmp"/*.yml "$dst"/
echo "render-configs.sh: rendered configs into $dst"
