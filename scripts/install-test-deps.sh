#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian's sip-tester (SIPp) and
# baresip-core, linphone-cli and dnsmasq-base for the end-to-end tests, Debian's chromium with
# playwright-core (npm) for the self-service page, JsSIP and SIP.js (npm), cargo-fuzz for the fuzz
# smoke run, schemathesis for the admin and user APIs, and Kamailio with its TLS module (a partner
# organisation's server that is not Parapet, in the federation tests), and openssl, curl and jq (the
# README's device-certificate recipe); sslyze for the TLS profile; liblinphone-dev, a C compiler,
# sqlite3 and clamav-daemon for the file-transfer tests; iproute2, iptables and coturn's
# client tools for the media relay's tests; postgresql for the store's second back end.
set -euo pipefail

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
command -v linphone-daemon >/dev/null 2>&1 || need_apt+=(linphone-cli)
command -v dnsmasq >/dev/null 2>&1 || need_apt+=(dnsmasq-base)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v kamailio >/dev/null 2>&1 || need_apt+=(kamailio)
compgen -G "/usr/lib/*/kamailio/modules/tls.so" >/dev/null || need_apt+=(kamailio-tls-modules)
# The README's device-certificate recipe: openssl makes the request, curl and jq call the user API.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
# File transfer: a liblinphone client built by the tests (a C compiler,
# pkg-config, liblinphone-dev), sqlite3 to age a file past its expiry.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
[ -f /usr/include/linphone/core.h ] || need_apt+=(liblinphone-dev)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
# Virus scanning: clamd, started by the test with a local signature file
# (nothing is downloaded; Debian's freshclam service is not used).
command -v clamd >/dev/null 2>&1 || need_apt+=(clamav-daemon)
# The media relay's NAT laboratory: network namespaces (iproute2) with
# iptables' MASQUERADE between them; coturn's client tools drive the relay
# as a third-party client.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v turnutils_uclient >/dev/null 2>&1 || need_apt+=(coturn)
# PostgreSQL: the store's second back end, started per test binary.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# playwright-core drives Debian's chromium (it downloads no browser); the
# version is pinned by tests/browser/package-lock.json.
browser="$(dirname "$0")/../tests/browser"
if [ ! -f "$browser/node_modules/playwright-core/package.json" ]; then
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

# JsSIP and SIP.js (npm) drive the server over WSS as browser clients do;
# versions pinned by tests/sipjs/package-lock.json.
sipjs="$(dirname "$0")/../tests/sipjs"
if [ ! -f "$sipjs/node_modules/jssip/package.json" ] || [ ! -f "$sipjs/node_modules/sip.js/package.json" ]; then
    (cd "$sipjs" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Schemathesis (PyPI) checks the admin API against its own OpenAPI document;
# it lives in a virtual environment of its own (the e2e test looks there).
venv="${PARAPET_VENV:-$HOME/.cache/parapet/venv}"
schemathesis_version="4.32.5"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi

# sslyze (PyPI) checks the TLS, WSS and HTTPS listeners against Mozilla's
# "intermediate" profile; a virtual environment of its own (its pinned
# cryptography must not meet schemathesis's dependencies).
sslyze_venv="${PARAPET_SSLYZE_VENV:-$HOME/.cache/parapet/sslyze-venv}"
sslyze_version="6.3.1"
if ! "$sslyze_venv/bin/pip" show sslyze 2>/dev/null | grep -q "^Version: $sslyze_version$"; then
    python3 -m venv "$sslyze_venv"
    "$sslyze_venv/bin/pip" install -q "sslyze==$sslyze_version"
fi
