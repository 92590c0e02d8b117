#!/usr/bin/env bash
# The Edge role: remote users' REGISTER-with-digest and MESSAGE relayed over
# TLS to the front end, by `parapet edge` and by Kamailio configured as the
# same relay (bench/kamailio-edge.cfg: TLS both ways, topoh, Path and
# Record-Route) in the same run. The relay under test is pinned to CPU 0;
# the front end, SIPp and stunnel share CPU 1. SIPp (Debian's has no TLS)
# reaches each relay through stunnel. Reports the relay's CPU time per
# call (a call: request, challenge, request with credentials, final
# answer), latency, and the ratio.
#   bench/edge.sh                   # USERS=1000 RATE=300 CALLS=6000 per scenario
# Needs: Debian's sip-tester, kamailio, kamailio-tls-modules, stunnel4,
# openssl, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000}
RATE=${RATE:-300}
CALLS=${CALLS:-6000}
WARMUP=${WARMUP:-200}
FE_UDP=15460 FE_TLS=15461 FE_ADMIN=15462
EDGE_EXT=127.0.0.10 EDGE_PORT=15463 EDGE_INT=127.0.0.11 EDGE_INT_PORT=15464
KAM_EXT=127.0.0.30 KAM_PORT=15465
TUNNEL_EDGE=15466 TUNNEL_KAM=15467
RECEIVER=16800

. bench/lib.sh
need_tools sip-tester kamailio kamailio-tls-modules stunnel4 sqlite3
command -v stunnel >/dev/null || { echo "bench: stunnel is missing (apt-get install stunnel4)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "bench: openssl is missing" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

# The front end: UDP for the receiver, TLS for the relays. Every call
# comes through one stunnel address: no per-source limit at the edge (the
# pool's [edges] section reaches the edge in its snapshot).
PARAPET_PREFIX="taskset -c 1" PARAPET_EXTRA_LISTEN="tls://127.0.0.1:$FE_TLS" \
    PARAPET_EXTRA_TOML=$'[edges]\nsource_rate = 100000000\nsource_burst = 100000000\nin_flight_per_connection = 65536' \
    parapet_serve main example.test $FE_UDP $FE_ADMIN
fe=$ppid
sleep 2
parapet_provision main $FE_ADMIN "$work/users.tsv"
padmin main $FE_ADMIN policy set external_access global remote_access=true >/dev/null
padmin main $FE_ADMIN edge pair bench --internal "$EDGE_INT:$EDGE_INT_PORT" --external "$EDGE_EXT" --out "$work/edge.json" >/dev/null
(cd "$work" && sipp -sf "$OLDPWD/bench/sipp/register.xml" -inf receiver.csv -m 1 -t u1 -auth_uri example.test \
    -i 127.0.0.1 -p $RECEIVER -nostdin -timeout 10s 127.0.0.1:$FE_UDP >/dev/null 2>&1) ||
    { echo "bench: the receiver could not register" >&2; exit 1; }
(cd "$work" && exec sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p $RECEIVER -nostdin -timeout 1800s 127.0.0.1:9 >/dev/null 2>&1) &
uas=$!

# SIPp over TCP to stunnel, which speaks TLS to the relay (trusting the
# front end's CA, which issued both relays' certificates here).
tunnel() { # local_port target_addr target_port ca
    cat >"$work/stunnel-$1.conf" <<CONF
foreground = yes
pid =
[sip]
client = yes
accept = 127.0.0.1:$1
connect = $2:$3
CAfile = $4
verifyChain = yes
checkIP = $2
CONF
    taskset -c 1 stunnel "$work/stunnel-$1.conf" >"$work/stunnel-$1.log" 2>&1 &
}

# Warm-up, then each scenario measured on the relay's PIDs; prints
# "reg_ok reg_made reg_us reg_p50 reg_p99 msg_ok msg_made msg_us msg_p50 msg_p99".
measure() { # name tunnel_port pids...
    local name=$1 port=$2 out=""
    shift 2
    sipp_run "$name-warmup" "$port" register.xml users.csv "$WARMUP" 17300 example.test -t t1 >/dev/null
    for sc in register.xml message_uac.xml; do
        local c0; c0=$(cpu_us "$@")
        read -r ok made p50 p99 < <(sipp_run "$name" "$port" "$sc" users.csv "$CALLS" 17400 \
            "$([ "$sc" = register.xml ] && echo example.test || echo receiver@example.test)" -t t1)
        local c1; c1=$(cpu_us "$@")
        out="$out $ok $made $(awk -v c=$((c1 - c0)) -v n="$made" 'BEGIN {printf "%.1f", (n > 0 ? c / n : 0)}') $p50 $p99"
    done
    echo "$out"
}

# --- The Parapet edge.
cat >"$work/edge.toml" <<TOML
[limits]
source_rate = 100000000
source_burst = 100000000
in_flight_per_connection = 65536
TOML
taskset -c 0 target/release/parapet edge --config "$work/edge.toml" --pairing "$work/edge.json" \
    --listen "tls://$EDGE_EXT:$EDGE_PORT" --metrics-listen "" 2>"$work/edge.log" &
edge=$!
tunnel $TUNNEL_EDGE $EDGE_EXT $EDGE_PORT "$work/main-data/pki/ca.pem"
sleep 2
e=$(measure edge $TUNNEL_EDGE $edge)
kill $edge 2>/dev/null || true

# --- Kamailio as the relay: its own certificate (openssl, its own CA,
# which stunnel trusts for it); towards the front end it is a TLS client
# without a certificate, as any proxy in front of a server would be.
(
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout kca.key -out kca.pem -days 30 -subj "/CN=bench relay CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout kam.key -out kam.csr -subj "/CN=$KAM_EXT" 2>/dev/null
    printf 'subjectAltName=IP:%s\n' "$KAM_EXT" >kam.ext
    openssl x509 -req -in kam.csr -CA kca.pem -CAkey kca.key -CAcreateserial -out kam.pem -days 30 -extfile kam.ext 2>/dev/null
)
cat >"$work/kam-tls.cfg" <<TLS
[server:default]
method = TLSv1.2+
certificate = $work/kam.pem
private_key = $work/kam.key
verify_certificate = no
require_certificate = no

[client:default]
method = TLSv1.2+
verify_certificate = no
TLS
sed -e "s|EXT_ADDR|$KAM_EXT|g" -e "s|EXT_PORT|$KAM_PORT|g" -e "s|FE_ADDR|127.0.0.1|g" -e "s|FE_PORT|$FE_TLS|g" \
    -e "s|TLS_CFG|$work/kam-tls.cfg|g" bench/kamailio-edge.cfg >"$work/kam.cfg"
mkdir -p "$work/kam-run"
taskset -c 0 kamailio -f "$work/kam.cfg" -DD -E -Y "$work/kam-run" -m 128 -M 16 >/dev/null 2>"$work/kam.log" &
tunnel $TUNNEL_KAM $KAM_EXT $KAM_PORT "$work/kca.pem"
sleep 3
kpids="$(pgrep -f "kamailio -f $work/kam.cfg" | tr '\n' ' ')"
# shellcheck disable=SC2086
k=$(measure kamailio $TUNNEL_KAM $kpids)
kill $kpids $uas $fe 2>/dev/null || true

read -r erok ermade erus erp50 erp99 emok emmade emus emp50 emp99 <<<"$e"
read -r krok krmade krus krp50 krp99 kmok kmmade kmus kmp50 kmp99 <<<"$k"
cat <<TABLE
| measure ($CALLS calls each at $RATE/s, relay on one core) | Parapet edge | Kamailio relay | edge/Kamailio |
|---|---|---|---|
| REGISTER with digest completed / made | $erok / $ermade | $krok / $krmade | |
| relay CPU µs per REGISTER call | $erus | $krus | $(ratio "$erus" "$krus") |
| REGISTER latency p50 / p99 (ms) | $erp50 / $erp99 | $krp50 / $krp99 | |
| MESSAGE with proxy auth completed / made | $emok / $emmade | $kmok / $kmmade | |
| relay CPU µs per MESSAGE call | $emus | $kmus | $(ratio "$emus" "$kmus") |
| MESSAGE latency p50 / p99 (ms) | $emp50 / $emp99 | $kmp50 / $kmp99 | |
TABLE
