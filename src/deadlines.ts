/**
 * Deadlines without a timer each. Every request arms two or three deadlines (body read, first
 * byte, total) that almost never fire; a timer each measured as several percent of the proxy's
 * CPU (more once any `node:` module made every `setTimeout` a Node `Timeout`). Here deadlines are
 * grouped into ticks of {@linkcode TICK_MS} and one timer serves the earliest tick, so arming
 * and cancelling a deadline is a Map and Set operation. Deadlines fire up to one tick late.
 * Time and the one timer come from the injected {@linkcode Clock}.
 *
 * @module
 */

import { type Clock, systemClock, type Timer } from "./deps.ts";

/** Resolution of deadlines, ms. */
export const TICK_MS = 10;

/** A deadline that can be cancelled; cancelling twice or after it fired is harmless. */
export interface Deadline {
  cancel(): void;
}

/** Schedules deadlines on shared ticks. */
export class Deadlines {
  readonly #clock: Pick<Clock, "now" | "after">;
  readonly #ticks = new Map<number, Set<() => void>>();
  /** Made once: arming the timer allocates no closure. */
  readonly #onTimer = () => this.#run();
  #timer: Timer | undefined;
  #armedTick = Infinity;

  constructor(clock: Pick<Clock, "now" | "after"> = systemClock) {
    this.#clock = clock;
  }

  /** Calls `fire` once, about `ms` from now, unless cancelled first. */
  after(ms: number, fire: () => void): Deadline {
    const tick = Math.ceil((this.#clock.now() + Math.max(0, ms)) / TICK_MS);
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
    this.#timer = this.#clock.after(Math.max(0, tick * TICK_MS - this.#clock.now()), this.#onTimer);
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedTick = Infinity;
  }

  #run(): void {
    this.#timer = undefined;
    this.#armedTick = Infinity;
    const current = Math.floor(this.#clock.now() / TICK_MS);
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
