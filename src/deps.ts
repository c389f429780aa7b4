/**
 * The one place where process globals (time, randomness, network, logging) are bound.
 * Every other module receives what it needs from here, so tests can swap in a fake clock,
 * or a seeded random without touching globals.
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
