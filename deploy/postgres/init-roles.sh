#!/bin/sh
# bankpipe's PostgreSQL roles and logins for the Compose stack (deploy/compose.yaml).
#
# The official postgres image runs this once, when it initialises an empty data volume
# (/docker-entrypoint-initdb.d/*.sh, as POSTGRES_USER against POSTGRES_DB). It can be run
# again by hand to change the two passwords after editing .env:
#
#     docker compose up -d postgres    # recreated with the new environment
#     docker compose exec postgres sh /docker-entrypoint-initdb.d/10-bankpipe-roles.sh
#
# What it makes (docs/POSTGRES.md, "Least privilege"; sql/postgres/roles.sql):
#   bankpipe_owner, bankpipe_loader, bankpipe_reader  the NOLOGIN roles that
#       `bankpipe migrate --create-roles` grants on the tables (created here first so
#       that the migration needs no CREATEROLE: it finds them in place);
#   bankpipe_migrator  a login in bankpipe_owner, for the `migrate` service only
#       (password PG_OWNER_PASSWORD); the database is handed to bankpipe_owner so that
#       its schema is the owner's to create tables in (PostgreSQL 15+);
#   bankpipe_etl       a login in bankpipe_loader, for `serve` and `run` (password
#       PG_LOADER_PASSWORD): DML only, no DDL.
# Idempotent: roles that exist are kept, and the two passwords are set each time.
set -eu

: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${PG_OWNER_PASSWORD:?PG_OWNER_PASSWORD is not set}"
: "${PG_LOADER_PASSWORD:?PG_LOADER_PASSWORD is not set}"

# The passwords travel as psql variables (:'name' quotes them as literals), never in
# the command line or the script text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=owner_password="$PG_OWNER_PASSWORD" \
    --set=loader_password="$PG_LOADER_PASSWORD" \
    --set=db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['bankpipe_owner', 'bankpipe_loader', 'bankpipe_reader']) AS r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec
SELECT 'CREATE ROLE bankpipe_migrator LOGIN IN ROLE bankpipe_owner'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bankpipe_migrator')
\gexec
SELECT 'CREATE ROLE bankpipe_etl LOGIN IN ROLE bankpipe_loader'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bankpipe_etl')
\gexec
ALTER ROLE bankpipe_migrator PASSWORD :'owner_password';
ALTER ROLE bankpipe_etl PASSWORD :'loader_password';
ALTER DATABASE :"db" OWNER TO bankpipe_owner;
SQL
echo "bankpipe roles ready in database $POSTGRES_DB: logins bankpipe_migrator (owner), bankpipe_etl (loader)"
