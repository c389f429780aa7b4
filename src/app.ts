/**
 * The composition root: the only module that knows every part. It builds the runtime graph
 * from a loaded config, binds the listeners, wires metrics and logs, and handles signals.
 *
 * @module
 */
import { ConfigError, type LoadedConfig } from "./config/errors.ts";
import { concealSecrets, redactedConfig } from "./config/secrets.ts";
import { type Clock, type Random, systemClock } from "./deps.ts";
import type { Logger } from "./log.ts";
import { Registry } from "./metrics/registry.ts";
import { createProxyMetrics } from "./metrics/proxy_metrics.ts";
import { configNames, type ObservabilityHooks, observabilityHooks } from "./metrics/hooks.ts";
import { Runtime } from "./runtime.ts";
import { Deadlines } from "./deadlines.ts";
import { listen, type Listener, within } from "./server/listener.ts";
import { ConnectionGuard, type ConnectionLimits } from "./server/connections.ts";
import { defaultMaxConnections, openFilesLimit } from "./server/open_files.ts";
import { ForwardListeners, type ListenerPlan } from "./server/forward_listeners.ts";
import { ReloadQueue } from "./server/reload_queue.ts";
import { adminHandler } from "./server/admin.ts";
import { createGroupTransport, describeProxy, type TransportChoice } from "./upstream/client.ts";
import type { HttpClientConfig } from "./config/schema.ts";
import { AttemptAbort } from "./upstream/attempt.ts";
import { NoUpstreamError, toErrorResponse } from "./pipeline/errors.ts";
import type { Group } from "./upstream/group.ts";

/** Options of {@linkcode startApp}. */
export interface AppOptions {
  log: Logger;
  /** Loads the config again (SIGHUP, `POST /reload`, file change). */
  reload?: () => Promise<LoadedConfig>;
  /** A config file to watch: a change triggers a reload. */
  watchPath?: string;
  /** Injected for tests; the real ones by default. */
  clock?: Clock;
  random?: Random;
  fetch?: typeof fetch;
  /** Upstream transport: `auto` (default) = the HTTP/1.1 client when direct, fetch through proxies. */
  transport?: TransportChoice;
  env?: (name: string) => string | undefined;
  /** Install SIGINT/SIGTERM handlers. @default true */
  handleSignals?: boolean;
}

/** What a reload did: `ok`, or the errors that rejected it (no secrets in them). */
export interface ReloadResult {
  readonly ok: boolean;
  readonly errors: readonly string[];
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
}

/** Builds the runtime for `loaded`, binds every listener and starts serving. */
export function startApp(loaded: LoadedConfig, options: AppOptions): Promise<RunningApp> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  let current = loaded;

  for (const warning of loaded.warnings) log.warn(warning);

  const registry = new Registry();
  const hooks = observabilityHooks(createProxyMetrics(registry), { log, clock });
  const guards = connectionGuards(() => current.config.httpServer, hooks, log);
  // Real time: deadlines wait for real I/O, whatever clock the policies are given.
  const deadlines = new Deadlines();
  const deps = {
    clock,
    random: options.random ?? Math.random,
    log,
    deadlines,
    createTransport: (config: HttpClientConfig) =>
      createGroupTransport(config, {
        env,
        deadlines,
        ...(options.transport ? { choice: options.transport } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
    hooks,
  };
  let runtime = new Runtime(loaded.config, deps);
  /** Graphs replaced by a reload whose requests are still finishing. */
  const retiring = new Set<Runtime>();
  announce(runtime);

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
    if (admin && !admin.token && !isLoopback(admin.address)) {
      log.warn(
        `admin listens on ${admin.address} without a token: anyone who can reach it sees upstream state and config; set httpServer.admin.token`,
      );
    }
  }

  // Requests always go to the graph serving now, so a reload swaps it under the listener.
  const listeners = new ForwardListeners((name, request, peerIp, scheme) => {
    const forward = runtime.forwards.get(name);
    return forward ? forward.handle(request, peerIp, scheme) : gone(name);
  }, { log, guard: guards.forwards });
  // Before anything listens: a stop signal that follows the "listening" line must drain, not
  // kill. (The handlers run later, from the event loop, once everything below is set up.)
  const onStop = () => void stop();
  // reload() never rejects: a failure is its result.
  const onHangup = () => void reload();
  const signals: [Deno.Signal, () => void][] = options.handleSignals === false
    ? []
    : [["SIGINT", onStop], ["SIGTERM", onStop], ["SIGHUP", onHangup]];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  const removeSignals = () => {
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  };
  try {
    listeners.prepare(loaded.config.httpServer.forwards).commit();
  } catch (error) {
    removeSignals();
    runtime.close();
    throw error;
  }

  const adminConfig = loaded.config.httpServer.admin;
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
        runtime: () => runtime,
        redactedConfig: () => redactedConfig(current),
        token: () => current.config.httpServer.admin?.token,
        reload: () => reload(),
        registry,
        clock,
      }),
      log,
    )
    : undefined;
  if (admin) log.info(`admin listening on ${admin.scheme}://${admin.hostname}:${admin.port}`);

  const reloads = new ReloadQueue(async (): Promise<ReloadResult> => {
    try {
      return await reloadNow();
    } catch (error) {
      // A bug, not a bad config: the details go to the (redacted) log only.
      log.error("config reload failed; the current config keeps serving", { error });
      hooks.onReload("failure");
      return { ok: false, errors: ["reload failed: internal error (see the proxy's log)"] };
    }
  });
  /** Reloads one at a time; a burst is coalesced (see {@linkcode ReloadQueue}). Never rejects. */
  function reload(): Promise<ReloadResult> {
    return reloads.request();
  }

  /**
   * Loads the new config, builds its graph and binds its new listeners while the old config
   * keeps serving; only when all of that worked does it swap. Anything failing leaves the old
   * config, its graph and its listeners exactly as they were.
   */
  async function reloadNow(): Promise<ReloadResult> {
    if (!options.reload || stopping) return { ok: false, errors: ["reload is not available"] };
    let next: LoadedConfig;
    try {
      next = await options.reload();
    } catch (error) {
      // A ConfigError's messages show `${VAR}` references, never their values (see load.ts).
      return rejected(
        error instanceof ConfigError
          ? error.message.split("\n")
          : [`reload failed: ${(error as Error).message}`],
      );
    }
    if (stopping) return { ok: false, errors: ["the proxy is shutting down"] };
    const previous = runtime;
    let successor: Runtime;
    try {
      successor = new Runtime(next.config, deps, previous);
    } catch (error) {
      return rejected([`cannot build the new config: ${(error as Error).message}`], next);
    }
    let plan: ListenerPlan;
    try {
      plan = listeners.prepare(next.config.httpServer.forwards);
    } catch (error) {
      // What the new graph opened that the serving one does not share.
      successor.close([runtime, ...retiring]);
      return rejected([(error as Error).message], next);
    }
    runtime = successor;
    current = next;
    for (const warning of next.warnings) log.warn(warning);
    announce(successor, previous);
    plan.commit();
    if (
      JSON.stringify(previous.config.httpServer.admin) !==
        JSON.stringify(successor.config.httpServer.admin)
    ) {
      log.warn("admin listener settings changed: the address and port apply after a restart");
    }
    retire(previous);
    hooks.onReload("success");
    log.info("config reloaded", { source: next.source });
    return { ok: true, errors: [] };
  }

  /** Logs and counts a rejected reload; `next`'s secrets are kept out of what it answers. */
  function rejected(errors: readonly string[], next?: LoadedConfig): ReloadResult {
    const shown = next ? errors.map((e) => concealSecrets(e, next)) : errors;
    log.error("config reload rejected; the current config keeps serving", { errors: shown });
    hooks.onReload("failure");
    return { ok: false, errors: shown };
  }

  /** Closes a replaced graph's clients once its last request has finished. */
  function retire(previous: Runtime): void {
    retiring.add(previous);
    previous.drained().then(() => {
      if (!retiring.delete(previous)) return; // closed by stop()
      // A group carried over by a reload is shared: the last graph using it closes it.
      previous.close([runtime, ...retiring]);
      // Its requests are over: what no live config names leaves /metrics.
      hooks.forget(
        configNames(previous.config),
        [runtime, ...retiring].map((r) => configNames(r.config)),
      );
    });
  }

  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((resolve) => resolveFinished = resolve);
  let stopping: Promise<void> | undefined;

  const stop = () => {
    stopping ??= (async () => {
      const drainMs = runtime.config.httpServer.shutdownTimeout;
      log.info(`shutting down: draining in-flight requests for up to ${drainMs}ms`);
      watcher?.close();
      removeSignals();
      const drained = listeners.shutdown();
      if (!await within(drained, drainMs)) {
        const open = [runtime, ...retiring].reduce((n, r) => n + r.inFlight, 0);
        log.warn(`drain deadline passed: ending ${open} request(s) still open`);
        const reason = new AttemptAbort("shutdown", "the proxy is shutting down");
        for (const r of [runtime, ...retiring]) r.shutdown(reason);
        await within(drained, 5_000);
      }
      await admin?.shutdown();
      for (const r of [...retiring]) {
        retiring.delete(r);
        r.close([runtime, ...retiring]);
      }
      runtime.close();
      guards.forwards.close();
      guards.admin.close();
      log.info("stopped");
      resolveFinished(0);
    })();
    return stopping;
  };

  const watcher = options.watchPath ? watchConfig(options.watchPath, reload, log) : undefined;

  return Promise.resolve({
    forwards: listeners.byForward,
    admin,
    registry,
    runtime: () => runtime,
    reload,
    stop,
    finished,
  });
}

/** Connections admitted per listener; the admin has its own few, so a flood never locks it out. */
const ADMIN_MAX_CONNECTIONS = 64;

/**
 * The connection guards of the forwards (all together: they share the process's descriptors)
 * and of the admin listener. Limits are read from the config serving now, so a reload applies
 * to the connections that follow.
 */
function connectionGuards(
  httpServer: () => LoadedConfig["config"]["httpServer"],
  hooks: ObservabilityHooks,
  log: Logger,
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
      maxConnections: max ?? config.maxConnections ?? fallback,
    };
  };
  const options = { onClose: hooks.onConnectionClosed, onOpenChange: hooks.onConnectionsOpen };
  return {
    forwards: new ConnectionGuard(limits(), options),
    admin: new ConnectionGuard(limits(ADMIN_MAX_CONNECTIONS), options),
  };
}

/**
 * What a group's upstreams really travel on: `http1`, `fetch` (https targets always go through
 * Deno's client), or `http1+fetch` when its upstreams are mixed.
 */
export function transportName(group: Group): string {
  const kinds = new Set(
    group.members.map((m) => group.transport.kindFor(m.upstream.url.protocol)),
  );
  return (["http1", "fetch"] as const).filter((k) => kinds.has(k)).join("+");
}

function gone(forward: string): Response {
  return toErrorResponse(
    new NoUpstreamError(`forward "${forward}" was removed by a config reload`, {
      code: "forward_removed",
    }),
  );
}

function isLoopback(address: string): boolean {
  return address === "localhost" || address === "::1" || address.startsWith("127.");
}

/**
 * Reloads when the config file changes (debounced: editors write in several steps). `reload`
 * must not reject: nothing here could handle it.
 */
function watchConfig(path: string, reload: () => unknown, log: Logger): Deno.FsWatcher | undefined {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(path);
  } catch (error) {
    log.warn(`cannot watch ${path} for changes; reload with SIGHUP instead`, { error });
    return undefined;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    for await (const event of watcher) {
      if (event.kind !== "modify" && event.kind !== "create") continue;
      clearTimeout(timer);
      timer = setTimeout(() => {
        log.info(`${path} changed: reloading`);
        reload();
      }, 300);
    }
    clearTimeout(timer);
  })().catch(() => {});
  return watcher;
}
