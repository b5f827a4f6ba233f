#!/bin/sh
# Runs once when the primary's data folder is created: a replication role and
# a pg_hba entry so the replica can stream.
set -eu
psql -v ON_ERROR_STOP=1 -U postgres -c "create role replicator with replication login password '$REPLICATION_PASSWORD'"
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
