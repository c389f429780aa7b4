/**
 * Where limit state lives: the seam between the limits (per client IP, per client key, per
 * upstream, 429 cool-downs) and their storage. The {@linkcode memoryLimits} of one process are
 * today's classes, untouched (no indirection on the single-worker path); several workers share
 * theirs in memory every thread sees (`shared_limits.ts`); instances share theirs in Redis
 * (`remote_limits.ts`: every limit, budgets and cool-downs, checked atomically there).
 *
 * Ids name a piece of state across threads: the same id is the same bucket in every worker.
 * They include the settings (`upstream:a:{"perSecond":5,"burst":5}`), so a reload that
 * changes a limit starts it afresh, as a new in-memory object would.
 *
 * @module
 */
import {
  KeyedLimiter,
  type KeyedLimiterOptions,
  type LimitDecision,
  TokenBucket,
  type TokenBucketOptions,
} from "../resilience/token_bucket.ts";
import { TokenRate } from "../keys/token_rate.ts";

/** A token bucket as its users see it (what {@linkcode TokenBucket} offers). */
export interface RateBucket {
  readonly burst: number;
  tokens(now: number): number;
  tryTake(now: number, n?: number): boolean;
  msUntil(now: number, n?: number): number;
  msUntilFull(now: number): number;
}

/**
 * One bucket per client (IP), bounded (what {@linkcode KeyedLimiter} offers). A store shared by
 * instances answers with a promise: callers await only when one comes back, so the memory and
 * shared-memory limiters keep a hot path without awaits.
 */
export interface ClientLimiter {
  take(key: string, now: number): LimitDecision | Promise<LimitDecision>;
}

/** A {@linkcode ClientLimiter} that answers at once (memory, shared memory). */
export interface LocalClientLimiter extends ClientLimiter {
  take(key: string, now: number): LimitDecision;
}

/** A client key's tokens per minute (what {@linkcode TokenRate} offers). */
export interface TokenAllowance {
  level(now: number): number;
  msUntilAdmitted(now: number): number;
  charge(now: number, tokens: number): void;
}

/** An upstream's 429 back-off: until when (monotonic ms) it is skipped. */
export interface CoolDown {
  until(): number;
  /** Moves `until` later (never earlier). */
  extend(until: number): void;
}

/**
 * What a shared store says of one request of a client key, all its limits checked at once:
 * `admitted` (a request token taken), or the first limit that refuses it. `budgetUsed`: the
 * key's budget usage in the current period as the store knows it (0 without a budget).
 */
export type KeyVerdict =
  | { readonly kind: "admitted"; readonly budgetUsed: number }
  | { readonly kind: "budget"; readonly budgetUsed: number }
  | { readonly kind: "tokens" | "requests"; readonly waitMs: number; readonly budgetUsed: number };

/**
 * A client key's limits (request rate, tokens per minute, budget) kept in a store shared by
 * instances: one round trip per admission, one per charge.
 */
export interface KeyLimits {
  /**
   * Checks the budget and the tokens per minute and takes a request token, atomically.
   * Undefined: the store failed and this check falls back to the process's own limits
   * (`onStoreError: local`); rejects with a 503 `StoreUnavailableError` with `reject`.
   */
  admit(wallNow: number): Promise<KeyVerdict | undefined>;
  /**
   * Charges `tokens` used at `wallNow` (fire and forget: never rejects); resolves with the
   * budget used in the period after it, or undefined (no budget, or the store failed).
   */
  charge(tokens: number, wallNow: number): Promise<number | undefined>;
}

/**
 * What a shared store says of an attempt on an upstream: allowed (a token taken), or refused
 * while its rate limit is empty (`limitedMs` until a token) or it cools down after a 429
 * (`coolDownMs` left).
 */
export type UpstreamVerdict =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly limitedMs: number; readonly coolDownMs: number };

/** An upstream's rate limit and 429 cool-down in a store shared by instances. */
export interface UpstreamLimits {
  /**
   * Reads the cool-down and takes a token, atomically (one round trip). Undefined: the store
   * failed and this attempt uses the upstream's own limit (`local`); rejects with `reject`.
   */
  acquire(): Promise<UpstreamVerdict | undefined>;
  /** Keeps every instance off the upstream for `ms` (fire and forget). */
  coolDown(ms: number): void;
  /**
   * Tells `onCoolDown` (monotonic ms, on the store's clock) each cool-down another instance
   * set, read in the background (an upstream without a rate limit makes no call per attempt).
   */
  watch(onCoolDown: (until: number) => void): void;
}

/** Makes the state of each limit, by id. */
export interface LimitState {
  bucket(id: string, options: TokenBucketOptions): RateBucket;
  keyed(id: string, options: KeyedLimiterOptions): ClientLimiter;
  tokenRate(id: string, perMinute: number): TokenAllowance;
  /** Undefined: the upstream keeps its cool-down in a field of its own (one process). */
  coolDown?(id: string): CoolDown;
  /**
   * A client key's limits in a shared store (Redis); undefined (or absent): the key checks
   * {@linkcode bucket} and {@linkcode tokenRate} objects and its budget book in this process.
   */
  keyLimits?(config: KeyLimitsConfig): KeyLimits | undefined;
  /**
   * An upstream's rate limit (none: undefined) and 429 cool-down in a shared store; undefined
   * (or absent): they live in this process (`bucket`, `coolDown`).
   */
  upstreamLimits?(name: string, ratelimit: TokenBucketOptions | undefined): UpstreamLimits;
}

/** The limits of a client key as the store needs them (from its config). */
export interface KeyLimitsConfig {
  readonly name: string;
  readonly ratelimit?: TokenBucketOptions | undefined;
  readonly tokens?: { readonly perMinute: number } | undefined;
  /** `period` in ms. */
  readonly budget?: { readonly tokens: number; readonly period: number } | undefined;
}

/** The state of one process: plain objects, as before workers existed. */
export const memoryLimits: LimitState = {
  bucket: (_id, options) => new TokenBucket(options),
  keyed: (_id, options) => new KeyedLimiter(options),
  tokenRate: (_id, perMinute) => new TokenRate(perMinute),
};

/** Said at start-up when both are set: the budget file is not used with Redis. */
export const STATE_PATH_UNUSED_WITH_REDIS =
  "state.path is not used with state.store: redis: budget usage is kept in Redis (make Redis persist it to keep it across Redis restarts)";
