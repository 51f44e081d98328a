#!/usr/bin/env bash
# The Compose topology of deploy/compose.yaml without Docker, on loopback (issue #12):
# a throwaway PostgreSQL cluster, an S3 server (s3s-fs) holding the lake and the
# exports, `bankpipe serve` with the scheduler, Prometheus with the alert rules of
# deploy/prometheus/rules/, and a Pushgateway. Grafana is the one piece missing (it
# cannot be installed here): point one at the Prometheus URL printed, or import
# deploy/grafana/dashboards/*.json into yours (datasource uid `bankpipe-prometheus`).
#
# For users without Docker and for the tests (tests/deploy_observability.rs).
# Usage: deploy/local-stack.sh help. Everything it starts is stopped when it exits
# (Ctrl-C, SIGTERM, or a component that dies), and the state it made is removed
# unless --keep. It creates no role, service or file outside its state folder (and,
# as root, a PostgreSQL folder in /tmp owned by the `postgres` user, removed likewise).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MARKER=".bankpipe-local-stack"

usage() {
    cat <<EOF
usage: deploy/local-stack.sh up  [--dir DIR] [--keep] [--run] [--rows N] [--scrape-interval 15s]
                                 [--ingest-schedule CRON] [--verify-schedule CRON]
                                 [--export-schedule CRON]
                                 [--pg-port P] [--s3-port P] [--serve-port P]
                                 [--prometheus-port P] [--pushgateway-port P] [--bin BANKPIPE]
       deploy/local-stack.sh run [--dir DIR] [--rows N]
       deploy/local-stack.sh env [--dir DIR]

up     start the stack, print its URLs, and run until Ctrl-C or SIGTERM; then stop
       everything it started and remove its state (--keep keeps DIR).
       --run does \`run\` once the stack is up.
run    a real one-shot run on a running stack, as \`docker compose run bankpipe-run\`:
       three generated monthly files (2016-07 to 2016-09, --rows each, default 2000,
       2% defects) into DIR/batch (serve's scheduled ingest reads DIR/inbox),
       \`bankpipe run --inbox DIR/batch --pushgateway\`,
       \`bankpipe export --all --allow-partial\`, \`bankpipe verify\`.
env    print the environment for bankpipe commands against the stack:
       eval "\$(deploy/local-stack.sh env)"; "\$LOCAL_STACK_BIN" status
       (LOCAL_STACK_BIN: the binary the stack runs; bankpipe is not put on PATH)

DIR     state folder (default \${TMPDIR:-/tmp}/bankpipe-local-stack-\$(id -u)); it must
        be empty, absent, or an earlier stack's.
ports   defaults 15432 (PostgreSQL), 19000 (S3), 18000 (serve), 19090 (Prometheus),
        19091 (Pushgateway); also LOCAL_STACK_{PG,S3,SERVE,PROMETHEUS,PUSHGATEWAY}_PORT.
BANKPIPE  the binary (default: \$BANKPIPE_BIN, target/release/bankpipe,
        target/debug/bankpipe, bankpipe on PATH).
--scrape-interval  Prometheus' scrape and rule evaluation interval (default 15s, as
        deploy/prometheus/prometheus.yml; the tests use 1s).
--*-schedule  serve's [schedule] (defaults: ingest "*/15 * * * *", verify
        "0 30 3 * * SUN", export "0 6 2 1,4,7,10 *", as the README; "" for none).
EOF
}

die() {
    echo "local-stack: $*" >&2
    exit 2
}

note() {
    echo "local-stack: $*" >&2
}

# ---- options ---------------------------------------------------------------------

COMMAND="${1:-help}"
[ $# -gt 0 ] && shift
DIR="${TMPDIR:-/tmp}/bankpipe-local-stack-$(id -u)"
KEEP=0
RUN_AFTER=0
ROWS=2000
INTERVAL=15s
INGEST_SCHEDULE="*/15 * * * *"
VERIFY_SCHEDULE="0 30 3 * * SUN"
EXPORT_SCHEDULE="0 6 2 1,4,7,10 *"
PG_PORT="${LOCAL_STACK_PG_PORT:-15432}"
S3_PORT="${LOCAL_STACK_S3_PORT:-19000}"
SERVE_PORT="${LOCAL_STACK_SERVE_PORT:-18000}"
PROM_PORT="${LOCAL_STACK_PROMETHEUS_PORT:-19090}"
PGW_PORT="${LOCAL_STACK_PUSHGATEWAY_PORT:-19091}"
BIN="${BANKPIPE_BIN:-}"

while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="${2:?--dir needs a folder}"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --run) RUN_AFTER=1; shift ;;
        --rows) ROWS="${2:?--rows needs a number}"; shift 2 ;;
        --scrape-interval) INTERVAL="${2:?--scrape-interval needs a duration}"; shift 2 ;;
        --ingest-schedule) INGEST_SCHEDULE="${2?}"; shift 2 ;;
        --verify-schedule) VERIFY_SCHEDULE="${2?}"; shift 2 ;;
        --export-schedule) EXPORT_SCHEDULE="${2?}"; shift 2 ;;
        --pg-port) PG_PORT="${2:?}"; shift 2 ;;
        --s3-port) S3_PORT="${2:?}"; shift 2 ;;
        --serve-port) SERVE_PORT="${2:?}"; shift 2 ;;
        --prometheus-port) PROM_PORT="${2:?}"; shift 2 ;;
        --pushgateway-port) PGW_PORT="${2:?}"; shift 2 ;;
        --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$ROWS" in ''|*[!0-9]*) die "--rows must be a whole number, not '$ROWS'" ;; esac
for p in "$PG_PORT" "$S3_PORT" "$SERVE_PORT" "$PROM_PORT" "$PGW_PORT"; do
    case "$p" in ''|*[!0-9]*) die "a port must be a number, not '$p'" ;; esac
done
mkdir -p "$(dirname "$DIR")"
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"

# ---- tools -----------------------------------------------------------------------

# `require PROGRAM PACKAGE`: the path of PROGRAM, or a message saying how to get it.
require() {
    command -v "$1" 2>/dev/null || die "\`$1\` is not installed: apt-get install $2 (.ci/run does)"
}

find_bankpipe() {
    local c
    for c in "$BIN" "$REPO/target/release/bankpipe" "$REPO/target/debug/bankpipe" "$(command -v bankpipe 2>/dev/null || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return
        fi
    done
    die "no bankpipe binary: run \`cargo build\` (or pass --bin PATH)"
}

find_pg_bin() {
    local d
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    else
        die "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    fi
}

find_s3s_fs() {
    local c
    for c in "${S3S_FS_BIN:-}" "$HOME/.cargo/bin/s3s-fs" /usr/local/bin/s3s-fs "$(command -v s3s-fs 2>/dev/null || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return
        fi
    done
    die "the S3 server s3s-fs is not installed: cargo install s3s-fs@0.14.1 --features binary"
}

# Seconds of a duration such as 1s, 15s, 2m.
seconds_of() {
    case "$1" in
        *[0-9]s) echo "${1%s}" ;;
        *[0-9]m) echo $(( ${1%m} * 60 )) ;;
        *) die "--scrape-interval takes seconds or minutes (1s, 15s, 1m), not '$1'" ;;
    esac
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# `wait_for WHAT SECONDS COMMAND...`: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local what="$1" limit="$2" start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $(( SECONDS - start )) -ge "$limit" ]; then
            die "$what did not come up within ${limit}s (logs: $DIR/logs/)"
        fi
        check_alive
        sleep 0.2
    done
}

random_hex() {
    head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# ---- the stack's processes -------------------------------------------------------

PIDS=()
NAMES=()
PG_DIR=""
PG_BIN=""
CREATED_DIR=0

# `as_pg COMMAND...`: PostgreSQL refuses to run as root; then it runs as `postgres`.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# `start NAME COMMAND...`: runs COMMAND in the background, its output in logs/NAME.log.
start() {
    local name="$1"
    shift
    "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
    echo "$name $!" >>"$DIR/pids"
}

# Stops the stack if one of its processes has ended.
check_alive() {
    local i
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            note "${NAMES[$i]} stopped; its log ($DIR/logs/${NAMES[$i]}.log) ends with:"
            tail -n 20 "$DIR/logs/${NAMES[$i]}.log" >&2 || true
            exit 1
        fi
    done
}

# Everything started is stopped, whatever ends the script: SIGTERM to every process
# at once, SIGKILL to those still there after 1.5 s (a caller's own deadline may be
# 2 s), PostgreSQL's immediate stop, then the state removed.
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    local pid i
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    for i in $(seq 15); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 0 ]; then
        [ -n "$PG_DIR" ] && [ "$PG_DIR" != "$DIR/pg" ] && rm -rf "$PG_DIR"
        if [ "$CREATED_DIR" = 1 ]; then
            rm -rf "$DIR"
        elif [ -f "$DIR/$MARKER" ]; then
            rm -rf "${DIR:?}"/{pg,s3,data,inbox,batch,prometheus,logs,pids,stack.env,bankpipe.toml,pseudonym.key,"$MARKER"}
        fi
    else
        [ -f "$DIR/pids" ] && rm -f "$DIR/pids"
        note "state kept in $DIR"
    fi
    exit "$status"
}

# The loopback variant of deploy/prometheus/prometheus.yml: the same jobs and rules,
# only the targets, the intervals and the rules' folder rewritten. Each rewrite must
# find its text: a change there that this misses stops the script instead of silently
# running another configuration.
prometheus_config() {
    local src="$REPO/deploy/prometheus/prometheus.yml" text secs timeout
    text="$(cat "$src")"
    secs="$(seconds_of "$INTERVAL")"
    timeout="10s"
    [ "$secs" -lt 10 ] && timeout="$INTERVAL"
    local pairs=(
        "'bankpipe:8000'" "'127.0.0.1:$SERVE_PORT'"
        "'pushgateway:9091'" "'127.0.0.1:$PGW_PORT'"
        "'localhost:9090'" "'127.0.0.1:$PROM_PORT'"
        "  - rules/*.yml" "  - $REPO/deploy/prometheus/rules/*.yml"
        "scrape_interval: 15s" "scrape_interval: $INTERVAL"
        "scrape_timeout: 10s" "scrape_timeout: $timeout"
        "evaluation_interval: 15s" "evaluation_interval: $INTERVAL"
    )
    local i
    for (( i = 0; i < ${#pairs[@]}; i += 2 )); do
        case "$text" in
            *"${pairs[$i]}"*) text="${text//"${pairs[$i]}"/"${pairs[$((i + 1))]}"}" ;;
            *) die "$src no longer holds \"${pairs[$i]}\": update prometheus_config in $0" ;;
        esac
    done
    printf '# Generated by deploy/local-stack.sh from deploy/prometheus/prometheus.yml.\n%s\n' "$text"
}

# The environment of every bankpipe command against the stack (secrets included:
# the file is readable by its owner only).
write_env() {
    umask 077
    cat >"$DIR/stack.env" <<EOF
# bankpipe local stack ($DIR): eval "\$(deploy/local-stack.sh env --dir $DIR)"
export BANKPIPE_CONFIG='$DIR/bankpipe.toml'
export BANKPIPE_PSEUDONYM_KEY_FILE='$DIR/pseudonym.key'
export AWS_ENDPOINT_URL='http://127.0.0.1:$S3_PORT'
export AWS_ACCESS_KEY_ID='$S3_ACCESS_KEY'
export AWS_SECRET_ACCESS_KEY='$S3_SECRET_KEY'
export AWS_REGION='us-east-1'
export AWS_ALLOW_HTTP='true'
export LOCAL_STACK_BIN='$BIN'
export LOCAL_STACK_PUSHGATEWAY='http://127.0.0.1:$PGW_PORT'
export LOCAL_STACK_PROMETHEUS='http://127.0.0.1:$PROM_PORT'
export LOCAL_STACK_SERVE='http://127.0.0.1:$SERVE_PORT'
EOF
    umask 022
}

cmd_up() {
    BIN="$(find_bankpipe)"
    PG_BIN="$(find_pg_bin)"
    local prometheus pushgateway s3s_fs
    prometheus="$(require prometheus prometheus)"
    pushgateway="$(require prometheus-pushgateway prometheus-pushgateway)"
    require curl curl >/dev/null
    s3s_fs="$(find_s3s_fs)"
    local flag port
    for flag in "pg-port $PG_PORT" "s3-port $S3_PORT" "serve-port $SERVE_PORT" \
        "prometheus-port $PROM_PORT" "pushgateway-port $PGW_PORT"; do
        port="${flag#* }"
        if port_in_use "$port"; then
            die "port $port is in use: choose another with --${flag% *}"
        fi
    done

    if [ -e "$DIR" ] && [ ! -f "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR is neither empty nor a local stack's state: choose another --dir"
    fi
    if [ -f "$DIR/pids" ]; then
        local n p
        while read -r n p; do
            kill -0 "$p" 2>/dev/null && die "a stack already runs in $DIR ($n, pid $p)"
        done <"$DIR/pids"
        rm -f "$DIR/pids"
    fi
    [ -e "$DIR" ] || CREATED_DIR=1
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    mkdir -p "$DIR/logs" "$DIR/inbox" "$DIR/batch" "$DIR/data" "$DIR/s3/bankpipe" "$DIR/prometheus/data"
    touch "$DIR/$MARKER"

    # PostgreSQL: a new cluster, trust authentication on loopback and its socket only.
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the \`postgres\` user (apt-get install postgresql creates it)"
        PG_DIR="$(mktemp -d /tmp/bankpipe-stack-pg.XXXXXX)"
        chown postgres: "$PG_DIR"
    else
        PG_DIR="$DIR/pg"
        mkdir -p "$PG_DIR"
    fi
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -N -E UTF8 --locale=C >"$DIR/logs/initdb.log" 2>&1 \
        || { cat "$DIR/logs/initdb.log" >&2; die "initdb failed"; }
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t 30 -l "$PG_DIR/server.log" \
        -o "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$PG_DIR' -c fsync=off" start \
        >"$DIR/logs/pg_ctl.log" 2>&1 || { cat "$PG_DIR/server.log" >&2; die "PostgreSQL did not start"; }
    "$PG_BIN/psql" -X -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE bankpipe" >/dev/null

    # The S3 server: bucket `bankpipe` (lake under lake/, exports under exports/).
    S3_ACCESS_KEY="stack-$(random_hex 6)"
    S3_SECRET_KEY="$(random_hex 20)"
    start s3s-fs "$s3s_fs" --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DIR/s3"
    wait_for "s3s-fs" 20 curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"

    start pushgateway "$pushgateway" --web.listen-address="127.0.0.1:$PGW_PORT"

    # bankpipe: the configuration compose gives serve, on loopback.
    (umask 077 && head -c 32 /dev/urandom | base64 >"$DIR/pseudonym.key")
    cat >"$DIR/bankpipe.toml" <<EOF
# Generated by deploy/local-stack.sh.
data_dir = "$DIR/data"
inbox = "$DIR/inbox"
warehouse_url = "postgres://postgres@127.0.0.1:$PG_PORT/bankpipe"
lake_url = "s3://bankpipe/lake"
export_url = "s3://bankpipe/exports"
listen = "127.0.0.1:$SERVE_PORT"

EOF
    {
        echo "[schedule]"
        local job expr
        for job in ingest verify export; do
            case "$job" in
                ingest) expr="$INGEST_SCHEDULE" ;;
                verify) expr="$VERIFY_SCHEDULE" ;;
                export) expr="$EXPORT_SCHEDULE" ;;
            esac
            if [ -n "$expr" ]; then
                echo "$job = \"$expr\""
            fi
        done
    } >>"$DIR/bankpipe.toml"
    write_env
    # shellcheck disable=SC1091
    . "$DIR/stack.env"
    "$BIN" migrate >"$DIR/logs/migrate.log" 2>&1 || { cat "$DIR/logs/migrate.log" >&2; die "bankpipe migrate failed"; }
    start serve "$BIN" --log-format json serve --shutdown-timeout 5s

    prometheus_config >"$DIR/prometheus/prometheus.yml"
    start prometheus "$prometheus" --config.file="$DIR/prometheus/prometheus.yml" \
        --storage.tsdb.path="$DIR/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT"

    wait_for "the Pushgateway" 30 curl -fs "http://127.0.0.1:$PGW_PORT/-/ready"
    wait_for "bankpipe serve (/ready)" 60 curl -fs "http://127.0.0.1:$SERVE_PORT/ready"
    wait_for "Prometheus" 60 curl -fs "http://127.0.0.1:$PROM_PORT/-/ready"
    # Debian's Prometheus 2.42 ships only the classic UI, whose alerts page is
    # /classic/alerts (its /alerts is a 404); compose's prom/prometheus v3 serves /alerts.
    local alerts=/alerts
    curl -fs -o /dev/null "http://127.0.0.1:$PROM_PORT/alerts" || alerts=/classic/alerts

    cat <<EOF
bankpipe local stack (state in $DIR; pid $$)
  serve        http://127.0.0.1:$SERVE_PORT/   status page; /metrics /ready /api/runs
  prometheus   http://127.0.0.1:$PROM_PORT/   alerts: $alerts (rules: deploy/prometheus/rules/)
  pushgateway  http://127.0.0.1:$PGW_PORT/
  s3 (s3s-fs)  http://127.0.0.1:$S3_PORT/   lake s3://bankpipe/lake, exports s3://bankpipe/exports
  postgresql   postgres://postgres@127.0.0.1:$PG_PORT/bankpipe
  inbox        $DIR/inbox (serve's scheduled ingest); one-shot runs: $DIR/batch
bankpipe against it:  eval "\$(deploy/local-stack.sh env --dir $DIR)"; "\$LOCAL_STACK_BIN" status
                      (\$LOCAL_STACK_BIN is $BIN)
a real run:           deploy/local-stack.sh run --dir $DIR
stop:                 Ctrl-C, or kill $$
local stack ready
EOF

    if [ "$RUN_AFTER" = 1 ]; then
        # A failed run (exit 1: a file failed) leaves the stack up to look at it.
        do_run || note "the run ended with exit status $?; the stack stays up"
    fi
    while true; do
        check_alive
        sleep 1 &
        wait $! || true
    done
}

load_env() {
    [ -f "$DIR/stack.env" ] || die "no stack in $DIR: start one with \`deploy/local-stack.sh up --dir $DIR\`"
    # shellcheck disable=SC1091
    . "$DIR/stack.env"
    BIN="$LOCAL_STACK_BIN"
}

# A one-shot batch, as `docker compose run bankpipe-run` does: three monthly files of a
# quarter into its own inbox (DIR/batch: serve's scheduled ingest reads DIR/inbox, so
# the two never race for the files), then the run, the export and the verify.
do_run() {
    local month first=1 tmp
    for month in 2016-07 2016-08 2016-09; do
        tmp="$DIR/batch/.bank-$month.csv.part"
        "$BIN" -q generate --rows "$ROWS" --out "$tmp" --month "$month" --first-id "$first" \
            --defects 0.02 --seed "$first" || return
        mv "$tmp" "$DIR/batch/bank-$month.csv" || return
        first=$(( first + ROWS ))
    done
    # (Each step's status is checked here: `set -e` does not apply inside `do_run || …`.)
    "$BIN" run --no-progress --inbox "$DIR/batch" --pushgateway "$LOCAL_STACK_PUSHGATEWAY" || return
    "$BIN" export --all --allow-partial || return
    "$BIN" verify
}

case "$COMMAND" in
    up) cmd_up ;;
    run) load_env; do_run ;;
    env) load_env; cat "$DIR/stack.env" ;;
    help|-h|--help) usage ;;
    *) usage >&2; die "unknown command: $COMMAND" ;;
esac
