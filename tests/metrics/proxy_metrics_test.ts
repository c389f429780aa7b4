import assert from "node:assert/strict";
import { Registry } from "../../src/metrics/registry.ts";
import {
  BREAKER_STATE_VALUE,
  createProxyMetrics,
  DURATION_BUCKETS_SECONDS,
  INTER_TOKEN_BUCKETS_SECONDS,
  methodLabel,
  TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS,
} from "../../src/metrics/proxy_metrics.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

const FAMILIES: Record<string, string> = {
  llmproxy_http_requests_total: "counter",
  llmproxy_http_request_duration_seconds: "histogram",
  llmproxy_inflight_requests: "gauge",
  llmproxy_upstream_requests_total: "counter",
  llmproxy_upstream_first_byte_seconds: "histogram",
  llmproxy_upstream_errors_total: "counter",
  llmproxy_retries_total: "counter",
  llmproxy_store_errors_total: "counter",
  llmproxy_store_latency_seconds: "histogram",
  llmproxy_fallbacks_total: "counter",
  llmproxy_ratelimit_rejections_total: "counter",
  llmproxy_circuit_breaker_state: "gauge",
  llmproxy_circuit_breaker_transitions_total: "counter",
  llmproxy_tokens_total: "counter",
  llmproxy_time_to_first_token_seconds: "histogram",
  llmproxy_inter_token_seconds: "histogram",
  llmproxy_key_requests_total: "counter",
  llmproxy_key_tokens_total: "counter",
  llmproxy_config_reloads_total: "counter",
  llmproxy_connections_open: "gauge",
  llmproxy_connections_closed_total: "counter",
  process_resident_memory_bytes: "gauge",
};

Deno.test("createProxyMetrics() registers every family with help and type", () => {
  const registry = new Registry();
  createProxyMetrics(registry, { readRssBytes: () => 1234 });
  const parsed = parsePrometheusText(registry.render());
  assert.deepEqual([...parsed.keys()].sort(), Object.keys(FAMILIES).sort());
  for (const [name, type] of Object.entries(FAMILIES)) {
    const family = parsed.get(name);
    assert.equal(family?.type, type, name);
    assert.ok((family?.help ?? "").length > 10, `${name} has meaningful help`);
  }
  assert.equal(sampleValue(parsed, "process_resident_memory_bytes"), 1234);
});

Deno.test("createProxyMetrics() families render and parse strictly once populated", () => {
  const registry = new Registry();
  let rss = 1000;
  const m = createProxyMetrics(registry, { readRssBytes: () => rss });

  m.httpRequests.labels("chat", methodLabel("POST"), "200").inc();
  m.httpRequests.labels("chat", methodLabel("BREW"), String(405)).inc();
  m.httpRequestDuration.labels("chat").observe(0.3);
  m.httpRequestDuration.labels("chat").observe(42);
  m.inflight.labels("chat").inc();
  m.upstreamRequests.labels("openai", "primary", "429").inc();
  m.upstreamFirstByte.labels("openai", "primary").observe(0.12);
  m.upstreamErrors.labels("openai", "primary", "timeout").inc();
  m.retries.labels("openai").inc();
  m.fallbacks.labels("openai", "local").inc();
  m.rateLimitRejections.labels("key", "team-a").inc();
  m.breakerState.labels("primary").set(BREAKER_STATE_VALUE.half_open);
  m.breakerTransitions.labels("primary", "open", "half-open").inc();
  m.tokens.labels("openai", "primary", "gpt-4o*", "prompt").inc(120);
  m.tokens.labels("openai", "primary", "other", "completion").inc(30);
  m.timeToFirstToken.labels("openai", "primary").observe(0.4);
  m.interToken.labels("openai", "primary").observe(0);
  m.interToken.labels("openai", "primary").observe(0.02);
  m.keyRequests.labels("team_a", "200").inc();
  m.keyTokens.labels("team_a", "prompt").inc(10);
  m.configReloads.labels("success").inc();
  m.connectionsOpen.labels("chat").set(3);
  m.connectionsClosed.labels("chat", "idle_timeout").inc();
  m.storeErrors.labels("key_admit").inc();
  m.storeLatency.labels("key_admit").observe(0.0004);
  rss = 2048;

  const parsed = parsePrometheusText(registry.render());
  for (const name of Object.keys(FAMILIES)) {
    assert.ok((parsed.get(name)?.samples.length ?? 0) > 0, `${name} has samples`);
  }
  const s = (name: string, labels: Record<string, string> = {}) =>
    sampleValue(parsed, name, labels);
  assert.equal(
    s("llmproxy_http_requests_total", { forward: "chat", method: "OTHER", status: "405" }),
    1,
  );
  assert.equal(
    s("llmproxy_http_request_duration_seconds_bucket", { forward: "chat", le: "0.5" }),
    1,
  );
  assert.equal(
    s("llmproxy_http_request_duration_seconds_bucket", { forward: "chat", le: "60" }),
    2,
  );
  assert.equal(s("llmproxy_http_request_duration_seconds_count", { forward: "chat" }), 2);
  assert.equal(s("llmproxy_circuit_breaker_state", { upstream: "primary" }), 2);
  assert.equal(
    s("llmproxy_tokens_total", {
      group: "openai",
      upstream: "primary",
      model: "gpt-4o*",
      type: "prompt",
    }),
    120,
  );
  const token = { group: "openai", upstream: "primary" };
  assert.equal(s("llmproxy_time_to_first_token_seconds_bucket", { ...token, le: "0.3" }), 0);
  assert.equal(s("llmproxy_time_to_first_token_seconds_bucket", { ...token, le: "0.5" }), 1);
  assert.equal(s("llmproxy_inter_token_seconds_bucket", { ...token, le: "0.001" }), 1);
  assert.equal(s("llmproxy_inter_token_seconds_bucket", { ...token, le: "0.02" }), 2);
  assert.equal(s("llmproxy_inter_token_seconds_count", token), 2);
  assert.equal(s("process_resident_memory_bytes"), 2048);
  assert.equal(
    parsed.get("llmproxy_upstream_first_byte_seconds")?.samples.length,
    DURATION_BUCKETS_SECONDS.length + 3,
  );
});

Deno.test("createProxyMetrics() reads Deno.memoryUsage().rss by default", () => {
  const registry = new Registry();
  createProxyMetrics(registry);
  const rss = sampleValue(parsePrometheusText(registry.render()), "process_resident_memory_bytes");
  assert.ok(rss !== undefined && rss > 0);
});

Deno.test("createProxyMetrics() throws when called twice on one registry", () => {
  const registry = new Registry();
  createProxyMetrics(registry);
  assert.throws(() => createProxyMetrics(registry), /already registered/);
});

Deno.test("DURATION_BUCKETS_SECONDS match the documented seconds-based defaults", () => {
  assert.deepEqual(
    [...DURATION_BUCKETS_SECONDS],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
  );
  assert.ok(Object.isFrozen(DURATION_BUCKETS_SECONDS));
});

Deno.test("methodLabel() keeps standard methods and maps everything else to OTHER", () => {
  for (const m of ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    assert.equal(methodLabel(m), m);
  }
  for (const m of ["get", "CONNECT", "TRACE", "PROPFIND", "", "GET ", "__proto__"]) {
    assert.equal(methodLabel(m), "OTHER");
  }
});

Deno.test("token timing buckets span 10 ms to 60 s (first token) and 1 ms to 10 s (gaps)", () => {
  for (const buckets of [TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS, INTER_TOKEN_BUCKETS_SECONDS]) {
    assert.ok(Object.isFrozen(buckets));
    assert.ok(buckets.every((b, i) => i === 0 || b > buckets[i - 1]!), "strictly increasing");
  }
  assert.equal(TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS[0], 0.01);
  assert.equal(TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS.at(-1), 60);
  assert.equal(INTER_TOKEN_BUCKETS_SECONDS[0], 0.001);
  assert.equal(INTER_TOKEN_BUCKETS_SECONDS.at(-1), 10);
});
