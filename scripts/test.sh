#!/usr/bin/env bash
# Installs what the tests need (idempotently) and runs them. CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
# A test run builds once: incremental state would only double the disk
# the build takes (set CARGO_INCREMENTAL=1 to keep it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== prerequisites"
scripts/install-test-deps.sh
echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== layering"
scripts/check-layers.sh
echo "== fuzz smoke run"
scripts/fuzz.sh "${PARAPET_FUZZ_SECONDS:-15}"
echo "== tests"
log="$(mktemp)"
status=0
# The capacity tests load the server to its limit and judge how it
# recovers: they run afterwards, one at a time, with nothing beside them
# (run beside other tests, their timing measured the other tests).
cargo test --workspace -- --skip capacity:: 2>&1 | tee "$log" || status=$?
echo "== capacity tests, alone"
cargo test --workspace --test e2e -- --test-threads=1 capacity:: 2>&1 | tee -a "$log" || status=$?
# One closing line with the totals of every test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
