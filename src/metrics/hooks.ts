/**
 * Turns runtime events into metrics and the access log. This is the only module that writes
 * to the proxy's metric families; the request path reports through narrow hooks.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { RuntimeHooks } from "../runtime.ts";
import type { Group } from "../upstream/group.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { failureDetail } from "../upstream/failure.ts";
import { UpstreamTlsError } from "../upstream/transport.ts";
import {
  BREAKER_STATE_VALUE,
  normalizeMethod,
  type ProxyMetrics,
  type UpstreamErrorKind,
} from "./proxy_metrics.ts";

/**
 * Memoises a family's children by label values in nested maps, so the per-request path does
 * no key building (the registry joins values into a key on every `labels()` call). Label sets
 * are bounded (names from config, status codes, fixed kinds), so the maps are too.
 */
function memo2<C>(labels: (a: string, b: string) => C): (a: string, b: string) => C {
  const outer = new Map<string, Map<string, C>>();
  return (a, b) => {
    let inner = outer.get(a);
    if (!inner) outer.set(a, inner = new Map());
    let child = inner.get(b);
    if (!child) inner.set(b, child = labels(a, b));
    return child;
  };
}

function memo3<C>(
  labels: (a: string, b: string, c: string) => C,
): (a: string, b: string, c: string) => C {
  const outer = new Map<string, (b: string, c: string) => C>();
  return (a, b, c) => {
    let inner = outer.get(a);
    if (!inner) outer.set(a, inner = memo2((b2, c2) => labels(a, b2, c2)));
    return inner(b, c);
  };
}

/** Builds the runtime hooks that record metrics and write the access log. */
export function observabilityHooks(
  metrics: ProxyMetrics,
  options: { log: Logger; clock: { now(): number }; groupsOf: (u: Upstream) => Group[] },
): RuntimeHooks {
  const { log, clock, groupsOf } = options;
  const upstreamRequests = memo3((g, u, s) => metrics.upstreamRequests.labels(g, u, s));
  const upstreamFirstByte = memo2((g, u) => metrics.upstreamFirstByte.labels(g, u));
  const upstreamErrors = memo3((g, u, k) => metrics.upstreamErrors.labels(g, u, k));
  const tokens = memo3((g, u, t) => metrics.tokens.labels(g, u, t));
  const httpRequests = memo3((f, m, s) => metrics.httpRequests.labels(f, m, s));
  const inflight = memo2((f, _) => metrics.inflight.labels(f));
  const duration = memo2((f, _) => metrics.httpRequestDuration.labels(f));
  const access = log.child({ log: "access" });
  const errorKind = (kind: string): UpstreamErrorKind =>
    kind === "connect" || kind === "proxy" || kind === "aborted" || kind === "tls"
      ? kind
      : kind === "timeout"
      ? "timeout"
      : "stream";

  /**
   * The TLS failure last logged per upstream: a refused certificate fails every request, so it
   * is logged once (again when the reason changes, or after a success), not once per request.
   * Weak: an upstream a reload replaced takes its entry with it.
   */
  const tlsLogged = new WeakMap<Upstream, string>();

  return {
    onAttempt(group, member, result) {
      if (
        result.kind === "error" && result.outcome.kind === "tls" &&
        result.error instanceof UpstreamTlsError
      ) {
        upstreamErrors(group.name, member.name, "tls").inc();
        const detail = result.error.detail;
        const repeated = tlsLogged.get(member.upstream) === detail;
        if (!repeated) tlsLogged.set(member.upstream, detail);
        const level = repeated ? "debug" : "warn";
        if (log.enabled(level)) {
          log[level](
            `TLS handshake with upstream "${member.name}" failed: ${detail}${
              repeated ? "" : " (logged once per upstream until the reason changes)"
            }`,
            { group: group.name, upstream: member.name, tls: result.error.kind },
          );
        }
        return;
      }
      if (result.kind === "response") {
        tlsLogged.delete(member.upstream);
        const status = result.response.status;
        upstreamRequests(group.name, member.name, String(status)).inc();
        upstreamFirstByte(group.name, member.name).observe(result.firstByteMs / 1000);
        if (status >= 500 || status === 429) {
          upstreamErrors(group.name, member.name, "status").inc();
        }
      } else if (result.outcome.kind !== "not_sent") {
        // A request never sent is not the upstream's error (it is logged below).
        upstreamErrors(group.name, member.name, errorKind(result.outcome.kind)).inc();
      }
      if (result.kind === "error" && log.enabled("warn")) {
        // The client saw `message` only; the raw error is the operator's (the logger
        // redacts the config's secrets from it, e.g. a `?key=` in the URL it names).
        log.warn(`attempt failed: ${result.message}`, {
          group: group.name,
          upstream: member.name,
          error: failureDetail(result.error),
        });
      }
    },
    onRetry(group) {
      metrics.retries.labels(group.name).inc();
    },
    onBodyEnd(group, member, end, usage) {
      if (usage) {
        if (usage.prompt > 0) tokens(group.name, member.name, "prompt").inc(usage.prompt);
        if (usage.completion > 0) {
          tokens(group.name, member.name, "completion").inc(usage.completion);
        }
      }
      if (end.kind === "error") {
        const kind = end.timeout ? "timeout" : "stream";
        upstreamErrors(group.name, member.name, kind).inc();
      }
    },
    onUpstreamRateLimited(group) {
      metrics.rateLimitRejections.labels("upstream", group.name).inc();
    },
    onClientRateLimited(forward) {
      metrics.rateLimitRejections.labels("forward", forward).inc();
    },
    onBreakerChange(upstream, from, to) {
      for (const group of groupsOf(upstream)) {
        metrics.breakerState.labels(group.name, upstream.name).set(BREAKER_STATE_VALUE[to]);
        metrics.breakerTransitions.labels(group.name, upstream.name, from, to).inc();
      }
    },
    onRequestStart(ctx) {
      inflight(ctx.forward, "").inc();
    },
    onResponseEnd(ctx, status, bytes) {
      const durationMs = clock.now() - ctx.startedAt;
      inflight(ctx.forward, "").dec();
      httpRequests(ctx.forward, normalizeMethod(ctx.request.method), String(status)).inc();
      duration(ctx.forward, "").observe(durationMs / 1000);
      if (!access.enabled("info")) return;
      access.info("request", {
        requestId: ctx.requestId,
        forward: ctx.forward,
        method: ctx.request.method,
        path: ctx.path,
        group: ctx.trace.group,
        upstream: ctx.trace.upstream,
        attempts: ctx.trace.attempts,
        status,
        durationMs,
        firstByteMs: ctx.trace.firstByteMs,
        bytes,
        clientIp: ctx.clientIp,
        tokens: ctx.trace.tokens,
      });
    },
  };
}
