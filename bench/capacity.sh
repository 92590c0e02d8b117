#!/usr/bin/env bash
# Capacity under overload, Parapet against Kamailio in the same run: each
# server pinned to CPU 0, SIPp to CPU 1, for USERS users, KIND=register
# (REGISTER with digest, the default), KIND=message (MESSAGE with proxy
# authentication, relayed to a registered receiver whose SIPp answers 200) or
# KIND=subscribe (the presence cycle: SUBSCRIBE with digest to user u0, 200,
# the first NOTIFY answered 200; every subscription is kept, and Parapet
# writes each durably before its 200).
#   1. closed loop: SIPp keeps OUTSTANDING (400) calls outstanding for SECS
#      seconds: what the server completes per second, and the CPU share of
#      its core it used meanwhile (capacity per core = the first / the second).
#      With 100 outstanding the loop is bound by latency, not by the server's
#      CPU (Parapet used about 55% of its core): see bench/README.md;
#   2. open loop at 25%, 50% and 75% of that capacity, SECS seconds each;
#   3. sustained at 90% for 2*SECS seconds.
# A phase after the burst must not fail (no 503 once the burst is over).
# Reports registrations per second and failures per phase.
#   bench/capacity.sh                  # USERS=10000 SECS=10 KIND=register
#   KIND=message bench/capacity.sh
#   KIND=subscribe bench/capacity.sh
#   ONLY=parapet bench/capacity.sh
# Parapet starts under `taskset -c 0`, so its runtime sizes itself to the one
# core it has (one worker thread), as it would on a one-core machine.
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
    subscribe) SF=subscribe_uac.xml; AUTH_URI=u0@example.test ;;
    *) echo "bench: KIND is register, message or subscribe" >&2; exit 2 ;;
esac
PARAPET_PORT=${PARAPET_PORT:-15260}
KAMAILIO_PORT=${KAMAILIO_PORT:-15270}
ADMIN_PORT=${ADMIN_PORT:-15290}

. bench/lib.sh
need_tools sip-tester kamailio kamailio-sqlite-modules kamailio-presence-modules sqlite3
[ "$KIND" != subscribe ] || ls /usr/lib/*/kamailio/modules/presence.so >/dev/null 2>&1 ||
    { echo "bench: kamailio-presence-modules is missing (apt-get install kamailio-presence-modules)" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

# One SIPp phase on CPU 1; prints "successful failed".
phase() { # port local_port rate limit seconds tag
    local port=$1 lport=$2 rate=$3 limit=$4 secs=$5 tag=$6
    # SIPp's own -timeout has been seen not to end a phase with calls stuck
    # waiting (KIND=subscribe): interrupt it, then kill it.
    (cd "$work" && timeout -s INT -k 10 $((secs + 15)) taskset -c 1 sipp -sf "$OLDPWD/bench/sipp/$SF" -inf users.csv -m 100000000 \
        -r "$rate" -l "$limit" -t u1 -auth_uri "$AUTH_URI" -s u0 -i 127.0.0.1 -p "$lport" -trace_stat -stf "$tag.stat" -trace_err -error_file "$tag.err" \
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

# CPU time (clock ticks) used so far by processes $@ and their threads.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

# Requests Parapet shed so far (503 Overloaded, every reason); "-" for
# Kamailio, whose failures are not told apart.
shed() {
    [ -n "${METRICS:-}" ] || { echo -; return; }
    curl -s "$METRICS" | awk '/^parapet_sip_requests_shed_total/ { n += $2 } END { print n + 0 }'
}

# One phase with the server's CPU time; prints "successful failed
# µs-per-call shed" (shed: how many of the failures were requests the
# server shed because it could not keep up).
measured() { # pids-var port local_port rate limit seconds tag
    local pids=$1; shift
    local t0 s0 ok failed
    # shellcheck disable=SC2086
    t0=$(ticks $pids)
    s0=$(shed)
    read -r ok failed < <(phase "$@")
    local s1; s1=$(shed)
    # shellcheck disable=SC2086
    echo "$ok $failed $(awk -v t=$(($(ticks $pids) - t0)) -v hz="$(getconf CLK_TCK)" -v n="$ok" \
        'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }') $([ "$s0" = - ] && echo - || echo $((s1 - s0)))"
}

run_phases() { # name port pids...
    local name=$1 port=$2; shift 2
    local pids="$*" ok failed us
    receiver "$port"
    local t0; t0=$(ticks "$@")
    read -r ok failed < <(phase "$port" 17100 1000000 "${OUTSTANDING:-400}" "$SECS" "$name-burst")
    local cpu=$(( ($(ticks "$@") - t0) * 100 / $(getconf CLK_TCK) / SECS ))
    local cap=$((ok / SECS))
    local line="$name $cap $cpu $failed"
    local lport=17200
    for pct in 25 50 75; do
        lport=$((lport + 1))
        read -r ok failed us sh < <(measured "$pids" "$port" "$lport" $((cap * pct / 100)) 100000 "$SECS" "$name-$pct")
        line="$line $ok $failed/$sh $us"
    done
    read -r ok failed us sh < <(measured "$pids" "$port" 17300 $((cap * 90 / 100)) 100000 $((2 * SECS)) "$name-90")
    [ -z "${uas:-}" ] || kill "$uas" 2>/dev/null || true
    echo "$line $ok $failed/$sh $us"
}

PARAPET_PREFIX="taskset -c 0" start_parapet "$PARAPET_PORT" "$ADMIN_PORT"
taskset -a -p -c 0 "$ppid" >/dev/null
[ "$KIND" != subscribe ] || padmin main "$ADMIN_PORT" policy set privacy global presence_internal=everyone >/dev/null
p=$(METRICS="http://127.0.0.1:$ADMIN_PORT/metrics" run_phases parapet "$PARAPET_PORT" "$ppid")
kill "$ppid"; wait "$ppid" 2>/dev/null || true

if [ "${ONLY:-}" != parapet ]; then
    # Kamailio with four workers keeps registrations in memory only (with
    # SQLite write-through, Debian's db_sqlite fails writes from more than one
    # worker): the setting most favourable to it. Parapet writes each one
    # durably before its 200.
    # For KIND=subscribe, the presence modules with subscriptions in memory
    # only (subs_db_mode 0) and one worker, as in bench/presence.sh: with
    # four, Debian's db_sqlite failed a third of the closed loop's
    # authentications with "database is locked" (the presence module writes
    # from one worker while another reads credentials) and served 253/s.
    if [ "$KIND" = subscribe ]; then
        cp bench/kamailio-presence.cfg "$work/kamailio-capacity.cfg"
        start_kamailio "$work/kamailio-capacity.cfg" "$KAMAILIO_PORT" 1024 standard auth_db presence
    else
        sed -e 's/^children=1/children=4/' -e 's/modparam("usrloc", "db_mode", 1)/modparam("usrloc", "db_mode", 0)/' \
            bench/kamailio.cfg > "$work/kamailio-capacity.cfg"
        start_kamailio "$work/kamailio-capacity.cfg" "$KAMAILIO_PORT" 512 standard auth_db usrloc
    fi
    kill -0 "$kpid" 2>/dev/null || { echo "bench: kamailio did not start:" >&2; tail -5 "$work/kamailio.log" >&2; exit 1; }
    for k in $kpids; do taskset -a -p -c 0 "$k" >/dev/null; done
    # shellcheck disable=SC2086
    k=$(run_phases kamailio "$KAMAILIO_PORT" $kpids)
    kill "$kpid"; wait "$kpid" 2>/dev/null || true
fi

echo "Closed loop, ${OUTSTANDING:-400} calls outstanding, $SECS s; then open loop at fractions of each server's own capacity"
echo "(completed / failed calls / of those, requests the server shed, and the server's CPU µs per completed call)."
echo
echo "| server ($KIND) | per second | CPU % of its core | per second per core | failed | 25% | 50% | 75% | 90% for $((2 * SECS)) s |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in "$p" ${k:+"$k"}; do
    read -r n cap cpu bf o25 f25 u25 o50 f50 u50 o75 f75 u75 o90 f90 u90 <<<"$r"
    echo "| $n | $cap | $cpu | $((cap * 100 / (cpu > 0 ? cpu : 1))) | $bf | $o25 / ${f25/\// / } / $u25 µs | $o50 / ${f50/\// / } / $u50 µs | $o75 / ${f75/\// / } / $u75 µs | $o90 / ${f90/\// / } / $u90 µs |"
done
if [ -n "${k:-}" ]; then
    read -r _ pcap pcpu _ _ _ pu25 _ _ pu50 _ _ pu75 _ _ pu90 <<<"$p"
    read -r _ kcap kcpu _ _ _ ku25 _ _ ku50 _ _ ku75 _ _ ku90 <<<"$k"
    echo
    echo "Parapet/Kamailio: capacity $(ratio "$pcap" "$kcap"), per core $(ratio $((pcap * 100 / (pcpu > 0 ? pcpu : 1))) $((kcap * 100 / (kcpu > 0 ? kcpu : 1))));" \
        "CPU per call at 25/50/75/90%: $(ratio "$pu25" "$ku25") / $(ratio "$pu50" "$ku50") / $(ratio "$pu75" "$ku75") / $(ratio "$pu90" "$ku90")"
fi
