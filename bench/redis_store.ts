/**
 * The cost per request of `state.store: redis` against `memory`: the same proxy config (a
 * per-IP limit and a client key with a request rate, tokens per minute and a budget, all too
 * large to refuse anything) in its own process, in front of the mock upstream, with the store
 * switched. Reports req/s, the proxy's CPU per request, p50/p99, and the Redis round trips per
 * request: operations (limit checks, from `llmproxy_store_latency_seconds_count`) and round trips
 * (script runs Redis itself counted: `INFO commandstats`; one batch carries many checks).
 *
 *   deno run -A bench/redis_store.ts [--duration S] [--runs N] [--connections C] [--load wrk|builtin]
 *     [--no-upstream-limit]
 *
 * `--no-upstream-limit`: the upstream has no rate limit (its cool-downs are then read in the
 * background, so an attempt makes no store call).
 *
 * Needs `redis-server` (Debian). The load generator, the mock, Redis and the proxy share the
 * machine's cores: compare the two rows of one run, not with other benchmarks.
 *
 * @module
 */
import { type LoadTool, runLoad } from "./loadgen.ts";
import {
  clockTicks,
  freePort,
  hasCommand,
  procInfo,
  sleep,
  spawn,
  stopAll,
  waitForPort,
} from "./procs.ts";
import { redisScriptRuns } from "../tests/_helpers/redis_server.ts";

const args = Deno.args;
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const durationS = Number(option("--duration", "5"));
const runs = Number(option("--runs", "2"));
const connections = Number(option("--connections", "32"));
const upstreamLimit = !args.includes("--no-upstream-limit");
const tool = option("--load", await hasCommand("wrk") ? "wrk" : "builtin") as LoadTool;
const KEY = "sk-bench-redis-0123456789";
const root = new URL("..", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "llmproxy-redis-bench-" });

function config(
  store: "memory" | "redis",
  port: number,
  admin: number,
  mock: number,
  redis: number,
) {
  return `httpServer:
  forwards:
    - {name: main, port: ${port}, address: 127.0.0.1, defaultGroup: g, ratelimit: {perSecond: 1000000, burst: 1000000}}
  admin: {port: ${admin}, address: 127.0.0.1}
upstreams:
  - {name: mock, url: "http://127.0.0.1:${mock}/v1/chat/completions"${
    upstreamLimit ? ", ratelimit: {perSecond: 1000000, burst: 1000000}" : ""
  }}
upstreamGroups:
  - {name: g, upstreams: [{name: mock}], httpClient: {retry: {attempts: 0}}}
clientKeys:
  - name: bench
    key: "${KEY}"
    ratelimit: {perSecond: 1000000, burst: 1000000}
    tokens: {perMinute: 1000000000}
    budget: {tokens: 1000000000000, period: "1d"}
state:
  store: ${store}
  redis: {url: "redis://127.0.0.1:${redis}/0", prefix: "bench${crypto.randomUUID().slice(0, 6)}:"}
`;
}

function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, "gm"))) {
    sum += Number(m[1]);
  }
  return sum;
}

const ticksPerS = await clockTicks();
const mockPort = freePort();
const redisPort = freePort();
try {
  const mock = spawn("mock", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${root}tools/mock_upstream.ts`,
    "--port",
    String(mockPort),
  ], { logFile: `${dir}/mock.log` });
  await waitForPort(mockPort, mock);
  const redis = spawn("redis", [
    "redis-server",
    "--port",
    String(redisPort),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ], { logFile: `${dir}/redis.log` });
  await waitForPort(redisPort, redis);

  const rows: string[] = [];
  for (let run = 0; run < runs; run++) {
    for (const store of ["memory", "redis"] as const) {
      const port = freePort();
      const admin = freePort();
      const file = `${dir}/${store}.yaml`;
      await Deno.writeTextFile(file, config(store, port, admin, mockPort, redisPort));
      const proxy = spawn(`proxy-${store}`, [
        Deno.execPath(),
        "run",
        "-A",
        `${root}main.ts`,
        "-c",
        file,
        "--log-level",
        "warn",
      ], { logFile: `${dir}/${store}.log` });
      await waitForPort(port, proxy);
      const load = (s: number) =>
        runLoad({
          tool,
          url: `http://127.0.0.1:${port}/v1/chat/completions`,
          body: '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
          headers: { authorization: `Bearer ${KEY}` },
          connections,
          durationS: s,
        });
      await load(1); // warm-up
      const before = await procInfo(proxy.pid);
      const redisBefore = await procInfo(redis.pid);
      const metricsBefore = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      const runsBefore = await redisScriptRuns(redisPort);
      const report = await load(durationS);
      const after = await procInfo(proxy.pid);
      const redisAfter = await procInfo(redis.pid);
      const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      const calls = metricSum(metrics, "llmproxy_store_latency_seconds_count") -
        metricSum(metricsBefore, "llmproxy_store_latency_seconds_count");
      const errors = metricSum(metrics, "llmproxy_store_errors_total");
      const roundTrips = await redisScriptRuns(redisPort) - runsBefore;
      const cpuUs = ((after.ticks - before.ticks) / ticksPerS) * 1e6 / report.completed;
      const redisCpuUs = ((redisAfter.ticks - redisBefore.ticks) / ticksPerS) * 1e6 /
        report.completed;
      rows.push(
        `| ${run + 1} | ${store} | ${Math.round(report.rps)} | ${cpuUs.toFixed(0)} | ${
          redisCpuUs.toFixed(0)
        } | ${report.p50Ms.toFixed(2)} | ${report.p99Ms.toFixed(2)} | ${
          (calls / report.requests).toFixed(2)
        } | ${(roundTrips / report.requests).toFixed(2)} | ${errors} | ${
          report.non2xx + report.errors
        } |`,
      );
      await proxy.stop();
      await sleep(200);
    }
  }
  console.log(
    `load: ${tool}, ${connections} connections, ${durationS} s per run; per-upstream limit: ${
      upstreamLimit ? "yes" : "no"
    }`,
  );
  console.log(
    "| run | store | req/s | proxy CPU µs/req | Redis CPU µs/req | p50 ms | p99 ms | checks/req | round trips/req | store errors | failed |",
  );
  console.log(
    "| --- | ----- | ----- | ---------------- | ---------------- | ------ | ------ | ---------- | --------------- | ------------ | ------ |",
  );
  for (const row of rows) console.log(row);
} finally {
  await stopAll();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
