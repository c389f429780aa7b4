/**
 * The composition root: the only module that knows every part. It builds the runtime graph
 * from a loaded config, binds the listeners, wires metrics and logs, and handles signals.
 *
 * @module
 */
import type { LoadedConfig } from "./config/load.ts";
import { type Clock, type Random, systemClock } from "./deps.ts";
import type { Logger } from "./log.ts";
import { Registry } from "./metrics/registry.ts";
import { createProxyMetrics } from "./metrics/proxy_metrics.ts";
import { observabilityHooks } from "./metrics/hooks.ts";
import { Runtime } from "./runtime.ts";
import { listen, type Listener, within } from "./server/listener.ts";
import { adminHandler } from "./server/admin.ts";
import { describeProxy } from "./upstream/client.ts";
import { AttemptAbort } from "./upstream/attempt.ts";
import type { Group } from "./upstream/group.ts";
import type { Upstream } from "./upstream/upstream.ts";

/** Options of {@linkcode startApp}. */
export interface AppOptions {
  log: Logger;
  /** Loads the config again (SIGHUP). */
  reload?: () => Promise<LoadedConfig>;
  /** Injected for tests; the real ones by default. */
  clock?: Clock;
  random?: Random;
  fetch?: typeof fetch;
  env?: (name: string) => string | undefined;
  /** Install SIGINT/SIGTERM handlers. @default true */
  handleSignals?: boolean;
}

/** A running proxy. */
export interface RunningApp {
  /** Bound listeners by forward name (ports resolved when configured as 0). */
  readonly forwards: ReadonlyMap<string, Listener>;
  readonly admin: Listener | undefined;
  readonly registry: Registry;
  /** The graph currently serving. */
  runtime(): Runtime;
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
  const config = loaded.config;

  for (const warning of loaded.warnings) log.warn(warning);

  const registry = new Registry();
  const metrics = createProxyMetrics(registry);
  let runtime: Runtime;
  const groupsOf = (u: Upstream): Group[] =>
    [...runtime.groups.values()].filter((g) => g.members.some((m) => m.upstream === u));
  runtime = new Runtime(config, {
    clock,
    random: options.random ?? Math.random,
    fetch: options.fetch ?? fetch,
    log,
    hooks: observabilityHooks(metrics, { log, clock, groupsOf }),
  });
  for (const group of runtime.groups.values()) {
    for (const m of group.members) metrics.breakerState.labels(group.name, m.name).set(0);
    log.info(`group "${group.name}": ${describeProxy(group.config.httpClient, env)}`, {
      strategy: group.config.balance.strategy,
      upstreams: group.members.map((m) => m.name),
    });
  }

  const forwards = new Map<string, Listener>();
  for (const [name, forward] of runtime.forwards) {
    const f = forward.config;
    // Requests always go to the runtime serving now, so a reload can swap it.
    const listener = listen(
      name,
      { hostname: f.address, port: f.port },
      (request, peerIp) => runtime.forwards.get(name)!.handle(request, peerIp),
      log,
    );
    forwards.set(name, listener);
    log.info(`forward "${name}" listening on http://${listener.hostname}:${listener.port}`, {
      defaultGroup: f.defaultGroup,
    });
  }

  const adminConfig = config.httpServer.admin;
  const admin = adminConfig
    ? listen(
      "admin",
      { hostname: adminConfig.address, port: adminConfig.port },
      adminHandler({ runtime: () => runtime, registry, clock }),
      log,
    )
    : undefined;
  if (admin) log.info(`admin listening on http://${admin.hostname}:${admin.port}`);

  let resolveFinished!: (code: number) => void;
  const finished = new Promise<number>((resolve) => resolveFinished = resolve);
  let stopping: Promise<void> | undefined;

  const stop = () => {
    stopping ??= (async () => {
      const drainMs = config.httpServer.shutdownTimeout;
      log.info(`shutting down: draining in-flight requests for up to ${drainMs}ms`);
      const drained = Promise.all([...forwards.values()].map((l) => l.shutdown()));
      if (!await within(drained, drainMs)) {
        log.warn(`drain deadline passed: ending ${runtime.inflight.size} request(s) still open`);
        runtime.abortAll(new AttemptAbort("shutdown", "the proxy is shutting down"));
        await within(drained, 5_000);
      }
      await admin?.shutdown();
      runtime.close();
      removeSignals();
      log.info("stopped");
      resolveFinished(0);
    })();
    return stopping;
  };

  const onSignal = () => void stop();
  const signals: Deno.Signal[] = options.handleSignals === false ? [] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  const removeSignals = () => {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  };

  return Promise.resolve({
    forwards,
    admin,
    registry,
    runtime: () => runtime,
    stop,
    finished,
  });
}
