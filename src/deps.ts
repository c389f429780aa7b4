/**
 * The one place where process globals (time, randomness, network, logging) are bound.
 * Every other module receives what it needs from here, so tests can swap in a fake clock
 * or a seeded random without touching globals.
 *
 * @module
 */

/** A source of time. `now()` is milliseconds since the epoch (monotonic enough for policies). */
export interface Clock {
  now(): number;
}

/** A source of uniform random numbers in [0, 1). */
export type Random = () => number;

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };
