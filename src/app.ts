/**
 * The composition root (work in progress).
 *
 * @module
 */
import type { LoadedConfig } from "./config/load.ts";
import type { Logger } from "./log.ts";

/** A running proxy. */
export interface RunningApp {
  /** Resolves with the exit code once the proxy has stopped. */
  readonly finished: Promise<number>;
}

/** Starts listeners for a loaded config. */
export function startApp(
  _loaded: LoadedConfig,
  _options: { log: Logger; reload: () => Promise<LoadedConfig> },
): Promise<RunningApp> {
  return Promise.reject(new Error("not implemented yet"));
}
