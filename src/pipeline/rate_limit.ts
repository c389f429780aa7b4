/**
 * The client stage: resolves the client IP (socket peer, or X-Forwarded-For from a trusted
 * proxy) and applies the forward's per-client-IP token bucket.
 *
 * @module
 */
import type { Stage } from "./compose.ts";
import { RateLimitedError } from "./errors.ts";
import type { ClientIpResolver } from "../server/client_ip.ts";
import type { ClientLimiter } from "../state/limit_state.ts";
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
  // async: a rejection reaches the caller as a rejected promise, never a synchronous throw.
  return async function client(ctx, next) {
    ctx.clientIp = resolver.resolve(ctx.peerIp, ctx.request.headers.get("x-forwarded-for"));
    if (!limiter) return next();
    const taken = limiter.take(ctx.clientIp, clock.now());
    // Awaited only when the limit is in a shared store: memory answers at once.
    const decision = taken instanceof Promise ? await taken : taken;
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
}
