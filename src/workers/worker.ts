/**
 * One serving worker (a Deno `Worker` thread): the whole proxy for the forwards — its own graph,
 * transports, breakers and metrics — on listeners bound with `SO_REUSEPORT`, with the limits'
 * state in the memory every worker shares. The main thread sends the config (at start and on
 * each reload), asks for metrics and state for the admin API, and tells it to stop.
 *
 * @module
 */
import type { LoadedConfig } from "../config/errors.ts";
import { configSecrets } from "../config/secrets.ts";
import { type Clock, systemClock } from "../deps.ts";
import { batchedStderr, createLogger, type Logger, type LogLevel } from "../log.ts";
import { type RunningApp, startApp } from "../app.ts";
import { emptyGroups, keysState, upstreamState } from "../server/admin.ts";
import { SharedLimits } from "../state/shared_limits.ts";
import type { FromWorker, LogRecord, ToWorker, WorkerInit } from "./protocol.ts";

/** The worker side of the message channel (the worker's global scope). */
export interface WorkerPort {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}

/** Whether this code runs in a `Worker` (main.ts starts either way). */
export function inWorkerThread(): boolean {
  // deno-lint-ignore no-explicit-any
  const scope = (globalThis as any).WorkerGlobalScope;
  return typeof scope === "function" && globalThis instanceof scope;
}

/** Serves as a worker: waits for its init message, then answers the main thread. */
export function runWorker(port: WorkerPort = self as unknown as WorkerPort): void {
  let app: RunningApp | undefined;
  let clock: Clock = systemClock;
  let next: LoadedConfig | undefined;
  let log: Logger | undefined;
  let flushLog: () => Promise<void> = () => Promise.resolve();
  let crashable = false;
  const reply = (seq: number, value: unknown) => port.postMessage({ type: "answer", seq, value });

  port.onmessage = async (event) => {
    const message = event.data;
    switch (message.type) {
      case "init": {
        crashable = message.allowCrash === true;
        const made = makeLogger(message, port);
        log = made.log;
        flushLog = made.drain;
        try {
          const limits = new SharedLimits(message.limits);
          // Every thread's performance.now() counts from its own start: shared times must not.
          const shift = performance.timeOrigin - message.timeOrigin;
          clock = { ...systemClock, now: () => performance.now() + shift };
          app = await start(message, { log, clock, limits }, () => {
            if (!next) throw new Error("no config to reload");
            return Promise.resolve(next);
          }, made.secrets);
          made.startBatching();
          port.postMessage({ type: "started", ok: true });
        } catch (error) {
          log.error(`cannot start: ${(error as Error).message}`);
          await flushLog();
          port.postMessage({ type: "started", ok: false, error: (error as Error).message });
        }
        return;
      }
      case "reload": {
        next = message.loaded;
        const result = app ? await app.reload() : { ok: false, errors: ["not started"] };
        reply(message.seq, result);
        return;
      }
      case "query":
        reply(message.seq, app ? query(app, clock, message.what) : undefined);
        return;
      case "stop":
        await app?.stop();
        await flushLog();
        reply(message.seq, true);
        return;
      case "crash":
        if (crashable) {
          // Outside the handler's promise: an uncaught error ends the worker, as a bug would.
          setTimeout(() => {
            throw new Error("worker crash requested by a test");
          });
        }
        return;
    }
  };
}

async function start(
  init: WorkerInit,
  { log, clock, limits }: { log: Logger; clock: Clock; limits: SharedLimits },
  reload: () => Promise<LoadedConfig>,
  secrets: Set<string> | undefined,
): Promise<RunningApp> {
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("unhandled rejection (a bug; the worker keeps serving)", { error: event.reason });
  });
  return await startApp(init.loaded, {
    log,
    clock,
    reload: async () => {
      const next = await reload();
      if (secrets) { for (const secret of configSecrets(next)) secrets.add(secret); }
      return next;
    },
    handleSignals: false,
    ...(init.transport ? { transport: init.transport } : {}),
    worker: { id: init.id, limits, budgets: limits.budgets(), of: init.workers },
  });
}

/** The worker's part of an admin answer. */
function query(app: RunningApp, clock: Clock, what: string): unknown {
  const runtime = app.runtime();
  switch (what) {
    case "metrics":
      return app.registry.render();
    case "keys":
      return keysState(runtime, clock);
    case "upstreams":
      return upstreamState(runtime, clock);
    case "ready":
      return emptyGroups(runtime, clock);
    case "store":
      return app.store?.();
  }
  return undefined;
}

/**
 * The worker's logger: its own batched stderr writer when the main thread gave settings (the
 * access log never crosses threads), else records posted to the main thread every 50 ms.
 */
function makeLogger(init: WorkerInit, port: WorkerPort): {
  log: Logger;
  secrets: Set<string> | undefined;
  startBatching(): void;
  drain(): Promise<void>;
} {
  if (init.log) {
    const secrets = configSecrets(init.loaded);
    const sink = batchedStderr({ clock: systemClock });
    const log = createLogger({
      level: init.log.level,
      json: init.log.json,
      secrets,
      write: sink.write,
    }).child({ worker: init.id });
    return { log, secrets, startBatching: sink.startBatching, drain: sink.drain };
  }
  let pending: LogRecord[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (pending.length === 0) return;
    const records = pending;
    pending = [];
    try {
      port.postMessage({ type: "log", records });
    } catch {
      // A field that cannot be cloned: send the lines' text.
      port.postMessage({
        type: "log",
        records: records.map((r) => ({ level: r.level, message: r.message })),
      });
    }
  };
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    pending.push({ level, message, fields: { worker: init.id, ...fields } });
    timer ??= setTimeout(flush, 50);
  };
  const make = (context: Record<string, unknown>): Logger => ({
    debug: (m, f) => emit("debug", m, { ...context, ...f }),
    info: (m, f) => emit("info", m, { ...context, ...f }),
    warn: (m, f) => emit("warn", m, { ...context, ...f }),
    error: (m, f) => emit("error", m, { ...context, ...f }),
    enabled: () => true,
    child: (fields) => make({ ...context, ...fields }),
  });
  return {
    log: make({}),
    secrets: undefined,
    startBatching: () => {},
    drain: () => {
      clearTimeout(timer);
      flush();
      return Promise.resolve();
    },
  };
}
