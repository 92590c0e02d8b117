#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian's sip-tester (SIPp) and
# baresip-core for the end-to-end tests, cargo-fuzz for the fuzz smoke run.
set -euo pipefail

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
