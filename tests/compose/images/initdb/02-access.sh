#!/usr/bin/env bash
# as many projects do: open a trust rule for a reporting role, created with psql
set -e
# first: the rules initdb wrote would match before an appended one
sed -i '1i host reporting reporter 127.0.0.1/32 trust' "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE ROLE reporter LOGIN;
  GRANT CONNECT ON DATABASE reporting TO reporter;
SQL
