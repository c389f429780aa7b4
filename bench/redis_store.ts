/**
 * Scenario r, the cost per request of `state.store: redis` against `memory`: the same proxy
 * config (a per-IP limit and a client key with a request rate, tokens per minute and a budget,
 * all too large to refuse anything; a per-upstream limit unless `upstreamLimit` is false) in its
 * own process, in front of the mock upstream, with the store switched, the two interleaved.
 * Reports req/s, the proxy's and Redis's CPU per request, p50/p99, the checks per request (from
 * `llmproxy_store_latency_seconds_count`) and the round trips per request (the script runs Redis
 * itself counted: `INFO commandstats`; one batch carries many checks).
 *
 * `deno task bench` runs it as scenario r; alone:
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
import {
  redisScriptRuns,
  redisServerPath,
  startRedisServer,
} from "../tests/_helpers/redis_server.ts";

const KEY = "sk-bench-redis-0123456789";
const root = new URL("..", import.meta.url).pathname;

/** Options of {@linkcode measureRedisStore}. */
export interface RedisStoreOptions {
  durationS: number;
  runs: number;
  connections: number;
  tool: LoadTool;
  /** The upstream has a rate limit (one more check per request). @default true */
  upstreamLimit?: boolean;
  /** Warm-up before each measured run, s. @default 1 */
  warmupS?: number;
  log?: (line: string) => void;
}

/** One measured run of one store. */
export interface RedisStoreRun {
  run: number;
  store: "memory" | "redis";
  rps: number;
  proxyCpuUsPerReq: number;
  redisCpuUsPerReq: number;
  p50Ms: number;
  p99Ms: number;
  checksPerReq: number;
  roundTripsPerReq: number;
  storeErrors: number;
  failed: number;
}

/** Scenario r's results: every run, and redis ÷ memory of each pair. */
export interface RedisStoreResults {
  connections: number;
  durationS: number;
  upstreamLimit: boolean;
  runs: RedisStoreRun[];
  /** req/s of redis ÷ memory, per pair (run). */
  ratios: number[];
}

function config(
  store: "memory" | "redis",
  ports: { proxy: number; admin: number; mock: number; redis: number },
  upstreamLimit: boolean,
  prefix: string,
) {
  return `httpServer:
  forwards:
    - {name: main, port: ${ports.proxy}, address: 127.0.0.1, defaultGroup: g, ratelimit: {perSecond: 1000000, burst: 1000000}}
  admin: {port: ${ports.admin}, address: 127.0.0.1}
upstreams:
  - {name: mock, url: "http://127.0.0.1:${ports.mock}/v1/chat/completions"${
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
  redis: {url: "redis://127.0.0.1:${ports.redis}/0", prefix: "${prefix}"}
`;
}

function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, "gm"))) {
    sum += Number(m[1]);
  }
  return sum;
}

/**
 * Runs scenario r: starts the mock and a `redis-server` on free ports, then per run the proxy
 * with `memory` and with `redis`, each warmed up and measured. Undefined (and a note) when
 * `redis-server` is not installed.
 */
export async function measureRedisStore(
  options: RedisStoreOptions,
  notes: string[] = [],
): Promise<RedisStoreResults | undefined> {
  if (!redisServerPath()) {
    notes.push(
      "scenario r skipped: redis-server is not installed (apt-get install -y redis-server)",
    );
    return undefined;
  }
  const log = options.log ?? (() => {});
  const upstreamLimit = options.upstreamLimit ?? true;
  const ticksPerS = await clockTicks();
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-redis-bench-" });
  const mockPort = freePort();
  const started: { stop(): Promise<void> }[] = [];
  try {
    const mock = spawn("mock", [
      Deno.execPath(),
      "run",
      "--allow-net",
      `${root}tools/mock_upstream.ts`,
      "--port",
      String(mockPort),
    ], { logFile: `${dir}/mock.log` });
    started.push(mock);
    await waitForPort(mockPort, mock);
    const redis = await startRedisServer();
    started.push(redis);
    const redisPid = redis.pid()!;
    const redisPort = redis.port;

    const runs: RedisStoreRun[] = [];
    const prefix = `bench${crypto.randomUUID().slice(0, 6)}:`;
    for (let run = 1; run <= options.runs; run++) {
      for (const store of ["memory", "redis"] as const) {
        const ports = { proxy: freePort(), admin: freePort(), mock: mockPort, redis: redisPort };
        const file = `${dir}/${store}.yaml`;
        await Deno.writeTextFile(file, config(store, ports, upstreamLimit, prefix));
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
        try {
          await waitForPort(ports.proxy, proxy);
          const load = (s: number) =>
            runLoad({
              tool: options.tool,
              url: `http://127.0.0.1:${ports.proxy}/v1/chat/completions`,
              body: '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
              headers: { authorization: `Bearer ${KEY}` },
              connections: options.connections,
              durationS: s,
            });
          await load(options.warmupS ?? 1);
          const metricsUrl = `http://127.0.0.1:${ports.admin}/metrics`;
          const before = await procInfo(proxy.pid);
          const redisBefore = await procInfo(redisPid);
          const metricsBefore = await (await fetch(metricsUrl)).text();
          const runsBefore = await redisScriptRuns(redisPort);
          const report = await load(options.durationS);
          const after = await procInfo(proxy.pid);
          const redisAfter = await procInfo(redisPid);
          const metrics = await (await fetch(metricsUrl)).text();
          const perReq = (n: number) => n / Math.max(1, report.requests);
          const cpuPerReq = (ticks: number) =>
            (ticks / ticksPerS) * 1e6 / Math.max(1, report.completed);
          const row: RedisStoreRun = {
            run,
            store,
            rps: report.rps,
            proxyCpuUsPerReq: cpuPerReq(after.ticks - before.ticks),
            redisCpuUsPerReq: cpuPerReq(redisAfter.ticks - redisBefore.ticks),
            p50Ms: report.p50Ms,
            p99Ms: report.p99Ms,
            checksPerReq: perReq(
              metricSum(metrics, "llmproxy_store_latency_seconds_count") -
                metricSum(metricsBefore, "llmproxy_store_latency_seconds_count"),
            ),
            roundTripsPerReq: perReq(await redisScriptRuns(redisPort) - runsBefore),
            storeErrors: metricSum(metrics, "llmproxy_store_errors_total"),
            failed: report.non2xx + report.errors,
          };
          runs.push(row);
          log(`  r run ${run} ${store}: ${Math.round(row.rps)} req/s`);
        } finally {
          await proxy.stop();
        }
        await sleep(200);
      }
    }
    const ratios = [];
    for (let run = 1; run <= options.runs; run++) {
      const of = (store: string) => runs.find((r) => r.run === run && r.store === store);
      const memory = of("memory"), redis = of("redis");
      if (memory && redis && memory.rps > 0) ratios.push(redis.rps / memory.rps);
    }
    return {
      connections: options.connections,
      durationS: options.durationS,
      upstreamLimit,
      runs,
      ratios,
    };
  } finally {
    for (const proc of started.reverse()) await proc.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Scenario r as a markdown table. */
export function redisStoreTable(r: RedisStoreResults): string[] {
  const sorted = [...r.ratios].sort((a, b) => a - b);
  const median = sorted.length > 0 ? sorted[Math.floor((sorted.length - 1) / 2)]! : NaN;
  return [
    `**r: the Redis store against memory** — the same config (per-IP limit, a client key with ` +
    `request rate, tokens per minute and budget${
      r.upstreamLimit ? ", a per-upstream limit" : ""
    }) in front of the mock, ${r.connections} connections, ${r.durationS} s per run; Redis on ` +
    `the same machine. redis ÷ memory req/s per pair: ${
      r.ratios.map((x) => x.toFixed(2)).join(", ")
    } (median **${median.toFixed(2)}×**).`,
    "",
    "| run | store | req/s | proxy CPU µs/req | Redis CPU µs/req | p50 ms | p99 ms | checks/req | round trips/req | store errors | failed |",
    "| --- | ----- | ----- | ---------------- | ---------------- | ------ | ------ | ---------- | --------------- | ------------ | ------ |",
    ...r.runs.map((x) =>
      `| ${x.run} | ${x.store} | ${Math.round(x.rps)} | ${x.proxyCpuUsPerReq.toFixed(0)} | ${
        x.store === "redis" ? x.redisCpuUsPerReq.toFixed(0) : "—"
      } | ${x.p50Ms.toFixed(2)} | ${x.p99Ms.toFixed(2)} | ${x.checksPerReq.toFixed(2)} | ${
        x.roundTripsPerReq.toFixed(2)
      } | ${x.storeErrors} | ${x.failed} |`
    ),
    "",
  ];
}

if (import.meta.main) {
  const args = Deno.args;
  const option = (name: string, fallback: string) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
  };
  const notes: string[] = [];
  try {
    const results = await measureRedisStore({
      durationS: Number(option("--duration", "5")),
      runs: Number(option("--runs", "2")),
      connections: Number(option("--connections", "32")),
      tool: option("--load", await hasCommand("wrk") ? "wrk" : "builtin") as LoadTool,
      upstreamLimit: !args.includes("--no-upstream-limit"),
      log: (line) => console.log(line),
    }, notes);
    for (const note of notes) console.log(`note: ${note}`);
    if (results) console.log(redisStoreTable(results).join("\n"));
  } finally {
    await stopAll();
  }
}
