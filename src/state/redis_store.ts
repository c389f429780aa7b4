/**
 * The Redis connection behind {@linkcode RemoteLimits}: ioredis (npm), loaded by `app.ts` only
 * when `state.store` is `redis`, since any npm module that uses Node's APIs brings Deno's Node
 * compatibility layer into the process.
 *
 * Every check goes out in a batch ({@linkcode ScriptBatcher}): one run of the batch script
 * carries the checks that queued while the previous batch was out.
 *
 * Why ioredis: the script is defined once as a command (`defineCommand`) and sent as EVALSHA
 * with the EVAL fallback on NOSCRIPT built in; with the offline
 * queue off, a call while disconnected fails at once instead of waiting; it reconnects by
 * itself. (node-redis offers the same pieces, with scripts and timeouts spread over more set-up.)
 *
 * @module
 */
import { Redis } from "ioredis";
import type { StateConfig } from "../config/schema.ts";
import type { Clock, Timer } from "../deps.ts";
import type { Logger } from "../log.ts";
import { RemoteLimits, type ScriptRunner, type StoreOp } from "./remote_limits.ts";
import type { LimitState } from "./limit_state.ts";
import { BATCH, batchArguments } from "./redis_scripts.ts";
import { ScriptBatcher, StoreNotSentError, STUCK_AFTER } from "./script_batch.ts";

/** How ioredis's message starts when it refuses a command without writing it. */
const NOT_WRITABLE = "Stream isn't writeable";

/** Options of {@linkcode openRedisStore}. */
export interface RedisStoreOptions {
  clock: Clock;
  log: Logger;
  onCall?: (op: StoreOp, seconds: number, failed: boolean) => void;
  /** Longest wait for the first connection at start-up (ms); then it starts degraded. */
  connectWaitMs?: number;
  /** Where limits the store does not keep live, and the fallback (see `RemoteLimits`). */
  local?: LimitState;
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
  // `timeout` is kept by the batcher (and the ping's own timer), not by ioredis's
  // commandTimeout: that arms a Node timer per command, which on Deno's Node layer cost about
  // 40 µs of CPU per call (measured with PING round trips).
  const client = new Redis(state.redis.url, {
    connectTimeout: Math.max(1_000, timeout),
    // A call while disconnected fails at once: onStoreError decides, nothing waits in a queue.
    enableOfflineQueue: false,
    // A connection that drops fails what it carried: a check is never sent twice.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableReadyCheck: false,
    // Reconnect quickly at first, then every second: /ready recovers soon after the server.
    retryStrategy: (times: number) => Math.min(50 * times, 1_000),
    lazyConnect: true,
    // The batcher already sends one command for many checks; ioredis's own pipelining would
    // only add a deferred flush per call (it doubled the CPU of a lone request's round trip).
    enableAutoPipelining: false,
  });
  // Redis stopped answering (batches in a row without any answer, a ping, or a handshake that
  // does not end): drop the connection so that nothing piles up behind it; ioredis connects
  // again by itself.
  const reset = () => {
    if (client.status === "ready" || client.status === "connect") client.disconnect(true);
  };
  // connectTimeout bounds the TCP connect only; the handshake after it (HELLO) gets as long.
  let handshake: Timer | undefined;
  client.on("connect", () => {
    handshake?.cancel();
    handshake = options.clock.after(Math.max(1_000, timeout), () => {
      handshake = undefined;
      if (client.status === "connect") reset();
    }, { unref: true });
  });
  client.on("ready", () => {
    handshake?.cancel();
    handshake = undefined;
  });
  // Connection errors are reported through the calls that fail; the client keeps retrying.
  client.on("error", () => {});
  // No numberOfKeys: each batch passes its own key count first.
  client.defineCommand(BATCH.name, { lua: BATCH.lua });
  const runBatch = (client as unknown as Record<
    string,
    (...args: (string | number)[]) => Promise<readonly unknown[]>
  >)[BATCH.name]!.bind(client);
  const batcher = new ScriptBatcher({
    send: (calls) =>
      runBatch(...batchArguments(calls)).catch((error: unknown) => {
        // Refused before writing (not connected, offline queue off): it surely did not run.
        if (error instanceof Error && error.message.startsWith(NOT_WRITABLE)) {
          throw new StoreNotSentError(error.message);
        }
        throw error;
      }),
    clock: options.clock,
    timeoutMs: timeout,
    onStuck: reset,
  });
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
  /** Pings in a row that timed out: as many as batches make the connection stuck. */
  let silentPings = 0;
  const runner: ScriptRunner = {
    run: (script, keys, args) => batcher.run(script, keys, args),
    ping: () =>
      withTimeout(client.ping(), timeout, options.clock, () => {
        if (++silentPings >= STUCK_AFTER) {
          silentPings = 0;
          reset();
        }
      }).then((pong) => {
        silentPings = 0;
        return pong;
      }),
    close: async () => {
      handshake?.cancel();
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
    ...(options.local ? { local: options.local } : {}),
    ...(ok ? {} : { downAtStart: `Redis at ${where} was not reachable at start-up` }),
  });
}

/** `promise`, or a rejection after `ms` (then `onTimeout` runs). */
function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  clock: Clock,
  onTimeout: () => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = clock.after(ms, () => {
      onTimeout();
      reject(new Error(`Redis did not answer within ${ms}ms`));
    }, { unref: true });
    promise.then((value) => {
      timer.cancel();
      resolve(value);
    }, (error) => {
      timer.cancel();
      reject(error);
    });
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
