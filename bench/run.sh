#!/usr/bin/env bash
# Parapet against Kamailio, same machine, same run, SIPp load on 127.0.0.1:
#   REGISTER with digest authentication for USERS users, then MESSAGE between
#   registered users (proxy authentication, relay to the receiver).
# Reports server CPU time per SIP request, memory (PSS) with USERS bindings,
# p50/p99 latency of the authenticated request, and Parapet/Kamailio ratios.
#   bench/run.sh                      # USERS=10000 RATE=500 MESSAGES=5000
#   USERS=2000 MESSAGES=2000 bench/run.sh
#   ONLY=parapet bench/run.sh         # Parapet's figures alone, no ratios
# Needs: Debian's sip-tester, kamailio, kamailio-sqlite-modules, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-10000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-5000}
PARAPET_PORT=${PARAPET_PORT:-15160}
KAMAILIO_PORT=${KAMAILIO_PORT:-15170}
ADMIN_PORT=${ADMIN_PORT:-15190}

. bench/lib.sh
need_tools sip-tester kamailio kamailio-sqlite-modules sqlite3
cargo build --release -q -p parapet
work=$(mktemp -d)
# KEEP=1 leaves the SIPp traces and logs in $work for a look afterwards.
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

start_parapet "$PARAPET_PORT" "$ADMIN_PORT"
parapet_pids() { echo "$ppid"; }
p=$(bench_server parapet "$PARAPET_PORT" 16500 parapet_pids)
kill $ppid; wait $ppid 2>/dev/null || true
if [ "${ONLY:-}" = parapet ]; then
    # Parapet alone (a quick look while working; ratios need both in one run).
    echo "$p"
    exit 0
fi

# Kamailio: the same job (bench/kamailio.cfg), SQLite for credentials and bindings.
start_kamailio bench/kamailio.cfg "$KAMAILIO_PORT" 256 standard auth_db usrloc
kamailio_pids() { echo "$kpids"; }
k=$(bench_server kamailio "$KAMAILIO_PORT" 16600 kamailio_pids)
kill $kpid; wait $kpid 2>/dev/null || true

read -r _ prok preg prp50 prp99 ppss pmok pmsg pmp50 pmp99 <<<"$p"
read -r _ krok kreg krp50 krp99 kpss kmok kmsg kmp50 kmp99 <<<"$k"
cat <<TABLE
| measure ($USERS users, $MESSAGES messages, $RATE/s) | Parapet | Kamailio | Parapet/Kamailio |
|---|---|---|---|
| registrations completed | $prok | $krok | |
| CPU µs per request sent, REGISTER with digest | $preg | $kreg | $(ratio "$preg" "$kreg") |
| REGISTER latency p50 / p99 (ms) | $prp50 / $prp99 | $krp50 / $krp99 | |
| memory (PSS KiB) with the bindings, steady state | $ppss | $kpss | $(ratio "$ppss" "$kpss") |
| messages completed | $pmok | $kmok | |
| CPU µs per request sent, MESSAGE relayed | $pmsg | $kmsg | $(ratio "$pmsg" "$kmsg") |
| MESSAGE latency p50 / p99 (ms) | $pmp50 / $pmp99 | $kmp50 / $kmp99 | |
TABLE
