#!/usr/bin/env bash
# A pool of three Parapet nodes (pool_mode = "active") on one PostgreSQL
# against three Kamailio instances on the same PostgreSQL (usrloc db_mode 3,
# auth_db), same machine, same run, SIPp load from 127.0.0.1:
#   - REGISTER with digest for USERS users, a third through each node at
#     once (RATE in total);
#   - MESSAGE to a receiver registered with the first node, sent through
#     the second and third at once (RATE in total): on Parapet each goes
#     to the node holding the receiver's binding, which sends it on;
#     Kamailio's instances read the location from the database and send
#     it straight to the receiver;
#   - how the change log keeps up: each node's parapet_pool_change_lag_seconds
#     histogram (from another node's write of a change to its re-read handed
#     to this node's core), summed over the three for the registration
#     phase — RATE registrations a second, each a change the two other
#     nodes follow.
# CPU per SIP request counts every server process (three nodes or three
# Kamailios) and every process of the database server.
#   bench/pool.sh                 # USERS=6000 RATE=500 MESSAGES=6000 IDLE_SECS=10
#   PG_SQL="DROP TRIGGER changes_notify ON changes" bench/pool.sh   # an experiment
# Needs: Debian's sip-tester, kamailio, kamailio-postgres-modules,
# postgresql; the addresses 127.0.0.2-4 (Linux answers all of 127/8).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-6000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-6000}
PORT=${PORT:-15360}
ADMIN_PORT=${ADMIN_PORT:-15390}
PG_PORT=${PG_PORT:-15433}
HOSTS=(127.0.0.2 127.0.0.3 127.0.0.4)

. bench/lib.sh
need_tools sip-tester kamailio kamailio-postgres-modules postgresql
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/db_postgres.so ] ||
    { echo "bench: apt-get install kamailio-postgres-modules" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
chmod 755 "$work"
trap 'set +e; kill $(jobs -p) 2>/dev/null; pkill -f "kamailio -f $work/" 2>/dev/null; [ -n "${pgpid:-}" ] && kill -INT "$pgpid" 2>/dev/null; sleep 2; pkill -9 -f "postgres -D $work/pg/data" 2>/dev/null; if [ -n "${KEEP:-}" ]; then echo "bench: files in $work" >&2; else rm -rf "$work"; fi; true' EXIT
make_users
# The users split in three, each part in a directory of its own (SIPp runs
# at the same time each need one).
for i in 0 1 2; do
    mkdir -p "$work/n$i"
    { echo SEQUENTIAL; awk -v i=$i 'NR > 1 && (NR - 2) % 3 == i' "$work/users.csv"; } > "$work/n$i/users.csv"
done
third=$((USERS / 3))

start_postgres
pg -c "CREATE ROLE parapet LOGIN" -c "CREATE DATABASE parapet OWNER parapet" \
    -c "CREATE ROLE kamailio LOGIN" -c "CREATE DATABASE kamailio OWNER kamailio"

ready() { # admin_port
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz")" = 200 ] && return 0
        sleep 0.2
    done
    echo "bench: a node never said ready" >&2; exit 1
}
# The three nodes' change-lag buckets summed: "le count" lines.
lag_buckets() {
    for i in 0 1 2; do curl -s "http://127.0.0.1:$((ADMIN_PORT + i))/metrics"; done |
        awk -F'[{}" ]+' '/^parapet_pool_change_lag_seconds_bucket/ {n[$3] += $NF} END {for (k in n) print k, n[k]}' | sort -g
}
# p50 and p99 (ms: the bound of the bucket they fall in) of the changes
# counted between two lag_buckets readings, and how many: "p50 p99 n".
lag_pct() { # before after
    awk 'NR == FNR {b[$1] = $2; next} {le[++n] = $1; c[n] = $2 - b[$1]} END {
        total = c[n]
        for (i = 1; i <= n; i++) {
            if (p50 == "" && c[i] >= 0.5 * total) p50 = le[i]
            if (p99 == "" && c[i] >= 0.99 * total) p99 = le[i]
        }
        printf "%s %s %d\n", (p50 == "+Inf" ? p50 : p50 * 1000), (p99 == "+Inf" ? p99 : p99 * 1000), total
    }' "$1" "$2"
}

# Parapet: three nodes, each with UDP and TLS on an address of its own
# (the nodes reach each other over TLS), the first one's data directory
# (keys/, pki/) copied to the others.
url="host=127.0.0.1 port=$PG_PORT dbname=parapet user=parapet sslmode=disable"
# (`parapet admin recover` writes the break-glass administrator there.)
export PARAPET_DATABASE=$url
ppids=()
for i in 0 1 2; do
    h=${HOSTS[$i]}
    if [ "$i" -gt 0 ]; then cp -a "$work/n0-data" "$work/n$i-data"; fi
    # (No media relay: three on one machine would share its ports.)
    PARAPET_HOST=$h PARAPET_EXTRA_LISTEN="tls://$h:$((PORT + 10))" \
        PARAPET_EXTRA_TOML="[relay]
listen = []" PARAPET_TOP_TOML="database = \"$url\"
node_id = \"fe-$i\"
pool_mode = \"active\"" parapet_serve "n$i" example.test "$PORT" "$((ADMIN_PORT + i))"
    ppids+=("$ppid")
    ready "$((ADMIN_PORT + i))"
    if [ "$i" = 0 ]; then parapet_provision n0 "$ADMIN_PORT" "$work/users.tsv"; fi
done
sleep 3
parapet_pids() { echo "${ppids[*]} $(pg_pids)"; }

# One server set's figures (its three listen on HOSTS, PORT): "name
# reg_ok reg_made reg_us msg_ok msg_made msg_us lag_p50 lag_p99 changes".
bench_pool() { # name pidsfn receiver_port lag(yes|no) database
    local name=$1 pidsfn=$2 rport=$3 lag=$4 db=$5
    local c0 c1 c2 c3 d0 d1 d2 d3 i pids=()
    # What the set costs doing nothing (heartbeats, polls, saves): CPU ms
    # a second over IDLE_SECS, the database's on its own, before any load.
    # And the transactions its database committed meanwhile (the
    # statistics reach pg_stat_database within a second of each).
    local i0 i1 j0 j1 x0 x1 idle=${IDLE_SECS:-10}
    local xacts="SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'"
    # With PG_STATS, what those were (Parapet's database only).
    local stats=""
    if [ -n "${PG_STATS:-}" ] && [ "$db" = parapet ]; then stats=yes; fi
    [ -z "$stats" ] || pg -d parapet -At -c "SELECT pg_stat_statements_reset()" >/dev/null
    x0=$(pg -At -c "$xacts")
    j0=$(cpu_us $(pg_pids)); i0=$(cpu_us $($pidsfn))
    sleep "$idle"
    i1=$(cpu_us $($pidsfn)); j1=$(cpu_us $(pg_pids))
    x1=$(pg -At -c "$xacts")
    if [ -n "$stats" ]; then
        echo "idle, $idle s: statements by calls" >&2
        pg -d parapet -c "SELECT calls, round(total_exec_time::numeric, 1) AS ms, left(regexp_replace(query, '\s+', ' ', 'g'), 120) AS query
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'parapet')
            ORDER BY calls DESC LIMIT 20" >&2
    fi
    local idle_ms idle_db
    idle_ms=$(awk -v c=$((i1 - i0)) -v s="$idle" 'BEGIN {printf "%.1f", c / 1000 / s}')
    idle_db=$(awk -v c=$((j1 - j0)) -v s="$idle" 'BEGIN {printf "%.1f", c / 1000 / s}')
    local idle_tps
    idle_tps=$(awk -v c=$((x1 - x0)) -v s="$idle" 'BEGIN {printf "%.1f", c / s}')
    if [ "$lag" = yes ]; then lag_buckets > "$work/lag0"; fi
    d0=$(cpu_us $(pg_pids))
    c0=$(cpu_us $($pidsfn))
    for i in 0 1 2; do
        SIPP_WORK="$work/n$i" SIPP_DEST=${HOSTS[$i]} SIPP_RATE=$((RATE / 3)) \
            sipp_run "$name-$i" "$PORT" register.xml users.csv "$third" $((16000 + i)) example.test > "$work/$name-reg$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
    c1=$(cpu_us $($pidsfn))
    d1=$(cpu_us $(pg_pids))
    if [ "$lag" = yes ]; then sleep 1; lag_buckets > "$work/lag1"; fi
    SIPP_DEST=${HOSTS[0]} sipp_run "$name" "$PORT" register.xml receiver.csv 1 "$rport" example.test >/dev/null
    (cd "$work" && exec sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p "$rport" -nostdin -timeout 600s "${HOSTS[0]}:$PORT" >/dev/null 2>&1) &
    local uas=$!
    sleep 2
    d2=$(cpu_us $(pg_pids))
    c2=$(cpu_us $($pidsfn))
    pids=()
    for i in 1 2; do
        SIPP_WORK="$work/n$i" SIPP_DEST=${HOSTS[$i]} SIPP_RATE=$((RATE / 2)) \
            sipp_run "$name-$i" "$PORT" message_uac.xml users.csv $((MESSAGES / 2)) $((17000 + i)) receiver@example.test > "$work/$name-msg$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
    c3=$(cpu_us $($pidsfn))
    d3=$(cpu_us $(pg_pids))
    kill "$uas" 2>/dev/null || true
    local rok=0 rmade=0 mok=0 mmade=0 ok made
    for i in 0 1 2; do read -r ok made _ < "$work/$name-reg$i"; rok=$((rok + ok)); rmade=$((rmade + made)); done
    for i in 1 2; do read -r ok made _ < "$work/$name-msg$i"; mok=$((mok + ok)); mmade=$((mmade + made)); done
    # Per SIP request sent (2 per registration, 2 per message).
    local reg_us msg_us lagf="n/a n/a 0"
    reg_us=$(awk -v c=$((c1 - c0)) -v n="$rmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    msg_us=$(awk -v c=$((c3 - c2)) -v n="$mmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    # Of which the database server's.
    local reg_db msg_db
    reg_db=$(awk -v c=$((d1 - d0)) -v n="$rmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    msg_db=$(awk -v c=$((d3 - d2)) -v n="$mmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    if [ "$lag" = yes ]; then lagf=$(lag_pct "$work/lag0" "$work/lag1"); fi
    echo "$name $rok $rmade $reg_us $mok $mmade $msg_us $lagf $reg_db $msg_db $idle_ms $idle_db $idle_tps"
}

if [ -n "${PG_STATS:-}" ]; then pg -d parapet -c "CREATE EXTENSION pg_stat_statements"; fi
# PG_SQL='...': run on Parapet's database once the nodes serve, before the
# load (an experiment: e.g. a trigger dropped to see what it costs).
if [ -n "${PG_SQL:-}" ]; then pg -d parapet -c "$PG_SQL"; fi
p=$(bench_pool parapet parapet_pids 16500 yes parapet)
# PG_STATS=1: what the database spent its time on for Parapet.
if [ -n "${PG_STATS:-}" ]; then
    pg -d parapet -c "SELECT calls, round(total_exec_time) AS ms, round(total_exec_time * 1000 / calls) AS us_per_call, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'parapet')
        ORDER BY total_exec_time DESC LIMIT 15" >&2
    pg -d parapet -c "SELECT relname, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables
        WHERE seq_scan > 0 ORDER BY seq_tup_read DESC LIMIT 8" >&2
fi
for pid in "${ppids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done

# Kamailio: three instances on the same PostgreSQL, four workers each.
for schema in standard auth_db usrloc; do
    psql -h "$work/pg" -p "$PG_PORT" -U kamailio -d kamailio -q -f /usr/share/kamailio/postgres/$schema-create.sql >/dev/null
done
psql -h "$work/pg" -p "$PG_PORT" -U kamailio -d kamailio -q -f "$work/kam.sql" >/dev/null
sed -e "s|DBURL|postgres://kamailio@127.0.0.1:$PG_PORT/kamailio|g" bench/kamailio-postgres.cfg > "$work/kamailio.cfg"
for i in 0 1 2; do
    mkdir -p "$work/kamrun$i"
    kamailio -f "$work/kamailio.cfg" -l "udp:${HOSTS[$i]}:$PORT" -DD -E -Y "$work/kamrun$i" -m 256 -M 16 >/dev/null 2>"$work/kamailio$i.log" &
done
sleep 3
kamailio_pids() { echo "$(pgrep -f "kamailio -f $work/kamailio.cfg" | tr '\n' ' ') $(pg_pids)"; }
k=$(bench_pool kamailio kamailio_pids 16700 no kamailio)
pkill -f "kamailio -f $work/kamailio.cfg" || true

read -r _ prok prmade preg pmok pmmade pmsg plag50 plag99 pchanges pregdb pmsgdb pidle pidledb pidletps <<<"$p"
read -r _ krok krmade kreg kmok kmmade kmsg _ _ _ kregdb kmsgdb kidle kidledb kidletps <<<"$k"
cat <<TABLE
| measure (3 nodes, $USERS users, $MESSAGES messages, $RATE/s in all) | Parapet, 3 nodes | Kamailio, 3 instances | Parapet/Kamailio |
|---|---|---|---|
| registrations completed / sent | $prok / $prmade | $krok / $krmade | |
| CPU µs per request sent, REGISTER with digest (database included) | $preg | $kreg | $(ratio "$preg" "$kreg") |
| of which the database server's | $pregdb | $kregdb | $(ratio "$pregdb" "$kregdb") |
| messages completed / sent (sent through the 2nd and 3rd) | $pmok / $pmmade | $kmok / $kmmade | |
| CPU µs per request sent, MESSAGE relayed (database included) | $pmsg | $kmsg | $(ratio "$pmsg" "$kmsg") |
| of which the database server's | $pmsgdb | $kmsgdb | $(ratio "$pmsgdb" "$kmsgdb") |
| change propagation p50 / p99 (ms, bucket bound), changes followed | $plag50 / $plag99, $pchanges | | |
| idle before the load: CPU ms a second (of which the database server's) | $pidle ($pidledb) | $kidle ($kidledb) | $(ratio "$pidle" "$kidle") |
| idle before the load: transactions a second committed | $pidletps | $kidletps | |
TABLE
