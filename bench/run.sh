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

bench_server() { # name port receiver_port pids...
    local name=$1 port=$2 rport=$3; shift 3
    local pids="$*"
    local c0; c0=$(cpu_us $pids)
    read -r rok rmade rp50 rp99 < <(sipp_run "$name" "$port" register.xml users.csv "$USERS" 16000 example.test)
    local c1; c1=$(cpu_us $pids)
    # Memory in steady state with the bindings: after transaction state from
    # the burst has expired (timer J is 32 s over UDP).
    sleep 35
    local pss; pss=$(pss_kib $pids)
    sipp_run "$name" "$port" register.xml receiver.csv 1 "$rport" example.test >/dev/null
    (cd "$work" && exec sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p "$rport" -nostdin -timeout 600s 127.0.0.1:"$port" >/dev/null 2>&1) &
    local uas=$!
    sleep 1
    local c2; c2=$(cpu_us $pids)
    read -r mok mmade mp50 mp99 < <(sipp_run "$name" "$port" message_uac.xml users.csv "$MESSAGES" 17000 receiver@example.test)
    local c3; c3=$(cpu_us $pids)
    kill $uas 2>/dev/null || true
    # Per SIP request sent by SIPp (2 per registration, 2 per message), whether
    # or not it succeeded: a server that fails requests is not made to look
    # more expensive per success.
    local reg_us msg_us
    reg_us=$(awk -v c=$((c1 - c0)) -v n="$rmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    msg_us=$(awk -v c=$((c3 - c2)) -v n="$mmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    echo "$name $rok $reg_us $rp50 $rp99 $pss $mok $msg_us $mp50 $mp99"
}

start_parapet "$PARAPET_PORT" "$ADMIN_PORT"
p=$(bench_server parapet "$PARAPET_PORT" 16500 $ppid)
kill $ppid; wait $ppid 2>/dev/null || true
if [ "${ONLY:-}" = parapet ]; then
    # Parapet alone (a quick look while working; ratios need both in one run).
    echo "$p"
    exit 0
fi

# Kamailio: the same job (bench/kamailio.cfg), SQLite for credentials and bindings.
start_kamailio bench/kamailio.cfg "$KAMAILIO_PORT" 256 standard auth_db usrloc
k=$(bench_server kamailio "$KAMAILIO_PORT" 16600 $kpids)
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
