#!/bin/bash
# Bounded disk, measured over HTTP with the peer's flowload driver (README, "Bounded disk").
#
#   scripts/bounded-disk.sh bytes    # bytes per completed flow: SQLite and PostgreSQL, simple and
#                                    # interactive, SECONDS_PER_RUN of flowload each, no TTL
#   scripts/bounded-disk.sh steady   # SQLite file + WAL every 30 s under flowload with
#                                    # --thread-ttl $TTL for SECONDS_RUN seconds
#
# BATON (default target/release/baton), FLOWLOAD (default /tmp/flowload-src/target/release/flowload,
# built as scripts/bench-vs-peer.sh builds it), OUT_DIR (default a new /tmp/bounded-disk.XXXXXX),
# PORT (8792), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres; a database
# baton_bounded_disk is created there and dropped), SECONDS_PER_RUN (20), SECONDS_RUN (600),
# TTL (1m), CONCURRENCY (16).
set -euo pipefail
cd "$(dirname "$0")/.."
BATON="${BATON:-$PWD/target/release/baton}"
FLOWLOAD="${FLOWLOAD:-/tmp/flowload-src/target/release/flowload}"
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/bounded-disk.XXXXXX)}"
PORT="${PORT:-8792}"; CONCURRENCY="${CONCURRENCY:-16}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_URL="${PG_ADMIN_URL%/*}/baton_bounded_disk"
BASE="http://127.0.0.1:$PORT"
[ -x "$BATON" ] || { echo "no $BATON (cargo build --release)" >&2; exit 1; }
[ -x "$FLOWLOAD" ] || { echo "no $FLOWLOAD (see scripts/bench-vs-peer.sh)" >&2; exit 1; }
SERVER=""
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; true' EXIT

serve() { # database url, extra flags
  BATON_LOG=warn "$BATON" serve --addr "127.0.0.1:$PORT" --database-url "$@" >>"$OUT_DIR/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 150); do curl -sf "$BASE/api/health" >/dev/null && return; sleep 0.2; done
  echo "baton did not start (see $OUT_DIR/server.log)" >&2; exit 1
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""; }
flows() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['flows'])" "$1"; }
sqlite_bytes() { sqlite3 "$1" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null; stat -c%s "$1"; }
pg_bytes() {
  psql -qAt "$PG_URL" -c "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['threads',
    'checkpoints','webhook_deliveries','webhook_attempts','agents']::regclass[]) c"
}

bytes() {
  local seconds="${SECONDS_PER_RUN:-20}" mode db empty full packed n
  for mode in simple interactive; do
    db="$OUT_DIR/$mode.db"
    serve "sqlite://$db"; stop; empty=$(sqlite_bytes "$db")
    serve "sqlite://$db"
    "$FLOWLOAD" --base-url "$BASE" --mode "$mode" --concurrency "$CONCURRENCY" --seconds "$seconds" \
      --threads 1 >"$OUT_DIR/sqlite-$mode.json"
    stop; full=$(sqlite_bytes "$db"); n=$(flows "$OUT_DIR/sqlite-$mode.json")
    echo "sqlite   $mode: $n flows, $(( (full - empty) / n )) bytes/flow"
    psql -qAt "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS baton_bounded_disk" \
      -c "CREATE DATABASE baton_bounded_disk"
    serve "$PG_URL"; empty=$(pg_bytes)
    "$FLOWLOAD" --base-url "$BASE" --mode "$mode" --concurrency "$CONCURRENCY" --seconds "$seconds" \
      --threads 1 >"$OUT_DIR/postgres-$mode.json"
    stop; full=$(pg_bytes); n=$(flows "$OUT_DIR/postgres-$mode.json")
    psql -qAt "$PG_URL" -c "VACUUM FULL threads, checkpoints, webhook_deliveries, webhook_attempts, agents"
    packed=$(pg_bytes)
    echo "postgres $mode: $n flows, $(( (full - empty) / n )) bytes/flow as written, $(( (packed - empty) / n )) live (after VACUUM FULL)"
    psql -qAt "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS baton_bounded_disk"
  done
}

steady() {
  local db="$OUT_DIR/steady.db" t=0 size wal metrics
  serve "sqlite://$db" --thread-ttl "${TTL:-1m}"
  "$FLOWLOAD" --base-url "$BASE" --mode interactive --concurrency "$CONCURRENCY" \
    --seconds "${SECONDS_RUN:-600}" --threads 1 >"$OUT_DIR/steady-flowload.json" &
  local driver=$!
  echo "s file_bytes wal_bytes threads_kept expired_total"
  while kill -0 "$driver" 2>/dev/null; do
    sleep 30; t=$((t + 30))
    size=$(stat -c%s "$db"); wal=$(stat -c%s "$db-wal" 2>/dev/null || echo 0)
    metrics=$(curl -s "$BASE/metrics")
    echo "$t $size $wal $(awk '/^baton_threads\{/ {s += $2} END {print s}' <<<"$metrics") \
$(awk '/^baton_threads_expired_total/ {print $2}' <<<"$metrics")"
  done
  stop
  cat "$OUT_DIR/steady-flowload.json"
}

case "${1:-}" in
  bytes) bytes ;;
  steady) steady ;;
  *) echo "usage: $0 bytes|steady" >&2; exit 2 ;;
esac
