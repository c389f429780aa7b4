#!/usr/bin/env bash
# Instructions per request of one proxy process, counted by callgrind: the same to within about
# 0.5 % from run to run on a machine whose timed runs move by tens of percent. The command is
# started under valgrind, warmed up with WARMUP requests, its counters zeroed, then REQUESTS more
# are sent (bench/fixed_load.ts, 8 connections) and counted.
#
# Under valgrind a request takes some 50 times longer, so work done per unit of time (timers,
# batched log writes, a client library's housekeeping) lands on few requests. So the process is
# also left idle for IDLE seconds (default 20, after 10 s for the warm-up to settle; 0 skips it),
# and what it ran per second then is printed with its share of the loaded run's figure. The idle
# rate itself varies (2-16M instructions a second for the same proxy in different runs here):
# read that share as how much of a difference between two commands may be idle work, not as a
# correction.
#
# KEEP=DIR keeps callgrind's output of the loaded run there for callgrind_annotate. Needs
# valgrind (apt-get install -y valgrind).
#   bash bench/instructions.sh PORT REQUESTS [WARMUP] -- COMMAND...   (extra load flags in LOAD)
# e.g. the reference in front of an upstream on port 8000:
#   bash bench/instructions.sh 3000 3000 -- deno run --allow-net bench/reference_proxy.ts \
#     --port 3000 --upstream http://127.0.0.1:8000
set -euo pipefail
port=$1; requests=$2; warmup=2000
[ "$3" != "--" ] && { warmup=$3; shift; }
shift 3
idle=${IDLE:-20}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 2; }
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$@" >"$tmp/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 240); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.5; done
load() { deno run --allow-net bench/fixed_load.ts --port "$port" --requests "$1" ${LOAD:-}; }
# The instructions counted since the last zeroing (callgrind writes one file per dump).
counted() {
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  grep -h '^totals:' "$tmp"/out.* | awk '{s += $2} END {print s}'
}
load "$warmup"
idle_rate=0
if [ "$idle" -gt 0 ]; then
  # Let the warm-up's tail settle first (background compiles and GC run slowly under valgrind).
  sleep 10
  callgrind_control -z "$pid" >/dev/null 2>&1
  sleep "$idle"
  idle_rate=$(( $(counted) / idle ))
  rm -f "$tmp"/out.*
fi
callgrind_control -z "$pid" >/dev/null 2>&1
started=$(date +%s%N)
load "$requests"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
total=$(counted)
echo "$((total / requests)) instructions per request ($requests requests after $warmup)"
if [ "$idle" -gt 0 ]; then
  echo "idle: $idle_rate instructions/s; over this load's ${elapsed_ms} ms that would be" \
    "$((idle_rate * elapsed_ms / 1000 / requests)) per request"
fi
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$tmp"/out.* "$KEEP"/; fi
