/**
 * The serving workers, seen from the main thread: starts them, asks them things (each answer
 * matched to its question by a sequence number), replaces one that dies, and stops them all.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { FromWorker, ToWorker, WorkerInit } from "./protocol.ts";

/** Options of {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  /** The module a worker runs (it calls `runWorker`). */
  module: URL;
  count: number;
  /** The init message of worker `id`, built when it (re)starts: the config serving then. */
  init: (id: number) => WorkerInit;
  log: Logger;
}

interface Slot {
  readonly id: number;
  readonly worker: Worker;
  readonly startedAt: number;
  readonly pending: Map<number, (value: unknown) => void>;
  /** Resolves once the worker listens (or rejects with why it could not). */
  readonly started: Promise<void>;
  dead: boolean;
}

/** Stops a worker that does not start within this (ms). */
const START_TIMEOUT_MS = 30_000;
/** A worker that dies sooner than this after starting is replaced after a pause (ms). */
const QUICK_DEATH_MS = 5_000;

/** N workers serving the same forwards. */
export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #slots = new Map<number, Slot>();
  #seq = 0;
  #stopping = false;
  /** Set once every worker started: from then on a worker that fails is replaced. */
  #running = false;
  /** Replacements started, for tests and logs. */
  replaced = 0;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
  }

  /** Starts every worker; rejects (having stopped them) when one cannot start. */
  async start(): Promise<void> {
    for (let id = 1; id <= this.#options.count; id++) this.#spawn(id);
    try {
      await Promise.all([...this.#slots.values()].map((s) => s.started));
      this.#running = true;
    } catch (error) {
      this.#stopping = true;
      for (const slot of this.#slots.values()) slot.worker.terminate();
      throw error;
    }
  }

  /** Ids of the workers running now. */
  ids(): number[] {
    return [...this.#slots.keys()];
  }

  /**
   * Sends what `make` builds to every live worker and collects the answers, in worker order;
   * a worker that dies or does not answer within `timeoutMs` gives undefined.
   */
  ask<T>(make: (seq: number) => ToWorker, timeoutMs: number): Promise<(T | undefined)[]> {
    return Promise.all(
      [...this.#slots.values()].map((slot) => this.#ask<T>(slot, make, timeoutMs)),
    );
  }

  /** Tests only: makes worker `id` throw (it must have been started with `allowCrash`). */
  crash(id: number): void {
    this.#slots.get(id)?.worker.postMessage({ type: "crash" } satisfies ToWorker);
  }

  /** Tells every worker to drain and stop, waits up to `timeoutMs`, then ends them all. */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    await this.ask((seq) => ({ type: "stop", seq }), timeoutMs);
    for (const slot of this.#slots.values()) slot.worker.terminate();
    this.#slots.clear();
  }

  #ask<T>(slot: Slot, make: (seq: number) => ToWorker, timeoutMs: number): Promise<T | undefined> {
    if (slot.dead) return Promise.resolve(undefined);
    const seq = ++this.#seq;
    return new Promise<T | undefined>((resolve) => {
      const timer = setTimeout(() => {
        slot.pending.delete(seq);
        resolve(undefined);
      }, timeoutMs);
      slot.pending.set(seq, (value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
      slot.worker.postMessage(make(seq));
    });
  }

  #spawn(id: number): Slot {
    const { log } = this.#options;
    const worker = new Worker(this.#options.module, { type: "module" });
    const started = Promise.withResolvers<void>();
    const timer = setTimeout(() => {
      started.reject(new Error(`worker ${id} did not start within ${START_TIMEOUT_MS}ms`));
    }, START_TIMEOUT_MS);
    started.promise.then(() => clearTimeout(timer), () => clearTimeout(timer));
    const slot: Slot = {
      id,
      worker,
      startedAt: performance.now(),
      pending: new Map(),
      started: started.promise,
      dead: false,
    };
    this.#slots.set(id, slot);
    const workerLog = log.child({ worker: id });
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      switch (message.type) {
        case "started":
          if (message.ok) started.resolve();
          else started.reject(new Error(message.error));
          return;
        case "answer": {
          const resolve = slot.pending.get(message.seq);
          slot.pending.delete(message.seq);
          resolve?.(message.value);
          return;
        }
        case "log":
          for (const r of message.records) workerLog[r.level](r.message, r.fields);
          return;
      }
    };
    worker.onerror = (event) => {
      // Handled here: unhandled, a worker's error would end the main thread too.
      event.preventDefault();
      this.#died(slot, event.message);
    };
    worker.postMessage(this.#options.init(id) satisfies ToWorker);
    // A replacement that fails to start is a death like any other (retried after a pause).
    started.promise.catch((error) => {
      if (this.#running && this.#slots.get(id) === slot) {
        this.#died(slot, (error as Error).message);
      }
    });
    return slot;
  }

  #died(slot: Slot, why: string): void {
    if (slot.dead) return;
    slot.dead = true;
    slot.worker.terminate();
    for (const resolve of slot.pending.values()) resolve(undefined);
    slot.pending.clear();
    if (this.#stopping || this.#slots.get(slot.id) !== slot) return;
    const { log } = this.#options;
    const quick = performance.now() - slot.startedAt < QUICK_DEATH_MS;
    log.error(`worker ${slot.id} died: ${why}; starting a new one${quick ? " in 1 s" : ""}`, {
      worker: slot.id,
    });
    const replace = () => {
      if (this.#stopping) return;
      this.replaced++;
      const next = this.#spawn(slot.id);
      next.started.then(
        () => log.info(`worker ${slot.id} replaced and serving`, { worker: slot.id }),
        () => {},
      );
    };
    if (quick) setTimeout(replace, 1_000);
    else replace();
  }
}
