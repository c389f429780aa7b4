/**
 * Token-bucket rate limiting told the time (`now` in ms, monotonic): a single
 * {@link TokenBucket} (per upstream) and a bounded {@link KeyedLimiter} (per client IP).
 *
 * @module
 */

/** Options for {@link TokenBucket} and {@link KeyedLimiter}. */
export interface TokenBucketOptions {
  /** Refill rate in tokens per second; > 0. */
  perSecond: number;
  /** Capacity in tokens (the largest burst); > 0. A new bucket starts full. */
  burst: number;
}

/** Options for {@link KeyedLimiter}. */
export interface KeyedLimiterOptions extends TokenBucketOptions {
  /**
   * Most keys kept at once; beyond it the least-recently-used key is evicted.
   * @default {10_000}
   */
  maxKeys?: number;
}

/** Outcome of {@link KeyedLimiter.take}, shaped for `X-RateLimit-*` and `Retry-After`. */
export interface LimitDecision {
  allowed: boolean;
  /** Bucket capacity (burst). */
  limit: number;
  /** Whole tokens left after this take. */
  remaining: number;
  /** ms until the bucket is full again. */
  resetMs: number;
  /** ms until one token is available; 0 when allowed. */
  retryAfterMs: number;
}

/**
 * Slack for floating-point refill arithmetic, so that waiting exactly `msUntil()` ms always
 * yields the token (e.g. 3/s for 333.33… ms must give 1 token, not 0.9999999).
 */
const EPSILON = 1e-9;

/** A token bucket: refills continuously at `perSecond`, capped at `burst`, starts full. */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  /** Time (ms) `#tokens` was computed at; undefined until first use (the bucket is full). */
  #updatedAt: number | undefined;

  constructor(options: TokenBucketOptions) {
    validateBucket(options);
    this.#perMs = options.perSecond / 1000;
    this.#burst = options.burst;
    this.#tokens = options.burst;
  }

  /** Bucket capacity (tokens). */
  get burst(): number {
    return this.#burst;
  }

  /** Tokens (fractional) available at `now`. */
  tokens(now: number): number {
    if (this.#updatedAt === undefined || now <= this.#updatedAt) return this.#tokens;
    return Math.min(this.#burst, this.#tokens + (now - this.#updatedAt) * this.#perMs);
  }

  /** Takes `n` tokens if available at `now`; returns whether it did. */
  tryTake(now: number, n = 1): boolean {
    this.#refill(now);
    if (this.#tokens + EPSILON < n) return false;
    this.#tokens = Math.max(0, this.#tokens - n);
    return true;
  }

  /** ms from `now` until `n` tokens are available: 0 if already, Infinity if n > burst. */
  msUntil(now: number, n = 1): number {
    if (n > this.#burst + EPSILON) return Infinity;
    const missing = n - this.tokens(now);
    return missing <= EPSILON ? 0 : Math.ceil(missing / this.#perMs);
  }

  /** ms from `now` until the bucket is full again (0 when full). */
  msUntilFull(now: number): number {
    return this.msUntil(now, this.#burst);
  }

  #refill(now: number): void {
    // A clock that goes backwards mints nothing; time only moves forward here.
    this.#tokens = this.tokens(now);
    if (this.#updatedAt === undefined || now > this.#updatedAt) this.#updatedAt = now;
  }
}

/**
 * One token bucket per key (e.g. client IP), bounded by construction.
 *
 * The Map's insertion order is the LRU order (an access deletes and re-inserts). Each
 * `take()` sweeps a few of the oldest entries and drops those whose bucket is full again —
 * a full bucket is exactly what a new key gets, so that eviction is invisible to clients.
 * When `maxKeys` is still reached, the least-recently-used key is evicted even if not full
 * (it then gets a fresh, full bucket: lenient, but only under a flood of distinct keys).
 */
export class KeyedLimiter {
  readonly #options: TokenBucketOptions;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(options: KeyedLimiterOptions) {
    validateBucket(options);
    const maxKeys = options.maxKeys ?? 10_000;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) {
      throw new RangeError(`Rate limiter maxKeys must be an integer ≥ 1, got ${maxKeys}`);
    }
    this.#options = { perSecond: options.perSecond, burst: options.burst };
    this.#maxKeys = maxKeys;
  }

  /** Number of keys currently tracked (≤ maxKeys). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `key` at `now` (ms). */
  take(key: string, now: number): LimitDecision {
    this.#sweep(now);
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key); // re-inserted below: most recently used
    } else {
      if (this.#buckets.size >= this.#maxKeys) this.#evictOldest();
      bucket = new TokenBucket(this.#options);
    }
    this.#buckets.set(key, bucket);
    const allowed = bucket.tryTake(now);
    return {
      allowed,
      limit: this.#options.burst,
      remaining: Math.floor(bucket.tokens(now) + EPSILON),
      resetMs: bucket.msUntilFull(now),
      retryAfterMs: allowed ? 0 : bucket.msUntil(now),
    };
  }

  /**
   * Drops up to a few of the least-recently-used keys whose bucket is full again. Stops at
   * the first one still refilling: a constant cost per take, and a drained bucket blocks
   * the sweep at most for its refill time (burst / perSecond).
   */
  #sweep(now: number): void {
    let budget = 4;
    for (const [key, bucket] of this.#buckets) {
      if (budget-- === 0 || bucket.msUntilFull(now) > 0) return;
      this.#buckets.delete(key);
    }
  }

  #evictOldest(): void {
    const oldest = this.#buckets.keys().next();
    if (!oldest.done) this.#buckets.delete(oldest.value);
  }
}

function validateBucket(options: TokenBucketOptions): void {
  const { perSecond, burst } = options;
  if (!(perSecond > 0 && Number.isFinite(perSecond))) {
    throw new RangeError(`Rate limit perSecond must be a finite number > 0, got ${perSecond}`);
  }
  if (!(burst > 0 && Number.isFinite(burst))) {
    throw new RangeError(`Rate limit burst must be a finite number > 0, got ${burst}`);
  }
}
