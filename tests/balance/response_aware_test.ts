import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { ResponseAwareBalancer } from "../../src/balance/response_aware.ts";

function group(...names: string[]): Member[] {
  return names.map((name, index) => ({ name, weight: 1, index }));
}

function at(now: number) {
  return { clientIp: "10.0.0.1", now };
}

/** One complete request: begin, then end with the given outcome. */
function request(
  balancer: ResponseAwareBalancer,
  member: Member,
  latencyMs: number,
  ok = true,
): void {
  balancer.begin(member);
  balancer.end(member, { ok, latencyMs });
}

Deno.test("ResponseAwareBalancer.select() explores members without data first, in declared order", () => {
  const [a, b, c] = group("a", "b", "c");
  const balancer = new ResponseAwareBalancer([a!, b!, c!]);
  request(balancer, a!, 5);
  assert.equal(balancer.select([a!, b!, c!], at(0)), b);
  balancer.begin(b!); // b is being measured: c is next to explore
  assert.equal(balancer.select([a!, b!, c!], at(0)), c);
});

Deno.test("ResponseAwareBalancer.select() prefers the faster upstream after observations", () => {
  const [fast, slow] = group("fast", "slow");
  const balancer = new ResponseAwareBalancer([fast!, slow!]);
  for (let i = 0; i < 5; i++) {
    request(balancer, fast!, 20);
    request(balancer, slow!, 200);
  }
  for (let i = 0; i < 10; i++) assert.equal(balancer.select([fast!, slow!], at(0)), fast);
  // Only candidates count: with the fast one unavailable the slow one is chosen.
  assert.equal(balancer.select([slow!], at(0)), slow);
});

Deno.test("ResponseAwareBalancer.select() follows a latency change through the EWMA", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  request(balancer, a!, 10);
  request(balancer, b!, 50);
  assert.equal(balancer.select([a!, b!], at(0)), a);
  // a slows down to 200 ms; alpha 0.3 needs a few samples to pass b's 50 ms.
  request(balancer, a!, 200); // 10 + 0.3 × 190 = 67
  assert.equal(balancer.stats(a!).latencyMs, 67);
  assert.equal(balancer.select([a!, b!], at(0)), b);
});

Deno.test("ResponseAwareBalancer.select() lets a member with many in flight lose", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  request(balancer, a!, 10);
  request(balancer, b!, 50);
  // 10 × (4 + 1) = 50 ties with b: the less loaded one wins the tie.
  for (let i = 0; i < 4; i++) balancer.begin(a!);
  assert.equal(balancer.select([a!, b!], at(0)), b);
  balancer.begin(a!); // 10 × 6 = 60 > 50
  assert.equal(balancer.select([a!, b!], at(0)), b);
  for (let i = 0; i < 2; i++) balancer.end(a!, { ok: true, latencyMs: 10 }); // 10 × 4 = 40
  assert.equal(balancer.select([a!, b!], at(0)), a);
  assert.equal(balancer.stats(a!).inFlight, 3);
});

Deno.test("ResponseAwareBalancer.select() avoids a failing member and recovers after the streak ends", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  request(balancer, a!, 10);
  request(balancer, b!, 50);
  for (let i = 0; i < 10; i++) request(balancer, a!, 1, false); // success rate 0.8^10 ≈ 0.11
  assert.ok(balancer.stats(a!).successRate! < 0.2);
  assert.equal(balancer.stats(a!).latencyMs, 10, "failures do not feed the latency EWMA");
  assert.equal(balancer.select([a!, b!], at(0)), b);
  // The streak ends: a few successes bring it back (10 / 0.29 = 35 < 50 after one).
  request(balancer, a!, 10);
  assert.equal(balancer.select([a!, b!], at(0)), a);
});

Deno.test("ResponseAwareBalancer.select() lets a lowered success rate recover as time passes", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!], { recoveryHalfLifeMs: 10_000 });
  request(balancer, a!, 10);
  request(balancer, b!, 50);
  for (let i = 0; i < 20; i++) request(balancer, a!, 1, false); // success rate 0.8^20 ≈ 0.012
  assert.equal(balancer.select([a!, b!], at(0)), b);
  // Without new observations a would never be tried again (not even by a half-open
  // breaker's probes). a wins once 10 / rate < 50, i.e. rate > 0.2: 1 − 0.988 × 2^(−t/10 s)
  // crosses 0.2 after about 3.1 s.
  assert.equal(balancer.select([a!, b!], at(3_000)), b);
  assert.equal(balancer.select([a!, b!], at(3_200)), a);
  balancer.select([a!, b!], at(40_000));
  assert.ok(balancer.stats(a!).successRate! > 0.9);
});

Deno.test("ResponseAwareBalancer time decay ignores a clock that steps backwards", () => {
  const [a] = group("a");
  const balancer = new ResponseAwareBalancer([a!]);
  request(balancer, a!, 10, false);
  balancer.select([a!], at(10_000));
  const rate = balancer.stats(a!).successRate;
  balancer.select([a!], at(0));
  assert.equal(balancer.stats(a!).successRate, rate);
  balancer.select([a!], at(10_000));
  assert.equal(balancer.stats(a!).successRate, rate);
});

Deno.test("ResponseAwareBalancer.end() never lets in-flight go negative", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  balancer.end(a!, { ok: true, latencyMs: 10 });
  balancer.end(a!, { ok: true, latencyMs: 10 });
  assert.equal(balancer.stats(a!).inFlight, 0);
  balancer.begin(a!);
  assert.equal(balancer.stats(a!).inFlight, 1);
  balancer.end(a!, { ok: false, latencyMs: 0 });
  balancer.end(a!, { ok: false, latencyMs: 0 });
  assert.equal(balancer.stats(a!).inFlight, 0);
  // A negative count would have made a look better than an idle member.
  request(balancer, b!, 10);
  request(balancer, a!, 10);
  balancer.begin(b!);
  assert.equal(balancer.select([a!, b!], at(0)), a);
});

Deno.test("ResponseAwareBalancer.stats() reports in-flight, success rate and latency once known", () => {
  const [a] = group("a");
  const balancer = new ResponseAwareBalancer([a!]);
  assert.deepEqual(balancer.stats(a!), { inFlight: 0, successRate: 1 });
  balancer.begin(a!);
  balancer.begin(a!);
  balancer.end(a!, { ok: true, latencyMs: 120 });
  assert.deepEqual(balancer.stats(a!), { inFlight: 1, successRate: 1, latencyMs: 120 });
});

Deno.test("ResponseAwareBalancer.select() spreads concurrent first requests by in-flight", () => {
  const members = group("a", "b", "c");
  const balancer = new ResponseAwareBalancer(members);
  const chosen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const member = balancer.select(members, at(0));
    balancer.begin(member);
    chosen.push(member.name);
  }
  assert.deepEqual(chosen, ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("ResponseAwareBalancer treats a 0 ms latency as 1 ms so in-flight still counts", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  request(balancer, a!, 0);
  request(balancer, b!, 2);
  balancer.begin(a!);
  balancer.begin(a!); // 1 × 3 = 3 > 2
  assert.equal(balancer.select([a!, b!], at(0)), b);
});

Deno.test("new ResponseAwareBalancer() rejects out-of-range options", () => {
  assert.throws(() => new ResponseAwareBalancer(group("a"), { latencyAlpha: 0 }), RangeError);
  assert.throws(() => new ResponseAwareBalancer(group("a"), { successAlpha: 1.5 }), RangeError);
  assert.throws(() => new ResponseAwareBalancer(group("a"), { recoveryHalfLifeMs: 0 }), RangeError);
});

Deno.test("ResponseAwareBalancer.cancel() undoes begin() without learning anything", () => {
  const [a, b] = group("a", "b");
  const balancer = new ResponseAwareBalancer([a!, b!]);
  request(balancer, a!, 100);
  const before = balancer.stats(a!);
  for (let i = 0; i < 5; i++) {
    balancer.begin(a!);
    balancer.cancel(a!);
  }
  assert.deepEqual(balancer.stats(a!), before);
  balancer.cancel(b!); // without a begin: stays at zero
  assert.equal(balancer.stats(b!).inFlight, 0);
});
