/**
 * Where limit state lives: the seam between the limits (per client IP, per client key, per
 * upstream, 429 cool-downs) and their storage. The {@linkcode memoryLimits} of one process are
 * today's classes, untouched (no indirection on the single-worker path); several workers share
 * theirs in memory every thread sees (`shared_limits.ts`); a store shared by instances goes
 * here as a third implementation.
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

/** One bucket per client (IP), bounded (what {@linkcode KeyedLimiter} offers). */
export interface ClientLimiter {
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

/** Makes the state of each limit, by id. */
export interface LimitState {
  bucket(id: string, options: TokenBucketOptions): RateBucket;
  keyed(id: string, options: KeyedLimiterOptions): ClientLimiter;
  tokenRate(id: string, perMinute: number): TokenAllowance;
  /** Undefined: the upstream keeps its cool-down in a field of its own (one process). */
  coolDown?(id: string): CoolDown;
}

/** The state of one process: plain objects, as before workers existed. */
export const memoryLimits: LimitState = {
  bucket: (_id, options) => new TokenBucket(options),
  keyed: (_id, options) => new KeyedLimiter(options),
  tokenRate: (_id, perMinute) => new TokenRate(perMinute),
};
