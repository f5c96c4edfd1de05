#!/usr/bin/env bash
# Side-by-side benchmark: Baton against the Python LangGraph peer (shared/peers), in one run.
#
#   1. in process:  `baton bench` vs the peer's `bench_inproc.py` (the STORES below, each on both)
#   2. over HTTP:   flowload (simple + interactive) against the peer, then against `baton serve`
#                   (Baton is driven with flowload --threads 1, like the peer, and also --threads 2)
#
# Loopback only (127.0.0.1). Every step is bounded in time. The servers run one after the
# other, never together, and are stopped on exit (also on Ctrl-C or error).
#
# Settings (environment variable, or the flag beside it):
#   SECONDS_PER_RUN  --seconds N      measured seconds per flowload run           (10)
#   CONCURRENCY      --concurrency N  workers / conversations in flight            (16)
#   SYNC             --sync S         SQLite synchronous for BOTH sides: FULL|NORMAL (FULL)
#   N                --n N            in-process conversations per store           (300)
#   STORES           --stores LIST    in-process stores for BOTH sides: memory,sqlite,postgres
#                                     (memory,sqlite); postgres needs psql and recreates the two
#                                     databases below (one per side) before measuring
#   BATON_BENCH_POSTGRES_URL          Baton's database    (postgres://postgres@127.0.0.1:5432/baton_bench)
#   PEER_POSTGRES_URL                 the peer's database (postgresql://postgres@127.0.0.1:5432/peer_bench)
#   PG_WRITERS       --pg-writers N   Baton's PostgreSQL checkpoint writers (baton's default)
#   PEER_VENV        --peer-venv DIR  virtualenv with langgraph_ref's requirements (/tmp/peer-venv)
#   FLOWLOAD         --flowload BIN   flowload binary (default $FLOWLOAD_SRC/target/release/flowload
#                                     with FLOWLOAD_SRC=/tmp/flowload-src; if missing, shared/peers/flowload
#                                     is copied to FLOWLOAD_SRC and built there, never inside shared/)
#   BATON            --baton BIN      baton binary (default <repo>/target/release/baton;
#                                     built with `cargo build --release` if that default is missing)
#   PEERS_DIR        --peers-dir DIR  shared/peers (default <repo>/../shared/peers)
#   SIDES            --sides LIST     baton,peer (default both; one side = no ratios)
#   PARTS            --parts LIST     inproc,http (default both)
#   WARMUP           --warmup S       flowload unmeasured warm-up seconds          (0, as in RESULTS.md)
#   CARGO_JOBS                        -j for the cargo builds (flowload defaults to 1)
#   PEER_PORT / BATON_PORT            8765 / 8766
#   INPROC_TIMEOUT                    seconds allowed per in-process bench         (900)
#   OUT_DIR                           where raw outputs and logs go (new /tmp/bench-vs-peer.XXXXXX)
#
# Output: progress and the tools' own output on stderr; a readable summary and, as the very
# last stdout line, one JSON object (ratios are baton / peer, so > 1 means Baton is faster):
#   {"sync":..,"inproc":{"baton":..,"peer":..,"ratio_sqlite_conv_per_s":..,"ratio_memory_conv_per_s":..,
#             "ratio_postgres_conv_per_s":.. (with postgres in STORES)},
#    "http":{"simple":{"baton":..,"peer":..,"ratio_flows_per_s":..,"baton_threads2":..,
#            "ratio_flows_per_s_threads2":..},"interactive":{...}}, "settings":{...}}
# Exit code: 0 when every step produced its JSON, 1 otherwise (the JSON is printed anyway,
# with null for what is missing).
set -euo pipefail

usage() { sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --sync) SYNC="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --stores) STORES="$2"; shift 2 ;;
    --pg-writers) PG_WRITERS="$2"; shift 2 ;;
    --peer-venv) PEER_VENV="$2"; shift 2 ;;
    --flowload) FLOWLOAD="$2"; shift 2 ;;
    --baton) BATON="$2"; shift 2 ;;
    --peers-dir) PEERS_DIR="$2"; shift 2 ;;
    --sides) SIDES="$2"; shift 2 ;;
    --parts) PARTS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[bench-vs-peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
is_uint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$SCRIPT_DIR/.." && pwd))"

SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
SYNC="${SYNC:-FULL}"
N="${N:-300}"
STORES="${STORES:-memory,sqlite}"
BATON_BENCH_POSTGRES_URL="${BATON_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/baton_bench}"
PEER_POSTGRES_URL="${PEER_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/peer_bench}"
PG_WRITERS="${PG_WRITERS:-}"
PEER_VENV="$(abspath "${PEER_VENV:-/tmp/peer-venv}")"
PEERS_DIR="$(abspath "${PEERS_DIR:-$ROOT/../shared/peers}")"
PEERS_DIR="$(cd "$PEERS_DIR" 2>/dev/null && pwd || printf '%s\n' "$PEERS_DIR")"
SIDES="${SIDES:-baton,peer}"
PARTS="${PARTS:-inproc,http}"
WARMUP="${WARMUP:-0}"
PEER_PORT="${PEER_PORT:-8765}"
BATON_PORT="${BATON_PORT:-8766}"
INPROC_TIMEOUT="${INPROC_TIMEOUT:-900}"
FLOWLOAD_SRC="${FLOWLOAD_SRC:-/tmp/flowload-src}"

SYNC_UPPER="$(printf '%s' "$SYNC" | tr '[:lower:]' '[:upper:]')"
SYNC_LOWER="$(printf '%s' "$SYNC" | tr '[:upper:]' '[:lower:]')"
case "$SYNC_UPPER" in FULL|NORMAL) ;; *) die "SYNC must be FULL or NORMAL, not '$SYNC'" ;; esac
for v in SECONDS_PER_RUN CONCURRENCY N WARMUP PEER_PORT BATON_PORT INPROC_TIMEOUT; do
  is_uint "${!v}" || die "$v must be a non-negative integer, not '${!v}'"
done
[ "$SECONDS_PER_RUN" -ge 1 ] && [ "$CONCURRENCY" -ge 1 ] && [ "$N" -ge 1 ] \
  || die "SECONDS_PER_RUN, CONCURRENCY and N must be at least 1"

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
for s in ${SIDES//,/ }; do case "$s" in baton|peer) ;; *) die "SIDES: unknown side '$s'" ;; esac; done
for p in ${PARTS//,/ }; do case "$p" in inproc|http) ;; *) die "PARTS: unknown part '$p'" ;; esac; done
for s in ${STORES//,/ }; do case "$s" in memory|sqlite|postgres) ;; *) die "STORES: unknown store '$s'" ;; esac; done
[ -z "$PG_WRITERS" ] || is_uint "$PG_WRITERS" || die "PG_WRITERS must be a positive integer, not '$PG_WRITERS'"

OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/bench-vs-peer.XXXXXX)}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(abspath "$OUT_DIR")"

PEER_DB=/tmp/peer-bench.db
PEER_INPROC_DB=/tmp/peer-bench-inproc.db
BATON_DB=/tmp/baton-bench-http.db
rm_db() { local f; for f in "$@"; do rm -f "$f" "$f-wal" "$f-shm" "$f-journal"; done; }

# A fresh PostgreSQL database at URL (dropped if it exists), through the server's `postgres`
# database; each side gets its own, so neither measures the other's rows.
recreate_pg_db() { # url
  local base="${1%%\?*}" name server
  name="${base##*/}"
  server="${base%/*}"
  case "$name" in ''|*[!A-Za-z0-9_]*) die "database name '$name' in $1: letters, digits and _ only" ;; esac
  psql "$server/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" \
    -qc "CREATE DATABASE $name" >&2 || die "cannot recreate database $name at $server"
}

# ---------------------------------------------------------------- servers and clean-up
PEER_PID=""
BATON_PID=""
stop_pid() { # pid name
  local pid="$1" name="$2" i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}
stop_peer() { stop_pid "$PEER_PID" peer; PEER_PID=""; }
stop_baton() { stop_pid "$BATON_PID" baton; BATON_PID=""; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_peer
  stop_baton
  rm_db "$PEER_DB" "$PEER_INPROC_DB" "$BATON_DB"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_health() { # url pid name seconds
  local url="$1" pid="$2" name="$3" secs="$4" i
  for i in $(seq 1 $((secs * 10))); do
    curl -fsS --max-time 2 "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "$name exited before it became healthy (log: $OUT_DIR/$name-server.log)"
    sleep 0.1
  done
  die "$name not healthy at $url after ${secs}s (log: $OUT_DIR/$name-server.log)"
}

# ---------------------------------------------------------------- running a JSON-printing tool
FAILED=0
# run_json NAME TIMEOUT CMD... : stdout -> $OUT_DIR/NAME.out (and stderr of this script),
# stderr -> $OUT_DIR/NAME.err (its tail is shown afterwards); the last stdout line, if it is a JSON object, goes to
# $OUT_DIR/NAME.json. Never aborts the script; a failure sets FAILED=1.
run_json() {
  local name="$1" secs="$2" rc=0
  shift 2
  log "$name: $*"
  # --foreground keeps the tool in our process group, so Ctrl-C reaches it.
  set +e
  timeout --foreground --kill-after=10 "$secs" "$@" 2>"$OUT_DIR/$name.err" | tee "$OUT_DIR/$name.out" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ -s "$OUT_DIR/$name.err" ]; then
    log "$name: stderr (last 20 lines of $OUT_DIR/$name.err):"
    tail -n 20 "$OUT_DIR/$name.err" | sed 's/^/    /' >&2
  fi
  if [ "$rc" -ne 0 ]; then
    log "$name: exit code $rc$([ "$rc" -eq 124 ] && echo " (timed out after ${secs}s)")"
    FAILED=1
  fi
  if tail -n 1 "$OUT_DIR/$name.out" 2>/dev/null \
      | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert isinstance(d, dict); print(json.dumps(d))' \
      > "$OUT_DIR/$name.json" 2>/dev/null; then
    return 0
  fi
  rm -f "$OUT_DIR/$name.json"
  log "$name: no JSON on its last stdout line"
  FAILED=1
}

# ---------------------------------------------------------------- prerequisites
[ -d "$PEERS_DIR/langgraph_ref" ] || die "no langgraph_ref in PEERS_DIR=$PEERS_DIR (set PEERS_DIR)"
PEER_DIR="$PEERS_DIR/langgraph_ref"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed (for the JSON arithmetic)"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"
if has "$PARTS" inproc && has "$STORES" postgres; then
  command -v psql >/dev/null || die "psql is needed to create the benchmark databases (STORES has postgres)"
fi

if has "$SIDES" peer; then
  [ -x "$PEER_VENV/bin/python" ] || die "no virtualenv at $PEER_VENV; create it with:
  python3 -m venv $PEER_VENV && $PEER_VENV/bin/pip install -r $PEER_DIR/requirements.txt"
  "$PEER_VENV/bin/python" -c 'import langgraph, langgraph.checkpoint.sqlite, fastapi, uvicorn, aiosqlite' 2>/dev/null \
    || die "$PEER_VENV lacks the peer's requirements: $PEER_VENV/bin/pip install -r $PEER_DIR/requirements.txt"
  if has "$STORES" postgres; then
    "$PEER_VENV/bin/python" -c 'import langgraph.checkpoint.postgres, psycopg_pool' 2>/dev/null \
      || die "$PEER_VENV lacks langgraph-checkpoint-postgres: $PEER_VENV/bin/pip install -r $PEER_DIR/requirements.txt"
  fi
fi

JOBS_FLAG=()
[ -n "${CARGO_JOBS:-}" ] && JOBS_FLAG=(-j "$CARGO_JOBS")

if has "$PARTS" http; then
  if [ -n "${FLOWLOAD:-}" ]; then
    FLOWLOAD="$(abspath "$FLOWLOAD")"
    [ -x "$FLOWLOAD" ] || die "FLOWLOAD=$FLOWLOAD is not an executable"
  else
    FLOWLOAD_SRC="$(abspath "$FLOWLOAD_SRC")"
    FLOWLOAD="$FLOWLOAD_SRC/target/release/flowload"
    if [ ! -x "$FLOWLOAD" ]; then
      [ -f "$FLOWLOAD_SRC/Cargo.toml" ] || {
        log "copying $PEERS_DIR/flowload to $FLOWLOAD_SRC (shared/ is left untouched)"
        mkdir -p "$FLOWLOAD_SRC"
        cp -R "$PEERS_DIR/flowload/." "$FLOWLOAD_SRC/"
        chmod -R u+w "$FLOWLOAD_SRC"
      }
      log "building flowload in $FLOWLOAD_SRC (cargo build --release -j ${CARGO_JOBS:-1})"
      (cd "$FLOWLOAD_SRC" && CARGO_TARGET_DIR="$FLOWLOAD_SRC/target" cargo build --release -j "${CARGO_JOBS:-1}") >&2
      [ -x "$FLOWLOAD" ] || die "flowload build produced no $FLOWLOAD"
    fi
  fi
fi

if has "$SIDES" baton; then
  if [ -n "${BATON:-}" ]; then
    BATON="$(abspath "$BATON")"
    [ -x "$BATON" ] || die "BATON=$BATON is not an executable"
  else
    BATON="$ROOT/target/release/baton"
    if [ ! -x "$BATON" ]; then
      log "no $BATON; building it (cargo build --release in $ROOT)"
      (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target" cargo build --release "${JOBS_FLAG[@]}") >&2
      [ -x "$BATON" ] || die "cargo build produced no $BATON"
    fi
  fi
fi

FL_TIMEOUT=$((WARMUP + SECONDS_PER_RUN + 60)) # flows in flight finish; request timeout is 10 s

log "repo=$ROOT peers=$PEERS_DIR out=$OUT_DIR"
log "sides=$SIDES parts=$PARTS stores=$STORES sync=$SYNC_UPPER seconds=$SECONDS_PER_RUN concurrency=$CONCURRENCY n=$N warmup=$WARMUP"
has "$SIDES" baton && log "baton=$BATON"
has "$SIDES" peer && log "peer python=$PEER_VENV/bin/python"
has "$PARTS" http && log "flowload=$FLOWLOAD"

# ---------------------------------------------------------------- 1. in process
if has "$PARTS" inproc; then
  if has "$SIDES" baton; then
    BATON_PG_ARGS=()
    if has "$STORES" postgres; then
      recreate_pg_db "$BATON_BENCH_POSTGRES_URL"
      BATON_PG_ARGS=(--postgres-url "$BATON_BENCH_POSTGRES_URL")
      [ -n "$PG_WRITERS" ] && BATON_PG_ARGS+=(--pg-writers "$PG_WRITERS")
    fi
    run_json baton-inproc "$INPROC_TIMEOUT" \
      "$BATON" bench --n "$N" --concurrency "$CONCURRENCY" --stores "$STORES" --sqlite-sync "$SYNC_LOWER" \
      "${BATON_PG_ARGS[@]}"
  fi
  if has "$SIDES" peer; then
    rm_db "$PEER_INPROC_DB"
    has "$STORES" postgres && recreate_pg_db "$PEER_POSTGRES_URL"
    run_json peer-inproc "$INPROC_TIMEOUT" \
      env -C "$PEER_DIR" PYTHONDONTWRITEBYTECODE=1 PEER_POSTGRES_URL="$PEER_POSTGRES_URL" \
      "$PEER_VENV/bin/python" bench_inproc.py --savers "$STORES" \
      --n "$N" --concurrency "$CONCURRENCY" --sqlite-sync "$SYNC_UPPER" --db "$PEER_INPROC_DB"
    rm_db "$PEER_INPROC_DB"
  fi
fi

# ---------------------------------------------------------------- 2. HTTP
flowload_pair() { # side base_url [extra flowload args]
  local side="$1" url="$2" tag="$3" mode
  shift 3
  for mode in simple interactive; do
    run_json "$side-http-$mode$tag" "$FL_TIMEOUT" \
      "$FLOWLOAD" --base-url "$url" --mode "$mode" --concurrency "$CONCURRENCY" \
      --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" "$@"
  done
}

if has "$PARTS" http && has "$SIDES" peer; then
  port_in_use "$PEER_PORT" && die "something already listens on 127.0.0.1:$PEER_PORT; stop it first"
  rm_db "$PEER_DB"
  log "starting the peer on 127.0.0.1:$PEER_PORT (AsyncSqliteSaver, synchronous=$SYNC_UPPER, db $PEER_DB)"
  (cd "$PEER_DIR" && exec env PYTHONDONTWRITEBYTECODE=1 HOST=127.0.0.1 \
      PEER_CHECKPOINTER=sqlite PEER_DB="$PEER_DB" PEER_SQLITE_SYNCHRONOUS="$SYNC_UPPER" PORT="$PEER_PORT" \
      "$PEER_VENV/bin/python" server.py) >"$OUT_DIR/peer-server.log" 2>&1 &
  PEER_PID=$!
  wait_health "http://127.0.0.1:$PEER_PORT/health" "$PEER_PID" peer 60
  flowload_pair peer "http://127.0.0.1:$PEER_PORT" ""
  stop_peer
  rm_db "$PEER_DB"
fi

if has "$PARTS" http && has "$SIDES" baton; then
  port_in_use "$BATON_PORT" && die "something already listens on 127.0.0.1:$BATON_PORT; stop it first"
  rm_db "$BATON_DB"
  log "starting baton on 127.0.0.1:$BATON_PORT (sqlite, sync=$SYNC_LOWER, db $BATON_DB)"
  # Unset the BATON_* settings that would change the workload (no demo agents, added latency).
  env -u BATON_NO_DEMO_AGENTS -u BATON_DEMO_LATENCY -u BATON_ADDR -u BATON_DATABASE_URL \
      -u BATON_SQLITE_SYNC -u BATON_LOG_JSON BATON_LOG=warn \
      "$BATON" serve --addr "127.0.0.1:$BATON_PORT" --database-url "sqlite://$BATON_DB" \
      --sqlite-sync "$SYNC_LOWER" >"$OUT_DIR/baton-server.log" 2>&1 &
  BATON_PID=$!
  wait_health "http://127.0.0.1:$BATON_PORT/api/health" "$BATON_PID" baton 60
  flowload_pair baton "http://127.0.0.1:$BATON_PORT" "" --threads 1
  flowload_pair baton "http://127.0.0.1:$BATON_PORT" "-threads2" --threads 2
  stop_baton
  rm_db "$BATON_DB"
fi

# ---------------------------------------------------------------- summary + final JSON
SUMMARY_ENV=(OUT_DIR="$OUT_DIR" SYNC="$SYNC_UPPER" SECONDS_PER_RUN="$SECONDS_PER_RUN" STORES="$STORES"
  CONCURRENCY="$CONCURRENCY" N="$N" WARMUP="$WARMUP" SIDES="$SIDES" PARTS="$PARTS"
  BATON_BIN="${BATON:-}" FLOWLOAD_BIN="${FLOWLOAD:-}" PEER_VENV="$PEER_VENV")
env "${SUMMARY_ENV[@]}" python3 - <<'PY'
import json, os

out = os.environ["OUT_DIR"]

def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d

def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return round(a / b, 2)

def fmt(x, nd=1):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

bi, pi = load("baton-inproc"), load("peer-inproc")
stores = [s for s in os.environ["STORES"].split(",") if s]
inproc = {"baton": bi, "peer": pi}
for store in stores:
    inproc[f"ratio_{store}_conv_per_s"] = ratio(get(bi, store, "conversations_per_s"), get(pi, store, "conversations_per_s"))
http = {}
for mode in ("simple", "interactive"):
    b, p, b2 = load(f"baton-http-{mode}"), load(f"peer-http-{mode}"), load(f"baton-http-{mode}-threads2")
    http[mode] = {
        "baton": b,
        "peer": p,
        "ratio_flows_per_s": ratio(get(b, "flows_per_s"), get(p, "flows_per_s")),
        "baton_threads2": b2,
        "ratio_flows_per_s_threads2": ratio(get(b2, "flows_per_s"), get(p, "flows_per_s")),
    }

E = os.environ
print()
print(f"== Baton vs langgraph_ref peer  (sync={E['SYNC']}, concurrency={E['CONCURRENCY']}, "
      f"in-process N={E['N']}, HTTP {E['SECONDS_PER_RUN']} s per run, warm-up {E['WARMUP']} s)")
print(f"   raw outputs and server logs: {out}")
if "inproc" in E["PARTS"]:
    print()
    print("In process (start -> question -> answer -> completed), per conversation:")
    print(f"  {'store':7} {'side':6} {'conv/s':>9} {'turn p50 ms':>12} {'turn p99 ms':>12} {'errors':>7}")
    for store in stores:
        for side, d in (("baton", bi), ("peer", pi)):
            r = get(d, store)
            print(f"  {store:7} {side:6} {fmt(get(r, 'conversations_per_s')):>9} {fmt(get(r, 'turn_p50_ms'), 2):>12} "
                  f"{fmt(get(r, 'turn_p99_ms'), 2):>12} {fmt(get(r, 'errors')):>7}")
        print(f"  {store:7} ratio baton/peer conv/s: {fmt(inproc[f'ratio_{store}_conv_per_s'], 2)}")
if "http" in E["PARTS"]:
    print()
    print("HTTP via flowload (sqlite on both servers; p50/p99 per request):")
    print(f"  {'mode':11} {'side':16} {'flows/s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'flows':>7} {'errors':>7}")
    for mode in ("simple", "interactive"):
        h = http[mode]
        for label, d in (("peer", h["peer"]), ("baton", h["baton"]), ("baton threads=2", h["baton_threads2"])):
            print(f"  {mode:11} {label:16} {fmt(get(d, 'flows_per_s')):>8} {fmt(get(d, 'requests_per_s')):>8} "
                  f"{fmt(get(d, 'p50_ms')):>8} {fmt(get(d, 'p99_ms')):>8} {fmt(get(d, 'flows')):>7} {fmt(get(d, 'errors')):>7}")
        print(f"  {mode:11} ratio baton/peer flows/s: {fmt(h['ratio_flows_per_s'], 2)} "
              f"(driver threads=1 both sides), {fmt(h['ratio_flows_per_s_threads2'], 2)} (baton driven with threads=2)")
print()
result = {
    "sync": E["SYNC"],
    "inproc": inproc,
    "http": http,
    "settings": {
        "seconds_per_run": int(E["SECONDS_PER_RUN"]),
        "concurrency": int(E["CONCURRENCY"]),
        "n": int(E["N"]),
        "warmup_s": int(E["WARMUP"]),
        "sides": E["SIDES"],
        "parts": E["PARTS"],
        "stores": E["STORES"],
        "ratio": "baton / peer",
        "baton": E.get("BATON_BIN") or None,
        "flowload": E.get("FLOWLOAD_BIN") or None,
        "peer_venv": E["PEER_VENV"],
        "out_dir": out,
    },
}
print(json.dumps(result))
PY

[ "$FAILED" -eq 0 ] || { log "some steps failed; see $OUT_DIR"; exit 1; }
