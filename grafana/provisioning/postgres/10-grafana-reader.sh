#!/bin/sh
# PostgreSQL init script (docker-entrypoint-initdb.d): a read-only role for Grafana's
# incident-store datasource. Its password is read from a secret file, never written here.
# The remediator creates its tables later as POSTGRES_USER, so grant SELECT by default
# privileges rather than on tables that do not exist yet.
set -eu
reader="${VIGIL_GRAFANA_DB_USER:-vigil_grafana}"
password="$(cat "${VIGIL_GRAFANA_DB_PASSWORD_FILE:-/run/secrets/grafana_db_password}")"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader="$reader" -v password="$password" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"DBNAME" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
SQL
