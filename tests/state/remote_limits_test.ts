import assert from "node:assert/strict";
import { RemoteLimits, type ScriptRunner } from "../../src/state/remote_limits.ts";
import {
  BUCKET_TAKE,
  KEY_ADMIT,
  KEY_CHARGE,
  type Script,
  UPSTREAM_ACQUIRE,
  UPSTREAM_COOL_DOWN,
} from "../../src/state/redis_scripts.ts";
import { Upstream } from "../../src/upstream/upstream.ts";
import { parseConfig } from "../../src/config/load.ts";
import { StoreUnavailableError } from "../../src/pipeline/errors.ts";
import { ClientKey } from "../../src/keys/client_key.ts";
import { BudgetLedger } from "../../src/keys/budget.ts";
import { RateLimitedError } from "../../src/pipeline/errors.ts";
import { silentLogger } from "../../src/log.ts";
import { FakeClock } from "../_helpers/fake_clock.ts";
import {
  StoreNotSentError,
  StoreOperationError,
  StoreTimeoutError,
} from "../../src/state/script_batch.ts";
import type { ClientKeyConfig } from "../../src/config/schema.ts";

interface Call {
  script: string;
  keys: readonly string[];
  args: readonly (string | number)[];
}

/**
 * A store whose answers the test decides: `answer` per script, `down` to refuse every call
 * unsent (as ioredis does while disconnected), or `failWith` to fail every call with that error.
 */
class FakeRunner implements ScriptRunner {
  calls: Call[] = [];
  pings = 0;
  down = false;
  failWith: Error | undefined;
  answers = new Map<string, unknown>();
  closed = false;

  run(script: Script, keys: readonly string[], args: readonly (string | number)[]) {
    this.calls.push({ script: script.name, keys, args });
    if (this.failWith) return Promise.reject(this.failWith);
    if (this.down) return Promise.reject(new StoreNotSentError("Connection is closed."));
    return Promise.resolve(this.answers.get(script.name));
  }

  ping() {
    this.pings++;
    return this.down ? Promise.reject(new Error("Connection is closed.")) : Promise.resolve("PONG");
  }

  close() {
    this.closed = true;
    return Promise.resolve();
  }
}

function setup(onStoreError: "local" | "reject" = "local") {
  const runner = new FakeRunner();
  const clock = new FakeClock();
  const calls: [string, boolean][] = [];
  const limits = new RemoteLimits({
    runner,
    prefix: "p:",
    onStoreError,
    clock,
    log: silentLogger,
    onCall: (op, _seconds, failed) => calls.push([op, failed]),
  });
  return { runner, clock, limits, calls };
}

Deno.test("RemoteLimits.keyed(): one script run per take, the decision from the store's answer", async () => {
  const { runner, limits, calls } = setup();
  const limiter = limits.keyed("forward:main", { perSecond: 2, burst: 5 });
  runner.answers.set(BUCKET_TAKE.name, [1, "3.5"]);
  const allowed = await limiter.take("10.0.0.1", 0);
  assert.deepEqual(allowed, {
    allowed: true,
    limit: 5,
    remaining: 3,
    resetMs: 750,
    retryAfterMs: 0,
  });
  assert.deepEqual(runner.calls, [{
    script: BUCKET_TAKE.name,
    keys: ["p:ip:forward:main:2:5:10.0.0.1"],
    args: [0.002, 5],
  }]);
  runner.answers.set(BUCKET_TAKE.name, [0, "0.25"]);
  const refused = await limiter.take("10.0.0.1", 0);
  assert.equal(refused.allowed, false);
  assert.equal(refused.retryAfterMs, 375);
  assert.deepEqual(calls, [["ip", false], ["ip", false]]);
  await limits.close();
});

Deno.test("RemoteLimits: a failed call falls back to this process's limit (local), counted, health down until a call succeeds", async () => {
  const { runner, limits, calls } = setup();
  const limiter = limits.keyed("forward:main", { perSecond: 1, burst: 2 });
  runner.down = true;
  const local = [];
  for (let i = 0; i < 3; i++) local.push((await limiter.take("10.0.0.1", 0)).allowed);
  assert.deepEqual(local, [true, true, false], "the process's own bucket of 2");
  assert.deepEqual(calls.map(([, failed]) => failed), [true, true, true]);
  const health = limits.health();
  assert.equal(health.ok, false);
  assert.equal(!health.ok && health.error, "Connection is closed.");
  runner.down = false;
  runner.answers.set(BUCKET_TAKE.name, [1, "1"]);
  assert.equal((await limiter.take("10.0.0.1", 0)).allowed, true);
  assert.deepEqual(limits.health(), { ok: true });
  await limits.close();
});

Deno.test("RemoteLimits: with onStoreError reject, a failed call is a 503 store_unavailable", async () => {
  const { runner, limits } = setup("reject");
  assert.equal(limits.rejects, true);
  runner.down = true;
  const limiter = limits.keyed("forward:main", { perSecond: 1, burst: 2 });
  const error = await limiter.take("10.0.0.1", 0).then(() => undefined, (e) => e);
  assert.ok(error instanceof StoreUnavailableError);
  assert.equal(error.status, 503);
  assert.equal(error.code, "store_unavailable");
  await limits.close();
});

Deno.test("RemoteLimits: the background ping notices the store is back without traffic, and stops on close", async () => {
  const { runner, clock, limits } = setup();
  runner.down = true;
  await limits.keyed("f", { perSecond: 1, burst: 1 }).take("ip", 0);
  assert.equal(limits.health().ok, false);
  runner.down = false;
  clock.advance(1_000);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(runner.pings, 1);
  assert.deepEqual(limits.health(), { ok: true });
  await limits.close();
  assert.equal(clock.pending, 0, "no timer left");
  assert.ok(runner.closed);
});

const KEY_CONFIG = {
  name: "team_a",
  key: "k-0123456789",
  ratelimit: { perSecond: 1, burst: 2 },
  tokens: { perMinute: 600 },
  budget: { tokens: 1_000, period: 86_400_000 },
} as ClientKeyConfig;

Deno.test("ClientKey with a shared store: one admission script per request; its verdicts are the contract's errors", async () => {
  const { runner, clock, limits } = setup();
  const ledger = new BudgetLedger();
  const key = new ClientKey(KEY_CONFIG, ledger, limits);
  runner.answers.set(KEY_ADMIT.name, [0, 0, 20]);
  await key.admit("g", undefined, clock.now(), clock.wallNow());
  assert.equal(runner.calls.length, 1);
  const call = runner.calls[0]!;
  assert.equal(call.script, KEY_ADMIT.name);
  const day = Math.floor(clock.wallNow() / 86_400_000) * 86_400_000;
  assert.deepEqual(call.keys, [
    "p:key:team_a:req:1:2",
    "p:key:team_a:tpm:600",
    `p:key:team_a:budget:86400000:${day}`,
  ]);
  assert.deepEqual(call.args, [0.001, 2, 0.01, 600, 1_000]);
  assert.equal(ledger.used("team_a", 86_400_000, clock.wallNow()), 20, "the store's usage kept");

  for (
    const [answer, code, retryAfter] of [
      [[1, 0, 1_000], "budget_exceeded", undefined],
      [[2, 2_500, 0], "rate_limited", "3"],
      [[3, 400, 0], "rate_limited", "1"],
    ] as const
  ) {
    runner.answers.set(KEY_ADMIT.name, answer);
    const error = await Promise.resolve(key.admit("g", undefined, clock.now(), clock.wallNow()))
      .then(() => undefined, (e) => e);
    assert.ok(error instanceof RateLimitedError, String(error));
    assert.equal(error.code, code);
    if (retryAfter) assert.equal(error.headers["retry-after"], retryAfter);
  }
  await limits.close();
});

Deno.test("ClientKey with a shared store: a charge is one script run; one the store missed is sent when it is back", async () => {
  const { runner, clock, limits } = setup();
  const ledger = new BudgetLedger();
  const key = new ClientKey(KEY_CONFIG, ledger, limits);
  runner.answers.set(KEY_CHARGE.name, 1_500);
  key.charge({ prompt: 10, completion: 5 }, clock.now(), clock.wallNow());
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(runner.calls.map((c) => [c.script, c.args[0]]), [[KEY_CHARGE.name, 15]]);
  assert.equal(ledger.used("team_a", 86_400_000, clock.wallNow()), 1_500, "the store's total");

  runner.down = true;
  key.charge({ prompt: 7, completion: 0 }, clock.now(), clock.wallNow());
  await new Promise((resolve) => setTimeout(resolve, 0));
  // Admission meanwhile: the process's own limits (the budget as last seen: spent).
  const refused = await Promise.resolve(key.admit("g", undefined, clock.now(), clock.wallNow()))
    .then(() => undefined, (e) => e);
  assert.equal(refused?.code, "budget_exceeded");
  runner.down = false;
  runner.calls = [];
  clock.advance(1_000); // the ping finds the store back and sends what it missed
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(runner.calls.map((c) => [c.script, c.args[0]]), [[KEY_CHARGE.name, 7]]);
  await limits.close();
});

Deno.test("ClientKey with a shared store: a charge that reached the store and timed out is not sent again (it may have counted there)", async () => {
  const { runner, clock, limits } = setup();
  const ledger = new BudgetLedger();
  const key = new ClientKey(KEY_CONFIG, ledger, limits);
  runner.failWith = new StoreTimeoutError("the store did not answer within 50ms");
  key.charge({ prompt: 7, completion: 0 }, clock.now(), clock.wallNow());
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(ledger.used("team_a", 86_400_000, clock.wallNow()), 7, "counted here");
  runner.failWith = undefined;
  runner.calls = [];
  clock.advance(1_000);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(runner.calls.map((c) => c.script), [], "not sent again");
  await limits.close();
});

Deno.test("RemoteLimits: an operation Redis could not run fails that check (counted) without marking the store down", async () => {
  const { runner, limits, calls } = setup();
  runner.failWith = new StoreOperationError("the store could not run bucket_take");
  const decision = await limits.keyed("f", { perSecond: 1, burst: 2 }).take("10.0.0.1", 0);
  assert.equal(decision.allowed, true, "the local fallback decides");
  assert.deepEqual(calls, [["ip", true]]);
  assert.deepEqual(limits.health(), { ok: true });
  await limits.close();
});

Deno.test("ClientKey without a shared store admits synchronously (no promise on the memory path)", () => {
  const key = new ClientKey(KEY_CONFIG, new BudgetLedger());
  assert.equal(key.admit("g", undefined, 0, 0), undefined);
});

Deno.test("Upstream with a shared store: one acquire script per attempt; a refusal is mirrored (limit, cool-down) and gives the breaker slot back", async () => {
  const { runner, limits } = setup();
  const config = parseConfig(
    `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - {name: u, url: "http://127.0.0.1:9/v1", ratelimit: {perSecond: 2, burst: 4}}
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`,
    "t.yaml",
    () => undefined,
  ).config.upstreams[0]!;
  const upstream = new Upstream(config, {}, limits);
  assert.equal(upstream.shared, true);
  runner.answers.set(UPSTREAM_ACQUIRE.name, [1, 0, 0]);
  const lease = await upstream.acquireShared(0);
  assert.ok(lease);
  assert.deepEqual(runner.calls.at(-1), {
    script: UPSTREAM_ACQUIRE.name,
    keys: ["p:upstream:u:req:2:4", "p:upstream:u:cooldown"],
    args: [0.002, 4],
  });
  upstream.settle(lease, "success", 1);

  runner.answers.set(UPSTREAM_ACQUIRE.name, [0, 400, 0]);
  assert.equal(await upstream.acquireShared(10), undefined);
  assert.equal(upstream.available(10), false, "out until a token, as the store said");
  assert.equal(upstream.rateLimited(10), true);
  assert.equal(upstream.msUntilToken(10), 400);
  assert.equal(upstream.available(410), true);

  runner.answers.set(UPSTREAM_ACQUIRE.name, [0, 0, 5_000]);
  assert.equal(await upstream.acquireShared(500), undefined);
  assert.equal(upstream.available(5_400), false, "another instance's 429 cool-down");
  assert.equal(upstream.breaker.state(5_400), "closed");
  assert.equal(upstream.inFlight, 0);

  upstream.coolDownUntil(10_000 + 30_000, 10_000);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(runner.calls.at(-1), {
    script: UPSTREAM_COOL_DOWN.name,
    keys: ["p:upstream:u:cooldown"],
    args: [30_000],
  });

  runner.down = true; // this process's own limit of 4
  const local = [];
  for (let i = 0; i < 5; i++) local.push(await upstream.acquireShared(50_000) !== undefined);
  assert.deepEqual(local, [true, true, true, true, false]);
  await limits.close();
});
