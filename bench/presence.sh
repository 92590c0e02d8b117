#!/usr/bin/env bash
# Presence: Parapet against Kamailio's presence modules, same machine, same
# run, SIPp load on 127.0.0.1. USERS users each subscribe to CONTACTS
# presentities; one cycle is SUBSCRIBE, 407, SUBSCRIBE with credentials,
# 200, NOTIFY, 200. The USERS x CONTACTS subscriptions are then held.
# Reports server CPU µs per cycle, memory (PSS) holding the subscriptions,
# p50/p99 of the authenticated SUBSCRIBE, and Parapet/Kamailio ratios.
#   bench/presence.sh                      # USERS=10000 CONTACTS=20 RATE=500
#   USERS=1000 CONTACTS=5 bench/presence.sh
#   ONLY=parapet bench/presence.sh
# Shape: in run k (0 <= k < CONTACTS) every user subscribes to user u<k>.
# SIPp computes the digest uri from one -auth_uri per run, and Parapet
# checks it against the Request-URI, so one run has one presentity.
# Needs: Debian's sip-tester, kamailio, kamailio-sqlite-modules,
# kamailio-presence-modules, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-10000}
CONTACTS=${CONTACTS:-20}
RATE=${RATE:-500}
PARAPET_PORT=${PARAPET_PORT:-15260}
KAMAILIO_PORT=${KAMAILIO_PORT:-15270}
ADMIN_PORT=${ADMIN_PORT:-15290}

. bench/lib.sh
need_tools sip-tester kamailio kamailio-sqlite-modules kamailio-presence-modules sqlite3
ls /usr/lib/*/kamailio/modules/presence.so >/dev/null 2>&1 ||
    { echo "bench: kamailio-presence-modules is missing (apt-get install kamailio-presence-modules)" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
# KEEP=1 leaves the SIPp traces and logs in $work for a look afterwards.
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

bench_presence() { # name port pids...
    local name=$1 port=$2; shift 2
    local pids="$*" ok=0 made=0
    local c0; c0=$(cpu_us $pids)
    for k in $(seq 0 $((CONTACTS - 1))); do
        read -r rok rmade _ _ < <(sipp_run "$name-$k" "$port" subscribe_uac.xml users.csv "$USERS" $((18000 + k)) "u$k@example.test" -s "u$k")
        ok=$((ok + rok))
        made=$((made + rmade))
    done
    local c1; c1=$(cpu_us $pids)
    cat "$work/$name"-*-subscribe_uac.xml.rtt > "$work/$name.rtt"
    # Memory holding the subscriptions, once transaction state has expired.
    sleep 35
    local pss; pss=$(pss_kib $pids)
    local us; us=$(awk -v c=$((c1 - c0)) -v n="$made" 'BEGIN {printf "%.1f", (n > 0 ? c / n : 0)}')
    echo "$name $ok $made $us $(pct "$work/$name.rtt" 0.5) $(pct "$work/$name.rtt" 0.99) $pss"
}

start_parapet "$PARAPET_PORT" "$ADMIN_PORT"
# Colleagues see each other (privacy mode off), as Kamailio's force_active.
padmin main "$ADMIN_PORT" policy set privacy global presence_internal=everyone >/dev/null
p=$(bench_presence parapet "$PARAPET_PORT" $ppid)
kill $ppid; wait $ppid 2>/dev/null || true
if [ "${ONLY:-}" = parapet ]; then
    echo "$p"
    exit 0
fi

start_kamailio bench/kamailio-presence.cfg "$KAMAILIO_PORT" 1024 standard auth_db presence
k=$(bench_presence kamailio "$KAMAILIO_PORT" $kpids)
kill $kpid; wait $kpid 2>/dev/null || true

read -r _ pok pmade pus pp50 pp99 ppss <<<"$p"
read -r _ kok kmade kus kp50 kp99 kpss <<<"$k"
subs=$((USERS * CONTACTS))
cat <<TABLE
| measure ($USERS users x $CONTACTS contacts, $RATE/s) | Parapet | Kamailio | Parapet/Kamailio |
|---|---|---|---|
| cycles completed (of $subs) | $pok | $kok | |
| CPU µs per cycle sent (SUBSCRIBE with digest + NOTIFY) | $pus | $kus | $(ratio "$pus" "$kus") |
| authenticated SUBSCRIBE latency p50 / p99 (ms) | $pp50 / $pp99 | $kp50 / $kp99 | |
| memory (PSS KiB) holding the subscriptions | $ppss | $kpss | $(ratio "$ppss" "$kpss") |
TABLE
