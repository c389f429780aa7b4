/**
 * Limits kept in a store shared by instances (Redis): per-client-IP buckets, client keys'
 * request rate, tokens per minute and budget, upstreams' rate limits and 429 cool-downs, each
 * check one script run (one round trip, atomic in the store). Breakers stay in each process;
 * the process's own limits ({@linkcode memoryLimits}) are the fallback.
 *
 * Store trouble never stops traffic silently: a failed or timed-out call is counted
 * (`onCall`), marks the store down (`health()`, which `/ready` reports) and, by
 * `onStoreError`, falls back to this process's own limits for that check (`local`) or answers
 * 503 `store_unavailable` (`reject`). The next call that succeeds, or the background ping
 * (every second while down or idle), marks it up again.
 *
 * This module knows nothing of the client library: it runs {@linkcode Script}s through a
 * {@linkcode ScriptRunner} (`redis_store.ts` makes one from ioredis; tests use fakes).
 *
 * @module
 */
import type { Clock, Timer } from "../deps.ts";
import type { Logger } from "../log.ts";
import {
  KeyedLimiter,
  type KeyedLimiterOptions,
  type LimitDecision,
  type TokenBucketOptions,
} from "../resilience/token_bucket.ts";
import { StoreUnavailableError } from "../pipeline/errors.ts";
import { periodStart } from "../keys/budget.ts";
import {
  type ClientLimiter,
  type CoolDown,
  type KeyLimits,
  type KeyLimitsConfig,
  type KeyVerdict,
  type LimitState,
  memoryLimits,
  type RateBucket,
  type TokenAllowance,
  type UpstreamLimits,
  type UpstreamVerdict,
} from "./limit_state.ts";
import {
  BUCKET_TAKE,
  COOL_DOWNS_READ,
  KEY_ADMIT,
  KEY_CHARGE,
  type Script,
  UPSTREAM_ACQUIRE,
  UPSTREAM_COOL_DOWN,
} from "./redis_scripts.ts";
import { StoreNotSentError, StoreOperationError } from "./script_batch.ts";

/** Runs scripts in the store. Every call is bounded by the store's timeout (it rejects then). */
export interface ScriptRunner {
  run(
    script: Script,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown>;
  ping(): Promise<unknown>;
  /** Closes the connection (no reconnect after). */
  close(): Promise<void>;
}

/** The operations counted in the store's metrics (a fixed set: the `op` label). */
export type StoreOp =
  | "ip"
  | "key_admit"
  | "key_charge"
  | "upstream"
  | "upstream_cool_down"
  | "cool_downs"
  | "ping";

/** The store as `/ready` sees it. */
export type StoreHealth =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: string; readonly sinceWallMs: number };

/** Options of {@linkcode RemoteLimits}. */
export interface RemoteLimitsOptions {
  runner: ScriptRunner;
  /** Prefix of every key (`state.redis.prefix`). */
  prefix: string;
  /** What a failed call does: this process's limits, or 503. */
  onStoreError: "local" | "reject";
  clock: Clock;
  log: Logger;
  /** Every call: how long it took (seconds) and whether it failed (metrics). */
  onCall?: (op: StoreOp, seconds: number, failed: boolean) => void;
  /** Interval of the background ping while the store is down or idle (ms). @default 1000 */
  pingIntervalMs?: number;
  /** How often upstreams' cool-downs are read in the background (ms). @default 250 */
  coolDownReadMs?: number;
  /**
   * The limits used where the store is not (per-upstream buckets, a key's fallback) and when
   * it fails: this thread's memory by default, a process's shared memory with workers.
   */
  local?: LimitState;
  /** Why the store is down from the start (it could not be reached at start-up). */
  downAtStart?: string;
}

/** Per-client-IP buckets this process keeps for a fallback at most (bounded, evicting). */
const FALLBACK_MAX_KEYS = 10_000;

/** Limits in a shared store, with this process's memory as the fallback. */
export class RemoteLimits implements LimitState {
  readonly #runner: ScriptRunner;
  readonly #prefix: string;
  readonly #reject: boolean;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #onCall: RemoteLimitsOptions["onCall"];
  readonly #pingMs: number;
  #down: { error: string; sinceWallMs: number } | undefined;
  /** Monotonic ms of the last call that got an answer. */
  #lastOk = -Infinity;
  #timer: Timer | undefined;
  #closed = false;
  /** Charges the store did not take (it was down): added when it is back. Bounded by keys. */
  readonly #pending = new Map<RemoteKeyLimits, { tokens: number; wallNow: number }>();
  /**
   * Upstreams' cool-down keys and who mirrors each (the newest upstream of that name: a reload
   * replaces it). Bounded by the upstream names configured since start.
   */
  readonly #coolDowns = new Map<string, (until: number) => void>();
  readonly #coolDownReadMs: number;
  #coolDownTimer: Timer | undefined;
  readonly #local: LimitState | undefined;

  constructor(options: RemoteLimitsOptions) {
    this.#runner = options.runner;
    this.#prefix = options.prefix;
    this.#reject = options.onStoreError === "reject";
    this.#clock = options.clock;
    this.#log = options.log;
    this.#onCall = options.onCall;
    this.#pingMs = options.pingIntervalMs ?? 1_000;
    this.#coolDownReadMs = options.coolDownReadMs ?? 250;
    this.#local = options.local;
    if (options.downAtStart !== undefined) {
      this.#down = { error: options.downAtStart, sinceWallMs: this.#clock.wallNow() };
    }
    const local = options.local;
    if (local?.coolDown) this.coolDown = (id) => local.coolDown!(id);
    this.#schedule();
  }

  /** Up, or down since when and why. */
  health(): StoreHealth {
    return this.#down ? { ok: false, ...this.#down } : { ok: true };
  }

  /** Whether a failed call answers 503 (`onStoreError: reject`). */
  get rejects(): boolean {
    return this.#reject;
  }

  // Per-upstream buckets and token rates stay local (used for a key's fallback too).
  bucket(id: string, options: TokenBucketOptions): RateBucket {
    return (this.#local ?? memoryLimits).bucket(id, options);
  }

  tokenRate(id: string, perMinute: number): TokenAllowance {
    return (this.#local ?? memoryLimits).tokenRate(id, perMinute);
  }

  /**
   * An upstream's mirror of the cool-downs (its own, another instance's): the process's shared
   * one with workers, so one worker's 429 holds for all of them while the store is down too.
   * Absent in one process: the upstream keeps it in a field.
   */
  readonly coolDown?: (id: string) => CoolDown;

  keyed(
    id: string,
    options: KeyedLimiterOptions,
  ): { take(key: string, now: number): Promise<LimitDecision> } {
    return new RemoteKeyedLimiter(
      this,
      `${this.#prefix}ip:${id}:${options.perSecond}:${options.burst}:`,
      options,
      // The fallback: this thread's own bounded limiter, or the process's shared one.
      this.#local?.keyed(id, options) ??
        new KeyedLimiter({ ...options, maxKeys: FALLBACK_MAX_KEYS }),
    );
  }

  keyLimits(config: KeyLimitsConfig): KeyLimits | undefined {
    if (!config.ratelimit && !config.tokens && !config.budget) return undefined;
    return new RemoteKeyLimits(this, `${this.#prefix}key:${config.name}:`, config);
  }

  upstreamLimits(name: string, ratelimit: TokenBucketOptions | undefined): UpstreamLimits {
    return new RemoteUpstreamLimits(this, `${this.#prefix}upstream:${name}:`, ratelimit);
  }

  /**
   * Runs `script`; undefined when it failed and `onStoreError` is `local`. Throws
   * {@linkcode StoreUnavailableError} with `reject` (`fallible`: never throws).
   */
  async run(
    op: StoreOp,
    script: Script,
    keys: readonly string[],
    args: readonly (string | number)[],
    fallible = false,
  ): Promise<unknown> {
    const outcome = await this.attempt(op, script, keys, args);
    if (outcome.ok) return outcome.answer;
    if (this.#reject && !fallible) {
      throw new StoreUnavailableError(
        "the shared limit store is unavailable: the request cannot be checked against its limits",
        { code: "store_unavailable", cause: outcome.error },
      );
    }
    return undefined;
  }

  /**
   * Runs `script` and says how it went; never throws. A failure says whether the operation may
   * still have run in the store (it was sent, and the answer did not come in time or the
   * connection dropped): a charge that may have counted is not sent again.
   */
  async attempt(
    op: StoreOp,
    script: Script,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<
    { ok: true; answer: unknown } | { ok: false; error: unknown; maybeApplied: boolean }
  > {
    const started = this.#clock.now();
    try {
      const answer = await this.#runner.run(script, keys, args);
      this.#succeeded(op, started);
      return { ok: true, answer };
    } catch (error) {
      this.#failed(op, started, error);
      return { ok: false, error, maybeApplied: !(error instanceof StoreNotSentError) };
    }
  }

  /** Keeps a charge the store did not take, for when it is back. */
  defer(key: RemoteKeyLimits, tokens: number, wallNow: number): void {
    const seen = this.#pending.get(key);
    this.#pending.set(key, { tokens: (seen?.tokens ?? 0) + tokens, wallNow });
  }

  /** Stops the ping and closes the connection. */
  /** Mirrors the cool-down at `key` into `onCoolDown` (read every `coolDownReadMs`). */
  watchCoolDown(key: string, onCoolDown: (until: number) => void): void {
    this.#coolDowns.set(key, onCoolDown);
    if (!this.#coolDownTimer && !this.#closed) this.#readCoolDowns();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#coolDownTimer?.cancel();
    this.#coolDownTimer = undefined;
    await this.#runner.close();
  }

  #succeeded(op: StoreOp, started: number): void {
    const now = this.#clock.now();
    this.#onCall?.(op, (now - started) / 1000, false);
    this.#lastOk = now;
    if (this.#down) {
      this.#log.info("the shared limit store answers again: limits are shared again");
      this.#down = undefined;
      this.#flushPending();
    }
  }

  #failed(op: StoreOp, started: number, error: unknown): void {
    this.#onCall?.(op, (this.#clock.now() - started) / 1000, true);
    // One operation Redis could not run (an unreadable value under one key) says nothing of
    // the store: counted, but the store stays up.
    if (error instanceof StoreOperationError) return;
    const message = error instanceof Error ? error.message : String(error);
    if (!this.#down) {
      this.#log.warn(
        `the shared limit store failed (${message}): ${
          this.#reject ? "requests are refused (503)" : "each instance applies its own limits"
        } until it answers again`,
      );
      this.#down = { error: message, sinceWallMs: this.#clock.wallNow() };
    } else this.#down = { ...this.#down, error: message };
  }

  #flushPending(): void {
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const [key, { tokens, wallNow }] of pending) void key.charge(tokens, wallNow);
  }

  /** Reads every watched cool-down in one call, then again after `coolDownReadMs`. */
  #readCoolDowns(): void {
    this.#coolDownTimer = this.#clock.after(this.#coolDownReadMs, async () => {
      const keys = [...this.#coolDowns.keys()];
      // While the store is down the ping finds out when it is back; no reads meanwhile.
      const left = this.#down
        ? undefined
        : await this.run("cool_downs", COOL_DOWNS_READ, keys, [], true);
      if (Array.isArray(left)) {
        const now = this.#clock.now();
        keys.forEach((key, i) => {
          const ms = Number(left[i]);
          if (ms > 0) this.#coolDowns.get(key)?.(now + ms);
        });
      }
      if (!this.#closed) this.#readCoolDowns();
    }, { unref: true });
  }

  /** Pings while down (to notice it is back without traffic) or idle (to notice it went). */
  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.after(this.#pingMs, async () => {
      if (this.#down || this.#clock.now() - this.#lastOk >= this.#pingMs) {
        const started = this.#clock.now();
        try {
          await this.#runner.ping();
          this.#succeeded("ping", started);
        } catch (error) {
          this.#failed("ping", started, error);
        }
      }
      this.#schedule();
    }, { unref: true });
  }
}

/** Per-client-IP buckets of one forward in the store; this process's own when it fails. */
class RemoteKeyedLimiter implements ClientLimiter {
  readonly #store: RemoteLimits;
  readonly #prefix: string;
  readonly #args: readonly [number, number];
  readonly #burst: number;
  readonly #perMs: number;
  readonly #fallback: ClientLimiter;

  constructor(
    store: RemoteLimits,
    prefix: string,
    options: KeyedLimiterOptions,
    fallback: ClientLimiter,
  ) {
    this.#store = store;
    this.#prefix = prefix;
    this.#burst = options.burst;
    this.#perMs = options.perSecond / 1000;
    this.#args = [this.#perMs, options.burst];
    this.#fallback = fallback;
  }

  async take(key: string, now: number): Promise<LimitDecision> {
    const answer = await this.#store.run("ip", BUCKET_TAKE, [this.#prefix + key], this.#args);
    if (answer === undefined) return this.#fallback.take(key, now);
    const [allowed, left] = answer as [number, string];
    const tokens = Number(left);
    const toFull = this.#burst - tokens;
    const toOne = 1 - tokens;
    return {
      allowed: allowed === 1,
      limit: this.#burst,
      remaining: Math.floor(tokens + 1e-9),
      resetMs: toFull <= 1e-9 ? 0 : Math.ceil(toFull / this.#perMs),
      retryAfterMs: allowed === 1 || toOne <= 1e-9 ? 0 : Math.ceil(toOne / this.#perMs),
    };
  }
}

const VERDICTS = ["admitted", "budget", "tokens", "requests"] as const;

/** A client key's limits in the store (see {@linkcode KEY_ADMIT}, {@linkcode KEY_CHARGE}). */
export class RemoteKeyLimits implements KeyLimits {
  readonly #store: RemoteLimits;
  readonly #config: KeyLimitsConfig;
  readonly #prefix: string;
  readonly #requestKey: string;
  readonly #tokenKey: string;
  readonly #admitArgs: readonly (string | number)[];

  constructor(store: RemoteLimits, prefix: string, config: KeyLimitsConfig) {
    this.#store = store;
    this.#config = config;
    this.#prefix = prefix;
    const r = config.ratelimit;
    const t = config.tokens;
    // The settings are in the names: a changed limit starts afresh, as a new object would.
    this.#requestKey = r ? `${prefix}req:${r.perSecond}:${r.burst}` : `${prefix}req`;
    this.#tokenKey = t ? `${prefix}tpm:${t.perMinute}` : `${prefix}tpm`;
    this.#admitArgs = [
      r ? r.perSecond / 1000 : "",
      r ? r.burst : "",
      t ? t.perMinute / 60_000 : "",
      t ? t.perMinute : "",
      config.budget ? config.budget.tokens : "",
    ];
  }

  /** The budget counter of the period containing `wallNow` (budget usage survives changes). */
  #budgetKey(wallNow: number): string {
    const budget = this.#config.budget;
    return budget
      ? `${this.#prefix}budget:${budget.period}:${periodStart(budget.period, wallNow)}`
      : `${this.#prefix}budget`;
  }

  async admit(wallNow: number): Promise<KeyVerdict | undefined> {
    const answer = await this.#store.run(
      "key_admit",
      KEY_ADMIT,
      [this.#requestKey, this.#tokenKey, this.#budgetKey(wallNow)],
      this.#admitArgs,
    );
    if (answer === undefined) return undefined;
    const [code, waitMs, budgetUsed] = (answer as unknown[]).map(Number) as [
      number,
      number,
      number,
    ];
    const kind = VERDICTS[code] ?? "admitted";
    return kind === "tokens" || kind === "requests"
      ? { kind, waitMs, budgetUsed }
      : { kind, budgetUsed };
  }

  async charge(tokens: number, wallNow: number): Promise<number | undefined> {
    const n = Math.ceil(tokens);
    if (!(n > 0)) return undefined;
    const { tokens: rate, budget } = this.#config;
    const expireAt = budget ? periodStart(budget.period, wallNow) + budget.period + 60_000 : "";
    const outcome = await this.#store.attempt(
      "key_charge",
      KEY_CHARGE,
      [
        this.#tokenKey,
        this.#budgetKey(wallNow),
      ],
      [n, rate ? rate.perMinute / 60_000 : "", rate ? rate.perMinute : "", expireAt],
    );
    if (!outcome.ok) {
      // Sent again when the store is back only if it surely did not count: a charge that
      // reached Redis and timed out may have run there, and counting it twice is worse than
      // once (the local ledger has it either way).
      if (!outcome.maybeApplied) this.#store.defer(this, n, wallNow);
      return undefined;
    }
    const answer = outcome.answer;
    return budget ? Number(answer) : undefined;
  }
}

/** An upstream's limit and cool-down in the store (see {@linkcode UPSTREAM_ACQUIRE}). */
class RemoteUpstreamLimits implements UpstreamLimits {
  readonly #store: RemoteLimits;
  readonly #keys: readonly string[];
  readonly #coolKey: readonly string[];
  readonly #args: readonly (string | number)[];

  constructor(store: RemoteLimits, prefix: string, ratelimit: TokenBucketOptions | undefined) {
    this.#store = store;
    // The settings are in the bucket's name: a changed limit starts afresh.
    this.#keys = [
      ratelimit ? `${prefix}req:${ratelimit.perSecond}:${ratelimit.burst}` : `${prefix}req`,
      `${prefix}cooldown`,
    ];
    this.#coolKey = [`${prefix}cooldown`];
    this.#args = ratelimit ? [ratelimit.perSecond / 1000, ratelimit.burst] : ["", ""];
  }

  async acquire(): Promise<UpstreamVerdict | undefined> {
    const answer = await this.#store.run("upstream", UPSTREAM_ACQUIRE, this.#keys, this.#args);
    if (answer === undefined) return undefined;
    const [allowed, limitedMs, coolDownMs] = (answer as unknown[]).map(Number) as [
      number,
      number,
      number,
    ];
    return allowed === 1 ? { allowed: true } : { allowed: false, limitedMs, coolDownMs };
  }

  watch(onCoolDown: (until: number) => void): void {
    this.#store.watchCoolDown(this.#coolKey[0]!, onCoolDown);
  }

  coolDown(ms: number): void {
    if (!(ms > 0)) return;
    void this.#store.run("upstream_cool_down", UPSTREAM_COOL_DOWN, this.#coolKey, [
      Math.ceil(ms),
    ], true);
  }
}
