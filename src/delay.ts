/**
 * A wait that a signal cuts short, as Deno std's `delay`: it rejects with the signal's reason.
 *
 * @module
 */
import { type Clock, systemClock } from "./deps.ts";

/** Options of {@linkcode delay}. */
export interface DelayOptions {
  /** Aborting it ends the wait at once: the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Whose time the wait is measured on (a fake one in tests). @default systemClock */
  clock?: Pick<Clock, "after">;
}

/**
 * Resolves after `ms` milliseconds, or rejects with `options.signal`'s reason as soon as it is
 * (or already was) aborted. A wait of 0 ms or less resolves without a timer.
 *
 * @example
 * ```ts
 * await delay(500, { signal: AbortSignal.any([request.signal, shutdown]) });
 * ```
 */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal, clock = systemClock } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const abort = () => {
      timer.cancel();
      reject(signal!.reason);
    };
    const timer = clock.after(ms, () => {
      signal?.removeEventListener("abort", abort);
      resolve();
    });
    signal?.addEventListener("abort", abort, { once: true });
  });
}
