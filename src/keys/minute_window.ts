/**
 * Tokens charged within the last minute, for `/keys`: twelve five-second slots, so the count
 * is exact to within one slot and the memory is fixed. Told the time (`now`, monotonic ms).
 *
 * @module
 */

const SLOT_MS = 5_000;
const SLOTS = 12;

/** A sliding one-minute sum of charged tokens. */
export class MinuteWindow {
  readonly #sums = new Float64Array(SLOTS);
  /** The slot number (now / SLOT_MS) each entry of `#sums` belongs to. */
  readonly #slots = new Float64Array(SLOTS).fill(-Infinity);

  /** Adds `tokens` at `now`. */
  add(now: number, tokens: number): void {
    const slot = Math.floor(now / SLOT_MS);
    const i = slot % SLOTS;
    if (this.#slots[i] !== slot) {
      this.#slots[i] = slot;
      this.#sums[i] = 0;
    }
    this.#sums[i]! += tokens;
  }

  /** Tokens added within the minute before `now` (its current slot included). */
  sum(now: number): number {
    const current = Math.floor(now / SLOT_MS);
    let total = 0;
    for (let i = 0; i < SLOTS; i++) {
      if (current - this.#slots[i]! < SLOTS) total += this.#sums[i]!;
    }
    return total;
  }
}
