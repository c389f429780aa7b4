/**
 * The one place where process globals (time, randomness, ids, network, logging) are bound.
 * Every other module receives what it needs from here, so tests can swap in a fake clock,
 * a seeded random or fixed ids without touching globals.
 *
 * @module
 */

/** A scheduled call; cancelling twice or after it ran is harmless. */
export interface Timer {
  cancel(): void;
}

/** Options of {@linkcode Clock.after}. */
export interface TimerOptions {
  /**
   * The timer does not keep the process alive (housekeeping: idle sweeps, log batching).
   * @default false
   */
  readonly unref?: boolean;
}

/**
 * The one time source: what time it is and when to call back, so that one fake drives both in
 * tests. `now()` is monotonic milliseconds from an arbitrary origin (`performance.now()`): for
 * durations, deadlines, breakers, buckets and cool-downs, never shown as a date. `wallNow()` is
 * the calendar (epoch ms, may step): only where a date is read or shown (an HTTP-date
 * `Retry-After`, the admin API's `rateLimitedUntil`), because `now()` has no calendar meaning.
 */
export interface Clock {
  /** Monotonic time, ms. */
  now(): number;
  /** Wall-clock time, ms since the epoch; only for dates read or shown. */
  wallNow(): number;
  /** Calls `fire` once, `ms` from now on this clock, unless cancelled first. */
  after(ms: number, fire: () => void, options?: TimerOptions): Timer;
}

/** A source of uniform random numbers in [0, 1). */
export type Random = () => number;

/** Generates request ids and W3C trace-context ids. */
export interface IdSource {
  /** An `X-Request-Id` for a request that came without a usable one. */
  requestId(): string;
  /** A trace id: 32 lowercase hex digits. */
  traceId(): string;
  /** A span (parent) id: 16 lowercase hex digits. */
  spanId(): string;
}

/** A timer of {@linkcode systemClock}: an object, not a closure, per timer. */
class SystemTimer implements Timer {
  readonly #id: ReturnType<typeof setTimeout>;
  constructor(id: ReturnType<typeof setTimeout>) {
    this.#id = id;
  }
  cancel(): void {
    clearTimeout(this.#id);
  }
}

/** The real clock: `performance.now()`, `Date.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  after(ms, fire, options) {
    const id = setTimeout(fire, ms);
    if (options?.unref) Deno.unrefTimer(id);
    return new SystemTimer(id);
  },
};

/** Ids from the platform's cryptographic random source. */
export const cryptoIds: IdSource = {
  requestId: () => crypto.randomUUID(),
  traceId: () => randomHex(32),
  spanId: () => randomHex(16),
};

/** Random lowercase hex of `length` characters, from the fast native UUID source. */
function randomHex(length: number): string {
  let hex = "";
  while (hex.length < length) {
    // The 30 random digits of a v4 UUID: its version and variant digits are fixed.
    const uuid = crypto.randomUUID();
    hex += uuid.slice(0, 8) + uuid.slice(9, 13) + uuid.slice(15, 18) + uuid.slice(20, 23) +
      uuid.slice(24);
  }
  return hex.slice(0, length);
}
