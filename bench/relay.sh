#!/usr/bin/env bash
# The media relay against coturn (Debian's `coturn`, turnserver 4.6) on
# this machine, in the same run: each server pinned to one core
# (SERVER_CORE), the load — coturn's own client, turnutils_uclient, in
# client-to-client mode (allocations in pairs sending 172-byte ChannelData
# to each other, as coturn's performance notes use) — on the other core.
#
# Measured per server, RUNS times (medians and the range printed):
#   - forwarded packets per CPU-second of the server (its cgroup's CPU,
#     ended threads counted): what one core relays;
#   - throughput reached under a load the client can generate (packets
#     relayed per second of wall time);
#   - memory per allocation: PSS with ALLOCS allocations held, less idle;
# and with the project's own load client (crates/relay/examples/
# relay_load.rs: turnutils_uclient reports only an average round trip and
# paces its own allocations):
#   - packets per CPU-second again, the client sending flat out (25 pairs);
#   - the one-way latency the relay adds at half that rate and at 10,000
#     packets a second, p50 and p99: client to relay to relay to client
#     (an even schedule; to the kernel's receive timestamp), less the same
#     traffic sent directly between the two clients' sockets;
#   - the floor, in Parapet's turn: the same traffic at the same two rates
#     through relay_load's `forwarder` (a blocking receive and a send per
#     datagram, pinned to the server's core): the least any relay could
#     add on this machine;
#   - allocations per second (16 clients, each Allocate 401 + Allocate +
#     Refresh 0, on a new 5-tuple each time) and the server's CPU per
#     allocation.
#
#   bench/relay.sh                   # RUNS=3 CLIENTS=50 PACKETS=2000
#   RUNS=5 bench/relay.sh
#   RUNS=1 PROFILE=/tmp/relay.perf bench/relay.sh   # perf report -i /tmp/relay.perf
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-50}
PACKETS=${PACKETS:-2000}
ALLOCS=${ALLOCS:-400}
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
PW=relay-bench-password

for c in turnserver turnutils_uclient taskset; do
    command -v "$c" >/dev/null || { echo "bench: $c is missing (apt-get install coturn util-linux)" >&2; exit 2; }
done
cargo build --release -q -p parapet
cargo build --release -q -p parapet-relay --example relay_load
LOADER=target/release/examples/relay_load
work=$(mktemp -d)
USERS=0
# shellcheck source=bench/lib.sh
. bench/lib.sh

# CPU accounting per server: a cgroup v1 cpuacct group each, else /proc.
cg=""
if [ -w /sys/fs/cgroup/cpuacct ]; then
    cg=/sys/fs/cgroup/cpuacct/parapet-relay-bench-$$
    mkdir -p "$cg"
fi
cpu_of() { # pid: CPU microseconds of the server
    if [ -n "$cg" ]; then echo $(($(cat "$cg/cpuacct.usage") / 1000)); else cpu_us "$1"; fi
}
cleanup() {
    kill "${ppid:-}" "${tpid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -z "$cg" ] || rmdir "$cg" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start_coturn() {
    taskset -c "$SERVER_CORE" turnserver -n --no-cli --no-tls --no-dtls \
        --listening-ip 127.0.0.1 --listening-port 23479 --relay-ip 127.0.0.1 \
        --min-port 20000 --max-port 29999 --lt-cred-mech --realm example.test \
        --user "alice:$PW" --allow-loopback-peers --relay-threads 1 \
        --userdb "$work/turndb" --pidfile "$work/turn.pid" --log-file stdout \
        --no-stun-backward-compatibility >"$work/coturn.log" 2>&1 &
    tpid=$!
    sleep 1
    [ -z "$cg" ] || echo "$tpid" > "$cg/cgroup.procs"
    srv_pid=$tpid
    port=23479
}

start_parapet_relay() {
    rm -rf "$work/relay-data" "$work/relay-session"
    printf 'sip:alice@example.test\t%s\n' "$PW" > "$work/users.tsv"
    PARAPET_PREFIX="taskset -c $SERVER_CORE" PARAPET_EXTRA_TOML=$'[relay]\nlisten = ["udp://127.0.0.1:23478"]\naddress = "127.0.0.1"\nports = "20000-29999"\nallocations_per_user = 100000\nmax_allocations = 100000\nuser_kbps = 10000000\nallocation_kbps = 10000000\nsource_rate = 100000\nsource_burst = 100000' \
        parapet_serve relay example.test 25070 29070
    sleep 2
    parapet_provision relay 29070 "$work/users.tsv"
    [ -z "$cg" ] || echo "$ppid" > "$cg/cgroup.procs"
    srv_pid=$ppid
    port=23478
}

uclient() { # more args...
    taskset -c "$LOAD_CORE" turnutils_uclient -y -c -l 172 -u alice -w "$PW" -p "$port" "$@" 127.0.0.1 2>&1
}

# One measurement of the server on $port: prints
# "pps_per_core throughput kib_per_alloc".
measure() {
    # Warm-up.
    uclient -m 10 -n 200 -z 1 >/dev/null || true
    local c0 t0 out c1 t1 sent
    # PROFILE=FILE: perf records Parapet during this load.
    local perfpid=""
    if [ -n "${PROFILE:-}" ] && [ "$port" = 23478 ]; then
        perf record -q -e cpu-clock -g -o "$PROFILE" -p "$srv_pid" 2>/dev/null &
        perfpid=$!
    fi
    c0=$(cpu_of "$srv_pid"); t0=$(date +%s%N)
    out=$(uclient -m "$CLIENTS" -n "$PACKETS" -z 1)
    c1=$(cpu_of "$srv_pid"); t1=$(date +%s%N)
    if [ -n "$perfpid" ]; then kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; fi
    sent=$(grep -o 'tot_recv_msgs=[0-9]*' <<<"$out" | tail -1 | cut -d= -f2)
    local pps_core throughput
    pps_core=$(awk -v n="$sent" -v c=$((c1 - c0)) 'BEGIN { if (c > 0) printf "%.0f", n / (c / 1e6); else print "n/a" }')
    throughput=$(awk -v n="$sent" -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (t / 1e9) }')
    # Memory: ALLOCS allocations held (-h keeps them), against idle.
    sleep 1
    local idle held
    idle=$(pss_kib "$srv_pid")
    uclient -m $((ALLOCS / 2)) -n 1 -h >/dev/null &
    local hold=$!
    sleep 4
    held=$(pss_kib "$srv_pid")
    kill "$hold" 2>/dev/null || true
    pkill -f "turnutils_uclient -y -c -l 172 -u alice -w $PW -p $port" 2>/dev/null || true
    wait "$hold" 2>/dev/null || true
    local per
    per=$(awk -v a="$idle" -v b="$held" -v n="$ALLOCS" 'BEGIN { printf "%.1f", (b - a) / n }')
    # The project's load client: flat out, then at half that rate, then
    # allocations.
    sleep 1
    local flood rate c2 c3 half relayed direct allocs
    field() { grep -o "$1=[0-9.]*" <<<"$2" | cut -d= -f2; }
    c2=$(cpu_of "$srv_pid")
    flood=$(load flow 25 0 5)
    c3=$(cpu_of "$srv_pid")
    local flood_core
    flood_core=$(awk -v n="$(field received "$flood")" -v c=$((c3 - c2)) 'BEGIN { if (c > 0) printf "%.0f", n / (c / 1e6); else print "n/a" }')
    rate=$(field rate "$flood")
    half=$(awk -v r="$rate" 'BEGIN { printf "%.0f", r / 2 }')
    relayed=$(load flow 25 "$half" 5)
    direct=$(load direct 25 "$half" 5)
    local p50 p99
    p50=$(( $(field p50_us "$relayed") - $(field p50_us "$direct") ))
    p99=$(( $(field p99_us "$relayed") - $(field p99_us "$direct") ))
    # And at a rate the client sends without queueing of its own.
    local relayed10 direct10 p50_10 p99_10
    relayed10=$(load flow 25 10000 5)
    direct10=$(load direct 25 10000 5)
    p50_10=$(( $(field p50_us "$relayed10") - $(field p50_us "$direct10") ))
    p99_10=$(( $(field p99_us "$relayed10") - $(field p99_us "$direct10") ))
    # The floor (measured in Parapet's turn, at Parapet's rates; the same
    # columns are printed for coturn for the table's sake).
    local floor_half="n/a" floor_10="n/a"
    if [ "$port" = 23478 ]; then
        taskset -c "$SERVER_CORE" "$LOADER" forwarder 127.0.0.1:23490 x x x &
        local fpid=$!
        sleep 0.5
        local via via10
        via=$(taskset -c "$LOAD_CORE" "$LOADER" via 127.0.0.1:23490 x x x 25 "$half" 5 172)
        via10=$(taskset -c "$LOAD_CORE" "$LOADER" via 127.0.0.1:23490 x x x 25 10000 5 172)
        kill "$fpid" 2>/dev/null || true
        wait "$fpid" 2>/dev/null || true
        floor_half=$(( $(field p99_us "$via") - $(field p99_us "$direct") ))
        floor_10=$(( $(field p99_us "$via10") - $(field p99_us "$direct10") ))
        echo "floor detail: via: $via | via 10k: $via10" >&2
    fi
    c2=$(cpu_of "$srv_pid")
    allocs=$(load allocs 16 0 5)
    c3=$(cpu_of "$srv_pid")
    local aps cpa
    aps=$(field per_second "$allocs")
    cpa=$(awk -v n="$(field allocations "$allocs")" -v c=$((c3 - c2)) 'BEGIN { if (n > 0) printf "%.1f", c / n; else print "n/a" }')
    echo "run detail ($port): flood: $flood | half: $relayed | direct: $direct | 10k: $relayed10 | direct 10k: $direct10 | $allocs" >&2
    echo "$pps_core $throughput $per $flood_core $p50 $p99 $p50_10 $p99_10 $aps $cpa $floor_half $floor_10"
}

load() { # mode n rate secs
    taskset -c "$LOAD_CORE" "$LOADER" "$1" "127.0.0.1:$port" alice "$PW" example.test "$2" "$3" "$4" 172
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }

declare -A results
for r in $(seq 1 "$RUNS"); do
    for who in parapet coturn; do
        if [ "$who" = parapet ]; then start_parapet_relay; else start_coturn; fi
        line=$(measure)
        echo "run $r $who: $line"
        results[$who]+="$line"$'\n'
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
        sleep 1
    done
done

col() { awk -v c="$2" 'NF {print $c}' <<<"${results[$1]}"; }
echo
echo "| measure ($RUNS runs, medians; range) | Parapet | coturn | Parapet/coturn |"
echo "|---|---|---|---|"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    case $i in
        1) name="packets relayed per CPU-second (one core), turnutils_uclient";;
        2) name="packets relayed per second (turnutils_uclient's limit)";;
        3) name="KiB per allocation (PSS)";;
        4) name="packets relayed per CPU-second (one core), relay_load flat out";;
        5) name="added latency p50 at half the flat-out rate (µs)";;
        6) name="added latency p99 at half the flat-out rate (µs)";;
        7) name="added latency p50 at 10,000 packets/s (µs)";;
        8) name="added latency p99 at 10,000 packets/s (µs)";;
        9) name="allocations per second (16 clients)";;
        10) name="CPU µs per allocation";;
        11) name="floor: a minimal forwarder's added p99 at Parapet's half rate (µs)";;
        12) name="floor: a minimal forwarder's added p99 at 10,000 packets/s (µs)";;
    esac
    p=$(col parapet $i | median); c=$(col coturn $i | median)
    echo "| $name | $p ($(col parapet $i | range)) | $c ($(col coturn $i | range)) | $(ratio "$p" "$c") |"
done
