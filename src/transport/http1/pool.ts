/**
 * Idle keep-alive connections per upstream origin, most recently used first: the warmest
 * connection is reused, and the coldest ones age out after the idle timeout.
 *
 * @module
 */
import type { Connection } from "./connection.ts";
import { type Clock, systemClock, type Timer } from "../../deps.ts";

/** Options of {@linkcode Pool}. */
export interface PoolOptions {
  /** Idle connections kept per origin; 0 keeps none. */
  readonly maxIdlePerHost: number;
  /** Idle connections close after this, ms; 0 = never by age. */
  readonly idleTimeoutMs: number;
  /** Idle ages and the sweep's timer. @default systemClock */
  readonly clock?: Pick<Clock, "now" | "after">;
}

/** A pool of idle connections keyed by `hostname:port`. */
export class Pool {
  readonly #idle = new Map<string, Connection[]>();
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  readonly #clock: Pick<Clock, "now" | "after">;
  #sweeper: Timer | undefined;
  #sweepEveryMs = 0;
  #closed = false;

  constructor(options: PoolOptions) {
    this.#maxIdle = options.maxIdlePerHost;
    this.#idleTimeoutMs = options.idleTimeoutMs;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Starts the idle sweep with the first parked connection: a pool that never held one arms no
   * timer (the runtime's first timer costs about 3 MiB of resident memory).
   */
  #startSweeping(): void {
    if (this.#sweeper !== undefined || this.#idleTimeoutMs <= 0) return;
    this.#sweepEveryMs = Math.max(100, Math.min(this.#idleTimeoutMs / 2, 5_000));
    this.#scheduleSweep();
  }

  /** The next sweep; unref'd: parked connections never keep the process alive. */
  #scheduleSweep(): void {
    const sweeper = this.#clock.after(this.#sweepEveryMs, () => {
      this.sweep();
      if (this.#sweeper === sweeper) this.#scheduleSweep(); // unless closed meanwhile
    }, { unref: true });
    this.#sweeper = sweeper;
  }

  /** Idle connections held now, all origins. */
  get size(): number {
    let size = 0;
    for (const list of this.#idle.values()) size += list.length;
    return size;
  }

  /** Whether the idle sweep runs (it starts with the first parked connection). */
  get sweeping(): boolean {
    return this.#sweeper !== undefined;
  }

  /** The most recently parked connection to `key`, taken out of the pool. */
  take(key: string): Connection | undefined {
    const connection = this.#idle.get(key)?.pop();
    connection?.unpark();
    return connection;
  }

  /** Parks a connection whose last response was read in full, or closes it if full. */
  put(key: string, connection: Connection): void {
    if (connection.closed) return;
    let list = this.#idle.get(key);
    if (this.#closed || (list?.length ?? 0) >= this.#maxIdle) {
      connection.close();
      return;
    }
    if (!list) this.#idle.set(key, list = []);
    this.#startSweeping();
    const parked = list;
    connection.park(this.#clock.now(), () => {
      const at = parked.indexOf(connection);
      if (at !== -1) parked.splice(at, 1);
    });
    parked.push(connection);
  }

  /** Closes the connections idle for longer than the idle timeout. */
  sweep(): void {
    const cutoff = this.#clock.now() - this.#idleTimeoutMs;
    for (const list of this.#idle.values()) {
      // Oldest first: the list is in parking order.
      while (list.length > 0 && list[0]!.idleSince <= cutoff) list.shift()!.close();
    }
  }

  /** Closes every idle connection; connections returned later are closed, not parked. */
  close(): void {
    this.#closed = true;
    this.#sweeper?.cancel();
    this.#sweeper = undefined;
    for (const list of this.#idle.values()) {
      for (const connection of list) connection.close();
    }
    this.#idle.clear();
  }
}
