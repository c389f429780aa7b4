/**
 * Batches the limit checks sent to the store. One batch is in flight at a time; the checks made
 * while it is out wait and leave together as the next one (a check made when nothing is out
 * leaves at once, after the current microtasks). Under load, one round trip then carries the
 * checks of every request that arrived meanwhile, so the client library's cost per call
 * (~15 µs of CPU for ioredis on Deno's Node layer) and Redis's per-command cost are paid once per
 * batch instead of once per check, while each check still takes exactly one round trip and runs
 * atomically in the store.
 *
 * `timeoutMs` bounds every check from the moment it is made, waiting included: a batch out for
 * longer than its oldest check allows is given up (its checks fail, so `onStoreError` decides),
 * `onTimeout` is told (the Redis store drops the connection, so nothing piles up behind a server
 * that stopped answering), and the next one leaves.
 *
 * @module
 */
import type { Clock, Timer } from "../deps.ts";
import type { Script } from "./redis_scripts.ts";

/** One operation of a batch. */
export interface ScriptCall {
  readonly script: Script;
  readonly keys: readonly string[];
  readonly args: readonly (string | number)[];
}

/**
 * Sends a batch in one round trip; answers in the order of `calls`, `null` (or `undefined`) for
 * an operation that failed in the store alone. Rejects when the round trip failed.
 */
export type SendBatch = (calls: readonly ScriptCall[]) => Promise<readonly unknown[]>;

/** Options of {@linkcode ScriptBatcher}. */
export interface ScriptBatcherOptions {
  send: SendBatch;
  clock: Clock;
  /** Longest time a check may take, waiting for its batch included (ms). */
  timeoutMs: number;
  /** Most operations in one batch; a longer queue sends another batch at once. @default 256 */
  maxBatch?: number;
  /** Called when a batch is given up for taking too long (the connection may be stuck). */
  onTimeout?: () => void;
}

interface Pending extends ScriptCall {
  readonly at: number;
  readonly resolve: (answer: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** An operation the store ran but could not answer (a Lua error inside the batch). */
export class StoreOperationError extends Error {}

/** The checks waiting for a batch, and the batches out. */
export class ScriptBatcher {
  readonly #send: SendBatch;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #maxBatch: number;
  readonly #onTimeout: (() => void) | undefined;
  #queue: Pending[] = [];
  #inFlight = 0;
  #flushQueued = false;

  constructor(options: ScriptBatcherOptions) {
    this.#send = options.send;
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#onTimeout = options.onTimeout;
  }

  /** Batches currently out (tests and metrics). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Runs `script` in the next batch; its answer, or a rejection when the batch failed. */
  run(
    script: Script,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ script, keys, args, at: this.#clock.now(), resolve, reject });
      if (this.#queue.length >= this.#maxBatch) this.#flush();
      else if (this.#inFlight === 0 && !this.#flushQueued) {
        // Checks made in the same turn (a burst of requests handled together) share the batch.
        this.#flushQueued = true;
        queueMicrotask(() => {
          this.#flushQueued = false;
          if (this.#inFlight === 0) this.#flush();
        });
      }
    });
  }

  /** Sends what waits: one batch, more while the queue holds a full one. */
  #flush(): void {
    do {
      const batch = this.#queue.length > this.#maxBatch
        ? this.#queue.splice(0, this.#maxBatch)
        : this.#queue;
      if (batch === this.#queue) this.#queue = [];
      this.#dispatch(batch);
    } while (this.#queue.length >= this.#maxBatch);
  }

  #dispatch(batch: Pending[]): void {
    const now = this.#clock.now();
    // Checks whose time ran out while they waited fail without being sent.
    const live = batch.filter((call) => {
      if (now - call.at < this.#timeoutMs) return true;
      call.reject(timedOut(this.#timeoutMs));
      return false;
    });
    if (live.length === 0) return;
    this.#inFlight++;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      timer.cancel();
      this.#inFlight--;
      // The next batch leaves now: whatever queued while this one was out.
      if (this.#queue.length > 0 && this.#inFlight === 0) this.#flush();
      return true;
    };
    const timer: Timer = this.#clock.after(
      live[0]!.at + this.#timeoutMs - now,
      () => {
        if (!settle()) return;
        const error = timedOut(this.#timeoutMs);
        for (const call of live) call.reject(error);
        this.#onTimeout?.();
      },
      { unref: true },
    );
    let sent: Promise<readonly unknown[]>;
    try {
      sent = this.#send(live);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then((answers) => {
      if (!settle()) return;
      live.forEach((call, i) => {
        const answer = answers[i];
        if (answer === null || answer === undefined) {
          call.reject(new StoreOperationError(`the store could not run ${call.script.name}`));
        } else call.resolve(answer);
      });
    }, (error: unknown) => {
      if (!settle()) return;
      const reason = error instanceof Error ? error : new Error(String(error));
      for (const call of live) call.reject(reason);
    });
  }
}

function timedOut(ms: number): Error {
  return new Error(`the store did not answer within ${ms}ms`);
}
