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

for c in sipp kamailio sqlite3; do
    command -v "$c" >/dev/null || { echo "bench: $c is missing (apt-get install sip-tester kamailio kamailio-sqlite-modules sqlite3)" >&2; exit 2; }
done
cargo build --release -q -p parapet
work=$(mktemp -d)
# KEEP=1 leaves the SIPp traces and logs in $work for a look afterwards.
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT

# Users: SIPp's CSV (user;[authentication ...]), Parapet's TSV, Kamailio's SQL.
python3 - "$work" "$USERS" <<'PY'
import hashlib, sys
work, n = sys.argv[1], int(sys.argv[2])
users = [(f"u{i}", f"password-{i:06d}") for i in range(n)] + [("receiver", "password-receiver")]
with open(f"{work}/users.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for u, p in users[:-1]:
        f.write(f"{u};[authentication username={u} password={p}]\n")
with open(f"{work}/receiver.csv", "w") as f:
    f.write("SEQUENTIAL\nreceiver;[authentication username=receiver password=password-receiver]\n")
with open(f"{work}/users.tsv", "w") as f:
    for u, p in users:
        f.write(f"sip:{u}@example.test\t{p}\n")
with open(f"{work}/kam.sql", "w") as f:
    f.write("BEGIN;\n")
    for u, p in users:
        ha1 = hashlib.md5(f"{u}:example.test:{p}".encode()).hexdigest()
        ha1b = hashlib.md5(f"{u}@example.test:example.test:{p}".encode()).hexdigest()
        f.write(f"INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('{u}','example.test','','{ha1}','{ha1b}');\n")
    f.write("COMMIT;\n")
PY

clk=$(getconf CLK_TCK)
# CPU microseconds used so far by the given processes (all their threads).
cpu_us() { local t=0; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $((t * 1000000 / clk)); }
# Proportional set size in KiB (shared pages split between processes).
pss_kib() { local t=0; for p in "$@"; do [ -r /proc/$p/smaps_rollup ] && t=$((t + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup))); done; echo $t; }
# Percentile (ms) of SIPp's response times in an rtt file.
pct() { awk -F';' 'NR>1 && $3==1 {print $2}' "$1" | sort -n | awk -v q="$2" '{a[NR]=$1} END {if (NR==0) print "n/a"; else {i=int(NR*q); if (i<1) i=1; print a[i]}}'; }

sipp_run() { # name port scenario csv calls local_port auth_uri
    local name=$1 port=$2 sf=$3 csv=$4 calls=$5 lport=$6 auth_uri=$7
    # The digest uri must be the Request-URI (SIPp defaults to ip:port).
    (cd "$work" && sipp -sf "$OLDPWD/bench/sipp/$sf" -inf "$csv" -m "$calls" -r "$RATE" -l 2000 -t u1 -auth_uri "$auth_uri" \
        -i 127.0.0.1 -p "$lport" -trace_rtt -rtt_freq 1 -trace_stat -trace_err -nostdin -timeout 300s -timeout_error \
        127.0.0.1:"$port" >/dev/null 2>&1) || true
    local rtt; rtt=$(ls -t "$work"/"${sf%.xml}"_*_rtt.csv 2>/dev/null | head -1)
    local stat; stat=$(ls -t "$work"/"${sf%.xml}"_*_.csv 2>/dev/null | head -1)
    local ok; ok=$(awk -F';' 'END {print $16}' "$stat" 2>/dev/null || echo 0)  # SuccessfulCall(C)
    local made; made=$(awk -F';' 'END {print $12}' "$stat" 2>/dev/null || echo 0)  # OutgoingCall(C)
    echo "$ok $made $(pct "$rtt" 0.5) $(pct "$rtt" 0.99)"
    mv "$rtt" "$work/$name-$sf.rtt" 2>/dev/null || true
    mv "$stat" "$work/$name-$sf.stat" 2>/dev/null || true
}

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

# Parapet: UDP allowed for SIPp, MD5 digest (SIPp 3.6), no rate limit (one load source).
pdata="$work/parapet-data"
cat > "$work/parapet.toml" <<TOML
digest_algorithms = ["MD5"]
[limits]
unauthenticated_rate = 100000000
unauthenticated_burst = 100000000
TOML
target/release/parapet serve --config "$work/parapet.toml" --data-dir "$pdata" --domain example.test \
    --allow-insecure-transports --listen "udp://127.0.0.1:$PARAPET_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" 2>"$work/parapet.log" &
ppid=$!
sleep 2
# Users go in through the admin API, as an operator would: a break-glass
# administrator, a TOTP code computed from its secret, then the import.
export PARAPET_ADMIN_URL="http://127.0.0.1:$ADMIN_PORT" PARAPET_ADMIN_SESSION="$work/session"
target/release/parapet admin --output json recover --data-dir "$pdata" --name bench >"$work/admin.json"
code=$(python3 -c '
import base64, hashlib, hmac, json, struct, sys, time
a = json.load(open(sys.argv[1])); s = a["totp_secret"]
k = base64.b32decode(s + "=" * (-len(s) % 8))
h = hmac.new(k, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000))' "$work/admin.json")
python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["password"])' "$work/admin.json" |
    target/release/parapet admin login --name bench --password-stdin --code "$code" >/dev/null
# SIPp speaks MD5 digest only: allow it by policy, as an operator would.
target/release/parapet admin policy set authentication global methods=digest-sha256,digest-md5 >/dev/null
target/release/parapet admin user import "$work/users.tsv" >/dev/null
p=$(bench_server parapet "$PARAPET_PORT" 16500 $ppid)
kill $ppid; wait $ppid 2>/dev/null || true
if [ "${ONLY:-}" = parapet ]; then
    # Parapet alone (a quick look while working; ratios need both in one run).
    echo "$p"
    exit 0
fi

# Kamailio: the same job (bench/kamailio.cfg), SQLite for credentials and bindings.
kdb="$work/kam.db"
for s in standard auth_db usrloc; do sqlite3 "$kdb" < /usr/share/kamailio/db_sqlite/$s-create.sql; done
sqlite3 "$kdb" < "$work/kam.sql"
sed "s|DBPATH|$kdb|g" bench/kamailio.cfg > "$work/kamailio.cfg"
mkdir -p "$work/kamrun"
kamailio -f "$work/kamailio.cfg" -l "udp:127.0.0.1:$KAMAILIO_PORT" -DD -E -Y "$work/kamrun" -m 256 -M 16 2>"$work/kamailio.log" &
kpid=$!
sleep 3
kpids="$(pgrep -f "kamailio -f $work/kamailio.cfg" | tr '\n' ' ')"
k=$(bench_server kamailio "$KAMAILIO_PORT" 16600 $kpids)
kill $kpid; wait $kpid 2>/dev/null || true

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
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
