/**
 * Batches the limit checks sent to the store. One batch is in flight at a time; the checks made
 * while it is out wait and leave together as the next one (a check made when nothing is out
 * leaves at once, after the current microtasks). Under load, one round trip then carries the
 * checks of every request that arrived meanwhile, so the client library's cost per call (about
 * 40 µs of CPU for ioredis on Deno's Node layer) and Redis's per-command cost are paid once per
 * batch instead of once per check, while each check still takes exactly one round trip and runs
 * atomically in the store.
 *
 * Time limits: a batch has `timeoutMs` from when it leaves; a check waits at most for the batch
 * ahead of it, so it is answered or failed within twice that. When a batch's time is up, its
 * checks fail one event-loop turn later (an answer already read from the socket but not yet
 * handled, as happens when the proxy itself is busy, still counts). A batch answered late frees
 * nothing more (its checks have failed) but shows the store is alive. Only after
 * {@linkcode STUCK_AFTER} batches in a row end without any answer is `onStuck` told (the Redis
 * store then drops the connection, so nothing piles up behind a server that stopped answering).
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
  /** Longest time a batch may take from when it leaves (ms). */
  timeoutMs: number;
  /** Most operations in one batch; a longer queue sends another batch at once. @default 256 */
  maxBatch?: number;
  /** Called when {@linkcode STUCK_AFTER} batches in a row timed out without any answer. */
  onStuck?: () => void;
}

/** Batches in a row given up without any answer before the store is called stuck. */
export const STUCK_AFTER = 3;

interface Pending extends ScriptCall {
  readonly resolve: (answer: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** An operation the store ran but could not answer (a Lua error inside the batch). */
export class StoreOperationError extends Error {}

/** A batch that never left (the connection was not writable): it surely did not run. */
export class StoreNotSentError extends Error {}

/** A batch the store did not answer in time: it may still have run there. */
export class StoreTimeoutError extends Error {}

/** The checks waiting for a batch, and the batches out. */
export class ScriptBatcher {
  readonly #send: SendBatch;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #maxBatch: number;
  readonly #onStuck: (() => void) | undefined;
  #queue: Pending[] = [];
  #inFlight = 0;
  #flushQueued = false;
  /** Batches given up in a row without any answer, late ones included. */
  #silent = 0;

  constructor(options: ScriptBatcherOptions) {
    this.#send = options.send;
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#onStuck = options.onStuck;
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
      this.#queue.push({ script, keys, args, resolve, reject });
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
      if (batch.length > 0) this.#dispatch(batch);
    } while (this.#queue.length >= this.#maxBatch);
  }

  #dispatch(batch: Pending[]): void {
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
    const giveUp = () => {
      if (!settle()) return;
      const error = new StoreTimeoutError(`the store did not answer within ${this.#timeoutMs}ms`);
      for (const call of batch) call.reject(error);
      if (++this.#silent >= STUCK_AFTER) {
        this.#silent = 0;
        this.#onStuck?.();
      }
    };
    // One more event-loop turn before giving up: an answer waiting to be handled still counts.
    let timer: Timer = this.#clock.after(this.#timeoutMs, () => {
      timer = this.#clock.after(0, giveUp, { unref: true });
    }, { unref: true });
    let sent: Promise<readonly unknown[]>;
    try {
      sent = this.#send(batch);
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then((answers) => {
      this.#silent = 0;
      if (!settle()) return;
      const list: readonly unknown[] = Array.isArray(answers) ? answers : [];
      batch.forEach((call, i) => {
        const answer = list[i];
        if (answer === null || answer === undefined) {
          call.reject(new StoreOperationError(`the store could not run ${call.script.name}`));
        } else call.resolve(answer);
      });
    }, (error: unknown) => {
      if (!settle()) return;
      const reason = error instanceof Error ? error : new Error(String(error));
      for (const call of batch) call.reject(reason);
    });
  }
}
