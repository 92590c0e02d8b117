#!/usr/bin/env bash
# File transfer over HTTPS: Parapet's file-transfer server against nginx
# serving the same files with WebDAV PUT (Debian nginx-light), in the same
# run, on the same pinned core, with the same certificate and key.
#
#   bench/files.sh            # RUNS=5 N1=100 N100=3
#
# For each server and size (1 MB and 100 MB of random bytes): N uploads, then
# N downloads, one curl each (a TLS handshake each, as a client sending one
# file makes), sequential. Measured: throughput (MB/s, wall clock of the
# phase) and the server's CPU per MB (user + system, all its processes and
# threads). Each server runs in a CPU-accounting cgroup of its own where
# one can be made (as root: nanoseconds, and threads that ended during a
# phase still count); else from /proc in clock ticks (10 ms, so a 1 MB
# phase of 40 uploads moves by several per cent on rounding alone).
# Parapet answers Linphone's protocol: an HTTP Digest challenge, then the
# multipart POST; the file is judged by the policy and fsynced before the
# answer. nginx is given no authentication and does not fsync: the
# comparison is conservative for Parapet.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
N1=${N1:-100}
N100=${N100:-3}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
for c in nginx curl taskset; do
    command -v "$c" >/dev/null || { echo "bench: $c is missing (apt-get install nginx-light curl util-linux)" >&2; exit 2; }
done
cargo build --release -q -p parapet
work=$(mktemp -d /tmp/parapet-bench-files.XXXXXX)
USERS=1
source bench/lib.sh

# CPU accounting per server: cgroup v1 cpuacct, else v2, else ticks.
cgroups=()
cg_make() { # NAME: prints the group's directory, or nothing
    local d
    for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup; do
        if [ -r "$d/cpuacct.usage" ] || [ -r "$d/cgroup.controllers" ]; then
            d="$d/parapet-bench-$$-$1"
            mkdir "$d" 2>/dev/null && echo "$d"
            return 0
        fi
    done
}
cg_join() { [ -z "$1" ] || echo "$2" > "$1/cgroup.procs"; } # GROUP PID
server_cpu_us() { # GROUP PIDS...
    local g=$1
    shift
    if [ -n "$g" ] && [ -r "$g/cpuacct.usage" ]; then echo $(($(cat "$g/cpuacct.usage") / 1000))
    elif [ -n "$g" ]; then awk '$1 == "usage_usec" {print $2}' "$g/cpu.stat"
    else cpu_us "$@"; fi
}
cg_remove() { local g; for g in "${cgroups[@]}"; do for _ in 1 2 3 4 5; do rmdir "$g" 2>/dev/null && break; sleep 0.2; done; done; }
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; cg_remove; rm -rf "$work"' EXIT
pgroup=$(cg_make parapet)
ngroup=$(cg_make nginx)
for g in "$pgroup" "$ngroup"; do [ -z "$g" ] || cgroups+=("$g"); done
if [ -n "$pgroup" ]; then echo "CPU accounting: cgroups"; else echo "CPU accounting: /proc, in clock ticks"; fi

web=14443 tls=15061 admin=19060 nport=14444
# One load source: the per-address limit on unauthenticated requests (each
# upload and download starts with a challenged probe) is lifted, as
# bench/lib.sh does for SIP.
cat > "$work/parapet.toml" <<TOML
[limits]
unauthenticated_rate = 100000000
unauthenticated_burst = 100000000
TOML
taskset -c "$SERVER_CPU" target/release/parapet serve --config "$work/parapet.toml" --data-dir "$work/main-data" --domain example.test \
    --listen "tls://127.0.0.1:$tls" --admin-listen "127.0.0.1:$admin" --web-listen "127.0.0.1:$web" 2>>"$work/parapet.log" &
ppid=$!
cg_join "$pgroup" "$ppid"
sleep 2
printf 'sip:alice@example.test\tbench-password-1\n' > "$work/users.tsv"
parapet_provision main "$admin" "$work/users.tsv"
padmin main "$admin" policy set file_transfer global max_file_mb=200 daily_quota_mb=1000000 total_quota_mb=1000000 >/dev/null
ca="$work/main-data/pki/ca.pem"

mkdir -p "$work/nginx-root/upload" "$work/nginx-tmp"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
# The scratch directory is the bench's (root's, mode 0700).
user root;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp;
    client_max_body_size 200m;
    server {
        listen 127.0.0.1:$nport ssl;
        ssl_certificate $work/main-data/pki/server.pem;
        ssl_certificate_key $work/main-data/pki/server-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $work/nginx-root;
        location /upload/ { dav_methods PUT; create_full_put_path on; }
    }
}
CONF
taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" &
nmaster=$!
cg_join "$ngroup" "$nmaster"
sleep 1
npids="$nmaster $(pgrep -P "$nmaster" | tr '\n' ' ')"
# (The worker was forked before its master joined the group.)
for p in $npids; do cg_join "$ngroup" "$p"; done

head -c 1000000 /dev/urandom > "$work/f1.bin"
head -c 100000000 /dev/urandom > "$work/f100.bin"
c() { taskset -c "$CLIENT_CPU" curl -sS --fail --cacert "$ca" --resolve "example.test:$web:127.0.0.1" --resolve "example.test:$nport:127.0.0.1" "$@"; }

# phase GROUP PIDS MB COMMAND...: prints "MB/s cpu_ms_per_MB".
phase() {
    local group=$1 pids=$2 mb=$3
    shift 3
    local c0 t0 c1 t1
    c0=$(server_cpu_us "$group" $pids); t0=$(date +%s%N)
    "$@"
    t1=$(date +%s%N); c1=$(server_cpu_us "$group" $pids)
    awk -v mb="$mb" -v ns=$((t1 - t0)) -v us=$((c1 - c0)) 'BEGIN { printf "%.1f %.2f", mb / (ns / 1e9), us / 1000 / mb }'
}

p_up() { local f=$1 n=$2 i; : > "$work/urls"; for ((i = 0; i < n; i++)); do
    c --digest -u alice:bench-password-1 -F "File=@$work/$f;type=application/octet-stream" "https://example.test:$web/files" |
        sed -n 's/.*data url="\([^"]*\)".*/\1/p' >> "$work/urls"; done; }
p_down() { local u; while read -r u; do c --digest -u alice:bench-password-1 -o /dev/null "$u"; done < "$work/urls"; }
n_up() { local f=$1 n=$2 i; for ((i = 0; i < n; i++)); do c -T "$work/$f" "https://example.test:$nport/upload/$f.$i"; done; }
n_down() { local f=$1 n=$2 i; for ((i = 0; i < n; i++)); do c -o /dev/null "https://example.test:$nport/upload/$f.$i"; done; }

# Warm-up, not measured: both servers' first uploads pay for memory and
# caches they then keep (the first run was 10-20% dearer for both).
p_up f1.bin 10; p_down; n_up f1.bin 10; n_down f1.bin 10

echo "run size parapet_up_MBps parapet_up_cpu_ms_per_MB nginx_up_MBps nginx_up_cpu_ms_per_MB parapet_down_MBps parapet_down_cpu_ms_per_MB nginx_down_MBps nginx_down_cpu_ms_per_MB" > "$work/results"
for ((run = 1; run <= RUNS; run++)); do
    for size in 1 100; do
        if [ "$size" = 1 ]; then n=$N1; else n=$N100; fi
        mb=$((size * n))
        pu=$(phase "$pgroup" "$ppid" "$mb" p_up "f$size.bin" "$n")
        [ "$(wc -l < "$work/urls")" = "$n" ] || { echo "bench: Parapet kept $(wc -l < "$work/urls") of $n uploads; log: $work/parapet.log" >&2; exit 1; }
        nu=$(phase "$ngroup" "$npids" "$mb" n_up "f$size.bin" "$n")
        pd=$(phase "$pgroup" "$ppid" "$mb" p_down)
        nd=$(phase "$ngroup" "$npids" "$mb" n_down "f$size.bin" "$n")
        echo "$run ${size}MB $pu $nu $pd $nd" | tee -a "$work/results"
    done
done

echo
echo "Medians over $RUNS runs (CPU: ms per MB; ratio: Parapet/nginx):"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
for size in ("1MB", "100MB"):
    r = [x for x in rows if x[1] == size]
    col = lambda i: [float(x[i]) for x in r]
    med = lambda i: statistics.median(col(i))
    rng = lambda i: f"{min(col(i)):.2f}-{max(col(i)):.2f}"
    for name, pm, pc, nm, nc in (("upload", 2, 3, 4, 5), ("download", 6, 7, 8, 9)):
        ratios = [a / b for a, b in zip(col(pc), col(nc)) if b > 0]
        print(f"{size} {name}: Parapet {med(pm):.1f} MB/s, {med(pc):.2f} ms/MB; nginx {med(nm):.1f} MB/s, {med(nc):.2f} ms/MB; "
              f"CPU ratio {statistics.median(ratios):.2f} (runs {min(ratios):.2f}-{max(ratios):.2f})")
PY
