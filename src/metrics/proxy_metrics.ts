/**
 * The proxy's metric families. Created once in `app.ts` and passed to the components
 * that report through their hooks; nothing here is a module-level singleton.
 *
 * Every label has a bounded value set: `forward`, `group`, `upstream` and `key` (a client
 * key's name, never the key) come from config, `method` goes through {@linkcode methodLabel}, `status` is a numeric HTTP
 * code, `model` is a name or glob from the config or `other`, and `kind`, `type`, `from`/`to`,
 * `result` and `scope` are small enums.
 *
 * @module
 */

import type { BreakerState } from "../resilience/circuit_breaker.ts";
import type { Registry } from "./registry.ts";

/** Upper bounds in seconds for request-duration histograms: 5 ms up to 5 min (streams). */
export const DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
]);

/**
 * Upper bounds in seconds of `llmproxy_time_to_first_token_seconds`: 10 ms (a cached or
 * local answer) to 60 s (a long prompt on a loaded or reasoning model).
 */
export const TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.01,
  0.025,
  0.05,
  0.1,
  0.2,
  0.3,
  0.5,
  0.75,
  1,
  1.5,
  2,
  3,
  5,
  10,
  20,
  30,
  60,
]);

/**
 * Upper bounds in seconds of `llmproxy_inter_token_seconds`: 1 ms (events read together land
 * in the first bucket) to 10 s (a stall), finest around the 10–100 ms of generated tokens.
 */
export const INTER_TOKEN_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.001,
  0.0025,
  0.005,
  0.01,
  0.02,
  0.03,
  0.05,
  0.075,
  0.1,
  0.2,
  0.5,
  1,
  2.5,
  5,
  10,
]);

/**
 * Upper bounds in seconds of `llmproxy_store_latency_seconds`: 100 µs (Redis on the same host)
 * to 1 s, finest around the default 50 ms timeout.
 */
export const STORE_LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
]);

/** Values of the `kind` label of `llmproxy_upstream_errors_total`. */
export type UpstreamErrorKind =
  | "connect"
  | "tls"
  | "timeout"
  | "status"
  | "stream"
  | "aborted"
  | "proxy";

/** Gauge value of `llmproxy_circuit_breaker_state` per breaker state. */
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, number>> = Object
  .freeze({ closed: 0, open: 1, half_open: 2 });

/** Options of {@linkcode createProxyMetrics}. */
export interface ProxyMetricsOptions {
  /**
   * Reads the resident set size in bytes at scrape time.
   * @default () => Deno.memoryUsage().rss
   */
  readRssBytes?: () => number;
}

const METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "PATCH",
  "OPTIONS",
]);

/**
 * Bounds the `method` label: standard methods pass through (case-sensitive, as HTTP
 * methods are), anything else becomes `"OTHER"` so clients cannot mint series.
 */
export function methodLabel(m: string): string {
  return METHODS.has(m) ? m : "OTHER";
}

/**
 * Registers the proxy's metric families on `registry` and returns them.
 *
 * @throws {TypeError} if any of the names is already registered on `registry`.
 */
export function createProxyMetrics(registry: Registry, options: ProxyMetricsOptions = {}) {
  const readRssBytes = options.readRssBytes ?? (() => Deno.memoryUsage().rss);
  const residentMemory = registry.gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes, sampled at scrape time.",
    [],
  );
  const rss = residentMemory.labels();
  registry.onCollect(() => rss.set(readRssBytes()));

  return {
    /** Responses sent to clients, counted when the response head is written. */
    httpRequests: registry.counter(
      "llmproxy_http_requests_total",
      "HTTP requests handled, by forward, normalized method and response status code.",
      ["forward", "method", "status"],
    ),
    /** Client request duration in seconds, measured until the response body ends. */
    httpRequestDuration: registry.histogram(
      "llmproxy_http_request_duration_seconds",
      "Time from request arrival to the end of the response body, in seconds.",
      ["forward"],
      DURATION_BUCKETS_SECONDS,
    ),
    /** Client requests whose response body has not ended yet. */
    inflight: registry.gauge(
      "llmproxy_inflight_requests",
      "Client requests currently being handled, including streaming bodies.",
      ["forward"],
    ),
    /** Upstream attempts that produced a response, by its status code. */
    upstreamRequests: registry.counter(
      "llmproxy_upstream_requests_total",
      "Requests sent to upstreams that returned a response, by status code.",
      ["group", "upstream", "status"],
    ),
    /** Seconds from sending an upstream request to its first response byte. */
    upstreamFirstByte: registry.histogram(
      "llmproxy_upstream_first_byte_seconds",
      "Time from sending an upstream request to receiving its response head, in seconds.",
      ["group", "upstream"],
      DURATION_BUCKETS_SECONDS,
    ),
    /** Failed upstream attempts; `kind` is an {@linkcode UpstreamErrorKind}. */
    upstreamErrors: registry.counter(
      "llmproxy_upstream_errors_total",
      "Failed upstream attempts, by kind: connect, tls, timeout, status, stream, aborted, proxy.",
      ["group", "upstream", "kind"],
    ),
    /** Attempts after the first for one client request. */
    retries: registry.counter(
      "llmproxy_retries_total",
      "Upstream attempts retried after a failed attempt.",
      ["group"],
    ),
    /** Requests that went on from a group to one of its fallbacks (group names). */
    fallbacks: registry.counter(
      "llmproxy_fallbacks_total",
      "Requests that a group ended without an answer for the client, sent on to a fallback group.",
      ["from", "to"],
    ),
    /** Requests rejected by a rate limiter; `scope` says which limiter kind. */
    rateLimitRejections: registry.counter(
      "llmproxy_ratelimit_rejections_total",
      "Requests rejected by a rate limiter, by limiter scope and name.",
      ["scope", "name"],
    ),
    /**
     * Breaker state per upstream; values from {@linkcode BREAKER_STATE_VALUE}. Labelled by
     * upstream only: the breaker belongs to the upstream, whatever groups it serves.
     */
    breakerState: registry.gauge(
      "llmproxy_circuit_breaker_state",
      "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open.",
      ["upstream"],
    ),
    /** Breaker state changes, reported from the breaker's `onStateChange` hook. */
    breakerTransitions: registry.counter(
      "llmproxy_circuit_breaker_transitions_total",
      "Circuit breaker state transitions per upstream, by previous and new state.",
      ["upstream", "from", "to"],
    ),
    /**
     * Tokens reported by upstream usage; `type` is `prompt` or `completion`. `model` is the
     * request's `RequestTrace.modelLabel`: the exact name or glob of the config that matched
     * the request's model, a fallback's configured model, or `other` (also when the request
     * named no model) — a value from the config, never the client's text, so it is bounded.
     */
    tokens: registry.counter(
      "llmproxy_tokens_total",
      "Tokens reported in upstream usage, by model (as configured, or other) and type: prompt or completion.",
      ["group", "upstream", "model", "type"],
    ),
    /** Seconds from sending an attempt to the first SSE data event of its streamed answer. */
    timeToFirstToken: registry.histogram(
      "llmproxy_time_to_first_token_seconds",
      "Time from sending an upstream request to the first SSE data event of its answer, in seconds.",
      ["group", "upstream"],
      TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS,
    ),
    /**
     * Seconds between successive SSE data events of a streamed answer; events that arrived in
     * one chunk count as gaps of 0 after the first (see `TokenTimer`).
     */
    interToken: registry.histogram(
      "llmproxy_inter_token_seconds",
      "Time between successive SSE data events of an upstream answer, in seconds (0 for events read together).",
      ["group", "upstream"],
      INTER_TOKEN_BUCKETS_SECONDS,
    ),
    /** Requests presented with a client key, by the key's name and the response status. */
    keyRequests: registry.counter(
      "llmproxy_key_requests_total",
      "Requests presented with a known client key, by key name and response status code.",
      ["key", "status"],
    ),
    /** Tokens charged to client keys; `type` is `prompt` or `completion`. */
    keyTokens: registry.counter(
      "llmproxy_key_tokens_total",
      "Tokens charged to client keys from upstream usage, by key name and type: prompt or completion.",
      ["key", "type"],
    ),
    /** Config reload attempts; `result` is `success` or `failure`. */
    configReloads: registry.counter(
      "llmproxy_config_reloads_total",
      "Configuration reload attempts, by result: success or failure.",
      ["result"],
    ),
    /** Open client connections per listener (a forward's name, or `admin`). */
    connectionsOpen: registry.gauge(
      "llmproxy_connections_open",
      "Client connections currently open, by listener.",
      ["listener"],
    ),
    /** Client connections the proxy refused or closed; `reason` is a `CloseReason`. */
    connectionsClosed: registry.counter(
      "llmproxy_connections_closed_total",
      "Client connections refused or closed by the proxy, by reason: limit, header_timeout, idle_timeout.",
      ["listener", "reason"],
    ),
    /** Shared store (Redis) calls that failed or timed out; `op` is a `StoreOp`. */
    storeErrors: registry.counter(
      "llmproxy_store_errors_total",
      "Calls to the shared limit store (Redis) that failed or timed out, by operation: ip, key_admit, key_charge, upstream, upstream_cool_down, cool_downs, ping.",
      ["op"],
    ),
    /** Seconds each check against the shared store took, its batch's wait included. */
    storeLatency: registry.histogram(
      "llmproxy_store_latency_seconds",
      "Time of each check against the shared limit store (Redis), from when it is made (waiting for its batch included) to its answer, by operation, in seconds.",
      ["op"],
      STORE_LATENCY_BUCKETS_SECONDS,
    ),
    /** `process_resident_memory_bytes`, set from `readRssBytes` on every render. */
    residentMemory,
  };
}

/** The families returned by {@linkcode createProxyMetrics}. */
export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;
