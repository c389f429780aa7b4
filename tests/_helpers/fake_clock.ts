/**
 * A {@linkcode Clock} that moves only when a test says so: `advance(ms)` moves time and runs
 * the timers that fall due, in order of their due time (then of arming), each at its own time.
 * One fake drives time and timers together, so nothing sleeps for real.
 *
 * @module
 */
import type { Clock, Timer, TimerOptions } from "../../src/deps.ts";

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly fire: () => void;
  readonly unref: boolean;
}

/** A fake monotonic clock with timers; the wall clock is `wallOffset` ahead of it. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #pending: Pending[] = [];
  /** `wallNow() - now()`, ms: the calendar date the fake time 0 stands for. */
  readonly wallOffset: number;

  constructor(start = 1_000_000, wallOffset = Date.UTC(2030, 0, 1) - start) {
    this.#now = start;
    this.wallOffset = wallOffset;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.wallOffset;
  }

  after(ms: number, fire: () => void, options?: TimerOptions): Timer {
    const entry: Pending = {
      at: this.#now + Math.max(0, ms),
      seq: this.#seq++,
      fire,
      unref: options?.unref ?? false,
    };
    this.#pending.push(entry);
    return {
      cancel: () => {
        this.#pending = this.#pending.filter((p) => p !== entry);
      },
    };
  }

  /** Timers armed and not yet run or cancelled. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Of those, the ones armed with `{ unref: true }`. */
  get unrefPending(): number {
    return this.#pending.filter((p) => p.unref).length;
  }

  /** Delays (ms from now) of the pending timers, soonest first. */
  get dueIn(): number[] {
    return this.#sorted().map((p) => p.at - this.#now);
  }

  /**
   * Moves time forward by `ms`, running every timer due on the way at its due time (timers a
   * callback arms run too when they fall due within the step).
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const next = this.#sorted()[0];
      if (!next || next.at > end) break;
      this.#pending = this.#pending.filter((p) => p !== next);
      this.#now = Math.max(this.#now, next.at);
      next.fire();
    }
    this.#now = end;
  }

  /** Moves time without running any timer (a clock that jumped). */
  set(now: number): void {
    this.#now = now;
  }

  #sorted(): Pending[] {
    return [...this.#pending].sort((a, b) => a.at - b.at || a.seq - b.seq);
  }
}
