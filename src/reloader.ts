/**
 * Reloads, all or nothing: load the new config, build its graph (carrying over what did not
 * change), bind the listeners it needs while the old config keeps serving, then swap and retire
 * the old graph once its last request has finished. Anything failing leaves the old config, its
 * graph and its listeners exactly as they were.
 *
 * @module
 */
import { ConfigError, type LoadedConfig } from "./config/errors.ts";
import { concealSecrets } from "./config/secrets.ts";
import type { Logger } from "./log.ts";
import type { Runtime } from "./runtime.ts";
import type { ForwardListeners, ListenerPlan } from "./server/forward_listeners.ts";
import { ReloadQueue } from "./server/reload_queue.ts";

/** What a reload did: `ok`, or the errors that rejected it (no secrets in them). */
export interface ReloadResult {
  readonly ok: boolean;
  readonly errors: readonly string[];
}

/** Options of {@linkcode Reloader}. */
export interface ReloaderOptions {
  /** Loads the config again; without it, reloading is not available. */
  load?: (() => Promise<LoadedConfig>) | undefined;
  /** Builds the graph for a config, carrying state over from `previous`. */
  build: (loaded: LoadedConfig, previous: Runtime) => Runtime;
  listeners: ForwardListeners;
  log: Logger;
  /** The new graph serves now (announce it). */
  onSwap?: (next: Runtime, previous: Runtime) => void;
  /** Counts a reload's result. */
  onResult?: (ok: boolean) => void;
  /** A replaced graph has finished its last request and is closed; `live` still serve. */
  onRetired?: (previous: Runtime, live: readonly Runtime[]) => void;
}

/** Owns the serving config and graph, and the graphs a reload replaced that still finish. */
export class Reloader {
  readonly #options: ReloaderOptions;
  readonly #queue: ReloadQueue<ReloadResult>;
  /** Graphs replaced by a reload whose requests are still finishing. */
  readonly #retiring = new Set<Runtime>();
  #current: LoadedConfig;
  #runtime: Runtime;
  #stopped = false;

  constructor(loaded: LoadedConfig, runtime: Runtime, options: ReloaderOptions) {
    this.#current = loaded;
    this.#runtime = runtime;
    this.#options = options;
    this.#queue = new ReloadQueue(async (): Promise<ReloadResult> => {
      try {
        return await this.#reloadNow();
      } catch (error) {
        // A bug, not a bad config: the details go to the (redacted) log only.
        options.log.error("config reload failed; the current config keeps serving", { error });
        options.onResult?.(false);
        return { ok: false, errors: ["reload failed: internal error (see the proxy's log)"] };
      }
    });
  }

  /** The config serving now. */
  get current(): LoadedConfig {
    return this.#current;
  }

  /** The graph serving now. */
  get runtime(): Runtime {
    return this.#runtime;
  }

  /** The serving graph and those still retiring. */
  graphs(): Runtime[] {
    return [this.#runtime, ...this.#retiring];
  }

  /** Reloads one at a time; a burst is coalesced (see {@linkcode ReloadQueue}). Never rejects. */
  reload(): Promise<ReloadResult> {
    return this.#queue.request();
  }

  /** No reload after this; closes every graph's clients (the proxy has stopped serving). */
  close(): void {
    this.#stopped = true;
    for (const r of [...this.#retiring]) {
      this.#retiring.delete(r);
      r.close(this.graphs());
    }
    this.#runtime.close();
  }

  /** Stops reloading (a shutdown began). */
  stop(): void {
    this.#stopped = true;
  }

  async #reloadNow(): Promise<ReloadResult> {
    const { load, listeners, log } = this.#options;
    if (!load || this.#stopped) return { ok: false, errors: ["reload is not available"] };
    let next: LoadedConfig;
    try {
      next = await load();
    } catch (error) {
      // A ConfigError's messages show `${VAR}` references, never their values (see load.ts).
      return this.#rejected(
        error instanceof ConfigError
          ? error.message.split("\n")
          : [`reload failed: ${(error as Error).message}`],
      );
    }
    if (this.#stopped) return { ok: false, errors: ["the proxy is shutting down"] };
    const previous = this.#runtime;
    let successor: Runtime;
    try {
      successor = this.#options.build(next, previous);
    } catch (error) {
      return this.#rejected([`cannot build the new config: ${(error as Error).message}`], next);
    }
    let plan: ListenerPlan;
    try {
      plan = listeners.prepare(next.config.httpServer.forwards);
    } catch (error) {
      // What the new graph opened that the serving one does not share.
      successor.close(this.graphs());
      return this.#rejected([(error as Error).message], next);
    }
    this.#runtime = successor;
    this.#current = next;
    for (const warning of next.warnings) log.warn(warning);
    this.#options.onSwap?.(successor, previous);
    plan.commit();
    if (
      JSON.stringify(previous.config.httpServer.admin) !==
        JSON.stringify(successor.config.httpServer.admin)
    ) {
      log.warn("admin listener settings changed: the address and port apply after a restart");
    }
    this.#retire(previous);
    this.#options.onResult?.(true);
    log.info("config reloaded", { source: next.source });
    return { ok: true, errors: [] };
  }

  /** Logs and counts a rejected reload; `next`'s secrets are kept out of what it answers. */
  #rejected(errors: readonly string[], next?: LoadedConfig): ReloadResult {
    const shown = next ? errors.map((e) => concealSecrets(e, next)) : errors;
    this.#options.log.error("config reload rejected; the current config keeps serving", {
      errors: shown,
    });
    this.#options.onResult?.(false);
    return { ok: false, errors: shown };
  }

  /** Closes a replaced graph's clients once its last request has finished. */
  #retire(previous: Runtime): void {
    this.#retiring.add(previous);
    previous.drained().then(() => {
      if (!this.#retiring.delete(previous)) return; // closed by close()
      // A group carried over by a reload is shared: the last graph using it closes it.
      previous.close(this.graphs());
      this.#options.onRetired?.(previous, this.graphs());
    });
  }
}
