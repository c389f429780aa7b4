#!/usr/bin/env bash
# Instructions per request of one proxy process, counted by callgrind: the same to within about
# 0.5 % from run to run on a machine whose timed runs move by tens of percent. The command is
# started under valgrind, warmed up with WARMUP requests, its counters zeroed, then REQUESTS more
# are sent (bench/fixed_load.ts, 8 connections) and counted. Under valgrind a request takes some
# 50 times longer, so work done per unit of time (batched log writes, timers) weighs more than at
# full speed. KEEP=DIR keeps callgrind's output there for callgrind_annotate. Needs valgrind
# (apt-get install -y valgrind).
#   bash bench/instructions.sh PORT REQUESTS [WARMUP] -- COMMAND...   (extra load flags in LOAD)
# e.g. the reference in front of an upstream on port 8000:
#   bash bench/instructions.sh 3000 3000 -- deno run --allow-net bench/reference_proxy.ts \
#     --port 3000 --upstream http://127.0.0.1:8000
set -euo pipefail
port=$1; requests=$2; warmup=2000
[ "$3" != "--" ] && { warmup=$3; shift; }
shift 3
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 2; }
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$@" >"$tmp/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 240); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.5; done
load() { deno run --allow-net bench/fixed_load.ts --port "$port" --requests "$1" ${LOAD:-}; }
load "$warmup"
callgrind_control -z "$pid" >/dev/null 2>&1
load "$requests"
callgrind_control -d "$pid" >/dev/null 2>&1
sleep 1
total=$(grep -h '^totals:' "$tmp"/out.* | awk '{print $2}')
echo "$((total / requests)) instructions per request ($requests requests after $warmup)"
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$tmp"/out.* "$KEEP"/; fi
