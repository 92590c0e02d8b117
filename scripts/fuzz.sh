#!/usr/bin/env bash
# Runs the cargo-fuzz targets for a bounded time each.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Default: 20 s for each of message, uri, headers, framing, txn, policy, pidf, certificate, edge, csr, crl, im_filter, files, multipart, ft_http, offers, stun, sdp, relay, trace (the CI smoke
# run). Before resolving parser work, run an hour or more per target, e.g.
#   scripts/fuzz.sh 3600 message
# Corpora grow under fuzz/corpus/ (not committed); crashes land in
# fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(message uri headers framing txn policy pidf certificate edge csr crl im_filter files multipart ft_http offers stun sdp relay trace)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly features (sanitizers); use the nightly toolchain when
# the machine has one, otherwise let stable accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

data=crates/sip/tests/data
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    case "$t" in
        message|framing|txn|edge)
            cp -n "$data"/rfc4475/*.dat "$corpus"/ 2>/dev/null || true
            for f in "$data"/rfc5118/*; do
                [ "$(basename "$f")" = INDEX.tsv ] || cp -n "$f" "$corpus/5118-$(basename "$f")"
            done
            cp -n fuzz/seeds/message/* "$corpus"/ ;;
        uri) cp -n fuzz/seeds/uri/* "$corpus"/ ;;
        headers) cp -n fuzz/seeds/headers/* "$corpus"/ ;;
        policy) cp -n fuzz/seeds/policy/* "$corpus"/ ;;
        pidf) cp -n fuzz/seeds/pidf/* "$corpus"/ ;;
        certificate) cp -n fuzz/seeds/certificate/* "$corpus"/ ;;
        csr) cp -n fuzz/seeds/csr/* "$corpus"/ ;;
        crl) cp -n fuzz/seeds/crl/* "$corpus"/ ;;
        im_filter) cp -n fuzz/seeds/im_filter/* "$corpus"/ ;;
        files) cp -n fuzz/seeds/files/* "$corpus"/ ;;
        multipart) cp -n fuzz/seeds/multipart/* "$corpus"/ ;;
        ft_http) cp -n fuzz/seeds/ft_http/* "$corpus"/ ;;
        offers) cp -n fuzz/seeds/offers/* "$corpus"/ ;;
        stun) cp -n fuzz/seeds/stun/* "$corpus"/ ;;
        sdp) cp -n fuzz/seeds/sdp/* "$corpus"/ ;;
        relay) cp -n fuzz/seeds/stun/* "$corpus"/ ;;
        trace) cp -n fuzz/seeds/trace/* "$corpus"/ ;;
        *) echo "unknown fuzz target: $t" >&2; exit 2 ;;
    esac
    echo "fuzz: $t for ${secs}s"
    log="fuzz/corpus/$t.log"
    status=0
    (cd fuzz && "${fuzz[@]}" run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=70000 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) \
        >"$log" 2>&1 || status=$?
    grep -E 'stat::number_of_executed_units|stat::peak_rss|^Done' "$log" || true
    if [ "$status" -ne 0 ] || compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t failed (exit $status); failing inputs, if any, are in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
