#!/usr/bin/env bash
# A/B of two project trees (e.g. a worktree of an older commit and this one): both proxies run
# side by side in front of one mock upstream with the same config (default pool settings but
# idlePerHost 256, so that pool churn at 50 connections does not blur the CPU comparison;
# `deno task bench` measures the defaults), and wrk (50 connections) alternates between them, so
# machine drift hits both alike. Prints CPU time per request of each proxy, sorted, per scenario.
#   bash bench/ab.sh DIR_A DIR_B [ROUNDS=5] [SECONDS=5]
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); R=${3:-5}; S=${4:-5}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
free_port() { deno eval 'const l = Deno.listen({ hostname: "127.0.0.1", port: 0 }); console.log(l.addr.port); l.close();'; }
mock=$(free_port); pa=$(free_port); pb=$(free_port)
deno run --allow-net tools/mock_upstream.ts --port "$mock" >/dev/null 2>&1 & pids+=($!)
cfg() { cat <<Y
httpServer:
  forwards: [{name: bench, port: $1, address: "127.0.0.1", defaultGroup: pool}]
upstreams:
  - {name: mock_a, url: "http://127.0.0.1:$mock"}
  - {name: mock_b, url: "http://127.0.0.1:$mock"}
upstreamGroups:
  - {name: pool, upstreams: [{name: mock_a}, {name: mock_b}], httpClient: {connect: {idlePerHost: 256}}}
Y
}
cfg "$pa" >"$tmp/a.yaml"; cfg "$pb" >"$tmp/b.yaml"
(cd "$A" && exec deno run --allow-net --allow-read --allow-env main.ts -c "$tmp/a.yaml" 2>/dev/null) & pids+=($!); pida=$!
(cd "$B" && exec deno run --allow-net --allow-read --allow-env main.ts -c "$tmp/b.yaml" 2>/dev/null) & pids+=($!); pidb=$!
sleep 4
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A cpu
for scen in JSON SSE; do
  stream=false; [ "$scen" = SSE ] && stream=true
  export BENCH_BODY="{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":$stream}"
  for _ in $(seq "$R"); do
    for t in "A:$pida:$pa" "B:$pidb:$pb"; do
      IFS=: read -r name pid port <<<"$t"
      t0=$(ticks "$pid")
      rps=$(wrk -t1 -c50 -d"${S}s" -s bench/wrk/post.lua "http://127.0.0.1:$port/v1/chat/completions" | awk '/Requests\/sec/{print $2}')
      t1=$(ticks "$pid")
      cpu[$scen$name]+="$(echo "($t1-$t0)*1000000/$hz/($rps*$S)" | bc -l | cut -c1-6) "
    done
  done
  for name in A B; do
    echo "$scen $name µs/request: $(tr ' ' '\n' <<<"${cpu[$scen$name]}" | sed '/^$/d' | sort -n | tr '\n' ' ')"
  done
done
