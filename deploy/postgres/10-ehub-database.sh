#!/bin/sh
# Run by the postgres image once, when its data directory is created
# (docker-compose.yml mounts it into /docker-entrypoint-initdb.d): the hub store's
# own role and database beside Airflow's. The password comes from the environment.
set -eu
: "${EHUB_DB_PASSWORD:?set EHUB_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v ehub_password="$EHUB_DB_PASSWORD" <<'SQL'
CREATE ROLE ehub LOGIN PASSWORD :'ehub_password';
CREATE DATABASE ehub OWNER ehub;
SQL
