/**
 * Turns runtime events into metrics and the access log. This is the only module that writes
 * to the proxy's metric families; the request path reports through narrow hooks.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Config } from "../config/schema.ts";
import type { Runtime, RuntimeHooks } from "../runtime.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { failureDetail } from "../transport/failure.ts";
import { UpstreamTlsError } from "../transport/transport.ts";
import {
  BREAKER_STATE_VALUE,
  methodLabel,
  type ProxyMetrics,
  type UpstreamErrorKind,
} from "./proxy_metrics.ts";

/** The names a config gives to what metrics label: forwards, groups, upstreams, client keys. */
export interface ConfigNames {
  readonly forwards: Iterable<string>;
  readonly groups: Iterable<string>;
  readonly upstreams: Iterable<string>;
  readonly keys?: Iterable<string>;
}

/** The names of `config`'s forwards, groups and upstreams. */
export function configNames(config: Config): ConfigNames {
  return {
    forwards: config.httpServer.forwards.map((f) => f.name),
    groups: config.upstreamGroups.map((g) => g.name),
    upstreams: config.upstreams.map((u) => u.name),
    keys: config.clientKeys.map((k) => k.name),
  };
}

/**
 * The runtime hooks plus what the composition root reports: graph swaps, reloads, retired
 * names and client connections, so that this module stays the only writer of metrics.
 */
export interface ObservabilityHooks extends RuntimeHooks {
  /**
   * A graph starts serving (at start-up, and after each reload with the one it replaced): the
   * breaker gauge of each upstream it built anew shows that upstream's state, and listeners of
   * its forwards are counted again.
   */
  onServing(next: Runtime, previous?: Runtime): void;
  /** A config reload ended: `success`, or `failure` (rejected, or failed on a bug). */
  onReload(result: "success" | "failure"): void;
  /**
   * Removes the series of every forward, group and upstream of `gone` that no config in `live`
   * names, so `/metrics` stops showing what a reload removed. Call it once the graph of `gone`
   * has finished its requests: their last reports would bring the series back.
   */
  forget(gone: ConfigNames, live: Iterable<ConfigNames>): void;
  /** A listener's count of open client connections changed. */
  onConnectionsOpen(listener: string, open: number): void;
  /** The proxy refused or closed a client connection (`reason`: a `CloseReason`). */
  onConnectionClosed(listener: string, reason: string): void;
  /** A call to the shared limit store ended (`op`: a `StoreOp`), in `seconds`, failed or not. */
  onStoreCall(op: string, seconds: number, failed: boolean): void;
}

/** Listener label of the admin server's connections (forwards use their names). */
const ADMIN_LISTENER = "admin";
/** `model` label of tokens whose request named no model (see {@linkcode ProxyMetrics}). */
const OTHER_MODEL = "other";

/**
 * Builds the runtime hooks that record metrics and write the access log.
 *
 * Label children are looked up per report: {@linkcode Family.labels} is the cache (a map per
 * label). Label values are bounded: names from the config, status codes, fixed kinds.
 */
export function observabilityHooks(
  metrics: ProxyMetrics,
  options: { log: Logger; clock: { now(): number } },
): ObservabilityHooks {
  const { log, clock } = options;
  const upstreamRequests = metrics.upstreamRequests;
  const upstreamFirstByte = metrics.upstreamFirstByte;
  const upstreamErrors = metrics.upstreamErrors;
  const tokens = metrics.tokens;
  const timeToFirstToken = metrics.timeToFirstToken;
  const interToken = metrics.interToken;
  const httpRequests = metrics.httpRequests;
  /**
   * Listeners whose forward the serving config names (and the admin's). Connections of a
   * removed forward's listener still close while it drains; their reports must not bring back
   * the series that {@linkcode ObservabilityHooks.forget} removed.
   */
  let listeners = new Set<string>();
  /** The families labelled by group and upstream (whatever else): forgotten with either. */
  const perUpstream = [
    upstreamRequests,
    upstreamFirstByte,
    upstreamErrors,
    tokens,
    timeToFirstToken,
    interToken,
  ];
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
        upstreamErrors.labels(group.name, member.name, "tls").inc();
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
        upstreamRequests.labels(group.name, member.name, String(status)).inc();
        upstreamFirstByte.labels(group.name, member.name).observe(result.firstByteMs / 1000);
        if (status >= 500 || status === 429) {
          upstreamErrors.labels(group.name, member.name, "status").inc();
        }
      } else if (result.outcome.kind !== "not_sent") {
        // A request never sent is not the upstream's error (it is logged below).
        upstreamErrors.labels(group.name, member.name, errorKind(result.outcome.kind)).inc();
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
    onFallback(from, to) {
      metrics.fallbacks.labels(from.name, to.name).inc();
    },
    onBodyEnd(group, member, end, usage, model = OTHER_MODEL) {
      if (usage) {
        if (usage.prompt > 0) {
          tokens.labels(group.name, member.name, model, "prompt").inc(usage.prompt);
        }
        if (usage.completion > 0) {
          tokens.labels(group.name, member.name, model, "completion").inc(usage.completion);
        }
      }
      if (end.kind === "error") {
        const kind = end.timeout ? "timeout" : "stream";
        upstreamErrors.labels(group.name, member.name, kind).inc();
      }
    },
    onTokenStream(group, member) {
      return {
        firstToken: timeToFirstToken.labels(group.name, member.name),
        interToken: interToken.labels(group.name, member.name),
      };
    },
    onUpstreamRateLimited(group) {
      metrics.rateLimitRejections.labels("upstream", group.name).inc();
    },
    onClientRateLimited(forward) {
      metrics.rateLimitRejections.labels("forward", forward).inc();
    },
    onKeyLimited(key) {
      metrics.rateLimitRejections.labels("key", key).inc();
    },
    onBreakerChange(upstream, from, to) {
      metrics.breakerState.labels(upstream.name).set(BREAKER_STATE_VALUE[to]);
      metrics.breakerTransitions.labels(upstream.name, from, to).inc();
    },
    onRequestStart(ctx) {
      metrics.inflight.labels(ctx.forward).inc();
    },
    onResponseEnd(ctx, status, bytes) {
      const durationMs = clock.now() - ctx.startedAt;
      metrics.inflight.labels(ctx.forward).dec();
      httpRequests.labels(ctx.forward, methodLabel(ctx.request.method), String(status)).inc();
      metrics.httpRequestDuration.labels(ctx.forward).observe(durationMs / 1000);
      const key = ctx.trace.key;
      if (key !== undefined) {
        metrics.keyRequests.labels(key, String(status)).inc();
        const usage = ctx.trace.tokens;
        if (usage && usage.prompt > 0) metrics.keyTokens.labels(key, "prompt").inc(usage.prompt);
        if (usage && usage.completion > 0) {
          metrics.keyTokens.labels(key, "completion").inc(usage.completion);
        }
      }
      if (!access.enabled("info")) return;
      access.info("request", {
        requestId: ctx.requestId,
        forward: ctx.forward,
        key: ctx.trace.key,
        method: ctx.request.method,
        path: ctx.path,
        group: ctx.trace.group,
        // The client's text, but never long: the log line stays one line of bounded size.
        model: ctx.trace.model === undefined ? undefined : ctx.trace.model.slice(0, 200),
        upstream: ctx.trace.upstream,
        fallbacks: ctx.trace.fallbacks,
        attempts: ctx.trace.attempts,
        status,
        durationMs: microsecondPrecision(durationMs),
        firstByteMs: ctx.trace.firstByteMs === undefined
          ? undefined
          : microsecondPrecision(ctx.trace.firstByteMs),
        bytes,
        clientIp: ctx.clientIp,
        tokens: ctx.trace.tokens,
      });
    },
    onServing(next, previous) {
      for (const upstream of next.upstreams.values()) {
        if (previous?.upstreams.get(upstream.name) === upstream) continue;
        const state = upstream.breaker.state(clock.now());
        metrics.breakerState.labels(upstream.name).set(BREAKER_STATE_VALUE[state]);
      }
      listeners = new Set([ADMIN_LISTENER, ...next.forwards.keys()]);
    },
    onReload(result) {
      metrics.configReloads.labels(result).inc();
    },
    forget(gone, live) {
      const kept = {
        forwards: new Set<string>(),
        groups: new Set<string>(),
        upstreams: new Set<string>(),
        keys: new Set<string>(),
      };
      for (const names of live) {
        for (const f of names.forwards) kept.forwards.add(f);
        for (const g of names.groups) kept.groups.add(g);
        for (const u of names.upstreams) kept.upstreams.add(u);
        for (const k of names.keys ?? []) kept.keys.add(k);
      }
      for (const key of gone.keys ?? []) {
        if (kept.keys.has(key)) continue;
        metrics.keyRequests.removeWhere("key", key);
        metrics.rateLimitRejections.remove("key", key);
        metrics.keyTokens.removeWhere("key", key);
      }
      for (const forward of gone.forwards) {
        if (kept.forwards.has(forward) || forward === ADMIN_LISTENER) continue;
        metrics.httpRequests.removeWhere("forward", forward);
        metrics.httpRequestDuration.removeWhere("forward", forward);
        metrics.inflight.removeWhere("forward", forward);
        metrics.rateLimitRejections.remove("forward", forward);
        metrics.connectionsOpen.removeWhere("listener", forward);
        metrics.connectionsClosed.removeWhere("listener", forward);
      }
      for (const group of gone.groups) {
        if (kept.groups.has(group)) continue;
        for (const family of perUpstream) family.removeWhere("group", group);
        metrics.retries.removeWhere("group", group);
        metrics.fallbacks.removeWhere("from", group);
        metrics.fallbacks.removeWhere("to", group);
        metrics.rateLimitRejections.remove("upstream", group);
      }
      for (const upstream of gone.upstreams) {
        if (kept.upstreams.has(upstream)) continue;
        for (const family of perUpstream) family.removeWhere("upstream", upstream);
        metrics.breakerState.removeWhere("upstream", upstream);
        metrics.breakerTransitions.removeWhere("upstream", upstream);
      }
    },
    onConnectionsOpen(listener, open) {
      // The last connection of a removed forward's listener takes its series with it.
      if (!listeners.has(listener) && open === 0) {
        metrics.connectionsOpen.remove(listener);
      } else metrics.connectionsOpen.labels(listener).set(open);
    },
    onConnectionClosed(listener, reason) {
      if (listeners.has(listener)) metrics.connectionsClosed.labels(listener, reason).inc();
    },
    onStoreCall(op, seconds, failed) {
      metrics.storeLatency.labels(op).observe(seconds);
      if (failed) metrics.storeErrors.labels(op).inc();
    },
  };
}

/**
 * Milliseconds rounded to three decimals: `durationMs=13.178`, not `13.177623999999923` (the
 * clock's float noise, longer to format and to read).
 */
function microsecondPrecision(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
