/**
 * The main thread with `workers` > 1: it starts the serving workers, owns what there is one of
 * in a process — the admin listener, signals, config loading and reloads, the budget store's
 * writer, the shared limit tables — and gathers what the workers report for the admin API.
 *
 * Ports: with `SO_REUSEPORT` every worker binds each forward's port itself. Port 0 would give
 * each worker a port of its own, so the main thread binds every forward first (with the same
 * option) to learn its port — which also reports a port that is taken before any worker
 * starts — hands the workers the resolved config, and lets go of its own sockets once they
 * listen. A forward keeps its resolved port across reloads while its address and port stay.
 *
 * Reloads load the config here, check the new ports the same way, and send the config to every
 * worker, each of which swaps all or nothing as a single process does. Workers build from the
 * same data on the same machine, so they agree; if they ever did not, the errors are logged
 * and answered (the ones that succeeded keep the new config).
 *
 * @module
 */
import type { LoadedConfig } from "../config/errors.ts";
import type { Config } from "../config/schema.ts";
import { redactedConfig } from "../config/secrets.ts";
import { systemClock } from "../deps.ts";
import {
  ADMIN_MAX_CONNECTIONS,
  type AppOptions,
  installSignals,
  openBudgetSync,
  type RunningApp,
} from "../app.ts";
import { watchConfig } from "../config_watch.ts";
import { Registry } from "../metrics/registry.ts";
import { createProxyMetrics } from "../metrics/proxy_metrics.ts";
import { observabilityHooks } from "../metrics/hooks.ts";
import { ConnectionGuard } from "../server/connections.ts";
import {
  adminHandler,
  type AdminViews,
  type StoreState,
  type UpstreamsState,
} from "../server/admin.ts";
import { listen, type Listener } from "../server/listener.ts";
import { ReloadQueue } from "../server/reload_queue.ts";
import type { ReloadResult } from "../reloader.ts";
import { SharedLimits } from "../state/shared_limits.ts";
import { STATE_PATH_UNUSED_WITH_REDIS } from "../state/limit_state.ts";
import type { ClientKeySnapshot } from "../keys/client_key.ts";
import { WorkerPool } from "./pool.ts";
import { mergeExpositions } from "./merge_metrics.ts";
import type { WorkerInit } from "./protocol.ts";

/** The number of workers `workers` asks for on this machine. */
export function workerCount(setting: Config["workers"]): number {
  if (setting !== "auto") return setting;
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/** How long the admin API waits for a worker's answer (ms). */
const QUERY_TIMEOUT_MS = 2_000;
/** A reload's answer from every worker (ms): building a graph and binding listeners. */
const RELOAD_TIMEOUT_MS = 30_000;

/** Extra of the main thread's app: the pool, for tests. */
export interface RunningWorkers extends RunningApp {
  readonly pool: WorkerPool;
}

/** Starts `count` workers serving `loaded`, and the admin listener. */
export async function startWorkers(
  loaded: LoadedConfig,
  options: AppOptions,
  count: number,
): Promise<RunningWorkers> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  for (const warning of loaded.warnings) log.warn(warning);

  const startupState = loaded.config.state;
  const limits = SharedLimits.create();
  const budgets = limits.budgets();
  budgets.track(budgetNames(loaded.config));
  // With Redis, budget usage lives there (as for one process: the file is not used).
  const redis = loaded.config.state.store === "redis";
  if (redis && loaded.config.state.path) log.warn(STATE_PATH_UNUSED_WITH_REDIS);
  const budgetSync = redis
    ? undefined
    : await openBudgetSync(loaded.config.state.path, budgets, clock, log);

  const ports = new PortBook();
  let current = loaded;
  let serving: LoadedConfig;
  try {
    serving = ports.resolve(loaded);
  } catch (error) {
    budgetSync?.close();
    throw error;
  }
  const pool = new WorkerPool({
    module: options.workerModule ?? new URL("./worker_entry.ts", import.meta.url),
    count,
    log,
    init: (id): WorkerInit => ({
      type: "init",
      id,
      workers: count,
      // `state` is read at start-up only: a worker started after a reload (a replacement) gets
      // the config serving now with the state settings every other worker started with.
      loaded: serving.config.state === startupState
        ? serving
        : { ...serving, config: { ...serving.config, state: startupState } },
      limits: limits.data,
      timeOrigin: performance.timeOrigin,
      ...(options.workerLog ? { log: options.workerLog } : {}),
      ...(options.transport ? { transport: options.transport } : {}),
      ...(options.allowWorkerCrash ? { allowCrash: true } : {}),
    }),
  });
  try {
    await pool.start();
  } catch (error) {
    ports.release();
    budgetSync?.close();
    throw error;
  } finally {
    ports.commit();
  }
  log.info(`${count} workers serving every forward (SO_REUSEPORT); limits shared exactly`);

  const registry = new Registry();
  const hooks = observabilityHooks(createProxyMetrics(registry), { log, clock });
  const adminGuard = new ConnectionGuard(() => {
    const http = current.config.httpServer;
    return {
      headerTimeoutMs: http.headerTimeout,
      idleTimeoutMs: http.idleTimeout,
      maxConnections: ADMIN_MAX_CONNECTIONS,
    };
  }, { clock, onClose: hooks.onConnectionClosed, onOpenChange: hooks.onConnectionsOpen });

  let stopping: Promise<void> | undefined;
  const reloadNow = async (): Promise<ReloadResult> => {
    if (!options.reload || stopping) return { ok: false, errors: ["reload is not available"] };
    let next: LoadedConfig;
    let resolved: LoadedConfig;
    try {
      next = await options.reload();
      resolved = ports.resolve(next);
    } catch (error) {
      ports.release();
      const errors = "issues" in (error as object)
        ? (error as Error).message.split("\n")
        : [`reload failed: ${(error as Error).message}`];
      log.error("config reload rejected; the current config keeps serving", { errors });
      hooks.onReload("failure");
      return { ok: false, errors };
    }
    const results = await pool.ask<ReloadResult>(
      (seq) => ({ type: "reload", seq, loaded: resolved }),
      RELOAD_TIMEOUT_MS,
    );
    ports.commit();
    const failed = results.filter((r) => !r?.ok);
    if (failed.length === 0) {
      current = next;
      serving = resolved;
      budgets.track(budgetNames(next.config));
      hooks.onReload("success");
      log.info(`config reloaded in ${results.length} workers`, { source: next.source });
      return { ok: true, errors: [] };
    }
    hooks.onReload("failure");
    const errors = failed[0]?.errors ?? ["a worker did not answer the reload"];
    if (failed.length < results.length) {
      // Cannot happen with workers building the same data; said loudly if it ever does.
      log.error(
        `config reload: ${
          results.length - failed.length
        } of ${results.length} workers took the new config, the others kept the old one`,
        { errors },
      );
      serving = resolved;
      current = next;
    }
    return { ok: false, errors };
  };
  const queue = new ReloadQueue(reloadNow);
  const reload = () => queue.request();

  const views: AdminViews = {
    metrics: async () => {
      const texts = await pool.ask<string>(
        (seq) => ({ type: "query", seq, what: "metrics" }),
        QUERY_TIMEOUT_MS,
      );
      return mergeExpositions([registry.render(), ...texts.filter((t) => t !== undefined)]);
    },
    keys: async () =>
      mergeKeys(
        await pool.ask<{ keys: ClientKeySnapshot[] }>(
          (seq) => ({ type: "query", seq, what: "keys" }),
          QUERY_TIMEOUT_MS,
        ),
      ),
    upstreams: async () =>
      mergeUpstreams(
        await pool.ask<UpstreamsState>(
          (seq) => ({ type: "query", seq, what: "upstreams" }),
          QUERY_TIMEOUT_MS,
        ),
      ),
    emptyGroups: async () => {
      const answers = (await pool.ask<string[]>(
        (seq) => ({ type: "query", seq, what: "ready" }),
        QUERY_TIMEOUT_MS,
      ))
        .filter((a) => a !== undefined);
      if (answers.length === 0) return ["(no worker answered)"];
      // A group is without upstreams when no worker has one for it.
      return answers[0]!.filter((g) => answers.every((a) => a.includes(g)));
    },
  };

  /** Each worker's connection to the store: down when any worker's is (the first down one). */
  const storeState = async (): Promise<StoreState | undefined> => {
    const answers = (await pool.ask<StoreState>(
      (seq) => ({ type: "query", seq, what: "store" }),
      QUERY_TIMEOUT_MS,
    )).filter((a) => a !== undefined);
    return answers.find((a) => !a.health.ok) ?? answers[0];
  };

  const adminConfig = loaded.config.httpServer.admin;
  const admin = adminConfig
    ? listen(
      "admin",
      {
        hostname: adminConfig.address,
        port: adminConfig.port,
        guard: adminGuard,
        tls: adminConfig.tls,
      },
      adminHandler({
        runtime: () => {
          throw new Error("the graphs run in the workers");
        },
        views,
        redactedConfig: () => redactedConfig(current),
        token: () => current.config.httpServer.admin?.token,
        reload,
        registry,
        clock,
        ...(redis ? { store: storeState } : {}),
      }),
      log,
    )
    : undefined;
  if (admin) log.info(`admin listening on ${admin.scheme}://${admin.hostname}:${admin.port}`);

  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((resolve) => resolveFinished = resolve);
  const stop = () => {
    stopping ??= (async () => {
      const drainMs = current.config.httpServer.shutdownTimeout;
      log.info(`shutting down: ${count} workers drain in-flight requests for up to ${drainMs}ms`);
      watcher?.close();
      removeSignals();
      // Each worker drains on its own deadline, then ends what is left (5 s more at most).
      await pool.stop(drainMs + 10_000);
      await admin?.shutdown();
      budgetSync?.close();
      adminGuard.close();
      log.info("stopped");
      resolveFinished(0);
    })();
    return stopping;
  };
  const removeSignals = installSignals(options.handleSignals !== false, stop, reload);
  const watcher = options.watchPath ? watchConfig(options.watchPath, { reload, log }) : undefined;

  return {
    get forwards() {
      return ports.listeners(serving);
    },
    admin,
    registry,
    runtime: () => {
      throw new Error("with workers, the graphs run in the workers");
    },
    reload,
    stop,
    finished,
    pool,
  };
}

/** Names of the keys with a budget: the main thread writes their usage out. */
function budgetNames(config: Config): string[] {
  return config.clientKeys.filter((k) => k.budget).map((k) => k.name);
}

/** The resolved port of each forward, and the sockets that hold new ones until workers bind. */
class PortBook {
  /** By forward name: the configured address and port, and the port it resolved to. */
  #resolved = new Map<string, { address: string; configured: number; port: number }>();
  #pending = new Map<string, { address: string; configured: number; port: number }>();
  #probes: Deno.Listener[] = [];

  /**
   * `loaded` with every forward's port resolved. New sockets are bound (with `SO_REUSEPORT`)
   * and held until {@linkcode commit} or {@linkcode release}; a port that is taken throws.
   */
  resolve(loaded: LoadedConfig): LoadedConfig {
    this.#pending = new Map();
    const forwards = loaded.config.httpServer.forwards.map((f) => {
      const known = this.#resolved.get(f.name);
      if (known && known.address === f.address && known.configured === f.port) {
        this.#pending.set(f.name, known);
        return { ...f, port: known.port };
      }
      let probe: Deno.Listener;
      try {
        probe = Deno.listen({ hostname: f.address, port: f.port, reusePort: true });
      } catch (error) {
        this.release();
        throw new Error(
          `forward "${f.name}" cannot listen on ${f.address}:${f.port}: ${
            (error as Error).message
          }`,
        );
      }
      this.#probes.push(probe);
      const port = (probe.addr as Deno.NetAddr).port;
      this.#pending.set(f.name, { address: f.address, configured: f.port, port });
      return { ...f, port };
    });
    const config = {
      ...loaded.config,
      httpServer: { ...loaded.config.httpServer, forwards },
    } as Config;
    return { ...loaded, config };
  }

  /** The workers listen: the probes go, the resolved ports stay. */
  commit(): void {
    this.#closeProbes();
    if (this.#pending.size > 0) this.#resolved = this.#pending;
    this.#pending = new Map();
  }

  /** The config was not taken: the probes go, nothing changes. */
  release(): void {
    this.#closeProbes();
    this.#pending = new Map();
  }

  listeners(serving: LoadedConfig): Map<string, Listener> {
    const scheme = (tls: unknown) => tls ? "https" as const : "http" as const;
    return new Map(serving.config.httpServer.forwards.map((f) => [f.name, {
      name: f.name,
      hostname: f.address,
      port: f.port,
      scheme: scheme(f.tls),
      shutdown: () => Promise.resolve(),
    }]));
  }

  #closeProbes(): void {
    for (const probe of this.#probes) {
      try {
        probe.close();
      } catch {
        // already closed
      }
    }
    this.#probes = [];
  }
}

/** `/keys` of every worker: request and token counts summed; budgets are shared (any one). */
function mergeKeys(answers: readonly ({ keys: ClientKeySnapshot[] } | undefined)[]): unknown {
  const byName = new Map<string, ClientKeySnapshot>();
  for (const answer of answers) {
    for (const key of answer?.keys ?? []) {
      const seen = byName.get(key.name);
      if (!seen) byName.set(key.name, { ...key });
      else {
        seen.requests += key.requests;
        seen.tokensThisMinute += key.tokensThisMinute;
      }
    }
  }
  return { keys: [...byName.values()] };
}

const BREAKER_WORST = ["closed", "half_open", "open"] as const;

/**
 * `/upstreams` of every worker: counts summed, `available` when any worker would send there,
 * `breaker` the worst of the workers' breakers (each worker has its own) with every worker's
 * in `breakers`; the limiter and 429 back-off are shared (any one).
 */
function mergeUpstreams(answers: readonly (UpstreamsState | undefined)[]): unknown {
  const states = answers.filter((a) => a !== undefined);
  const first = states[0];
  if (!first) return { groups: [] };
  return {
    workers: states.length,
    groups: first.groups.map((group) => ({
      ...group,
      upstreams: group.upstreams.map((u) => {
        const all = states.map((s) =>
          s.groups.find((g) => g.name === group.name)?.upstreams.find((x) => x.name === u.name)
        ).filter((x) => x !== undefined);
        const worst = all.reduce(
          (w, x) => BREAKER_WORST.indexOf(x.breaker) > BREAKER_WORST.indexOf(w) ? x.breaker : w,
          u.breaker,
        );
        return {
          ...u,
          available: all.some((x) => x.available),
          breaker: worst,
          breakers: all.map((x) => x.breaker),
          breakerCooldownMs: Math.max(...all.map((x) => x.breakerCooldownMs)),
          inFlight: all.reduce((n, x) => n + x.inFlight, 0),
          requests: all.reduce((n, x) => n + x.requests, 0),
          errors: all.reduce((n, x) => n + x.errors, 0),
        };
      }),
    })),
  };
}
