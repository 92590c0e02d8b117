#!/usr/bin/env bash
# Installs what the tests need (idempotently) and runs them. CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== prerequisites"
scripts/install-test-deps.sh
echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== fuzz smoke run"
scripts/fuzz.sh "${PARAPET_FUZZ_SECONDS:-15}"
echo "== tests"
cargo test --workspace
