/**
 * Token budgets of client keys: tokens used per key within the current period. Periods are
 * aligned to the Unix epoch (a `1d` period resets at midnight UTC), so a period is a pure
 * function of the wall clock and the configured length: nothing but the usage needs storing,
 * and a restart or a changed period can never stretch one. Survives reloads (one ledger per
 * process) and, through a store, restarts.
 *
 * @module
 */

/** One key's usage as stored: the period it belongs to and the tokens used in it. */
export interface BudgetEntry {
  readonly name: string;
  /** Wall-clock ms at which the period began. */
  readonly periodStart: number;
  readonly used: number;
}

/**
 * Where budget usage is kept: a {@linkcode BudgetLedger} in one process, shared memory across
 * workers (`state/shared_limits.ts`).
 */
export interface BudgetBook {
  /** Tokens `name` used in the period of length `periodMs` that contains `wallNow`. */
  used(name: string, periodMs: number, wallNow: number): number;
  /** Adds `tokens` to `name`'s usage in the current period. */
  charge(name: string, periodMs: number, wallNow: number, tokens: number): void;
  /** Takes stored usage in (at start-up). */
  restore(entries: Iterable<BudgetEntry>): void;
  /** Marks the usage as changed again (a write of it failed). */
  markChanged(): void;
  /** Every entry when any changed since the last call (for the store), else undefined. */
  takeChanges(): BudgetEntry[] | undefined;
}

/** Usage of every key that has a budget, by key name. */
export class BudgetLedger implements BudgetBook {
  readonly #entries = new Map<string, { periodStart: number; used: number }>();
  #dirty = false;

  /** Tokens `name` used in the period of length `periodMs` that contains `wallNow`. */
  used(name: string, periodMs: number, wallNow: number): number {
    const entry = this.#entries.get(name);
    return entry && entry.periodStart === periodStart(periodMs, wallNow) ? entry.used : 0;
  }

  /** Adds `tokens` to `name`'s usage in the current period. */
  charge(name: string, periodMs: number, wallNow: number, tokens: number): void {
    if (tokens <= 0) return;
    const start = periodStart(periodMs, wallNow);
    const entry = this.#entries.get(name);
    if (entry && entry.periodStart === start) entry.used += tokens;
    else this.#entries.set(name, { periodStart: start, used: tokens });
    this.#dirty = true;
  }

  /** Takes stored usage in (at start-up). */
  restore(entries: Iterable<BudgetEntry>): void {
    for (const { name, periodStart, used } of entries) {
      this.#entries.set(name, { periodStart, used });
    }
  }

  /** Marks the usage as changed again (a write of it failed). */
  markChanged(): void {
    this.#dirty = true;
  }

  /** Every entry when any changed since the last call (for the store), else undefined. */
  takeChanges(): BudgetEntry[] | undefined {
    if (!this.#dirty) return undefined;
    this.#dirty = false;
    return [...this.#entries].map(([name, e]) => ({ name, ...e }));
  }
}

/** Wall-clock ms at which the period of length `periodMs` containing `wallNow` began. */
export function periodStart(periodMs: number, wallNow: number): number {
  return Math.floor(wallNow / periodMs) * periodMs;
}
