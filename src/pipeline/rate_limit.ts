/**
 * The client stage: resolves the client IP (socket peer, or X-Forwarded-For from a trusted
 * proxy) and applies the forward's per-client-IP token bucket.
 *
 * @module
 */
import { type RequestContext, type Stage, syncStage } from "./compose.ts";
import { RateLimitedError } from "./errors.ts";
import type { ClientIpResolver } from "../server/client_ip.ts";
import type { ClientLimiter } from "../state/limit_state.ts";
import type { LimitDecision } from "../resilience/token_bucket.ts";
import type { Clock } from "../deps.ts";

/** Options of {@linkcode clientStage}. */
export interface ClientStageOptions {
  resolver: ClientIpResolver;
  /** Per-client-IP limiter; undefined = no limit. */
  limiter?: ClientLimiter | undefined;
  clock: Pick<Clock, "now">;
  /** Called for each rejection (metrics). */
  onReject?: () => void;
}

/** Creates the client-IP and per-IP rate-limit stage. */
export function clientStage(options: ClientStageOptions): Stage {
  const { resolver, limiter, clock, onReject } = options;
  /** The decision applied: 429, or the X-RateLimit-* headers and the next stage. */
  const decide = (ctx: RequestContext, decision: LimitDecision, next: () => Promise<Response>) => {
    const limit: [string, string][] = [
      ["x-ratelimit-limit", String(decision.limit)],
      ["x-ratelimit-remaining", String(decision.remaining)],
      ["x-ratelimit-reset", String(Math.ceil(decision.resetMs / 1000))],
    ];
    if (!decision.allowed) {
      onReject?.();
      const retryAfter = String(Math.ceil(decision.retryAfterMs / 1000));
      throw new RateLimitedError(
        `Rate limit exceeded for client ${ctx.clientIp}: retry in ${retryAfter}s`,
        {
          code: "rate_limit_exceeded",
          headers: { ...Object.fromEntries(limit), "retry-after": retryAfter },
        },
      );
    }
    ctx.responseHeaders.push(...limit);
    return next();
  };
  // A refusal reaches the caller as a rejected promise (syncStage), never a synchronous throw.
  return syncStage(function client(ctx, next) {
    ctx.clientIp = resolver.resolve(ctx.peerIp, ctx.request.headers.get("x-forwarded-for"));
    if (!limiter) return next();
    const taken = limiter.take(ctx.clientIp, clock.now());
    // A promise only when the limit is in a shared store: memory answers at once.
    return taken instanceof Promise
      ? taken.then((decision) => decide(ctx, decision, next))
      : decide(ctx, taken, next);
  });
}
