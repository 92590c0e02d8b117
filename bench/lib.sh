# Shared by bench/run.sh and bench/presence.sh: users, measurement helpers,
# SIPp runs, and starting each server the way an operator would.
# Expects: $work (a scratch directory), $RATE, USERS.

clk=$(getconf CLK_TCK)
# CPU microseconds used so far by the given processes (all their threads).
cpu_us() { local t=0; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $((t * 1000000 / clk)); }
# Proportional set size in KiB (shared pages split between processes).
pss_kib() { local t=0; for p in "$@"; do [ -r /proc/$p/smaps_rollup ] && t=$((t + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup))); done; echo $t; }
# Percentile (ms) of SIPp's response times in an rtt file.
pct() { awk -F';' 'NR>1 && $3==1 {print $2}' "$1" | sort -n | awk -v q="$2" '{a[NR]=$1} END {if (NR==0) print "n/a"; else {i=int(NR*q); if (i<1) i=1; print a[i]}}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

need_tools() {
    for c in sipp kamailio sqlite3; do
        command -v "$c" >/dev/null || { echo "bench: $c is missing (apt-get install $*)" >&2; exit 2; }
    done
    # Kamailio's modules come in packages of their own, with no command.
    local p missing=""
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    [ -z "$missing" ] || { echo "bench: missing packages (apt-get install$missing)" >&2; exit 2; }
}

# Users u0..u(N-1) and receiver: SIPp's CSV (user;[authentication ...]),
# Parapet's TSV, Kamailio's SQL.
make_users() {
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
}

# One SIPp run; prints "successful made p50 p99". To SIPP_DEST (default
# 127.0.0.1), in SIPP_WORK (default $work: runs at the same time need a
# directory each, holding their CSV files), at SIPP_RATE (default $RATE).
sipp_run() { # name port scenario csv calls local_port auth_uri [more sipp args]
    local name=$1 port=$2 sf=$3 csv=$4 calls=$5 lport=$6 auth_uri=$7
    shift 7
    local dir=${SIPP_WORK:-$work} root=$PWD
    # The digest uri must be the Request-URI (SIPp defaults to ip:port).
    (cd "$dir" && sipp -sf "$root/bench/sipp/$sf" -inf "$csv" -m "$calls" -r "${SIPP_RATE:-$RATE}" -l 2000 -t u1 -auth_uri "$auth_uri" \
        -i 127.0.0.1 -p "$lport" -trace_rtt -rtt_freq 1 -trace_stat -trace_err -nostdin -timeout 300s -timeout_error \
        "$@" "${SIPP_DEST:-127.0.0.1}:$port" >/dev/null 2>&1) || true
    local rtt; rtt=$(ls -t "$dir"/"${sf%.xml}"_*_rtt.csv 2>/dev/null | head -1)
    local stat; stat=$(ls -t "$dir"/"${sf%.xml}"_*_.csv 2>/dev/null | head -1)
    local ok; ok=$(awk -F';' 'END {print $16}' "$stat" 2>/dev/null || echo 0)  # SuccessfulCall(C)
    local made; made=$(awk -F';' 'END {print $12}' "$stat" 2>/dev/null || echo 0)  # OutgoingCall(C)
    echo "$ok $made $(pct "$rtt" 0.5) $(pct "$rtt" 0.99)"
    mv "$rtt" "$work/$name-$sf.rtt" 2>/dev/null || true
    mv "$stat" "$work/$name-$sf.stat" 2>/dev/null || true
}

# A PostgreSQL server of its own in $work/pg, as the postgres user when run
# as root, on 127.0.0.1:$PG_PORT (fsync and synchronous_commit on). Sets
# $pgpid; pg runs psql as its superuser; pg_pids lists its processes (the
# postmaster and its backends).
start_postgres() {
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$work/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
    as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    cat >> "$work/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$work/pg'
fsync = on
synchronous_commit = on
max_connections = 200
${PG_STATS:+shared_preload_libraries = 'pg_stat_statements'}
${PG_STATS:+pg_stat_statements.track = all}
CONF
    as_pg "$pgbin/postgres" -D "$work/pg/data" >"$work/pg/log" 2>&1 &
    pgpid=$!
    for _ in $(seq 150); do psql -h "$work/pg" -p "$PG_PORT" -U postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
}
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups --reset-env "$@"; else "$@"; fi; }
pg() { psql -h "$work/pg" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
# (The postmaster from its pid file: $pgpid is the subshell that started
# it, whose children the backends are not.)
pg_pids() { local pm; pm=$(head -1 "$work/pg/data/postmaster.pid" 2>/dev/null); echo "$pm $(pgrep -P "$pm" | tr '\n' ' ')"; }

# Parapet on UDP (for SIPp), MD5 digest (SIPp 3.6), no per-address rate
# limit (one load source); users imported through the admin API by a
# break-glass administrator signed in with a TOTP code, as an operator would.
# Sets $ppid.
start_parapet() { # port admin_port
    parapet_serve main example.test "$1" "$2"
    sleep 2
    parapet_provision main "$2" "$work/users.tsv"
}

# `parapet serve` for DOMAIN with its data in $work/TAG-data, UDP on PORT
# (of $PARAPET_HOST, default 127.0.0.1),
# more listeners in $PARAPET_EXTRA_LISTEN (space-separated URLs), top-level
# keys in $PARAPET_TOP_TOML and more configuration (TOML, tables) in
# $PARAPET_EXTRA_TOML; under $PARAPET_PREFIX (e.g.
# taskset). Starting it again keeps its data. Sets $ppid.
parapet_serve() { # tag domain port admin_port
    local tag=$1 domain=$2 port=$3 admin_port=$4
    local data="$work/$tag-data" listen=(--listen "udp://${PARAPET_HOST:-127.0.0.1}:$port")
    for l in ${PARAPET_EXTRA_LISTEN:-}; do listen+=(--listen "$l"); done
    cat > "$work/$tag.toml" <<TOML
# SIPp 3.6 answers the first challenge, knows only MD5 and has no TLS.
digest_algorithms = ["MD5"]
digest_md5_unencrypted = true
${PARAPET_TOP_TOML:-}
[limits]
unauthenticated_rate = 100000000
unauthenticated_burst = 100000000
${PARAPET_EXTRA_TOML:-}
TOML
    ${PARAPET_PREFIX:-} "${PARAPET_BIN:-target/release/parapet}" serve --config "$work/$tag.toml" --data-dir "$data" --domain "$domain" \
        --allow-insecure-transports "${listen[@]}" --admin-listen "127.0.0.1:$admin_port" --web-listen "" 2>>"$work/$tag.log" &
    ppid=$!
}

# `parapet admin` against the server TAG (its admin port and session).
padmin() { # tag admin_port args...
    local tag=$1 admin_port=$2
    shift 2
    PARAPET_ADMIN_URL="http://127.0.0.1:$admin_port" PARAPET_ADMIN_SESSION="$work/$tag-session" "${PARAPET_BIN:-target/release/parapet}" admin "$@"
}

# A break-glass administrator signed in with a TOTP code, then the users
# of USERS_TSV imported through the admin API.
parapet_provision() { # tag admin_port users_tsv
    local tag=$1 admin_port=$2 users=$3
    padmin "$tag" "$admin_port" --output json recover --data-dir "$work/$tag-data" --name bench >"$work/$tag-admin.json"
    local code
    code=$(python3 -c '
import base64, hashlib, hmac, json, struct, sys, time
a = json.load(open(sys.argv[1])); s = a["totp_secret"]
k = base64.b32decode(s + "=" * (-len(s) % 8))
h = hmac.new(k, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000))' "$work/$tag-admin.json")
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["password"])' "$work/$tag-admin.json" |
        padmin "$tag" "$admin_port" login --name bench --password-stdin --code "$code" >/dev/null
    padmin "$tag" "$admin_port" user import "$users" >/dev/null
}

# Kamailio with config $1 (DBPATH and ADDRESS filled in) and the SQLite
# schemas named after it, users loaded. Sets $kpid and $kpids.
start_kamailio() { # cfg port shm_mb schemas...
    local cfg=$1 port=$2 shm=$3
    shift 3
    kdb="$work/kam.db"
    for s in "$@"; do sqlite3 "$kdb" < /usr/share/kamailio/db_sqlite/$s-create.sql; done
    sqlite3 "$kdb" < "$work/kam.sql"
    sed -e "s|DBPATH|$kdb|g" -e "s|ADDRESS|127.0.0.1:$port|g" "$cfg" > "$work/kamailio.cfg"
    mkdir -p "$work/kamrun"
    kamailio -f "$work/kamailio.cfg" -l "udp:127.0.0.1:$port" -DD -E -Y "$work/kamrun" -m "$shm" -M 16 >/dev/null 2>"$work/kamailio.log" &
    kpid=$!
    sleep 3
    kpids="$(pgrep -f "kamailio -f $work/kamailio.cfg" | tr '\n' ' ')"
}

# One server's figures: REGISTER for all users, memory in steady state,
# then MESSAGE relayed to a registered receiver. PIDSFN prints the pids
# whose CPU counts (asked again at each reading: a database server's
# backends come and go). Prints "name reg_ok reg_us p50 p99 pss msg_ok
# msg_us p50 p99".
bench_server() { # name port receiver_port pidsfn [dbpidsfn: the database's share, printed after]
    local name=$1 port=$2 rport=$3 pidsfn=$4 dbfn=${5:-}
    local c0 d0=0 d1=0 d2=0 d3=0
    c0=$(cpu_us $($pidsfn)); [ -z "$dbfn" ] || d0=$(cpu_us $($dbfn))
    read -r rok rmade rp50 rp99 < <(sipp_run "$name" "$port" register.xml users.csv "$USERS" 16000 example.test)
    local c1; c1=$(cpu_us $($pidsfn)); [ -z "$dbfn" ] || d1=$(cpu_us $($dbfn))
    # Memory in steady state with the bindings: after transaction state from
    # the burst has expired (timer J is 32 s over UDP).
    sleep 35
    local pss; pss=$(pss_kib $($pidsfn))
    sipp_run "$name" "$port" register.xml receiver.csv 1 "$rport" example.test >/dev/null
    (cd "$work" && exec sipp -sf "$OLDPWD/bench/sipp/message_uas.xml" -t u1 -i 127.0.0.1 -p "$rport" -nostdin -timeout 600s 127.0.0.1:"$port" >/dev/null 2>&1) &
    local uas=$!
    sleep 1
    local c2; c2=$(cpu_us $($pidsfn)); [ -z "$dbfn" ] || d2=$(cpu_us $($dbfn))
    read -r mok mmade mp50 mp99 < <(sipp_run "$name" "$port" message_uac.xml users.csv "$MESSAGES" 17000 receiver@example.test)
    local c3; c3=$(cpu_us $($pidsfn)); [ -z "$dbfn" ] || d3=$(cpu_us $($dbfn))
    kill $uas 2>/dev/null || true
    # Per SIP request sent by SIPp (2 per registration, 2 per message), whether
    # or not it succeeded: a server that fails requests is not made to look
    # more expensive per success.
    local reg_us msg_us
    reg_us=$(awk -v c=$((c1 - c0)) -v n="$rmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    msg_us=$(awk -v c=$((c3 - c2)) -v n="$mmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
    if [ -z "$dbfn" ]; then
        echo "$name $rok $reg_us $rp50 $rp99 $pss $mok $msg_us $mp50 $mp99"
    else
        local reg_db msg_db
        reg_db=$(awk -v c=$((d1 - d0)) -v n="$rmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
        msg_db=$(awk -v c=$((d3 - d2)) -v n="$mmade" 'BEGIN {printf "%.1f", (n > 0 ? c / (2 * n) : 0)}')
        echo "$name $rok $reg_us $rp50 $rp99 $pss $mok $msg_us $mp50 $mp99 $reg_db $msg_db"
    fi
}
