#!/usr/bin/env bash
# Federated MESSAGE: a user of example.test writes to the receiver at
# partner.test. Both organisations' servers run on this machine (CPU 0,
# SIPp on CPU 1) and relay over mutual TLS: the sender's server challenges
# it (407), checks the federation policy and forwards over its connection
# to the partner, which delivers to the receiver (registered there) and
# the 200 comes back the same way. A Parapet pair against a Kamailio pair
# (bench/kamailio-federation.cfg: proxy authentication from SQLite on the
# sender's side, TLS with verified certificates both ways) in the same run.
# Reports both servers' CPU time per message sent, latency, the ratio.
#   bench/federation.sh                 # USERS=1000 RATE=500 MESSAGES=5000
#   ONLY=parapet bench/federation.sh    # Parapet's pair alone
# Needs: Debian's sip-tester, kamailio, kamailio-tls-modules,
# kamailio-sqlite-modules, sqlite3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-5000}
WARMUP=${WARMUP:-200}
PA_UDP=15260 PA_TLS=15261 PA_ADMIN=15262
PB_UDP=15270 PB_TLS=15271 PB_ADMIN=15272
KA_UDP=15280 KA_TLS=15281 KB_UDP=15290 KB_TLS=15291
RECEIVER_P=16700 RECEIVER_K=16710

. bench/lib.sh
need_tools sip-tester kamailio kamailio-tls-modules kamailio-sqlite-modules sqlite3
command -v openssl >/dev/null || { echo "bench: openssl is missing" >&2; exit 2; }
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users
printf 'sip:receiver@partner.test\tpassword-receiver\n' >"$work/partner.tsv"
sed 's/example\.test/partner.test/g' bench/sipp/register.xml >"$work/register-partner.xml"

# The receiver answers every MESSAGE 200 from PORT (after registering at
# Parapet's partner.test; Kamailio's partner.test routes to it statically).
receiver() { # port
    (cd "$work" && exec sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p "$1" -nostdin -timeout 900s 127.0.0.1:9 >/dev/null 2>&1) &
    uas=$!
}

# Warm-up (opens the connections between the servers), then the measured
# run; prints "completed made cpu_us_per_message p50 p99".
measure() { # name sender_port pids...
    local name=$1 port=$2
    shift 2
    sipp_run "$name-warmup" "$port" message_uac_federated.xml users.csv "$WARMUP" 17100 receiver@partner.test >/dev/null
    local c0; c0=$(cpu_us "$@")
    read -r ok made p50 p99 < <(sipp_run "$name" "$port" message_uac_federated.xml users.csv "$MESSAGES" 17200 receiver@partner.test)
    local c1; c1=$(cpu_us "$@")
    echo "$ok $made $(awk -v c=$((c1 - c0)) -v n="$made" 'BEGIN {printf "%.1f", (n > 0 ? c / n : 0)}') $p50 $p99"
}

# --- Parapet: example.test and partner.test, each trusting the other's CA.
export PARAPET_PREFIX="taskset -c 0"
PARAPET_EXTRA_LISTEN="tls://127.0.0.1:$PA_TLS" parapet_serve a example.test $PA_UDP $PA_ADMIN
pa=$ppid
PARAPET_EXTRA_LISTEN="tls://127.0.0.1:$PB_TLS" parapet_serve b partner.test $PB_UDP $PB_ADMIN
pb=$ppid
sleep 2
parapet_provision a $PA_ADMIN "$work/users.tsv"
parapet_provision b $PB_ADMIN "$work/partner.tsv"
kill $pa $pb
wait $pa $pb 2>/dev/null || true
PARAPET_EXTRA_LISTEN="tls://127.0.0.1:$PA_TLS" PARAPET_EXTRA_TOML="[federation]
trusted_cas = [\"$work/b-data/pki/ca.pem\"]
routes = { \"partner.test\" = \"127.0.0.1:$PB_TLS\" }" parapet_serve a example.test $PA_UDP $PA_ADMIN
pa=$ppid
PARAPET_EXTRA_LISTEN="tls://127.0.0.1:$PB_TLS" PARAPET_EXTRA_TOML="[federation]
trusted_cas = [\"$work/a-data/pki/ca.pem\"]
routes = { \"example.test\" = \"127.0.0.1:$PA_TLS\" }" parapet_serve b partner.test $PB_UDP $PB_ADMIN
pb=$ppid
sleep 2
padmin a $PA_ADMIN policy set federation global enabled=true allowed_domains=partner.test >/dev/null
padmin a $PA_ADMIN policy set external_access global federation=true >/dev/null
padmin b $PB_ADMIN policy set federation global enabled=true allowed_domains=example.test >/dev/null
padmin b $PB_ADMIN policy set external_access global federation=true >/dev/null
padmin b $PB_ADMIN policy set privacy global strangers_may_im=everyone >/dev/null
sleep 2
(cd "$work" && sipp -sf register-partner.xml -inf receiver.csv -m 1 -t u1 -auth_uri partner.test \
    -i 127.0.0.1 -p $RECEIVER_P -nostdin -timeout 10s 127.0.0.1:$PB_UDP >/dev/null 2>&1) ||
    { echo "bench: the receiver could not register at partner.test" >&2; exit 1; }
receiver $RECEIVER_P
sleep 1
p=$(measure parapet $PA_UDP $pa $pb)
kill $uas $pa $pb 2>/dev/null || true
wait $pa $pb 2>/dev/null || true
if [ "${ONLY:-}" = parapet ]; then
    echo "parapet $p"
    exit 0
fi

# --- Kamailio: the same two organisations, one CA for both (openssl).
(
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout kca.key -out kca.pem -days 30 -subj "/CN=bench CA" 2>/dev/null
    for d in example.test partner.test; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d.key" -out "$d.csr" -subj "/CN=$d" 2>/dev/null
        printf 'subjectAltName=DNS:%s,URI:sip:%s\n' "$d" "$d" >"$d.ext"
        openssl x509 -req -in "$d.csr" -CA kca.pem -CAkey kca.key -CAcreateserial -out "$d.pem" -days 30 -extfile "$d.ext" 2>/dev/null
    done
)
kdb="$work/kam.db"
for s in standard auth_db; do sqlite3 "$kdb" </usr/share/kamailio/db_sqlite/$s-create.sql; done
sqlite3 "$kdb" <"$work/kam.sql"
kam() { # tag own_domain udp tls peer_tls [-A SENDER]
    local tag=$1 own=$2 udp=$3 tls=$4 peer=$5
    shift 5
    sed -e "s|OWN_DOMAIN|$own|g" -e "s|OWN_UDP|$udp|g" -e "s|OWN_TLS|$tls|g" -e "s|PEER_TLS|$peer|g" \
        -e "s|CERT_FILE|$work/$own.pem|g" -e "s|KEY_FILE|$work/$own.key|g" -e "s|CA_FILE|$work/kca.pem|g" \
        -e "s|DBPATH|$kdb|g" -e "s|RECEIVER_PORT|$RECEIVER_K|g" bench/kamailio-federation.cfg >"$work/$tag.cfg"
    mkdir -p "$work/$tag-run"
    taskset -c 0 kamailio -f "$work/$tag.cfg" "$@" -DD -E -Y "$work/$tag-run" -m 128 -M 16 >/dev/null 2>"$work/$tag.log" &
}
kam ka example.test $KA_UDP $KA_TLS $KB_TLS -A SENDER
kam kb partner.test $KB_UDP $KB_TLS $KA_TLS
sleep 3
kpids="$(pgrep -f "kamailio -f $work/k[ab].cfg" | tr '\n' ' ')"
receiver $RECEIVER_K
sleep 1
# shellcheck disable=SC2086
k=$(measure kamailio $KA_UDP $kpids)
kill $uas $kpids 2>/dev/null || true

read -r pok pmade pus pp50 pp99 <<<"$p"
read -r kok kmade kus kp50 kp99 <<<"$k"
cat <<TABLE
| measure ($MESSAGES federated messages at $RATE/s, both servers on one core) | Parapet pair | Kamailio pair | Parapet/Kamailio |
|---|---|---|---|
| messages completed / sent | $pok / $pmade | $kok / $kmade | |
| CPU µs per message sent, both servers | $pus | $kus | $(ratio "$pus" "$kus") |
| latency p50 / p99 (ms) | $pp50 / $pp99 | $kp50 / $kp99 | |
TABLE
