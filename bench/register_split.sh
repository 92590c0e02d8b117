#!/usr/bin/env bash
# Where REGISTER's CPU goes: user and system time per registration, at a
# fixed open-loop rate, Parapet against Kamailio in the same run and set-up
# as bench/capacity.sh (each server on CPU 0, SIPp on CPU 1; Kamailio with
# four workers and registrations in memory only, Parapet writing each one
# durably before its 200). A warm-up closed loop registers everyone first;
# then RATE registrations a second for SECS seconds are measured.
#   bench/register_split.sh             # RATE=5000 SECS=10
#   RATE=10000 bench/register_split.sh
# Needs: Debian's sip-tester, kamailio, kamailio-sqlite-modules, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=10000
RATE=${RATE:-5000}
SECS=${SECS:-10}
. bench/lib.sh
need_tools sip-tester kamailio kamailio-sqlite-modules sqlite3
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
make_users
# User and system clock ticks of the given processes.
ticks() { local u=0 s=0 a b; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' /proc/$p/stat); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
run() { # name port pids...
    local name=$1 port=$2
    shift 2
    (cd "$work" && taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/register.xml" -inf users.csv -m 10000000 -r 20000 -l 400 -t u1 \
        -auth_uri example.test -i 127.0.0.1 -p 16100 -nostdin -timeout 10s 127.0.0.1:"$port" >/dev/null 2>&1) || true
    local u0 s0 u1 s1
    read -r u0 s0 < <(ticks "$@")
    (cd "$work" && taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/register.xml" -inf users.csv -m $((RATE * SECS)) -r "$RATE" -l 5000 -t u1 \
        -auth_uri example.test -i 127.0.0.1 -p 16101 -trace_stat -stf "$name.stat" -nostdin -timeout $((SECS + 10))s 127.0.0.1:"$port" >/dev/null 2>&1) || true
    read -r u1 s1 < <(ticks "$@")
    local ok
    ok=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") s = i } END { print $s + 0 }' "$work/$name.stat")
    awk -v n="$ok" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v clk="$clk" -v name="$name" \
        'BEGIN { n = (n > 0 ? n : 1); printf "| %s | %d | %.1f | %.1f | %.1f |\n", name, n, u * 1e6 / clk / n, s * 1e6 / clk / n, (u + s) * 1e6 / clk / n }'
}
echo "| server (REGISTER at $RATE/s for $SECS s) | completed | user µs | system µs | total µs |"
echo "|---|---|---|---|---|"
PARAPET_PREFIX="taskset -c 0" start_parapet 15360 15390
run parapet 15360 "$ppid"
kill "$ppid"
wait "$ppid" 2>/dev/null || true
sed -e 's/^children=1/children=4/' -e 's/modparam("usrloc", "db_mode", 1)/modparam("usrloc", "db_mode", 0)/' \
    bench/kamailio.cfg >"$work/kamailio-split.cfg"
start_kamailio "$work/kamailio-split.cfg" 15370 512 standard auth_db usrloc
for k in $kpids; do taskset -a -p -c 0 "$k" >/dev/null; done
# shellcheck disable=SC2086
run kamailio 15370 $kpids
