#!/usr/bin/env bash
# Parapet on PostgreSQL against Parapet on SQLite and Kamailio on the same
# PostgreSQL (usrloc db_mode 3, auth_db), same machine, same run, SIPp load
# on 127.0.0.1: REGISTER with digest for USERS users, then MESSAGE relayed
# to a registered receiver. CPU per SIP request counts the server's
# processes and, for the PostgreSQL runs, every process of the database
# server (the postmaster and its backends) — database included.
#   bench/postgres.sh                 # USERS=5000 RATE=500 MESSAGES=5000
#   USERS=2000 MESSAGES=2000 bench/postgres.sh
#   PG_STATS=1 bench/postgres.sh      # also what the database spent its time on
# Both servers reach PostgreSQL over TCP on 127.0.0.1 without TLS (the same
# cost for both); fsync and synchronous_commit on.
# Needs: Debian's sip-tester, kamailio, kamailio-postgres-modules,
# postgresql.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-5000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-5000}
PARAPET_PORT=${PARAPET_PORT:-15260}
KAMAILIO_PORT=${KAMAILIO_PORT:-15270}
ADMIN_PORT=${ADMIN_PORT:-15290}
PG_PORT=${PG_PORT:-15432}

. bench/lib.sh
need_tools sip-tester kamailio kamailio-postgres-modules postgresql
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/db_postgres.so ] ||
    { echo "bench: apt-get install kamailio-postgres-modules" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
chmod 755 "$work"
trap 'set +e; [ -n "${pgpid:-}" ] && kill -INT "$pgpid" 2>/dev/null; kill $(jobs -p) 2>/dev/null; sleep 1; if [ -n "${KEEP:-}" ]; then echo "bench: files in $work" >&2; else rm -rf "$work"; fi; true' EXIT
make_users

start_postgres
pg -c "CREATE ROLE parapet LOGIN" -c "CREATE DATABASE parapet OWNER parapet" \
    -c "CREATE ROLE kamailio LOGIN" -c "CREATE DATABASE kamailio OWNER kamailio"

# Parapet on PostgreSQL, then on SQLite.
export PARAPET_DATABASE="host=127.0.0.1 port=$PG_PORT dbname=parapet user=parapet sslmode=disable"
PARAPET_TOP_TOML="database = \"$PARAPET_DATABASE\"" parapet_serve pg example.test "$PARAPET_PORT" "$ADMIN_PORT"
sleep 2
parapet_provision pg "$ADMIN_PORT" "$work/users.tsv"
parapet_pg_pids() { echo "$ppid $(pg_pids)"; }
if [ -n "${PG_STATS:-}" ]; then pg -d parapet -c "CREATE EXTENSION pg_stat_statements"; fi
p=$(bench_server parapet-pg "$PARAPET_PORT" 16500 parapet_pg_pids pg_pids)
# PG_STATS=1: what the database spent its time on for Parapet.
if [ -n "${PG_STATS:-}" ]; then
    pg -d parapet -c "SELECT calls, round(total_exec_time) AS ms, round(total_exec_time * 1000 / calls) AS us_per_call, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'parapet')
        ORDER BY total_exec_time DESC LIMIT 15" >&2
fi
kill "$ppid"; wait "$ppid" 2>/dev/null || true
unset PARAPET_DATABASE

parapet_serve sqlite example.test "$PARAPET_PORT" "$ADMIN_PORT"
sleep 2
parapet_provision sqlite "$ADMIN_PORT" "$work/users.tsv"
parapet_pids() { echo "$ppid"; }
s=$(bench_server parapet-sqlite "$PARAPET_PORT" 16600 parapet_pids)
kill "$ppid"; wait "$ppid" 2>/dev/null || true

# Kamailio on the same PostgreSQL.
for schema in standard auth_db usrloc; do
    psql -h "$work/pg" -p "$PG_PORT" -U kamailio -d kamailio -q -f /usr/share/kamailio/postgres/$schema-create.sql >/dev/null
done
psql -h "$work/pg" -p "$PG_PORT" -U kamailio -d kamailio -q -f "$work/kam.sql" >/dev/null
sed -e "s|DBURL|postgres://kamailio@127.0.0.1:$PG_PORT/kamailio|g" bench/kamailio-postgres.cfg > "$work/kamailio.cfg"
mkdir -p "$work/kamrun"
kamailio -f "$work/kamailio.cfg" -l "udp:127.0.0.1:$KAMAILIO_PORT" -DD -E -Y "$work/kamrun" -m 256 -M 16 >/dev/null 2>"$work/kamailio.log" &
kpid=$!
sleep 3
kamailio_pg_pids() { echo "$(pgrep -f "kamailio -f $work/kamailio.cfg" | tr '\n' ' ') $(pg_pids)"; }
k=$(bench_server kamailio-pg "$KAMAILIO_PORT" 16700 kamailio_pg_pids pg_pids)
kill "$kpid"; wait "$kpid" 2>/dev/null || true

read -r _ prok preg prp50 prp99 _ pmok pmsg pmp50 pmp99 pregdb pmsgdb <<<"$p"
read -r _ srok sreg srp50 srp99 _ smok smsg smp50 smp99 <<<"$s"
read -r _ krok kreg krp50 krp99 _ kmok kmsg kmp50 kmp99 kregdb kmsgdb <<<"$k"
cat <<TABLE
| measure ($USERS users, $MESSAGES messages, $RATE/s) | Parapet on PostgreSQL | Parapet on SQLite | Kamailio on PostgreSQL | Parapet-PG/Kamailio |
|---|---|---|---|---|
| registrations completed | $prok | $srok | $krok | |
| CPU µs per request sent, REGISTER with digest (database included) | $preg | $sreg | $kreg | $(ratio "$preg" "$kreg") |
| of which the database's processes | $pregdb | | $kregdb | |
| REGISTER latency p50 / p99 (ms) | $prp50 / $prp99 | $srp50 / $srp99 | $krp50 / $krp99 | |
| messages completed | $pmok | $smok | $kmok | |
| CPU µs per request sent, MESSAGE relayed (database included) | $pmsg | $smsg | $kmsg | $(ratio "$pmsg" "$kmsg") |
| of which the database's processes | $pmsgdb | | $kmsgdb | |
| MESSAGE latency p50 / p99 (ms) | $pmp50 / $pmp99 | $smp50 / $smp99 | $kmp50 / $kmp99 | |
TABLE
