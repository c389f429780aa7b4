/**
 * Retry policy: pure functions of (outcome, attempt, elapsed), told the time and the randomness.
 * The proxy loop classifies each attempt into an {@link AttemptOutcome} and asks
 * {@link planRetry} what to do next: pass the answer on, end with the error, or wait and retry
 * (Caddy's one `tryAgain` decision).
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

/** The facts {@linkcode planRetry} decides on, as data and narrow functions. */
export interface RetryState {
  /** 0 when planning the first retry (i.e. after the first try). */
  readonly retryIndex: number;
  /** ms since the request started (all attempts and delays so far). */
  readonly elapsedMs: number;
  /** The current time, ms (the clock the upstreams' availability is measured on). */
  readonly now: number;
  /**
   * No member other than the one just tried is available: a retry goes to it again, and its
   * own `Retry-After` (429) sets the delay.
   */
  readonly alone: boolean;
  /** The client went away: nothing more is sent for it. */
  readonly clientGone: boolean;
  readonly policy: RetryOptions;
  /** Uniform random numbers in [0, 1), for the jitter. */
  readonly random: () => number;
  /**
   * Whether some upstream will take a retry at `at` (ms, on `now`'s clock). Asked only when a
   * retry is otherwise due, so the caller may judge the attempt first: its verdict may open
   * the breaker that decides the answer.
   */
  canResumeAt(at: number): boolean;
}

/** What the proxy loop does after an attempt (see {@linkcode planRetry}). */
export type RetryPlan =
  /** Pass this upstream's answer on to the client, as it is. */
  | { readonly action: "respond" }
  /** End the request with this attempt's error. */
  | { readonly action: "fail" }
  /** Wait `delayMs` (until `resumeAt` on `now`'s clock), then try again. */
  | { readonly action: "wait"; readonly delayMs: number; readonly resumeAt: number };

const RESPOND: RetryPlan = { action: "respond" };
const FAIL: RetryPlan = { action: "fail" };

/**
 * The one retry decision after an attempt that produced `result`: retry (after what delay)
 * when {@linkcode decideRetry} allows it, the client is still there and some upstream will
 * take the retry once the delay has passed; otherwise this answer is final: a response passes
 * through as it is (never a 503 in its place), an error ends the request.
 */
export function planRetry(
  result: { readonly kind: "response" | "error"; readonly outcome: AttemptOutcome },
  state: RetryState,
): RetryPlan {
  const final = result.kind === "response" ? RESPOND : FAIL;
  const decision = decideRetry(
    result.outcome,
    {
      retryIndex: state.retryIndex,
      elapsedMs: state.elapsedMs,
      responseStarted: false,
      sameUpstream: state.alone,
    },
    state.policy,
    state.random,
  );
  if (!decision.retry || state.clientGone) return final;
  const resumeAt = state.now + decision.delayMs;
  if (!state.canResumeAt(resumeAt)) return final;
  return { action: "wait", delayMs: decision.delayMs, resumeAt };
}

/**
 * Reads how long (ms, from now) an upstream asks us to wait: `retry-after-ms` (float ms,
 * as OpenAI sends it) wins, else `Retry-After` as delta-seconds or an HTTP date (relative to
 * `wallNow`: a date needs the wall clock, epoch ms, not the monotonic one). Clamped to
 * [0, 1 hour]; garbage is ignored (undefined).
 */
export function parseRetryAfter(
  headers: { get(name: string): string | null },
  wallNow: number,
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
    if (Number.isFinite(at)) return clampMs(at - wallNow);
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
