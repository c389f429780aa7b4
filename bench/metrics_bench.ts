/**
 * Micro-benchmarks of the metrics hot path: `deno bench bench/metrics_bench.ts`.
 *
 * @module
 */
import { Registry } from "../src/metrics/registry.ts";
import { createProxyMetrics, DURATION_BUCKETS_SECONDS } from "../src/metrics/proxy_metrics.ts";

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
