/**
 * The composition root: the only module that knows every part. It builds the runtime graph
 * from a loaded config, binds the listeners, wires metrics and logs, and handles signals;
 * reloads (build → bind → swap → retire) belong to the {@linkcode Reloader}.
 *
 * @module
 */
import type { LoadedConfig } from "./config/errors.ts";
import { redactedConfig } from "./config/secrets.ts";
import { type Clock, type IdSource, type Random, systemClock } from "./deps.ts";
import type { Logger } from "./log.ts";
import { Registry } from "./metrics/registry.ts";
import { createProxyMetrics } from "./metrics/proxy_metrics.ts";
import { configNames, type ObservabilityHooks, observabilityHooks } from "./metrics/hooks.ts";
import { Runtime } from "./runtime.ts";
import { Deadlines } from "./deadlines.ts";
import { listen, type Listener, within } from "./server/listener.ts";
import { ConnectionGuard, type ConnectionLimits } from "./server/connections.ts";
import { defaultMaxConnections, openFilesLimit } from "./server/open_files.ts";
import { ForwardListeners } from "./server/forward_listeners.ts";
import { Reloader, type ReloadResult } from "./reloader.ts";
import { watchConfig } from "./config_watch.ts";
import { adminHandler } from "./server/admin.ts";
import { createGroupTransport, describeProxy, type TransportChoice } from "./transport/select.ts";
import type { HttpClientConfig } from "./config/schema.ts";
import { AttemptAbort } from "./upstream/attempt.ts";
import { NoUpstreamError, toErrorResponse } from "./pipeline/errors.ts";
import { dialectOf } from "./pipeline/dialect.ts";
import { splitRequestUrl } from "./upstream/url.ts";
import type { Group } from "./upstream/group.ts";
import { type BudgetBook, BudgetLedger } from "./keys/budget.ts";
import { type LimitState, STATE_PATH_UNUSED_WITH_REDIS } from "./state/limit_state.ts";
import type { StoreState } from "./server/admin.ts";
import type { LogLevel } from "./log.ts";
import { startWorkers, workerCount } from "./workers/supervisor.ts";
import { BudgetSync } from "./keys/budget_sync.ts";
import type { BudgetFile } from "./state/budget_file.ts";
import type { RemoteLimits } from "./state/remote_limits.ts";

/** Options of {@linkcode startApp}. */
export interface AppOptions {
  log: Logger;
  /** Loads the config again (SIGHUP, `POST /reload`, file change). */
  reload?: () => Promise<LoadedConfig>;
  /** A config file to watch: a change triggers a reload. */
  watchPath?: string;
  /**
   * Injected for tests; the real ones by default. The clock is the one time source: policies,
   * deadlines, retry waits and housekeeping timers all read and schedule on it.
   */
  clock?: Clock;
  random?: Random;
  /** Request ids and trace-context ids. @default cryptoIds */
  ids?: IdSource;
  fetch?: typeof fetch;
  /** Upstream transport: `auto` (default) = the HTTP/1.1 client when direct, fetch through proxies. */
  transport?: TransportChoice;
  env?: (name: string) => string | undefined;
  /** Install SIGINT/SIGTERM handlers. @default true */
  handleSignals?: boolean;
  /**
   * With `workers` > 1: the module each worker starts from. main.ts passes its own URL, which
   * exists in a bundle and a compiled binary too. @default src/workers/worker_entry.ts
   */
  workerModule?: URL;
  /**
   * With `workers` > 1: workers log to stderr themselves with these settings (the access log
   * stays off the main thread); omitted = their records come to `log`.
   */
  workerLog?: { level: LogLevel; json: boolean };
  /** Tests only: workers may be told to crash (see `RunningWorkers.crash`). */
  allowWorkerCrash?: boolean;
  /** Set by the worker pool: this app is one of several serving workers (`src/workers/`). */
  worker?: WorkerRole;
}

/** What a serving worker gets from the main thread (see `src/workers/worker.ts`). */
export interface WorkerRole {
  readonly id: number;
  /** The limits' state, shared by every worker. */
  readonly limits: LimitState;
  /** Budget usage, shared; the main thread writes it to `state.path`. */
  readonly budgets: BudgetBook;
  /** Workers in all: the process's connection bound is split among them. */
  readonly of: number;
}

/** A running proxy. */
export interface RunningApp {
  /** Bound listeners by forward name (ports resolved when configured as 0). */
  readonly forwards: ReadonlyMap<string, Listener>;
  readonly admin: Listener | undefined;
  readonly registry: Registry;
  /** The graph currently serving. */
  runtime(): Runtime;
  /**
   * Loads the config again and swaps it in when valid and every listener it needs is bound;
   * otherwise logs why and keeps the old config serving. Serialised and coalesced; never
   * rejects.
   */
  reload(): Promise<ReloadResult>;
  /** Drains and stops; resolves when everything has ended. */
  stop(): Promise<void>;
  /** Resolves with the exit code once the proxy has stopped. */
  readonly finished: Promise<number>;
  /** The shared limit store's state (`state.store: redis`); absent without one. */
  readonly store?: () => StoreState;
}

/** Builds the runtime for `loaded`, binds every listener and starts serving. */
export async function startApp(loaded: LoadedConfig, options: AppOptions): Promise<RunningApp> {
  const { log } = options;
  // Several workers: this thread supervises them and serves the admin API (src/workers/).
  const workers = options.worker ? 1 : workerCount(loaded.config.workers);
  if (workers > 1) return startWorkers(loaded, options, workers);
  const clock = options.clock ?? systemClock;
  const env = options.env ?? ((name: string) => Deno.env.get(name));

  for (const warning of loaded.warnings) log.warn(warning);

  const registry = new Registry();
  const hooks = observabilityHooks(createProxyMetrics(registry), { log, clock });
  // Assigned once the listeners exist; the guards read the initial config until then.
  // deno-lint-ignore prefer-const -- closures made before the assignment read it
  let reloader!: Reloader;
  const guards = connectionGuards(
    () => (reloader ? reloader.current : loaded).config.httpServer,
    hooks,
    log,
    clock,
    options.worker?.of ?? 1,
  );
  // One timer for every request's deadlines, on the same clock as the policies.
  const deadlines = new Deadlines(clock);
  // Client keys' budget usage: one ledger for the process (reloads keep it), in the state file
  // when there is one. `state.path` is read at start-up only.
  // A worker's usage is shared, and the main thread writes it.
  const budgets = options.worker?.budgets ?? new BudgetLedger();
  const state = loaded.config.state;
  // Limits shared by instances: Redis (read at start-up only, like state.path). Its module and
  // client library are loaded only then (see openBudgetSync on `node:` modules).
  // With workers each one has its own connection; the process's shared memory is its fallback.
  const store = state.store === "redis"
    ? await openSharedStore(state, clock, log, hooks, options.worker?.limits)
    : undefined;
  // (Workers: the supervisor says it once.)
  if (store && state.path && !options.worker) log.warn(STATE_PATH_UNUSED_WITH_REDIS);
  const budgetSync = options.worker || store
    ? undefined
    : await openBudgetSync(state.path, budgets, clock, log);
  const deps = {
    clock,
    random: options.random ?? Math.random,
    ...(options.ids ? { ids: options.ids } : {}),
    log,
    deadlines,
    createTransport: (config: HttpClientConfig) =>
      createGroupTransport(config, {
        env,
        deadlines,
        clock,
        ...(options.transport ? { choice: options.transport } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
    hooks,
    budgets,
    ...(options.worker ? { limits: options.worker.limits } : {}),
    ...(store ? { limits: store } : {}),
  };
  const initial = new Runtime(loaded.config, deps);
  announce(initial);

  function announce(next: Runtime, previous?: Runtime): void {
    hooks.onServing(next, previous);
    for (const group of next.groups.values()) {
      if (previous?.groups.get(group.name) === group) continue;
      log.info(`group "${group.name}": ${describeProxy(group.config.httpClient, env)}`, {
        transport: transportName(group),
        strategy: group.config.balance.strategy,
        upstreams: group.members.map((m) => m.name),
      });
    }
    const admin = next.config.httpServer.admin;
    if (admin && !options.worker && !admin.token && !isLoopback(admin.address)) {
      log.warn(
        `admin listens on ${admin.address} without a token: anyone who can reach it sees upstream state and config; set httpServer.admin.token`,
      );
    }
  }

  // Requests always go to the graph serving now, so a reload swaps it under the listener.
  const listeners = new ForwardListeners((name, request, peerIp, scheme) => {
    const forward = reloader.runtime.forwards.get(name);
    return forward ? forward.handle(request, peerIp, scheme) : gone(name, request);
  }, { log, guard: guards.forwards, reusePort: options.worker !== undefined });
  reloader = new Reloader(loaded, initial, {
    load: options.reload,
    build: (next, previous) => new Runtime(next.config, deps, previous),
    listeners,
    log,
    onSwap: announce,
    onResult: (ok) => hooks.onReload(ok ? "success" : "failure"),
    // Its requests are over: what no live config names leaves /metrics.
    onRetired: (previous, live) =>
      hooks.forget(configNames(previous.config), live.map((r) => configNames(r.config))),
  });
  /** Never rejects: a failure is its result. */
  const reload = () => reloader.reload();
  // Before anything listens: a stop signal that follows the "listening" line must drain, not
  // kill. (The handlers run later, from the event loop, once everything below is set up.)
  const removeSignals = installSignals(options.handleSignals !== false, () => stop(), reload);
  try {
    listeners.prepare(loaded.config.httpServer.forwards).commit();
  } catch (error) {
    removeSignals();
    initial.close();
    budgetSync?.close();
    await store?.close();
    throw error;
  }

  const storeState = store
    ? (): StoreState => ({ health: store.health(), rejects: store.rejects })
    : undefined;
  // Workers serve the forwards only; the main thread has the admin listener.
  const adminConfig = options.worker ? undefined : loaded.config.httpServer.admin;
  const admin = adminConfig
    ? listen(
      "admin",
      {
        hostname: adminConfig.address,
        port: adminConfig.port,
        guard: guards.admin,
        tls: adminConfig.tls,
      },
      adminHandler({
        runtime: () => reloader.runtime,
        redactedConfig: () => redactedConfig(reloader.current),
        token: () => reloader.current.config.httpServer.admin?.token,
        reload: () => reload(),
        registry,
        clock,
        ...(storeState ? { store: storeState } : {}),
      }),
      log,
    )
    : undefined;
  if (admin) log.info(`admin listening on ${admin.scheme}://${admin.hostname}:${admin.port}`);

  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((resolve) => resolveFinished = resolve);
  let stopping: Promise<void> | undefined;

  const stop = () => {
    stopping ??= (async () => {
      reloader.stop();
      const drainMs = reloader.runtime.config.httpServer.shutdownTimeout;
      log.info(`shutting down: draining in-flight requests for up to ${drainMs}ms`);
      watcher?.close();
      removeSignals();
      const drained = listeners.shutdown();
      if (!await within(drained, drainMs)) {
        const graphs = reloader.graphs();
        const open = graphs.reduce((n, r) => n + r.inFlight, 0);
        log.warn(`drain deadline passed: ending ${open} request(s) still open`);
        const reason = new AttemptAbort("shutdown", "the proxy is shutting down");
        for (const r of graphs) r.shutdown(reason);
        await within(drained, 5_000);
      }
      await admin?.shutdown();
      // After the drain: the usage of the last answers is in.
      budgetSync?.close();
      await store?.close();
      reloader.close();
      guards.forwards.close();
      guards.admin.close();
      log.info("stopped");
      resolveFinished(0);
    })();
    return stopping;
  };

  const watcher = options.watchPath ? watchConfig(options.watchPath, { reload, log }) : undefined;

  return {
    forwards: listeners.byForward,
    admin,
    registry,
    runtime: () => reloader.runtime,
    reload,
    stop,
    finished,
    ...(storeState ? { store: storeState } : {}),
  };
}

/**
 * Opens the budget store at `path` (none without one); a file that cannot be used stops the
 * start. The store's module (`node:sqlite`) is loaded only then: any `node:` module brings
 * Deno's Node compatibility layer into the process, which makes every timer a Node `Timeout`.
 */
export async function openBudgetSync(
  path: string | undefined,
  budgets: BudgetBook,
  clock: Clock,
  log: Logger,
): Promise<BudgetSync | undefined> {
  if (!path) return undefined;
  const { BudgetFile } = await import("./state/budget_file.ts");
  let file: BudgetFile;
  try {
    file = new BudgetFile(path);
  } catch (error) {
    throw new Error(`cannot open state.path "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    const sync = new BudgetSync(budgets, file, { clock, log });
    log.info(`client key budgets are kept in ${path}`);
    return sync;
  } catch (error) {
    file.close();
    throw new Error(`cannot read state.path "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Connects the limits shared by instances (`state.store: redis`). The module (and ioredis with
 * Node's compatibility layer) is imported only here.
 */
async function openSharedStore(
  state: LoadedConfig["config"]["state"],
  clock: Clock,
  log: Logger,
  hooks: ObservabilityHooks,
  local: LimitState | undefined,
): Promise<RemoteLimits> {
  const { openRedisStore } = await import("./state/redis_store.ts");
  return await openRedisStore(state, {
    clock,
    log,
    onCall: hooks.onStoreCall,
    ...(local ? { local } : {}),
  });
}

/** Connections admitted per listener; the admin has its own few, so a flood never locks it out. */
export const ADMIN_MAX_CONNECTIONS = 64;

/**
 * The connection guards of the forwards (all together: they share the process's descriptors)
 * and of the admin listener. Limits are read from the config serving now, so a reload applies
 * to the connections that follow.
 */
function connectionGuards(
  httpServer: () => LoadedConfig["config"]["httpServer"],
  hooks: ObservabilityHooks,
  log: Logger,
  clock: Clock,
  /** Workers sharing the process's descriptors: each admits its share of the forwards' bound. */
  share = 1,
): { forwards: ConnectionGuard; admin: ConnectionGuard } {
  const fdLimit = openFilesLimit();
  const fallback = defaultMaxConnections(fdLimit);
  const configured = httpServer().maxConnections;
  log.info(
    `open-files limit ${
      fdLimit ?? "unknown (reading /proc/self/limits needs --allow-all)"
    }: up to ${configured ?? fallback} client connections at once (httpServer.maxConnections${
      configured ? "" : ", default"
    })`,
  );
  if (fdLimit !== undefined && configured !== undefined && configured > fallback) {
    log.warn(
      `httpServer.maxConnections ${configured} is more than the open-files limit ${fdLimit} serves (about ${fallback}: two descriptors per proxied request); raise the limit (ulimit -n) or lower maxConnections`,
    );
  }
  const limits = (max?: number) => (): ConnectionLimits => {
    const config = httpServer();
    return {
      headerTimeoutMs: config.headerTimeout,
      idleTimeoutMs: config.idleTimeout,
      maxConnections: max ??
        Math.max(1, Math.floor((config.maxConnections ?? fallback) / share)),
    };
  };
  const options = {
    clock,
    onClose: hooks.onConnectionClosed,
    onOpenChange: hooks.onConnectionsOpen,
  };
  return {
    forwards: new ConnectionGuard(limits(), options),
    admin: new ConnectionGuard(limits(ADMIN_MAX_CONNECTIONS), options),
  };
}

/**
 * What a group's upstreams really travel on: `http1` (direct traffic, plain or TLS), `fetch`
 * (outbound proxies, or forced), or `http1+fetch` when its upstreams are mixed (a transport
 * that sends https targets to fetch).
 */
export function transportName(group: Group): string {
  const kinds = new Set(
    group.members.map((m) => group.transport.kindFor(m.upstream.url.protocol)),
  );
  return (["http1", "fetch"] as const).filter((k) => kinds.has(k)).join("+");
}

function gone(forward: string, request: Request): Response {
  return toErrorResponse(
    new NoUpstreamError(`forward "${forward}" was removed by a config reload`, {
      code: "forward_removed",
    }),
    { dialect: dialectOf(splitRequestUrl(request.url).path) },
  );
}

function isLoopback(address: string): boolean {
  return address === "localhost" || address === "::1" || address.startsWith("127.");
}

/**
 * SIGINT and SIGTERM stop (drain), SIGHUP reloads; neither callback may reject. Returns what
 * removes the handlers. With `install` false (tests), nothing is installed.
 */
export function installSignals(
  install: boolean,
  stop: () => Promise<unknown>,
  reload: () => Promise<unknown>,
): () => void {
  const onStop = () => void stop();
  const onHangup = () => void reload();
  const signals: [Deno.Signal, () => void][] = install
    ? [["SIGINT", onStop], ["SIGTERM", onStop], ["SIGHUP", onHangup]]
    : [];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  return () => {
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  };
}
