/**
 * Tokens per minute of a client key, as a bucket that may go into debt. Usage is known only
 * when an answer ends, so a request is admitted while the bucket holds anything; its usage is
 * charged afterwards and may take the level below zero, which delays the next requests until
 * the refill has paid the debt. Told the time (`now`, monotonic ms), like the token bucket.
 *
 * @module
 */

/** A per-minute token allowance that refills continuously and may be overdrawn. */
export class TokenRate {
  readonly #perMinute: number;
  readonly #perMs: number;
  /** Level at `#updatedAt`; starts full, at most `perMinute`, may be negative. */
  #level: number;
  #updatedAt: number | undefined;

  constructor(perMinute: number) {
    if (!(perMinute > 0 && Number.isFinite(perMinute))) {
      throw new RangeError(`tokens per minute must be a finite number > 0, got ${perMinute}`);
    }
    this.#perMinute = perMinute;
    this.#perMs = perMinute / 60_000;
    this.#level = perMinute;
  }

  /** The level at `now`: tokens left in the current minute (negative: debt). */
  level(now: number): number {
    if (this.#updatedAt === undefined || now <= this.#updatedAt) return this.#level;
    return Math.min(this.#perMinute, this.#level + (now - this.#updatedAt) * this.#perMs);
  }

  /** ms from `now` until a request is admitted again: 0 while the level is above zero. */
  msUntilAdmitted(now: number): number {
    const level = this.level(now);
    // Strictly above zero, so a request admitted at the retry time finds something left.
    return level > 0 ? 0 : Math.floor(-level / this.#perMs) + 1;
  }

  /** Charges `tokens` used at `now`. */
  charge(now: number, tokens: number): void {
    this.#level = this.level(now) - tokens;
    if (this.#updatedAt === undefined || now > this.#updatedAt) this.#updatedAt = now;
  }
}
