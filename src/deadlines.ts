/**
 * Deadlines without a timer each. Every request arms two or three deadlines (body read, first
 * byte, total) that almost never fire; a timer each measured as several percent of the proxy's
 * CPU (more once any `node:` module made every `setTimeout` a Node `Timeout`). Here deadlines are
 * grouped into ticks of {@linkcode TICK_MS} and one timer serves the earliest tick, so arming
 * and cancelling a deadline is a Map and Set operation. Deadlines fire up to one tick late.
 *
 * @module
 */

/** Resolution of deadlines, ms. */
export const TICK_MS = 10;

/** A deadline that can be cancelled; cancelling twice or after it fired is harmless. */
export interface Deadline {
  cancel(): void;
}

/** Schedules deadlines on shared ticks. */
export class Deadlines {
  readonly #now: () => number;
  readonly #ticks = new Map<number, Set<() => void>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedTick = Infinity;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Calls `fire` once, about `ms` from now, unless cancelled first. */
  after(ms: number, fire: () => void): Deadline {
    const tick = Math.ceil((this.#now() + Math.max(0, ms)) / TICK_MS);
    let set = this.#ticks.get(tick);
    if (!set) this.#ticks.set(tick, set = new Set());
    const entry = () => fire();
    set.add(entry);
    if (tick < this.#armedTick) this.#arm(tick);
    return {
      cancel: () => {
        const bucket = this.#ticks.get(tick);
        if (!bucket?.delete(entry) || bucket.size > 0) return;
        this.#ticks.delete(tick);
        if (this.#ticks.size === 0) this.#disarm();
      },
    };
  }

  /** Pending deadlines (for tests). */
  get size(): number {
    let n = 0;
    for (const set of this.#ticks.values()) n += set.size;
    return n;
  }

  #arm(tick: number): void {
    this.#disarm();
    this.#armedTick = tick;
    this.#timer = setTimeout(() => this.#run(), Math.max(0, tick * TICK_MS - this.#now()));
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedTick = Infinity;
  }

  #run(): void {
    this.#timer = undefined;
    this.#armedTick = Infinity;
    const current = Math.floor(this.#now() / TICK_MS);
    let next = Infinity;
    for (const [tick, set] of this.#ticks) {
      if (tick > current) {
        if (tick < next) next = tick;
        continue;
      }
      this.#ticks.delete(tick);
      for (const fire of set) fire();
    }
    // Firing may have added or removed deadlines: find the earliest left.
    for (const tick of this.#ticks.keys()) if (tick < next) next = tick;
    if (next !== Infinity) this.#arm(next);
  }
}
