#!/usr/bin/env bash
# Capacity under overload, Parapet against Kamailio in the same run: each
# server pinned to CPU 0, SIPp to CPU 1, for USERS users, KIND=register
# (REGISTER with digest, the default) or KIND=message (MESSAGE with proxy
# authentication, relayed to a registered receiver whose SIPp answers 200).
#   1. closed loop: SIPp keeps 100 registrations outstanding for SECS seconds
#      (the server's capacity: what it completes per second);
#   2. open loop at 25%, 50% and 75% of that capacity, SECS seconds each;
#   3. sustained at 90% for 2*SECS seconds.
# A phase after the burst must not fail (no 503 once the burst is over).
# Reports registrations per second and failures per phase.
#   bench/capacity.sh                  # USERS=10000 SECS=10 KIND=register
#   KIND=message bench/capacity.sh
#   ONLY=parapet bench/capacity.sh
# Needs: Debian's sip-tester, kamailio, kamailio-sqlite-modules, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-10000}
SECS=${SECS:-10}
KIND=${KIND:-register}
RATE=0
case "$KIND" in
    register) SF=register.xml; AUTH_URI=example.test ;;
    message) SF=message_uac.xml; AUTH_URI=receiver@example.test ;;
    *) echo "bench: KIND is register or message" >&2; exit 2 ;;
esac
PARAPET_PORT=${PARAPET_PORT:-15260}
KAMAILIO_PORT=${KAMAILIO_PORT:-15270}
ADMIN_PORT=${ADMIN_PORT:-15290}

. bench/lib.sh
need_tools sip-tester kamailio kamailio-sqlite-modules sqlite3
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

# One SIPp phase on CPU 1; prints "successful failed".
phase() { # port local_port rate limit seconds tag
    local port=$1 lport=$2 rate=$3 limit=$4 secs=$5 tag=$6
    (cd "$work" && taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/$SF" -inf users.csv -m 100000000 \
        -r "$rate" -l "$limit" -t u1 -auth_uri "$AUTH_URI" -i 127.0.0.1 -p "$lport" -trace_stat -stf "$tag.stat" \
        -nostdin -timeout "${secs}s" 127.0.0.1:"$port" >/dev/null 2>&1) || true
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(C)") s = i; if ($i == "FailedCall(C)") f = i } }
               END { print $s + 0, $f + 0 }' "$work/$tag.stat"
}

# For KIND=message: the receiver registers from port 17050 and a SIPp UAS
# there answers every MESSAGE relayed to it.
receiver() { # port
    local port=$1
    [ "$KIND" = message ] || return 0
    (cd "$work" && taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/register.xml" -inf receiver.csv -m 1 -l 1 -t u1 \
        -auth_uri example.test -i 127.0.0.1 -p 17050 -nostdin -timeout 20s 127.0.0.1:"$port" >/dev/null 2>&1) || true
    (cd "$work" && exec taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p 17050 \
        -nostdin -timeout 600s 127.0.0.1:"$port" >/dev/null 2>&1) &
    uas=$!
    sleep 1
}

run_phases() { # name port
    local name=$1 port=$2
    receiver "$port"
    read -r ok failed < <(phase "$port" 17100 1000000 100 "$SECS" "$name-burst")
    local cap=$((ok / SECS))
    local line="$name $cap $failed"
    local lport=17200
    for pct in 25 50 75; do
        lport=$((lport + 1))
        read -r ok failed < <(phase "$port" "$lport" $((cap * pct / 100)) 100000 "$SECS" "$name-$pct")
        line="$line $ok $failed"
    done
    read -r ok failed < <(phase "$port" 17300 $((cap * 90 / 100)) 100000 $((2 * SECS)) "$name-90")
    [ -z "${uas:-}" ] || kill "$uas" 2>/dev/null || true
    echo "$line $ok $failed"
}

start_parapet "$PARAPET_PORT" "$ADMIN_PORT"
taskset -a -p -c 0 "$ppid" >/dev/null
p=$(run_phases parapet "$PARAPET_PORT")
kill "$ppid"; wait "$ppid" 2>/dev/null || true

if [ "${ONLY:-}" != parapet ]; then
    # Kamailio with four workers keeps registrations in memory only (with
    # SQLite write-through, Debian's db_sqlite fails writes from more than one
    # worker): the setting most favourable to it. Parapet writes each one
    # durably before its 200.
    sed -e 's/^children=1/children=4/' -e 's/modparam("usrloc", "db_mode", 1)/modparam("usrloc", "db_mode", 0)/' \
        bench/kamailio.cfg > "$work/kamailio-capacity.cfg"
    start_kamailio "$work/kamailio-capacity.cfg" "$KAMAILIO_PORT" 512 standard auth_db usrloc
    for k in $kpids; do taskset -a -p -c 0 "$k" >/dev/null; done
    k=$(run_phases kamailio "$KAMAILIO_PORT")
    kill "$kpid"; wait "$kpid" 2>/dev/null || true
fi

echo "| server ($KIND) | capacity (per second, closed loop, 100 outstanding) | burst failed | 25%: ok / failed | 50% | 75% | 90% for $((2 * SECS)) s |"
echo "|---|---|---|---|---|---|---|"
for r in "$p" ${k:+"$k"}; do
    read -r n cap bf o25 f25 o50 f50 o75 f75 o90 f90 <<<"$r"
    echo "| $n | $cap | $bf | $o25 / $f25 | $o50 / $f50 | $o75 / $f75 | $o90 / $f90 |"
done
if [ -n "${k:-}" ]; then
    read -r _ pcap _ <<<"$p"
    read -r _ kcap _ <<<"$k"
    echo "capacity ratio Parapet/Kamailio: $(ratio "$pcap" "$kcap")"
fi
