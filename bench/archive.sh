#!/usr/bin/env bash
# What archiving costs: MESSAGE relayed between registered users with the
# archiving policy off and on (every message kept for sender and recipient,
# sealed, written), in the same run, alternating; then an export of
# EXPORT_RECORDS records (default 1,000,000) streamed through the admin API
# while the server's peak memory is read.
#   bench/archive.sh                          # USERS=2000 MESSAGES=5000 RATE=500 RUNS=3
#   EXPORT_RECORDS=0 bench/archive.sh         # the MESSAGE cost only
# Needs: Debian's sip-tester, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-2000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-5000}
RUNS=${RUNS:-3}
EXPORT_RECORDS=${EXPORT_RECORDS:-1000000}
PORT=${PORT:-15260}
ADMIN_PORT=${ADMIN_PORT:-15290}

. bench/lib.sh
for c in sipp sqlite3; do command -v "$c" >/dev/null || { echo "bench: $c is missing" >&2; exit 2; }; done
cargo build --release -q -p parapet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "bench: files in $work" >&2 || rm -rf "$work"' EXIT
make_users

one() { # mode run
    local mode=$1 tag="a$1$2"
    parapet_serve "$tag" example.test "$PORT" "$ADMIN_PORT"
    sleep 2
    parapet_provision "$tag" "$ADMIN_PORT" "$work/users.tsv"
    if [ "$mode" = on ]; then
        padmin "$tag" "$ADMIN_PORT" policy set archiving global internal=true >/dev/null
        sleep 1.5
    fi
    parapet_pids() { echo "$ppid"; }
    local r; r=$(bench_server "$tag" "$PORT" 16500 parapet_pids)
    # Counted after a clean stop: the writer commits every 100 ms, and what
    # it holds at the stop is written before the process ends.
    kill $ppid; wait $ppid 2>/dev/null || true
    local kept; kept=$(sqlite3 "$work/$tag-data/parapet.db" "SELECT count(*) FROM archive")
    read -r _ _ _ _ _ _ mok msg _ _ <<<"$r"
    echo "$mode $msg $mok $kept"
}

echo "| run | archiving off: µs per request | archiving on: µs per request | on/off | messages completed off / on | records kept (on) |"
echo "|---|---|---|---|---|---|"
for run in $(seq 1 "$RUNS"); do
    read -r _ off okoff _ <<<"$(one off "$run")"
    read -r _ on okon kept <<<"$(one on "$run")"
    echo "| $run | $off | $on | $(ratio "$on" "$off") | $okoff / $okon | $kept |"
done

if [ "$EXPORT_RECORDS" -gt 0 ]; then
    # Records made in the database directly (their key is not on disk: the
    # export carries each with "cannot be opened"), then exported.
    tag=export
    parapet_serve "$tag" example.test "$PORT" "$ADMIN_PORT"
    sleep 2
    parapet_provision "$tag" "$ADMIN_PORT" "$work/users.tsv"
    kill $ppid; wait $ppid 2>/dev/null || true
    sqlite3 "$work/$tag-data/parapet.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EXPORT_RECORDS)
        INSERT INTO archive (owner, at_ms, sender, recipient, federated, result, key_id, sealed)
        SELECT 'sip:u' || (i % 2000) || '@example.test', 1796600000000 + i, 'sip:u' || (i % 2000) || '@example.test',
               'sip:receiver@example.test', 0, 'delivered', 'd20261206-r14', randomblob(120) FROM n;"
    parapet_serve "$tag" example.test "$PORT" "$ADMIN_PORT"
    sleep 3
    before=$(awk '/^VmRSS:/{print $2}' /proc/$ppid/status)
    t0=$(date +%s.%N)
    padmin "$tag" "$ADMIN_PORT" archive export --format jsonl --out "$work/export.jsonl" >/dev/null
    t1=$(date +%s.%N)
    peak=$(awk '/^VmHWM:/{print $2}' /proc/$ppid/status)
    lines=$(wc -l < "$work/export.jsonl")
    kill $ppid; wait $ppid 2>/dev/null || true
    echo
    echo "| export of $EXPORT_RECORDS records | lines written | seconds | server RSS before (KiB) | server peak RSS (KiB) |"
    echo "|---|---|---|---|---|"
    echo "| jsonl | $lines | $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') | $before | $peak |"
fi
