/**
 * Reloads one at a time, a burst coalesced: SIGHUP, a changed file and `POST /reload` may ask
 * at once, and an editor saving twice asks twice.
 *
 * @module
 */

/**
 * Runs `run` one at a time with at most one run pending. A request while nothing runs starts a
 * run; a request while one runs waits for the next run, which starts once the current one has
 * finished and serves every request made meanwhile (they all get its result). So the last
 * request always sees a run that started after it, and a burst of N costs two runs, not N.
 */
export class ReloadQueue<T> {
  readonly #run: () => Promise<T>;
  #running: Promise<T> | undefined;
  #pending: Promise<T> | undefined;

  constructor(run: () => Promise<T>) {
    this.#run = run;
  }

  /** Asks for a run; resolves with the result of the run that serves this request. */
  request(): Promise<T> {
    // Pending first: between the end of a run and the start of the pending one, nothing runs,
    // yet a new request must join the pending run rather than start a third.
    if (this.#pending) return this.#pending;
    if (!this.#running) return this.#start();
    const after = this.#running.then(() => {}, () => {});
    const pending = after.then(() => {
      this.#pending = undefined;
      return this.#start();
    });
    this.#pending = pending;
    return pending;
  }

  #start(): Promise<T> {
    // Started from a resolved promise: a run that throws synchronously still settles this one.
    const running = Promise.resolve().then(() => this.#run()).finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }
}
