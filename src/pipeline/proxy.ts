/**
 * The terminal stage: route → read the body once → loop: candidates → select → attempt →
 * plan (`planRetry`) → respond, fail, or wait and go again. Policies decide; this orchestrates.
 * Nothing is retried after the first response byte went to the client: a response is only
 * returned once it is final.
 *
 * @module
 */
import type { RequestContext, Stage } from "./compose.ts";
import { ClientClosedError, NoUpstreamError, type ProxyError, RateLimitedError } from "./errors.ts";
import type { Router } from "../routing/router.ts";
import type { Group, GroupMember } from "../upstream/group.ts";
import type { AttemptResult, OutgoingRequest } from "../upstream/attempt.ts";
import { planRetry } from "../resilience/retry.ts";
import type { BodyEnd } from "../stream/observe.ts";
import type { Clock, Random } from "../deps.ts";
import { readBody } from "./request_body.ts";
import { respond } from "./respond.ts";
import { Attempt, type AttemptEnv, prepare } from "./attempt.ts";
import type { Deadlines } from "../deadlines.ts";
import type { TokenUsage } from "../stream/usage.ts";
import type { TokenTimingSink } from "../stream/token_timing.ts";
import { type Logger, silentLogger } from "../log.ts";
import { delay } from "../delay.ts";

/** Narrow hooks through which the proxy reports what happened (metrics, logs). */
export interface ProxyHooks {
  /** An attempt finished its headers phase (or failed before). */
  onAttempt?(group: Group, member: GroupMember, result: AttemptResult): void;
  /** A retry is about to be sent. */
  onRetry?(group: Group, result: AttemptResult, delayMs: number): void;
  /**
   * A proxied body ended (end, error, cancel), with the token usage it reported and the
   * request's bounded model label (`RequestTrace.modelLabel`; undefined when it named none).
   */
  onBodyEnd?(
    group: Group,
    member: GroupMember,
    end: BodyEnd,
    usage?: TokenUsage,
    model?: string,
  ): void;
  /** An SSE answer starts passing to the client: where its token timings go, if anywhere. */
  onTokenStream?(group: Group, member: GroupMember): TokenTimingSink | undefined;
  /** Every candidate was rate limited by its own per-upstream limit. */
  onUpstreamRateLimited?(group: Group): void;
}

/** Options of {@linkcode proxyStage}. */
export interface ProxyStageOptions {
  router: Router<Group>;
  /** Largest request body, bytes. */
  maxBodySize: number;
  /** Longest time to receive the request body, ms (then 408). */
  bodyTimeoutMs: number;
  /** Shared deadline ticks (body read, first byte, total). */
  deadlines: Deadlines;
  /** Time for policies and waits; its wall clock dates an HTTP-date `Retry-After`. */
  clock: Clock;
  random: Random;
  /** The runtime's shutdown: ends every attempt and retry wait still open (drain deadline). */
  shutdown: AbortSignal;
  /** Waits before a retry; rejects when the signal aborts. @default delay on `clock` */
  wait?: (ms: number, options: { signal: AbortSignal }) => Promise<void>;
  hooks?: ProxyHooks;
  /** Gets the raw errors behind what clients are told. @default silentLogger */
  log?: Logger;
  /**
   * Decides, once the request is routed and its body read, whether it may go on (client keys:
   * group, model, limits), and returns the body to send; throws a ProxyError to refuse.
   * @default admits everything as it is
   */
  admit?: (
    ctx: RequestContext,
    group: Group,
    body: Uint8Array<ArrayBuffer> | null,
  ) => Uint8Array<ArrayBuffer> | null;
}

/** Creates the proxy stage. */
export function proxyStage(options: ProxyStageOptions): Stage {
  const { router, clock, random, hooks = {} } = options;
  const now = () => clock.now();
  const env: AttemptEnv = {
    hooks,
    deadlines: options.deadlines,
    clock,
    now,
    wallNow: () => clock.wallNow(),
    log: options.log ?? silentLogger,
    shutdown: options.shutdown,
  };
  const wait = options.wait ??
    ((ms: number, { signal }: { signal: AbortSignal }) => delay(ms, { signal, clock }));

  return async function proxy(ctx) {
    const group = router.resolve(ctx.path);
    ctx.trace.group = group.name;
    const read = await readBody(
      ctx.request,
      options.maxBodySize,
      options.bodyTimeoutMs,
      options.deadlines,
    );
    const body = options.admit ? options.admit(ctx, group, read) : read;
    const request: OutgoingRequest = {
      method: ctx.request.method,
      path: ctx.path,
      query: ctx.query,
      headers: ctx.upstreamHeaders ?? ctx.request.headers,
      body,
      peerIp: ctx.peerIp,
      // The listener's scheme. Never read from `request.url`: for an absolute-form target
      // (`GET https://x/ HTTP/1.1`) it is whatever scheme the client wrote.
      proto: ctx.scheme,
    };

    const tried = new Set<GroupMember>();
    /** Members whose TLS handshake failed: never tried again by this request. */
    const barred = new Set<GroupMember>();
    const started = now();
    let last: Attempt | undefined;
    for (let retryIndex = 0;; retryIndex++) {
      // One reading of the clock per step: each costs an op call (performance.now).
      const at = now();
      const candidates = group.candidates(at, tried, barred);
      if (candidates.length === 0) {
        if (last) return finalAnswer(group, last);
        throw noCandidateError(group, at, hooks);
      }
      const member = group.balancer.select(candidates, { clientIp: ctx.clientIp, now: at });
      const prepared = prepare(member, request);
      const attempt = Attempt.start(env, { group, member, client: ctx.request.signal });
      if (!attempt) throw noCandidateError(group, at, hooks);
      tried.add(member);
      ctx.trace.attempts++;
      ctx.trace.upstream = member.name;

      last = attempt;
      const result = await attempt.send(prepared);
      if (result.outcome.kind === "tls") barred.add(member);

      const ended = now();
      const plan = planRetry(result, {
        retryIndex,
        elapsedMs: ended - started,
        now: ended,
        alone: !group.members.some((m) => m !== member && m.upstream.available(ended)),
        clientGone: ctx.request.signal.aborted,
        policy: group.retry,
        random,
        // Judged first so this result counts (it may open the breaker).
        canResumeAt: (at) => {
          attempt.judge();
          return group.candidates(at, tried, barred).length > 0;
        },
      });
      if (plan.action === "respond") return respond(ctx, attempt);
      if (plan.action === "fail") {
        attempt.finish();
        throw attempt.error();
      }
      attempt.release();
      // An answer we will not use: release it, then try again.
      if (result.kind === "response") result.response.body?.cancel().catch(() => {});
      hooks.onRetry?.(group, result, plan.delayMs);
      // Cut short by the client leaving (no further upstream call for it) or a shutdown.
      const stop = AbortSignal.any([ctx.request.signal, options.shutdown]);
      try {
        await wait(plan.delayMs, { signal: stop });
        // Timers may wake a little before the clock reaches resumeAt; a Retry-After
        // cool-down measured on that clock must really have passed.
        if (now() < plan.resumeAt) await wait(plan.resumeAt - now(), { signal: stop });
      } catch (error) {
        if (!stop.aborted) throw error;
      }
      if (ctx.request.signal.aborted) {
        throw new ClientClosedError("client disconnected before the retry", {
          code: "client_disconnected",
        });
      }
      if (stop.aborted) {
        throw new NoUpstreamError("the proxy is shutting down; the retry was not sent", {
          code: "shutting_down",
        });
      }
    }
  };

  /** No retry left: the last upstream response as it is, or the error it ended with. */
  function finalAnswer(group: Group, attempt: Attempt): Response {
    const last = attempt.result;
    if (last.kind === "error") throw attempt.error();
    // Its body was cancelled when we moved on; say what happened instead.
    throw new NoUpstreamError(
      `Cannot select upstream for group "${group.name}": every upstream failed or is unavailable (last status ${last.response.status})`,
      { code: "no_upstream_available" },
    );
  }
}

function noCandidateError(group: Group, now: number, hooks: ProxyHooks): ProxyError {
  const total = group.members.length;
  const limited = group.members.filter((m) => m.upstream.rateLimited(now)).length;
  if (limited > 0 && group.members.every((m) => !m.upstream.available(now))) {
    hooks.onUpstreamRateLimited?.(group);
    const waits = group.members.map((m) => m.upstream.limiter?.msUntil(now) ?? Infinity);
    const retryAfter = Math.max(1, Math.ceil(Math.min(...waits) / 1000));
    return new RateLimitedError(
      `Every upstream of group "${group.name}" is at its rate limit`,
      { code: "upstream_rate_limited", headers: { "retry-after": String(retryAfter) } },
    );
  }
  return new NoUpstreamError(
    `Cannot select upstream for group "${group.name}": ${total} of ${total} upstreams unavailable`,
    { code: "no_upstream_available" },
  );
}
