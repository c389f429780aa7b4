/**
 * The Redis connection behind {@linkcode RemoteLimits}: ioredis (npm), loaded by `app.ts` only
 * when `state.store` is `redis`, since any npm module that uses Node's APIs brings Deno's Node
 * compatibility layer into the process.
 *
 * Why ioredis: scripts are defined once as commands (`defineCommand`) and sent as EVALSHA with
 * the EVAL fallback on NOSCRIPT built in; `commandTimeout` bounds every call; with the offline
 * queue off, a call while disconnected fails at once instead of waiting; it reconnects by
 * itself. (node-redis offers the same pieces, with scripts and timeouts spread over more set-up.)
 *
 * @module
 */
import { Redis } from "ioredis";
import type { StateConfig } from "../config/schema.ts";
import type { Clock } from "../deps.ts";
import type { Logger } from "../log.ts";
import { RemoteLimits, type ScriptRunner, type StoreOp } from "./remote_limits.ts";
import { type Script, SCRIPTS } from "./redis_scripts.ts";

/** Options of {@linkcode openRedisStore}. */
export interface RedisStoreOptions {
  clock: Clock;
  log: Logger;
  onCall?: (op: StoreOp, seconds: number, failed: boolean) => void;
  /** Longest wait for the first connection at start-up (ms); then it starts degraded. */
  connectWaitMs?: number;
}

/**
 * Connects to `state.redis` and returns the limits kept there. An unreachable server does not
 * stop the start: the store starts down (degraded, per `onStoreError`) and connects when it can.
 */
export async function openRedisStore(
  state: StateConfig,
  options: RedisStoreOptions,
): Promise<RemoteLimits> {
  const { timeout } = state.redis;
  const client = new Redis(state.redis.url, {
    commandTimeout: timeout,
    connectTimeout: Math.max(1_000, timeout),
    // A call while disconnected fails at once: onStoreError decides, nothing waits in a queue.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    // Reconnect quickly at first, then every second: /ready recovers soon after the server.
    retryStrategy: (times: number) => Math.min(50 * times, 1_000),
    lazyConnect: true,
    // Calls made in the same tick (concurrent requests) go out in one write.
    enableAutoPipelining: true,
  });
  // Connection errors are reported through the calls that fail; the client keeps retrying.
  client.on("error", () => {});
  const commands = client as unknown as Record<
    string,
    (...args: (string | number)[]) => Promise<unknown>
  >;
  for (const script of SCRIPTS) {
    client.defineCommand(script.name, { numberOfKeys: script.keys, lua: script.lua });
  }
  const connected = client.connect().then(() => true, () => false);
  const ok = await Promise.race([
    connected,
    new Promise<false>((resolve) => {
      const timer = options.clock.after(options.connectWaitMs ?? 2_000, () => resolve(false), {
        unref: true,
      });
      void connected.then(() => timer.cancel());
    }),
  ]);
  const where = redactedUrl(state.redis.url);
  if (ok) options.log.info(`limits and budgets are shared in Redis at ${where}`);
  else {
    options.log.warn(
      `Redis at ${where} is not reachable yet: ${
        state.onStoreError === "reject" ? "requests are refused (503)" : "limits apply per instance"
      } until it is`,
    );
  }
  const runner: ScriptRunner = {
    run: (script: Script, keys, args) => commands[script.name]!(...keys, ...args),
    ping: () => client.ping(),
    close: async () => {
      client.disconnect(false);
      await connected;
    },
  };
  return new RemoteLimits({
    runner,
    prefix: state.redis.prefix,
    onStoreError: state.onStoreError,
    clock: options.clock,
    log: options.log,
    ...(options.onCall ? { onCall: options.onCall } : {}),
  });
}

/** The URL without its password, for logs. */
function redactedUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return "(invalid URL)";
  }
}
