/**
 * Limit state shared by every worker thread of the process, in two {@linkcode SharedTable}s the
 * main thread allocates and posts to each worker: `clients` (per-client-IP buckets, evicting)
 * and `named` (per client key, per upstream, cool-downs and budgets: what the config names).
 * Each operation takes the table's lock, so a check-and-take is atomic across threads and a
 * limit of N holds for the sum of all workers, exactly as in one process.
 *
 * Times are the workers' `Clock.now()`, which the worker pool puts on the main thread's time
 * origin: `performance.now()` alone counts from each thread's own start.
 *
 * @module
 */
import type {
  KeyedLimiterOptions,
  LimitDecision,
  TokenBucketOptions,
} from "../resilience/token_bucket.ts";
import type { BudgetBook, BudgetEntry } from "../keys/budget.ts";
import { periodStart } from "../keys/budget.ts";
import type {
  ClientLimiter,
  CoolDown,
  LimitState,
  LocalClientLimiter,
  RateBucket,
  TokenAllowance,
} from "./limit_state.ts";
import { FIELDS, hashId, SharedTable, type SharedTableData } from "./shared_table.ts";

/** The tables, as posted to a worker. */
export interface SharedLimitsData {
  readonly clients: SharedTableData;
  readonly named: SharedTableData;
}

/** Options of {@linkcode SharedLimits.create}. */
export interface SharedLimitsOptions {
  /** Slots for per-client-IP buckets, all forwards together. @default 65_536 */
  clientSlots?: number;
  /** Slots for the state the config names (keys, upstreams, budgets). @default 16_384 */
  namedSlots?: number;
}

/** Same slack as the in-memory bucket: waiting `msUntil` always yields the token. */
const EPSILON = 1e-9;

/** Every limit's state in shared memory: a {@linkcode LimitState} for one thread. */
export class SharedLimits implements LimitState {
  readonly data: SharedLimitsData;
  readonly #clients: SharedTable;
  readonly #named: SharedTable;

  /** Allocates empty tables (the main thread, once). */
  static create(options: SharedLimitsOptions = {}): SharedLimits {
    return new SharedLimits({
      clients: SharedTable.create({ capacity: options.clientSlots ?? 65_536, evicting: true })
        .data,
      named: SharedTable.create({ capacity: options.namedSlots ?? 16_384, evicting: false }).data,
    });
  }

  /** Wraps tables made by {@linkcode create} (in any thread). */
  constructor(data: SharedLimitsData) {
    this.data = data;
    this.#clients = new SharedTable(data.clients);
    this.#named = new SharedTable(data.named);
  }

  bucket(id: string, options: TokenBucketOptions): RateBucket {
    return new SharedBucket(this.#named, `bucket:${id}`, options);
  }

  keyed(id: string, options: KeyedLimiterOptions): LocalClientLimiter {
    return new SharedKeyedLimiter(this.#clients, id, options);
  }

  tokenRate(id: string, perMinute: number): TokenAllowance {
    return new SharedTokenRate(this.#named, `tokens:${id}`, perMinute);
  }

  coolDown(id: string): CoolDown {
    return new SharedCoolDown(this.#named, `cooldown:${id}`);
  }

  /** Client keys' budget usage, in the named table. */
  budgets(): SharedBudgetLedger {
    return new SharedBudgetLedger(this.#named);
  }
}

/** Claims the named slot of `id` (created by `init` when new); throws when the table is full. */
function claim(
  table: SharedTable,
  id: string,
  init: (fields: Float64Array, base: number) => void,
): number {
  const hash = hashId(id);
  table.lock();
  try {
    const slot = table.slotOf(hash, 0, init);
    if (slot < 0) {
      throw new RangeError(
        `shared limit state is full (${table.capacity} entries): restart the proxy to clear what old configs left`,
      );
    }
    return slot * FIELDS;
  } finally {
    table.unlock();
  }
}

/** Fields: [1] tokens, [2] updated at (-Infinity: never, full). */
class SharedBucket implements RateBucket {
  readonly burst: number;
  readonly #perMs: number;
  readonly #table: SharedTable;
  readonly #fields: Float64Array;
  readonly #base: number;

  constructor(table: SharedTable, id: string, options: TokenBucketOptions) {
    this.burst = options.burst;
    this.#perMs = options.perSecond / 1000;
    this.#table = table;
    this.#fields = table.fields;
    this.#base = claim(table, `${id}:${options.perSecond}:${options.burst}`, (f, base) => {
      f[base + 1] = options.burst;
      f[base + 2] = -Infinity;
    });
  }

  /** Under the lock. */
  #level(now: number): number {
    const f = this.#fields;
    const tokens = f[this.#base + 1]!;
    const at = f[this.#base + 2]!;
    if (now <= at) return tokens;
    return Math.min(this.burst, tokens + (now - at) * this.#perMs);
  }

  tokens(now: number): number {
    this.#table.lock();
    try {
      return this.#level(now);
    } finally {
      this.#table.unlock();
    }
  }

  tryTake(now: number, n = 1): boolean {
    this.#table.lock();
    try {
      const tokens = this.#level(now);
      const f = this.#fields;
      f[this.#base + 1] = tokens;
      if (now > f[this.#base + 2]!) f[this.#base + 2] = now;
      if (tokens + EPSILON < n) return false;
      f[this.#base + 1] = Math.max(0, tokens - n);
      return true;
    } finally {
      this.#table.unlock();
    }
  }

  msUntil(now: number, n = 1): number {
    if (n > this.burst + EPSILON) return Infinity;
    const missing = n - this.tokens(now);
    return missing <= EPSILON ? 0 : Math.ceil(missing / this.#perMs);
  }

  msUntilFull(now: number): number {
    return this.msUntil(now, this.burst);
  }
}

/** Per-client buckets of one forward; fields as {@linkcode SharedBucket}, [3] full again at. */
class SharedKeyedLimiter implements ClientLimiter {
  readonly #table: SharedTable;
  readonly #prefix: string;
  readonly #burst: number;
  readonly #perMs: number;
  readonly #init: (fields: Float64Array, base: number) => void;

  constructor(table: SharedTable, id: string, options: KeyedLimiterOptions) {
    this.#table = table;
    this.#prefix = `${id}:${options.perSecond}:${options.burst}\u0000`;
    this.#burst = options.burst;
    this.#perMs = options.perSecond / 1000;
    this.#init = (f, base) => {
      f[base + 1] = options.burst;
      f[base + 2] = -Infinity;
    };
  }

  take(key: string, now: number): LimitDecision {
    const hash = hashId(this.#prefix + key);
    const burst = this.#burst;
    const perMs = this.#perMs;
    const table = this.#table;
    const f = table.fields;
    let tokens: number;
    let allowed: boolean;
    table.lock();
    try {
      const base = table.slotOf(hash, now, this.#init) * FIELDS;
      const at = f[base + 2]!;
      tokens = now <= at ? f[base + 1]! : Math.min(burst, f[base + 1]! + (now - at) * perMs);
      if (now > at) f[base + 2] = now;
      allowed = tokens + EPSILON >= 1;
      if (allowed) tokens = Math.max(0, tokens - 1);
      f[base + 1] = tokens;
      // From then on the bucket is full again: dropping it is invisible (see SharedTable).
      f[base + 3] = Math.max(now, f[base + 2]!) + (burst - tokens) / perMs;
    } finally {
      table.unlock();
    }
    const toFull = burst - tokens;
    const toOne = 1 - tokens;
    return {
      allowed,
      limit: burst,
      remaining: Math.floor(tokens + EPSILON),
      resetMs: toFull <= EPSILON ? 0 : Math.ceil(toFull / perMs),
      retryAfterMs: allowed || toOne <= EPSILON ? 0 : Math.ceil(toOne / perMs),
    };
  }
}

/** Fields: [1] level (may be negative), [2] updated at. Same rules as `TokenRate`. */
class SharedTokenRate implements TokenAllowance {
  readonly #perMinute: number;
  readonly #perMs: number;
  readonly #table: SharedTable;
  readonly #base: number;

  constructor(table: SharedTable, id: string, perMinute: number) {
    this.#perMinute = perMinute;
    this.#perMs = perMinute / 60_000;
    this.#table = table;
    this.#base = claim(table, `${id}:${perMinute}`, (f, base) => {
      f[base + 1] = perMinute;
      f[base + 2] = -Infinity;
    });
  }

  #level(now: number): number {
    const f = this.#table.fields;
    const at = f[this.#base + 2]!;
    if (now <= at) return f[this.#base + 1]!;
    return Math.min(this.#perMinute, f[this.#base + 1]! + (now - at) * this.#perMs);
  }

  level(now: number): number {
    this.#table.lock();
    try {
      return this.#level(now);
    } finally {
      this.#table.unlock();
    }
  }

  msUntilAdmitted(now: number): number {
    const level = this.level(now);
    return level > 0 ? 0 : Math.floor(-level / this.#perMs) + 1;
  }

  charge(now: number, tokens: number): void {
    this.#table.lock();
    try {
      const f = this.#table.fields;
      f[this.#base + 1] = this.#level(now) - tokens;
      if (now > f[this.#base + 2]!) f[this.#base + 2] = now;
    } finally {
      this.#table.unlock();
    }
  }
}

/** Fields: [1] until (monotonic ms). */
class SharedCoolDown implements CoolDown {
  readonly #table: SharedTable;
  readonly #base: number;

  constructor(table: SharedTable, id: string) {
    this.#table = table;
    this.#base = claim(table, id, () => {});
  }

  until(): number {
    this.#table.lock();
    try {
      return this.#table.fields[this.#base + 1]!;
    } finally {
      this.#table.unlock();
    }
  }

  extend(until: number): void {
    this.#table.lock();
    try {
      const f = this.#table.fields;
      if (until > f[this.#base + 1]!) f[this.#base + 1] = until;
    } finally {
      this.#table.unlock();
    }
  }
}

/**
 * Client keys' budget usage in the named table (fields: [1] period start, wall ms; [2] used).
 * Every worker charges it; the main thread alone writes it to `state.path` (its `BudgetSync`),
 * told by the table's "changed" mark.
 */
export class SharedBudgetLedger implements BudgetBook {
  readonly #table: SharedTable;
  /** Slots of the names this thread has seen, and so will write out. */
  readonly #slots = new Map<string, number>();

  constructor(table: SharedTable) {
    this.#table = table;
  }

  #slot(name: string): number {
    let base = this.#slots.get(name);
    if (base === undefined) {
      base = claim(this.#table, `budget:${name}`, (f, b) => {
        f[b + 1] = NaN;
      });
      this.#slots.set(name, base);
    }
    return base;
  }

  /** Makes this thread write `names` out too (the keys of the main thread's config). */
  track(names: Iterable<string>): void {
    for (const name of names) this.#slot(name);
  }

  used(name: string, periodMs: number, wallNow: number): number {
    const base = this.#slot(name);
    const start = periodStart(periodMs, wallNow);
    this.#table.lock();
    try {
      const f = this.#table.fields;
      return f[base + 1] === start ? f[base + 2]! : 0;
    } finally {
      this.#table.unlock();
    }
  }

  charge(name: string, periodMs: number, wallNow: number, tokens: number): void {
    if (tokens <= 0) return;
    const base = this.#slot(name);
    const start = periodStart(periodMs, wallNow);
    this.#table.lock();
    try {
      const f = this.#table.fields;
      if (f[base + 1] === start) f[base + 2]! += tokens;
      else {
        f[base + 1] = start;
        f[base + 2] = tokens;
      }
    } finally {
      this.#table.unlock();
    }
    this.#table.markChanged();
  }

  restore(entries: Iterable<BudgetEntry>): void {
    for (const { name, periodStart, used } of entries) {
      const base = this.#slot(name);
      this.#table.locked(() => {
        const fields = this.#table.fields;
        // Totals from the store may arrive out of order (each worker has its own connection):
        // within a period usage only grows; an older period's total changes nothing.
        if (periodStart < fields[base + 1]!) return;
        if (periodStart === fields[base + 1]! && used <= fields[base + 2]!) return;
        fields[base + 1] = periodStart;
        fields[base + 2] = used;
      });
    }
  }

  markChanged(): void {
    this.#table.markChanged();
  }

  takeChanges(): BudgetEntry[] | undefined {
    if (!this.#table.takeChanged()) return undefined;
    const entries: BudgetEntry[] = [];
    this.#table.locked(() => {
      const f = this.#table.fields;
      for (const [name, base] of this.#slots) {
        const start = f[base + 1]!;
        if (!Number.isNaN(start)) entries.push({ name, periodStart: start, used: f[base + 2]! });
      }
    });
    return entries;
  }
}
