/**
 * The terminal stage: route (path, then the body's model) → read the body once → per group of
 * the route (the chosen one, then its fallbacks): candidates → select → attempt → plan
 * (`planRetry`) → respond, fail, fall back, or wait and go again. Policies decide; this
 * orchestrates. Nothing is retried and nothing falls back after the first response byte went
 * to the client: a response is only returned once it is final.
 *
 * @module
 */
import type { RequestContext, Stage } from "./compose.ts";
import { ClientClosedError, NoUpstreamError, type ProxyError, RateLimitedError } from "./errors.ts";
import type { Router } from "../routing/router.ts";
import type { Group, GroupMember } from "../upstream/group.ts";
import type { AttemptResult, OutgoingRequest } from "../upstream/attempt.ts";
import { isRetryable, planRetry } from "../resilience/retry.ts";
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
import type { ModelMatcher } from "../routing/model_match.ts";
import { RequestBody } from "./json_body.ts";
import { CONTEXT_ERROR_MAX_BYTES, isContextLengthError } from "../upstream/context_length.ts";

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
  /** The request leaves `from` without an answer for the client and goes to its fallback `to`. */
  onFallback?(from: Group, to: Group): void;
}

/** One group of a request's route: the group, and the model it is asked for when not the body's. */
interface RouteStep {
  readonly group: Group;
  readonly model?: string;
}

/** Options of {@linkcode proxyStage}. */
export interface ProxyStageOptions {
  router: Router<Group>;
  /** Groups by the models they serve (`upstreamGroups[].models`); empty when none has any. */
  models: ModelMatcher<Group>;
  /** Every group by name: where fallbacks lead. */
  groups: ReadonlyMap<string, Group>;
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
   * group, model, limits), and may replace the body to send; throws a ProxyError to refuse.
   * A promise (limits in a shared store) is awaited; a plain return costs no await.
   * @default admits everything as it is
   */
  admit?: (ctx: RequestContext, group: Group, body: RequestBody) => void | Promise<void>;
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

  const { models } = options;
  /** Each group's route: the group, then its fallbacks, resolved once. */
  const routes = new Map<Group, readonly RouteStep[]>();
  for (const group of options.groups.values()) {
    routes.set(group, [
      { group },
      ...group.config.fallbacks.map(({ group: name, model }) => {
        const target = options.groups.get(name)!;
        return model === undefined ? { group: target } : { group: target, model };
      }),
    ]);
  }

  return async function proxy(ctx) {
    const ruled = router.match(ctx.path);
    const body = new RequestBody(
      await readBody(ctx.request, options.maxBodySize, options.bodyTimeoutMs, options.deadlines),
    );
    // The body is parsed here only when some group is chosen by model.
    const asked = models.empty ? undefined : body.model();
    const matched = asked === undefined ? undefined : models.match(asked);
    const group = ruled ?? matched?.target ?? router.fallback;
    ctx.trace.group = group.name;
    if (asked !== undefined) {
      ctx.trace.model = asked;
      ctx.trace.modelLabel = matched?.pattern ?? "other";
    }
    const admitted = options.admit?.(ctx, group, body);
    if (admitted) await admitted;
    // A body parsed for something else (a client key's models, a chat stream's usage) names
    // its model in the access log too.
    ctx.trace.model ??= body.parsedModel();
    const request: OutgoingRequest = {
      method: ctx.request.method,
      path: ctx.path,
      query: ctx.query,
      headers: ctx.upstreamHeaders ?? ctx.request.headers,
      body: body.bytes,
      peerIp: ctx.peerIp,
      // The listener's scheme. Never read from `request.url`: for an absolute-form target
      // (`GET https://x/ HTTP/1.1`) it is whatever scheme the client wrote.
      proto: ctx.scheme,
    };
    const route = routeFrom(ctx, group);
    const started = now();
    for (let i = 0;; i++) {
      const step = route[i]!;
      const next = route[i + 1];
      // Falling back is bounded by the first group's retry budget: one per request.
      const mayFallBack = next === undefined
        ? undefined
        : (at: number) =>
          at - started < group.retry.budgetMs && !ctx.request.signal.aborted &&
          !options.shutdown.aborted;
      const answer = await tryGroup(ctx, step, request, body, started, mayFallBack);
      if (answer) return answer;
      hooks.onFallback?.(step.group, next!.group);
      ctx.trace.group = next!.group.name;
      ctx.trace.fallbacks = (ctx.trace.fallbacks ?? 0) + 1;
      if (next!.model !== undefined) {
        ctx.trace.model = next!.model;
        // Bounded: a name from the config.
        ctx.trace.modelLabel = models.match(next!.model)?.pattern ?? next!.model;
      }
    }
  };

  /** The group chosen, then the fallbacks of its list the client key may use. */
  function routeFrom(ctx: RequestContext, group: Group): readonly RouteStep[] {
    const route = routes.get(group)!;
    const key = ctx.clientKey;
    if (route.length === 1 || !key) return route;
    return route.filter((s, i) => i === 0 || key.allows(s.group.name, s.model));
  }

  /**
   * The request on one group of its route: an answer for the client, or undefined when
   * `mayFallBack` allows the next group to try (no candidate; retryable failures with no retry
   * left; a 400 context-length error). Without `mayFallBack` (the route's last group) the
   * group's last answer or error is final.
   */
  async function tryGroup(
    ctx: RequestContext,
    step: RouteStep,
    request: OutgoingRequest,
    body: RequestBody,
    started: number,
    mayFallBack: ((at: number) => boolean) | undefined,
  ): Promise<Response | undefined> {
    const { group } = step;
    const tried = new Set<GroupMember>();
    /**
     * Members whose TLS handshake failed, or that refused a lease: never tried again by this
     * request in this group.
     */
    const barred = new Set<GroupMember>();
    let last: Attempt | undefined;
    for (let retryIndex = 0;; retryIndex++) {
      // One reading of the clock per step: each costs an op call (performance.now).
      const at = now();
      const candidates = group.candidates(at, tried, barred);
      if (candidates.length === 0) {
        if (mayFallBack?.(at)) return undefined;
        if (last) return finalAnswer(group, last);
        throw noCandidateError(group, at, hooks);
      }
      const member = group.balancer.select(candidates, { clientIp: ctx.clientIp, now: at });
      const prepared = prepare(member, withBodyFor(member, step, request, body));
      const starting = Attempt.start(env, { group, member, client: ctx.request.signal });
      // Awaited only when the upstream's limit is in a shared store.
      const attempt = starting instanceof Promise ? await starting : starting;
      if (!attempt) {
        // Available a moment ago, refused now (another worker or instance took its last
        // token): another member gets the request, and no retry is spent on it.
        barred.add(member);
        retryIndex--;
        continue;
      }
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
      if (plan.action !== "wait") {
        if (mayFallBack && await fallsBack(attempt, mayFallBack(ended))) {
          attempt.finish();
          if (result.kind === "response") result.response.body?.cancel().catch(() => {});
          return undefined;
        }
        if (plan.action === "respond") return await respond(ctx, attempt);
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
  }

  /**
   * Whether the final result of a group sends the request on to its next fallback (`allowed`:
   * time and client permitting): a retryable failure (connect, TLS, first-byte timeout, 429,
   * 5xx), or a 400 whose JSON body says the prompt exceeds the model's context.
   */
  async function fallsBack(attempt: Attempt, allowed: boolean): Promise<boolean> {
    if (!allowed) return false;
    const result = attempt.result;
    if (isRetryable(result.outcome)) return true;
    if (result.kind !== "response" || result.response.status !== 400) return false;
    if (!result.response.headers.get("content-type")?.includes("json")) return false;
    const bytes = await attempt.peek(CONTEXT_ERROR_MAX_BYTES);
    return bytes !== undefined && isContextLengthError(bytes);
  }

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
    const waits = group.members.map((m) => m.upstream.msUntilToken(now));
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

/**
 * `request` with the body as `member`'s upstream should get it: the model the group is asked
 * for (a fallback's, else the client's) under the name the upstream knows it by (`modelMap`).
 * The body is only read for its model when there is something to rename.
 */
function withBodyFor(
  member: GroupMember,
  step: RouteStep,
  request: OutgoingRequest,
  body: RequestBody,
): OutgoingRequest {
  if (step.model === undefined && !member.upstream.mapsModels) return request;
  const model = step.model ?? body.model();
  if (model === undefined) return request;
  const bytes = body.withModel(member.upstream.modelFor(model));
  return bytes === request.body ? request : { ...request, body: bytes };
}
