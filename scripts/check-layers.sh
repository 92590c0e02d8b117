#!/usr/bin/env bash
# The layering docs/ARCHITECTURE.md promises, checked on the dependency
# graph: the SIP application links no HTTP stack and no database, the APIs
# name no store implementation, and what the Edge will link (federation,
# config, the store traits) needs no database; the device PKI, the
# message content checks, SDP and the STUN codec do no I/O.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
forbid() { # crate, then the packages it must not depend on
    local crate=$1; shift
    local tree
    tree=$(cargo tree -q -p "$crate" -e normal --prefix none | awk '{print $1}' | sort -u)
    for bad in "$@"; do
        if grep -qx -- "$bad" <<<"$tree"; then
            echo "layering: $crate depends on $bad (cargo tree -p $crate -i $bad shows the path)" >&2
            status=1
        fi
    done
}
forbid parapet-store rusqlite tokio tokio-postgres
forbid parapet-store-postgres rusqlite parapet-store-sqlite
forbid parapet-store-sqlite tokio-postgres parapet-store-postgres
forbid parapet-config rusqlite axum hyper parapet-store-sqlite tokio-postgres parapet-store-postgres
forbid parapet-sip-app axum hyper tower rusqlite parapet-store-sqlite parapet-api tokio-postgres parapet-store-postgres
forbid parapet-api rusqlite parapet-store-sqlite parapet-server tokio-postgres parapet-store-postgres
forbid parapet-federation rusqlite parapet-store-sqlite axum hyper tokio-postgres parapet-store-postgres
forbid parapet-content tokio rusqlite parapet-store parapet-sip axum hyper
forbid parapet-xml tokio rusqlite parapet-store parapet-sip axum hyper
forbid parapet-stun tokio rusqlite parapet-store parapet-sip axum hyper
forbid parapet-sdp tokio rusqlite parapet-store parapet-sip axum hyper
forbid parapet-relay rusqlite parapet-store parapet-store-sqlite axum hyper parapet-sip parapet-sip-app parapet-config parapet-api
forbid parapet-pki rusqlite parapet-store parapet-sip parapet-sip-transport axum hyper tokio
forbid parapet-trace tokio rusqlite tokio-postgres parapet-store parapet-sip axum hyper
forbid parapet-archive tokio rusqlite tokio-postgres parapet-store parapet-sip axum hyper
forbid parapet-edge rusqlite tokio-postgres parapet-store-postgres parapet-store-sqlite parapet-store parapet-sip-app parapet-sip-txn parapet-api axum
[ "$status" = 0 ] && echo "layering: ok"
exit "$status"
