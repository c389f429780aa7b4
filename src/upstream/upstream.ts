/**
 * The runtime state of one upstream: its parsed URL, circuit breaker, optional token bucket
 * and 429 back-off. Availability belongs here: balancers only ever see available upstreams.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import { effectivePathMode } from "../config/path_mode.ts";
import {
  type BreakerState,
  CircuitBreaker,
  type CircuitBreakerHooks,
} from "../resilience/circuit_breaker.ts";
import { TokenBucket } from "../resilience/token_bucket.ts";
import type { CoolDown, LimitState, RateBucket, UpstreamLimits } from "../state/limit_state.ts";
import { UpstreamUrl } from "./url.ts";
import { ModelMatcher } from "../routing/model_match.ts";

/** How an attempt ended, as far as the breaker is concerned. */
export type BreakerVerdict = "success" | "failure" | "neutral";

/** Permission to send one request to an upstream; settle it exactly once. */
export interface Lease {
  readonly generation: number;
}

/** One upstream at run time. */
export class Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly url: UpstreamUrl;
  readonly breaker: CircuitBreaker;
  readonly limiter: RateBucket | undefined;
  /** `modelMap`: the names this upstream knows models by; undefined when it has none. */
  readonly #modelMap: ModelMatcher<string> | undefined;
  /** Requests sent and failed (connect, timeout, 5xx, broken stream), for the admin API. */
  requests = 0;
  errors = 0;
  inFlight = 0;
  #cooldownUntil = 0;
  /** The 429 back-off shared by the workers; undefined: `#cooldownUntil` (one process). */
  readonly #sharedCooldown: CoolDown | undefined;
  /**
   * The rate limit and 429 cool-down in a store shared by instances (Redis); then `limiter` is
   * this process's fallback, and `#cooldownUntil` / `#limitedUntil` mirror what the store said.
   */
  readonly #store: UpstreamLimits | undefined;
  /** Monotonic ms until which the store said the rate limit has no token. */
  #limitedUntil = 0;

  /**
   * `limits`: where the rate limit and the 429 back-off keep their state (workers share them);
   * omitted = this object's own memory. The breaker is always this object's own.
   */
  constructor(config: UpstreamConfig, hooks: CircuitBreakerHooks = {}, limits?: LimitState) {
    this.name = config.name;
    this.config = config;
    this.url = new UpstreamUrl(config.url, {
      mode: effectivePathMode(config),
      rewrite: config.path.rewrite,
    });
    const b = config.breaker;
    this.breaker = new CircuitBreaker({
      threshold: b.threshold,
      cooldownMs: b.cooldown,
      maxRequests: b.maxRequests,
      intervalMs: b.interval,
      minRequests: b.minRequests,
    }, hooks);
    this.limiter = config.ratelimit
      ? limits
        ? limits.bucket(`upstream:${config.name}`, config.ratelimit)
        : new TokenBucket(config.ratelimit)
      : undefined;
    this.#sharedCooldown = limits?.coolDown?.(`upstream:${config.name}:${config.url}`);
    // Named by the upstream's name only: a URL may carry a secret (`?key=`).
    this.#store = limits?.upstreamLimits?.(config.name, config.ratelimit);
    // Without a rate limit an attempt makes no store call: other instances' cool-downs come
    // from the background read (within its interval); with one, the attempt's call reads it.
    if (this.#store && !config.ratelimit) {
      this.#store.watch((until) => this.#holdOff(until));
    }
    this.#modelMap = config.modelMap
      ? new ModelMatcher(
        Object.entries(config.modelMap).map(([pattern, target]) => ({ pattern, target })),
      )
      : undefined;
  }

  /** Whether this upstream renames some models (then the request's model must be read). */
  get mapsModels(): boolean {
    return this.#modelMap !== undefined;
  }

  /** `model` as this upstream knows it (its `modelMap`), or `model` itself. */
  modelFor(model: string): string {
    return this.#modelMap?.match(model)?.target ?? model;
  }

  /** Whether a request could go here now: breaker passes, a token is left, no 429 back-off. */
  available(now: number): boolean {
    return now >= this.#cooldown() && this.breaker.canPass(now) && this.#hasToken(now);
  }

  /** Whether the only thing keeping this upstream out is its own rate limit. */
  rateLimited(now: number): boolean {
    return this.limiter !== undefined && !this.#hasToken(now) &&
      now >= this.#cooldown() && this.breaker.canPass(now);
  }

  /** ms from `now` until the rate limit has a token (Infinity without a limit). */
  msUntilToken(now: number): number {
    if (!this.limiter) return Infinity;
    return this.#store ? Math.max(0, this.#limitedUntil - now) : this.limiter.msUntil(now);
  }

  /** A token as far as this process knows (the store's last word when shared). */
  #hasToken(now: number): boolean {
    if (this.limiter === undefined) return true;
    return this.#store ? now >= this.#limitedUntil : this.limiter.tokens(now) >= 1;
  }

  /**
   * Whether the rate limit is in a shared store: then use {@linkcode acquireShared} (one call
   * per attempt). Without a rate limit the attempt needs no call.
   */
  get shared(): boolean {
    return this.#store !== undefined && this.limiter !== undefined;
  }

  /**
   * {@linkcode acquire} with the limit and cool-down in the shared store: a breaker slot here,
   * then the store's cool-down and token in one round trip. When the store failed: this
   * process's own limit (`local`); with `reject` it rejects (503) and the slot goes back.
   */
  acquireShared(now: number): Promise<Lease | undefined> | undefined {
    const store = this.#store!;
    if (now < this.#cooldown() || now < this.#limitedUntil) return undefined;
    if (!this.breaker.acquire(now)) return undefined;
    const generation = this.breaker.generation;
    return store.acquire().then((verdict) => {
      const refused = verdict === undefined
        ? this.limiter !== undefined && !this.limiter.tryTake(now)
        : !verdict.allowed;
      if (refused) {
        // This process's own limit (the store failed) is empty until then.
        if (!verdict) this.#limitedUntil = now + this.limiter!.msUntil(now);
        if (verdict && !verdict.allowed) {
          if (verdict.coolDownMs > 0) this.#holdOff(now + verdict.coolDownMs);
          if (verdict.limitedMs > 0) this.#limitedUntil = now + verdict.limitedMs;
        }
        this.breaker.onCancel(now, generation);
        return undefined;
      }
      this.requests++;
      this.inFlight++;
      return { generation };
    }, (error) => {
      this.breaker.onCancel(now, generation);
      throw error;
    });
  }

  /** Takes a breaker slot and a token; undefined when either is refused. */
  acquire(now: number): Lease | undefined {
    if (now < this.#cooldown()) return undefined;
    if (this.limiter && this.limiter.tokens(now) < 1) return undefined;
    if (!this.breaker.acquire(now)) return undefined;
    const generation = this.breaker.generation;
    // Alone, the token seen above is still there; shared with other workers it may have gone
    // since: then the breaker slot goes back.
    if (this.limiter && !this.limiter.tryTake(now)) {
      this.breaker.onCancel(now, generation);
      return undefined;
    }
    this.requests++;
    this.inFlight++;
    return { generation };
  }

  /** Settles a lease: feeds the breaker and the counters. */
  settle(lease: Lease, verdict: BreakerVerdict, now: number): void {
    this.inFlight--;
    if (verdict === "success") this.breaker.onSuccess(now, lease.generation);
    else if (verdict === "failure") {
      this.errors++;
      this.breaker.onFailure(now, lease.generation);
    } else this.breaker.onCancel(now, lease.generation);
  }

  /** Keeps this upstream out of selection until `until` (a 429's Retry-After). */
  coolDownUntil(until: number, now?: number): void {
    this.#holdOff(until);
    // Every instance stays off it too (`now`: the clock `until` was measured on).
    if (this.#store && now !== undefined) this.#store.coolDown(until - now);
  }

  /** Keeps it out of selection until `until` here: in every worker when they share one. */
  #holdOff(until: number): void {
    if (this.#sharedCooldown) this.#sharedCooldown.extend(until);
    else if (until > this.#cooldownUntil) this.#cooldownUntil = until;
  }

  #cooldown(): number {
    return this.#sharedCooldown ? this.#sharedCooldown.until() : this.#cooldownUntil;
  }

  /**
   * State for the admin API at `now` (monotonic ms); `wallNow` (epoch ms, the same instant on
   * the wall clock) dates `rateLimitedUntil`, which the monotonic clock cannot.
   */
  snapshot(now: number, wallNow: number): UpstreamSnapshot {
    const breaker = this.breaker.snapshot(now);
    return {
      name: this.name,
      available: this.available(now),
      breaker: breaker.state,
      breakerCooldownMs: breaker.remainingCooldownMs,
      inFlight: this.inFlight,
      requests: this.requests,
      errors: this.errors,
      limiterTokens: this.limiter ? Math.floor(this.limiter.tokens(now)) : null,
      rateLimitedUntil: this.#cooldown() > now
        ? new Date(wallNow + this.#cooldown() - now).toISOString()
        : null,
    };
  }
}

/** An upstream's state as the admin API shows it. */
export interface UpstreamSnapshot {
  name: string;
  available: boolean;
  breaker: BreakerState;
  breakerCooldownMs: number;
  inFlight: number;
  requests: number;
  errors: number;
  limiterTokens: number | null;
  rateLimitedUntil: string | null;
}
