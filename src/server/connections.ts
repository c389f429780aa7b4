/**
 * Client connections, bounded in number and time. Every listener admits its connections here:
 * past `maxConnections` (all forwards together) a new connection is closed at once, and the
 * ones already open keep working. A connection that has not delivered a complete request head
 * within `headerTimeoutMs` of opening, or that stays idle between requests for longer than
 * `idleTimeoutMs`, is closed.
 *
 * Time is checked by a sweep, not a timer per connection: a request only stamps numbers, and
 * one interval (running only while connections are open, so an idle proxy holds no timer)
 * visits them all. Timeouts therefore fire up to one sweep period late (at most 1 s).
 *
 * The HTTP server reports complete request heads only, so on a kept-alive connection a client
 * that trickles its next head is bounded by `idleTimeoutMs`, not `headerTimeoutMs`.
 *
 * @module
 */
import { type Clock, systemClock, type Timer } from "../deps.ts";

/** The bounds, read when they are needed, so that a reload applies to what follows. */
export interface ConnectionLimits {
  /** A new connection must deliver its first complete request head within this, ms. */
  readonly headerTimeoutMs: number;
  /** A kept-alive connection with no request in progress is closed after this, ms. */
  readonly idleTimeoutMs: number;
  /** Open connections across the listeners sharing this guard. */
  readonly maxConnections: number;
}

/** Why the guard closed (or refused) a connection. */
export type CloseReason = "limit" | "header_timeout" | "idle_timeout";

/** Options of {@linkcode ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Ages of connections and the sweep's timer. @default systemClock */
  clock?: Pick<Clock, "now" | "after">;
  /** Run the sweep on an interval while connections are open. @default true */
  sweepTimer?: boolean;
  /** A connection was refused or closed by the guard. */
  onClose?(listener: string, reason: CloseReason): void;
  /** The number of open connections of a listener changed. */
  onOpenChange?(listener: string, open: number): void;
}

/** One admitted connection. The listener tells it when requests start and end. */
export class TrackedConnection {
  readonly listener: string;
  /** Requests in progress (HTTP/1.1: at most one; HTTP/2: any number). */
  #active = 0;
  /** Since when it waits for a head (`#served` false) or idles (`#served` true), ms. */
  #since: number;
  #served = false;
  /** Closing is no longer ours: the server is draining it (see `drain`). */
  #draining = false;
  #released = false;
  #close: () => void;
  readonly #guard: ConnectionGuard;

  constructor(guard: ConnectionGuard, listener: string, since: number, close: () => void) {
    this.#guard = guard;
    this.listener = listener;
    this.#since = since;
    this.#close = close;
  }

  /** A complete request head arrived. */
  requestStarted(): void {
    this.#active++;
  }

  /** A response finished (sent, or failed); `now` starts the idle time when none is left. */
  requestEnded(now: number = this.#guard.now()): void {
    this.#active--;
    this.#served = true;
    if (this.#active === 0) this.#since = now;
  }

  /**
   * The server shuts this connection down gracefully from now on; the guard must not close it
   * (Deno: aborting a connection's serve signal after its shutdown began crashes the process).
   */
  drain(): void {
    this.#draining = true;
  }

  /** The connection has ended; frees its place. Harmless twice. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#guard.release(this);
  }

  /**
   * Replaces how it is closed (a TLS connection: first the socket while its handshake runs,
   * then its HTTP server).
   */
  onClose(close: () => void): void {
    this.#close = close;
  }

  /** Closes it now, unless it drains or has ended. */
  close(): void {
    if (this.#draining || this.#released) return;
    this.#draining = true; // once
    this.#close();
  }

  /** Why it is overdue at `now`, if it is. */
  overdue(now: number, limits: ConnectionLimits): CloseReason | undefined {
    if (this.#active > 0 || this.#draining) return undefined;
    if (!this.#served) {
      return now - this.#since >= limits.headerTimeoutMs ? "header_timeout" : undefined;
    }
    return now - this.#since >= limits.idleTimeoutMs ? "idle_timeout" : undefined;
  }
}

/** Admits, counts and times out the connections of one or more listeners. */
export class ConnectionGuard {
  readonly #limits: () => ConnectionLimits;
  readonly #clock: Pick<Clock, "now" | "after">;
  readonly #sweepTimer: boolean;
  readonly #onClose: ConnectionGuardOptions["onClose"];
  readonly #onOpenChange: ConnectionGuardOptions["onOpenChange"];
  readonly #open = new Set<TrackedConnection>();
  readonly #perListener = new Map<string, number>();
  #timer: Timer | undefined;
  #timerPeriodMs = 0;
  /** A bound learned from running out of file descriptors (see `exhausted`). */
  #learnedMax = Infinity;

  constructor(limits: () => ConnectionLimits, options: ConnectionGuardOptions = {}) {
    this.#limits = limits;
    this.#clock = options.clock ?? systemClock;
    this.#sweepTimer = options.sweepTimer ?? true;
    this.#onClose = options.onClose;
    this.#onOpenChange = options.onOpenChange;
  }

  /** The guard's time, ms (monotonic). */
  now(): number {
    return this.#clock.now();
  }

  /** Open connections, all listeners. */
  get open(): number {
    return this.#open.size;
  }

  /** Open connections of one listener. */
  openOf(listener: string): number {
    return this.#perListener.get(listener) ?? 0;
  }

  /**
   * Admits a new connection of `listener`, or returns undefined when the limit is reached
   * (the caller closes it at once). `close` ends the connection when it is overdue.
   */
  admit(listener: string, close: () => void): TrackedConnection | undefined {
    if (this.#open.size >= this.maxConnections) {
      this.#onClose?.(listener, "limit");
      return undefined;
    }
    const connection = new TrackedConnection(this, listener, this.#clock.now(), close);
    this.#open.add(connection);
    this.#count(listener, +1);
    this.#startSweeping();
    return connection;
  }

  /** The bound in force: the configured one, or less once descriptors ran out. */
  get maxConnections(): number {
    return Math.min(this.#limits().maxConnections, this.#learnedMax);
  }

  /**
   * The process ran out of file descriptors while accepting: from now on admit at most 90 %
   * of what is open now, leaving descriptors for upstream connections. Returns the new bound
   * when it changed.
   */
  exhausted(): number | undefined {
    const bound = Math.max(1, Math.floor(this.#open.size * 0.9));
    if (bound >= this.maxConnections) return undefined;
    this.#learnedMax = bound;
    return bound;
  }

  /** Called by {@linkcode TrackedConnection.release}. */
  release(connection: TrackedConnection): void {
    if (!this.#open.delete(connection)) return;
    this.#count(connection.listener, -1);
    if (this.#open.size === 0) this.#stopSweeping();
  }

  /** Closes every connection overdue at `now`. */
  sweep(now: number = this.#clock.now()): void {
    const limits = this.#limits();
    for (const connection of this.#open) {
      const reason = connection.overdue(now, limits);
      if (!reason) continue;
      this.#onClose?.(connection.listener, reason);
      connection.close();
    }
  }

  /** Stops the sweep (the listeners are gone). */
  close(): void {
    this.#stopSweeping();
  }

  #count(listener: string, delta: number): void {
    const open = (this.#perListener.get(listener) ?? 0) + delta;
    if (open === 0) this.#perListener.delete(listener);
    else this.#perListener.set(listener, open);
    this.#onOpenChange?.(listener, open);
  }

  #startSweeping(): void {
    if (!this.#sweepTimer) return;
    const limits = this.#limits();
    // A quarter of the shortest timeout, between 25 ms and 1 s: late by at most that.
    const periodMs = Math.min(
      1_000,
      Math.max(25, Math.min(limits.headerTimeoutMs, limits.idleTimeoutMs) / 4),
    );
    if (this.#timer !== undefined && periodMs === this.#timerPeriodMs) return;
    this.#stopSweeping();
    this.#timerPeriodMs = periodMs;
    this.#scheduleSweep();
  }

  #scheduleSweep(): void {
    // The connections keep the process alive while they are open; the sweep never does.
    const timer = this.#clock.after(this.#timerPeriodMs, () => {
      this.sweep();
      // Unless the sweep stopped meanwhile (or was replaced by one of another period).
      if (this.#timer === timer) this.#scheduleSweep();
    }, { unref: true });
    this.#timer = timer;
  }

  #stopSweeping(): void {
    if (this.#timer === undefined) return;
    this.#timer.cancel();
    this.#timer = undefined;
  }
}
