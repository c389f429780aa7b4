import assert from "node:assert/strict";
import {
  type AttemptOutcome,
  backoffMs,
  decideRetry,
  isRetryable,
  parseRetryAfter,
  planRetry,
  type RetryOptions,
  type RetryState,
} from "../../src/resilience/retry.ts";
import { seededRandom } from "../_helpers/seeded_random.ts";

const OPTIONS: RetryOptions = { attempts: 3, initialMs: 100, maxDelayMs: 1_000, budgetMs: 10_000 };

/** Seeded PRNG (mulberry32) so jittered delays are reproducible. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const fixed = (value: number) => () => value;
const fresh = { retryIndex: 0, elapsedMs: 0, responseStarted: false };

Deno.test("isRetryable() accepts connect, firstByte timeout, proxy and 429/500/502/503/504", () => {
  const retryable: AttemptOutcome[] = [
    { kind: "connect" },
    { kind: "proxy" },
    { kind: "timeout", phase: "firstByte" },
    ...[429, 500, 502, 503, 504].map((status) => ({ kind: "response" as const, status })),
  ];
  for (const outcome of retryable) {
    assert.equal(isRetryable(outcome), true, JSON.stringify(outcome));
  }
});

Deno.test("isRetryable() rejects other statuses, late timeouts, broken streams, aborts and requests never sent", () => {
  const final: AttemptOutcome[] = [
    { kind: "not_sent", fault: "client" },
    { kind: "not_sent", fault: "proxy" },
    { kind: "timeout", phase: "streamIdle" },
    { kind: "timeout", phase: "request" },
    { kind: "stream" },
    { kind: "aborted" },
    ...[200, 301, 400, 401, 403, 404, 408, 413, 422, 501, 505].map((status) => ({
      kind: "response" as const,
      status,
    })),
  ];
  for (const outcome of final) assert.equal(isRetryable(outcome), false, JSON.stringify(outcome));
});

Deno.test("backoffMs() doubles from initialMs with equal jitter in [base/2, base)", () => {
  assert.deepEqual([0, 1, 2, 3].map((i) => backoffMs(i, OPTIONS, fixed(0))), [50, 100, 200, 400]);
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => backoffMs(i, OPTIONS, fixed(0.999999))),
    [99, 199, 399, 799],
  );
  const random = seeded(42);
  for (let i = 0; i < 1_000; i++) {
    const delay = backoffMs(2, OPTIONS, random);
    assert.ok(delay >= 200 && delay < 400, `delay ${delay}`);
    assert.equal(Number.isInteger(delay), true);
  }
});

Deno.test("backoffMs() caps each backoff at maxDelayMs, even for huge retry indexes", () => {
  assert.equal(backoffMs(4, OPTIONS, fixed(0)), 500); // 1600 capped to 1000, then jitter
  assert.equal(backoffMs(10_000, OPTIONS, fixed(0.5)), 750);
  assert.equal(backoffMs(3, { initialMs: 0, maxDelayMs: 1_000 }, fixed(0.5)), 0);
});

Deno.test("backoffMs() is deterministic for a given seeded random", () => {
  const a = seeded(7);
  const b = seeded(7);
  const run = (random: () => number) => [0, 1, 2, 3, 4].map((i) => backoffMs(i, OPTIONS, random));
  assert.deepEqual(run(a), run(b));
  assert.notDeepEqual(run(seeded(7)), run(seeded(8)));
});

Deno.test("decideRetry() retries a retryable outcome with the backoff delay", () => {
  assert.deepEqual(decideRetry({ kind: "connect" }, fresh, OPTIONS, fixed(0)), {
    retry: true,
    delayMs: 50,
  });
  assert.deepEqual(
    decideRetry({ kind: "response", status: 503 }, { ...fresh, retryIndex: 2 }, OPTIONS, fixed(0)),
    { retry: true, delayMs: 200 },
  );
});

Deno.test("decideRetry() never retries once the response has started to the client", () => {
  const decision = decideRetry(
    { kind: "connect" },
    { ...fresh, responseStarted: true },
    OPTIONS,
    fixed(0),
  );
  assert.equal(decision.retry, false);
  assert.match(decision.retry ? "" : decision.reason, /started/);
});

Deno.test("decideRetry() does not retry non-retryable outcomes or client aborts", () => {
  for (
    const outcome of [
      { kind: "response", status: 400 },
      { kind: "stream" },
      { kind: "timeout", phase: "streamIdle" },
      { kind: "aborted" },
    ] satisfies AttemptOutcome[]
  ) {
    assert.equal(decideRetry(outcome, fresh, OPTIONS, fixed(0)).retry, false);
  }
  const aborted = decideRetry({ kind: "aborted" }, fresh, OPTIONS, fixed(0));
  assert.deepEqual(aborted, { retry: false, reason: "client went away" });
});

Deno.test("decideRetry() stops when retries are exhausted", () => {
  const last = decideRetry({ kind: "connect" }, { ...fresh, retryIndex: 2 }, OPTIONS, fixed(0));
  assert.equal(last.retry, true);
  const over = decideRetry({ kind: "connect" }, { ...fresh, retryIndex: 3 }, OPTIONS, fixed(0));
  assert.deepEqual(over, { retry: false, reason: "retries exhausted: 3 of 3 used" });
  const none = decideRetry({ kind: "connect" }, fresh, { ...OPTIONS, attempts: 0 }, fixed(0));
  assert.equal(none.retry, false);
});

Deno.test("decideRetry() stops when elapsed + delay would exceed the budget", () => {
  const within = decideRetry(
    { kind: "connect" },
    { ...fresh, elapsedMs: 9_950 },
    OPTIONS,
    fixed(0),
  );
  assert.deepEqual(within, { retry: true, delayMs: 50 });
  const over = decideRetry({ kind: "connect" }, { ...fresh, elapsedMs: 9_951 }, OPTIONS, fixed(0));
  assert.equal(over.retry, false);
  assert.match(over.retry ? "" : over.reason, /budget/);
});

Deno.test("decideRetry() does not let one upstream's Retry-After delay a retry elsewhere", () => {
  const outcome: AttemptOutcome = { kind: "response", status: 429, retryAfterMs: 5_000 };
  assert.deepEqual(decideRetry(outcome, fresh, OPTIONS, fixed(0)), { retry: true, delayMs: 50 });
});

Deno.test("decideRetry() waits at least Retry-After when retrying the same upstream", () => {
  const outcome: AttemptOutcome = { kind: "response", status: 429, retryAfterMs: 2_000 };
  const context = { ...fresh, sameUpstream: true };
  assert.deepEqual(decideRetry(outcome, context, OPTIONS, fixed(0)), {
    retry: true,
    delayMs: 2_000,
  });
  // A short Retry-After never shortens the backoff.
  const short: AttemptOutcome = { kind: "response", status: 503, retryAfterMs: 10 };
  assert.deepEqual(decideRetry(short, context, OPTIONS, fixed(0)), { retry: true, delayMs: 50 });
  // And a long one runs into the budget.
  const long: AttemptOutcome = { kind: "response", status: 429, retryAfterMs: 60_000 };
  assert.equal(decideRetry(long, context, OPTIONS, fixed(0)).retry, false);
});

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);

Deno.test("parseRetryAfter() reads retry-after-ms as float milliseconds, winning over Retry-After", () => {
  assert.equal(parseRetryAfter(new Headers({ "retry-after-ms": "1500.2" }), NOW), 1_501);
  assert.equal(
    parseRetryAfter(new Headers({ "retry-after-ms": "250", "retry-after": "9" }), NOW),
    250,
  );
  assert.equal(
    parseRetryAfter(new Headers({ "retry-after-ms": "soon", "retry-after": "9" }), NOW),
    9_000,
    "garbage retry-after-ms falls back to Retry-After",
  );
});

Deno.test("parseRetryAfter() reads Retry-After delta-seconds", () => {
  assert.equal(parseRetryAfter(new Headers({ "retry-after": "120" }), NOW), 120_000);
  assert.equal(parseRetryAfter(new Headers({ "retry-after": " 0 " }), NOW), 0);
  assert.equal(parseRetryAfter(new Headers({ "retry-after": "1.5" }), NOW), 1_500);
});

Deno.test("parseRetryAfter() reads Retry-After HTTP dates relative to now", () => {
  const headers = new Headers({ "retry-after": "Wed, 01 Jan 2025 12:00:30 GMT" });
  assert.equal(parseRetryAfter(headers, NOW), 30_000);
  const past = new Headers({ "retry-after": "Wed, 01 Jan 2025 11:00:00 GMT" });
  assert.equal(parseRetryAfter(past, NOW), 0, "a date in the past means now");
});

Deno.test("parseRetryAfter() clamps to [0, 1 hour]", () => {
  assert.equal(parseRetryAfter(new Headers({ "retry-after": "86400" }), NOW), 3_600_000);
  assert.equal(parseRetryAfter(new Headers({ "retry-after-ms": "-20" }), NOW), 0);
  const far = new Headers({ "retry-after": "Fri, 01 Jan 2100 00:00:00 GMT" });
  assert.equal(parseRetryAfter(far, NOW), 3_600_000);
});

Deno.test("parseRetryAfter() ignores garbage and absent headers", () => {
  for (const value of ["", "soon", "-5", "1e3", "0x10", "12abc", "Nonsense, really"]) {
    assert.equal(parseRetryAfter(new Headers({ "retry-after": value }), NOW), undefined, value);
  }
  assert.equal(parseRetryAfter(new Headers(), NOW), undefined);
});

/** A state at a fake `now` whose every upstream takes the retry; `asked` records when. */
function state(overrides: Partial<RetryState> = {}): RetryState & { asked: number[] } {
  const asked: number[] = [];
  return {
    retryIndex: 0,
    elapsedMs: 0,
    now: 50_000,
    alone: false,
    clientGone: false,
    policy: OPTIONS,
    random: fixed(0),
    canResumeAt: (at) => {
      asked.push(at);
      return true;
    },
    ...overrides,
    asked,
  };
}

const response = (status: number, retryAfterMs?: number) => ({
  kind: "response" as const,
  outcome: retryAfterMs === undefined
    ? { kind: "response" as const, status }
    : { kind: "response" as const, status, retryAfterMs },
});

Deno.test("planRetry() passes a final answer on and ends with a final error, asking nobody to take a retry", () => {
  const s = state();
  assert.deepEqual(planRetry(response(200), s), { action: "respond" });
  assert.deepEqual(planRetry(response(404), s), { action: "respond" });
  assert.deepEqual(planRetry({ kind: "error", outcome: { kind: "aborted" } }, s), {
    action: "fail",
  });
  assert.deepEqual(planRetry({ kind: "error", outcome: { kind: "stream" } }, s), {
    action: "fail",
  });
  assert.deepEqual(s.asked, []);
});

Deno.test("planRetry() waits the jittered backoff, then retries at now + delay", () => {
  const random = seededRandom(7);
  const expected = backoffMs(1, OPTIONS, seededRandom(7));
  const s = state({ retryIndex: 1, random });
  assert.deepEqual(planRetry({ kind: "error", outcome: { kind: "connect" } }, s), {
    action: "wait",
    delayMs: expected,
    resumeAt: 50_000 + expected,
  });
  assert.deepEqual(s.asked, [50_000 + expected]);
});

Deno.test("planRetry() lets a 429's Retry-After set the delay only when the upstream is alone", () => {
  const elsewhere = planRetry(response(429, 700), state());
  assert.deepEqual(elsewhere, { action: "wait", delayMs: 50, resumeAt: 50_050 });
  const alone = planRetry(response(429, 700), state({ alone: true }));
  assert.deepEqual(alone, { action: "wait", delayMs: 700, resumeAt: 50_700 });
  // Beyond the budget: the upstream's own 429 is the answer.
  const long = planRetry(response(429, 20_000), state({ alone: true }));
  assert.deepEqual(long, { action: "respond" });
});

Deno.test("planRetry() sends nothing more for a client that went away", () => {
  const s = state({ clientGone: true });
  assert.deepEqual(planRetry(response(503), s), { action: "respond" });
  assert.deepEqual(planRetry({ kind: "error", outcome: { kind: "connect" } }, s), {
    action: "fail",
  });
  assert.deepEqual(s.asked, []);
});

Deno.test("planRetry() keeps the answer when no upstream will take the retry after the delay", () => {
  const asked: number[] = [];
  const s = state({
    canResumeAt: (at) => {
      asked.push(at);
      return false;
    },
  });
  assert.deepEqual(planRetry(response(500), s), { action: "respond" });
  assert.deepEqual(planRetry({ kind: "error", outcome: { kind: "connect" } }, s), {
    action: "fail",
  });
  assert.deepEqual(asked, [50_050, 50_050]);
});

Deno.test("planRetry() stops when retries or the budget are used up", () => {
  assert.deepEqual(planRetry(response(502), state({ retryIndex: 3 })), { action: "respond" });
  assert.deepEqual(planRetry(response(502), state({ elapsedMs: 9_990 })), { action: "respond" });
});
