/**
 * Retry policy: pure functions of (outcome, attempt, elapsed), told the randomness.
 * `proxy.ts` classifies each attempt into an {@link AttemptOutcome} and asks
 * {@link decideRetry} whether and when to try again.
 *
 * @module
 */

/** Options for the retry policy. */
export interface RetryOptions {
  /** Retries after the first try (0 disables retrying). */
  attempts: number;
  /** Backoff (ms) before the first retry; doubles for each further retry. */
  initialMs: number;
  /** Cap (ms) for one backoff, applied before jitter. */
  maxDelayMs: number;
  /** Overall budget (ms) per request: no retry whose delay would end past it. */
  budgetMs: number;
}

/** How one attempt against an upstream ended. */
export type AttemptOutcome =
  | {
    kind: "response";
    status: number;
    /** From the upstream's `Retry-After`/`retry-after-ms` (see {@link parseRetryAfter}). */
    retryAfterMs?: number;
  }
  | { kind: "connect" }
  /**
   * The upstream's TLS certificate was refused (or the handshake failed): retried on another
   * upstream only, never on the same one (the caller bars it for the request).
   */
  | { kind: "tls" }
  | { kind: "timeout"; phase: "firstByte" | "streamIdle" | "request" }
  | { kind: "stream" }
  /** The client went away. */
  | { kind: "aborted" }
  /** The outbound proxy refused. */
  | { kind: "proxy" }
  /**
   * Nothing was sent: the request could not be encoded, by the client's fault or the
   * proxy's. Never the upstream's failure, and another upstream would fail the same way.
   */
  | { kind: "not_sent"; fault: "client" | "proxy" };

/** Where the request stands when deciding. */
export interface RetryContext {
  /** 0 when deciding on the first retry (i.e. after the first try failed). */
  retryIndex: number;
  /** ms since the request started (all attempts and delays so far). */
  elapsedMs: number;
  /** Whether any response byte (or the status line) already went to the client. */
  responseStarted: boolean;
  /**
   * Whether the next attempt goes to the same upstream (it is alone). Only then does an
   * upstream's `Retry-After` lengthen the delay.
   * @default {false}
   */
  sameUpstream?: boolean;
}

/** The verdict of {@link decideRetry}. */
export type RetryDecision =
  | { retry: false; reason: string }
  | { retry: true; delayMs: number };

/** Upstream statuses that are worth another try (on another upstream when possible). */
const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

/** Upper bound (ms) for a parsed Retry-After: one hour. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * Whether an outcome is worth retrying: connect errors, first-byte timeouts, outbound proxy
 * errors, TLS errors (on another upstream only), and statuses 429/500/502/503/504. Not: other statuses, idle/total timeouts (a
 * response had started), broken streams, client aborts, requests never sent.
 */
export function isRetryable(outcome: AttemptOutcome): boolean {
  switch (outcome.kind) {
    case "response":
      return RETRYABLE_STATUSES.has(outcome.status);
    case "connect":
    case "proxy":
    case "tls":
      return true;
    case "timeout":
      return outcome.phase === "firstByte";
    case "stream":
    case "aborted":
    case "not_sent":
      return false;
  }
}

/**
 * Backoff (whole ms) before retry number `retryIndex` (0 for the first retry):
 * `base = min(maxDelayMs, initialMs × 2^retryIndex)`, then "equal jitter" — a uniform
 * value in [base/2, base). Equal jitter keeps a floor of half the backoff, so a retry never
 * fires instantly, while still spreading many clients apart. Deterministic for a given
 * `random` (returning values in [0, 1)).
 */
export function backoffMs(
  retryIndex: number,
  options: Pick<RetryOptions, "initialMs" | "maxDelayMs">,
  random: () => number,
): number {
  // Exponent clamped so huge indexes reach the cap instead of Infinity × 0 = NaN.
  const exponential = options.initialMs * 2 ** Math.min(Math.max(0, retryIndex), 52);
  const base = Math.max(0, Math.min(options.maxDelayMs, exponential));
  const half = base / 2;
  return Math.floor(half + random() * half);
}

/**
 * Decides whether to retry after `outcome`, and after what delay (ms).
 *
 * Never once the response started to the client, never for non-retryable outcomes, never
 * when `attempts` are used up, never when `elapsedMs + delayMs` would exceed `budgetMs`.
 *
 * `Retry-After`: the next attempt normally goes to *another* upstream, so one upstream's
 * `Retry-After` does not delay it — the caller instead skips the 429'd upstream until then,
 * and the delay is just the backoff. Only with `sameUpstream: true` is the delay at least
 * `outcome.retryAfterMs` (and a long one then usually runs out the budget).
 */
export function decideRetry(
  outcome: AttemptOutcome,
  context: RetryContext,
  options: RetryOptions,
  random: () => number,
): RetryDecision {
  if (context.responseStarted) {
    return { retry: false, reason: "response already started to the client" };
  }
  if (outcome.kind === "aborted") return { retry: false, reason: "client went away" };
  if (!isRetryable(outcome)) {
    return { retry: false, reason: `outcome is not retryable: ${describe(outcome)}` };
  }
  if (context.retryIndex >= options.attempts) {
    return {
      retry: false,
      reason: `retries exhausted: ${options.attempts} of ${options.attempts} used`,
    };
  }
  let delayMs = backoffMs(context.retryIndex, options, random);
  if (context.sameUpstream && outcome.kind === "response" && outcome.retryAfterMs !== undefined) {
    delayMs = Math.max(delayMs, Math.ceil(outcome.retryAfterMs));
  }
  if (context.elapsedMs + delayMs > options.budgetMs) {
    return {
      retry: false,
      reason:
        `retry budget exceeded: ${context.elapsedMs} ms elapsed + ${delayMs} ms delay > ${options.budgetMs} ms`,
    };
  }
  return { retry: true, delayMs };
}

/**
 * Reads how long (ms, from `now`) an upstream asks us to wait: `retry-after-ms` (float ms,
 * as OpenAI sends it) wins, else `Retry-After` as delta-seconds or an HTTP date (relative to
 * `now`, epoch ms). Clamped to [0, 1 hour]; garbage is ignored (undefined).
 */
export function parseRetryAfter(
  headers: { get(name: string): string | null },
  now: number,
): number | undefined {
  const ms = headers.get("retry-after-ms")?.trim();
  if (ms !== undefined && /^-?\d+(\.\d+)?$/.test(ms)) return clampMs(Number(ms));

  const value = headers.get("retry-after")?.trim();
  if (value === undefined || value === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return clampMs(Number(value) * 1000);
  // HTTP-date (IMF-fixdate, RFC 850 or asctime) all start with a day name; requiring one
  // keeps Date.parse's leniency ("1", "-5") from turning garbage into dates.
  if (/^[A-Za-z]{3,9},? /.test(value)) {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return clampMs(at - now);
  }
  return undefined;
}

function clampMs(ms: number): number {
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Math.ceil(ms)));
}

function describe(outcome: AttemptOutcome): string {
  switch (outcome.kind) {
    case "response":
      return `status ${outcome.status}`;
    case "timeout":
      return `${outcome.phase} timeout`;
    default:
      return outcome.kind;
  }
}
