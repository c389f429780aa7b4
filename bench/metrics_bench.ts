/**
 * Micro-benchmarks of the metrics hot path: `deno bench bench/metrics_bench.ts`.
 *
 * @module
 */
import { Registry } from "../src/metrics/registry.ts";
import { createProxyMetrics, DURATION_BUCKETS_SECONDS } from "../src/metrics/proxy_metrics.ts";
import { observabilityHooks } from "../src/metrics/hooks.ts";
import { silentLogger } from "../src/log.ts";
import type { Group, GroupMember } from "../src/upstream/group.ts";
import type { AttemptResult } from "../src/upstream/attempt.ts";
import type { RequestContext } from "../src/pipeline/compose.ts";
import type { BodyEnd } from "../src/stream/observe.ts";

const registry = new Registry();
const counter = registry.counter("bench_total", "Bench counter.", ["group", "upstream"]);
const cachedCounter = counter.labels("openai", "primary");
const histogram = registry.histogram(
  "bench_seconds",
  "Bench histogram.",
  ["group"],
  DURATION_BUCKETS_SECONDS,
);
const cachedHistogram = histogram.labels("openai");
const gauge = registry.gauge("bench_inflight", "Bench gauge.", ["forward"]).labels("chat");

Deno.bench("CounterChild.inc() on a cached child", { group: "hot", baseline: true }, () => {
  cachedCounter.inc();
});

Deno.bench("HistogramChild.observe() on a cached child (mid bucket)", { group: "hot" }, () => {
  cachedHistogram.observe(0.3);
});

Deno.bench("HistogramChild.observe() on a cached child (+Inf)", { group: "hot" }, () => {
  cachedHistogram.observe(1000);
});

Deno.bench("GaugeChild.inc() + dec() on a cached child", { group: "hot" }, () => {
  gauge.inc();
  gauge.dec();
});

Deno.bench("Counter.labels(a, b).inc() lookup per call", { group: "lookup" }, () => {
  counter.labels("openai", "primary").inc();
});

const counter3 = registry.counter("bench3_total", "Bench counter.", [
  "group",
  "upstream",
  "status",
]);
Deno.bench("Counter.labels(a, b, c).inc() lookup per call", { group: "lookup" }, () => {
  counter3.labels("openai", "primary", "200").inc();
});

const proxyRegistry = new Registry();
const m = createProxyMetrics(proxyRegistry, { readRssBytes: () => 1 });
for (let u = 0; u < 10; u++) {
  for (const status of ["200", "429", "500"]) {
    m.upstreamRequests.labels("g", `u${u}`, status).inc();
  }
  m.upstreamFirstByte.labels("g", `u${u}`).observe(0.1);
}

Deno.bench("Registry.render() of proxy metrics with 10 upstreams", { group: "render" }, () => {
  proxyRegistry.render();
});

// The per-request path of the observability hooks: one request, one attempt answered 200,
// its body ending with usage. Label children are looked up on every call, as in production.
const hooksRegistry = new Registry();
const hooks = observabilityHooks(createProxyMetrics(hooksRegistry, { readRssBytes: () => 1 }), {
  log: silentLogger,
  clock: { now: () => 0 },
});
const group = { name: "openai" } as Group;
const member = { name: "primary", upstream: {} } as GroupMember;
const attempt = {
  kind: "response",
  response: { status: 200 },
  outcome: { kind: "response" },
  verdict: "success",
  firstByteMs: 12,
} as unknown as AttemptResult;
const ctx = {
  forward: "chat",
  request: { method: "POST" },
  startedAt: 0,
  trace: { attempts: 1 },
} as unknown as RequestContext;
const end: BodyEnd = { kind: "end", bytes: 100 };
const usage = { prompt: 10, completion: 20 };

Deno.bench("hooks: one proxied request (start, attempt, body end, response end)", {
  group: "hooks",
}, () => {
  hooks.onRequestStart!(ctx);
  hooks.onAttempt!(group, member, attempt);
  hooks.onBodyEnd!(group, member, end, usage);
  hooks.onResponseEnd!(ctx, 200, 100);
});
