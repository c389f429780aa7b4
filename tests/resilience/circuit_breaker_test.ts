import assert from "node:assert/strict";
import {
  type BreakerState,
  CircuitBreaker,
  type CircuitBreakerOptions,
} from "../../src/resilience/circuit_breaker.ts";

const OPTIONS: CircuitBreakerOptions = {
  threshold: 0.5,
  cooldownMs: 1_000,
  maxRequests: 3,
  intervalMs: 10_000,
  minRequests: 4,
};

type Transition = [from: BreakerState, to: BreakerState, now: number];

/** A breaker whose transitions are recorded in `transitions`. */
function recordingBreaker(options: Partial<CircuitBreakerOptions> = {}) {
  const transitions: Transition[] = [];
  const breaker = new CircuitBreaker({ ...OPTIONS, ...options }, {
    onStateChange: (from, to, now) => transitions.push([from, to, now]),
  });
  return { breaker, transitions };
}

/** Trips a fresh breaker at `now` with minRequests failures. */
function trip(breaker: CircuitBreaker, now: number): void {
  for (let i = 0; i < OPTIONS.minRequests; i++) {
    assert.equal(breaker.acquire(now), true);
    breaker.onFailure(now);
  }
  assert.equal(breaker.state(now), "open");
}

Deno.test("CircuitBreaker stays closed below minRequests even at 100% failures", () => {
  const { breaker, transitions } = recordingBreaker();
  for (let i = 0; i < OPTIONS.minRequests - 1; i++) {
    assert.equal(breaker.acquire(i), true);
    breaker.onFailure(i);
  }
  assert.equal(breaker.state(10), "closed");
  assert.equal(breaker.canPass(10), true);
  assert.deepEqual(breaker.snapshot(10), {
    state: "closed",
    failures: 3,
    successes: 0,
    remainingCooldownMs: 0,
  });
  assert.deepEqual(transitions, []);
});

Deno.test("CircuitBreaker stays closed when the failure rate is below threshold", () => {
  const { breaker } = recordingBreaker();
  for (let i = 0; i < 30; i++) {
    breaker.acquire(i);
    if (i % 3 === 2) breaker.onFailure(i);
    else breaker.onSuccess(i);
  }
  assert.equal(breaker.state(30), "closed");
});

Deno.test("CircuitBreaker trips open when failure rate reaches threshold after minRequests", () => {
  const { breaker, transitions } = recordingBreaker();
  breaker.onSuccess(0);
  breaker.onSuccess(1);
  breaker.onFailure(2);
  assert.equal(breaker.state(2), "closed");
  breaker.onFailure(3); // 2 of 4 = 0.5 ≥ threshold
  assert.equal(breaker.state(3), "open");
  assert.deepEqual(transitions, [["closed", "open", 3]]);
});

Deno.test("CircuitBreaker trips when a success brings the window to minRequests", () => {
  const { breaker } = recordingBreaker();
  breaker.onFailure(0);
  breaker.onFailure(1);
  breaker.onFailure(2);
  assert.equal(breaker.state(2), "closed");
  breaker.onSuccess(3); // 3 of 4 failed
  assert.equal(breaker.state(3), "open");
});

Deno.test("CircuitBreaker with threshold 0 never trips on a window without failures", () => {
  const { breaker } = recordingBreaker({ threshold: 0 });
  for (let i = 0; i < 10; i++) breaker.onSuccess(i);
  assert.equal(breaker.state(10), "closed");
  breaker.onFailure(11);
  assert.equal(breaker.state(11), "open");
});

Deno.test("CircuitBreaker open rejects during the whole cooldown", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 100);
  for (const now of [100, 500, 1_099]) {
    assert.equal(breaker.canPass(now), false);
    assert.equal(breaker.acquire(now), false);
    assert.equal(breaker.state(now), "open");
    assert.equal(breaker.remainingCooldownMs(now), 1_100 - now);
  }
  assert.deepEqual(breaker.snapshot(600), {
    state: "open",
    failures: 4,
    successes: 0,
    remainingCooldownMs: 500,
  });
  assert.deepEqual(transitions, [["closed", "open", 100]]);
});

Deno.test("CircuitBreaker turns half_open after cooldown, firing the hook exactly once", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 0);
  // canPass is side-effect free: it reports availability but does not transition.
  assert.equal(breaker.canPass(1_000), true);
  assert.deepEqual(transitions, [["closed", "open", 0]]);

  assert.equal(breaker.state(1_000), "half_open");
  assert.equal(breaker.state(1_001), "half_open");
  assert.equal(breaker.canPass(1_002), true);
  assert.equal(breaker.remainingCooldownMs(1_002), 0);
  assert.deepEqual(transitions, [["closed", "open", 0], ["open", "half_open", 1_000]]);
});

Deno.test("CircuitBreaker acquire() itself performs the lazy half_open transition", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 0);
  assert.equal(breaker.acquire(1_500), true);
  assert.deepEqual(transitions.at(-1), ["open", "half_open", 1_500]);
});

Deno.test("CircuitBreaker half_open lets maxRequests probes through; all succeed → closed", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 0);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.canPass(1_000), false);
  assert.equal(breaker.acquire(1_000), false, "4th concurrent probe refused");

  breaker.onSuccess(1_010);
  breaker.onSuccess(1_020);
  assert.equal(breaker.state(1_020), "half_open");
  // Succeeded probes still count as issued: no new probes in this half-open period.
  assert.equal(breaker.acquire(1_025), false);
  breaker.onSuccess(1_030);
  assert.equal(breaker.state(1_030), "closed");
  assert.equal(breaker.canPass(1_030), true);
  assert.deepEqual(breaker.snapshot(1_030), {
    state: "closed",
    failures: 0,
    successes: 0,
    remainingCooldownMs: 0,
  }, "window reset on close");
  assert.deepEqual(transitions, [
    ["closed", "open", 0],
    ["open", "half_open", 1_000],
    ["half_open", "closed", 1_030],
  ]);
});

Deno.test("CircuitBreaker half_open probe failure → open with a fresh cooldown", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 0);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), true);
  breaker.onSuccess(1_100);
  breaker.onFailure(1_200);
  assert.equal(breaker.state(1_200), "open");
  assert.equal(breaker.remainingCooldownMs(1_200), 1_000);
  assert.equal(breaker.canPass(2_199), false);
  assert.equal(breaker.state(2_199), "open");
  assert.equal(breaker.state(2_200), "half_open");
  assert.deepEqual(transitions, [
    ["closed", "open", 0],
    ["open", "half_open", 1_000],
    ["half_open", "open", 1_200],
    ["open", "half_open", 2_200],
  ]);
});

Deno.test("CircuitBreaker onCancel returns a half_open probe slot and counts nothing", () => {
  const { breaker, transitions } = recordingBreaker();
  trip(breaker, 0);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), true);
  assert.equal(breaker.acquire(1_000), false);
  breaker.onCancel(1_010);
  assert.equal(breaker.canPass(1_010), true);
  assert.equal(breaker.acquire(1_010), true, "the cancelled slot is free again");
  assert.equal(breaker.acquire(1_010), false);
  breaker.onSuccess(1_020);
  breaker.onSuccess(1_020);
  assert.equal(breaker.state(1_020), "half_open", "the cancel did not count as a success");
  breaker.onSuccess(1_030);
  assert.equal(breaker.state(1_030), "closed");
  assert.equal(transitions.length, 3);
});

Deno.test("CircuitBreaker onCancel while closed changes nothing", () => {
  const { breaker } = recordingBreaker();
  breaker.acquire(0);
  breaker.onCancel(0);
  assert.deepEqual(breaker.snapshot(0), {
    state: "closed",
    failures: 0,
    successes: 0,
    remainingCooldownMs: 0,
  });
});

Deno.test("CircuitBreaker old failures age out of the rolling window", () => {
  const { breaker, transitions } = recordingBreaker();
  breaker.onFailure(0);
  breaker.onFailure(0);
  breaker.onFailure(0);
  assert.equal(breaker.snapshot(9_999).failures, 3);
  // One full interval later the three failures are gone: one more does not trip.
  breaker.onFailure(10_000);
  assert.equal(breaker.state(10_000), "closed");
  assert.equal(breaker.snapshot(10_000).failures, 1);
  // But failures spread within one interval still do.
  breaker.onFailure(13_000);
  breaker.onFailure(16_000);
  breaker.onFailure(19_000);
  assert.equal(breaker.state(19_000), "open");
  assert.deepEqual(transitions, [["closed", "open", 19_000]]);
});

Deno.test("CircuitBreaker window stays correct over long runs (ring reuse, bounded memory)", () => {
  const { breaker } = recordingBreaker({ minRequests: 1_000 });
  // 1 success per ms for 100 intervals: the window only ever holds about one interval.
  for (let now = 0; now < 1_000_000; now += 1) breaker.onSuccess(now);
  const { successes, failures } = breaker.snapshot(999_999);
  assert.equal(failures, 0);
  assert.ok(successes > 9_000 && successes <= 10_000, `successes in window: ${successes}`);
});

Deno.test("CircuitBreaker ignores a slow success from before the trip while open", () => {
  const { breaker } = recordingBreaker();
  breaker.acquire(0); // a slow request started while closed
  trip(breaker, 10);
  breaker.onSuccess(500);
  breaker.onFailure(600); // nor does a late failure extend the cooldown
  assert.equal(breaker.state(999), "open");
  assert.equal(breaker.remainingCooldownMs(999), 11);
  assert.equal(breaker.state(1_010), "half_open");
});

Deno.test("CircuitBreaker ignores results in half_open when no probe is in flight", () => {
  const { breaker } = recordingBreaker({ maxRequests: 1 });
  trip(breaker, 0);
  assert.equal(breaker.state(1_000), "half_open");
  breaker.onSuccess(1_001); // stale: no probe was acquired
  assert.equal(breaker.state(1_001), "half_open");
  breaker.onFailure(1_002); // stale as well
  assert.equal(breaker.state(1_002), "half_open");
  assert.equal(breaker.acquire(1_003), true);
  breaker.onSuccess(1_004);
  assert.equal(breaker.state(1_004), "closed");
});

Deno.test("CircuitBreaker ignores results whose generation is stale", () => {
  const { breaker } = recordingBreaker({ maxRequests: 1 });
  assert.equal(breaker.acquire(0), true);
  const before = breaker.generation;
  trip(breaker, 10);
  assert.equal(breaker.acquire(1_010), true);
  const probe = breaker.generation;
  assert.notEqual(probe, before);
  // The pre-trip request fails now, while the real probe is in flight: it must not reopen.
  breaker.onFailure(1_020, before);
  assert.equal(breaker.state(1_020), "half_open");
  breaker.onSuccess(1_030, probe);
  assert.equal(breaker.state(1_030), "closed");
  // A probe result arriving after the breaker closed is ignored too.
  breaker.onFailure(1_040, probe);
  assert.equal(breaker.snapshot(1_040).failures, 0);
});

Deno.test("CircuitBreaker hook sequence over a full cycle is exact", () => {
  const { breaker, transitions } = recordingBreaker({ maxRequests: 2 });
  trip(breaker, 0);
  breaker.state(500);
  breaker.acquire(1_000);
  breaker.acquire(1_000);
  breaker.onFailure(1_050);
  breaker.onSuccess(1_060); // the other probe's late result: ignored (open)
  breaker.canPass(2_050);
  breaker.acquire(2_100);
  breaker.acquire(2_100);
  breaker.onSuccess(2_110);
  breaker.onSuccess(2_120);
  breaker.state(2_130);
  breaker.snapshot(2_140);
  assert.deepEqual(transitions, [
    ["closed", "open", 0],
    ["open", "half_open", 1_000],
    ["half_open", "open", 1_050],
    ["open", "half_open", 2_100],
    ["half_open", "closed", 2_120],
  ]);
});

Deno.test("CircuitBreaker rejects invalid options with a precise message", () => {
  assert.throws(() => new CircuitBreaker({ ...OPTIONS, threshold: 1.5 }), /threshold/);
  assert.throws(() => new CircuitBreaker({ ...OPTIONS, cooldownMs: -1 }), /cooldownMs/);
  assert.throws(() => new CircuitBreaker({ ...OPTIONS, maxRequests: 0 }), /maxRequests/);
  assert.throws(() => new CircuitBreaker({ ...OPTIONS, intervalMs: 0 }), /intervalMs/);
  assert.throws(() => new CircuitBreaker({ ...OPTIONS, minRequests: 0.5 }), /minRequests/);
});
