import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { RandomBalancer } from "../../src/balance/random.ts";
import { seededRandom } from "../_helpers/seeded_random.ts";

function group(weights: Record<string, number>): Member[] {
  return Object.entries(weights).map(([name, weight], index) => ({ name, weight, index }));
}

const ctx = { clientIp: "10.0.0.1", now: 0 };

function tally(balancer: RandomBalancer, candidates: readonly Member[], n: number) {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const name = balancer.select(candidates, ctx).name;
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

Deno.test("seededRandom() repeats its sequence for a seed and stays in [0, 1)", () => {
  const a = seededRandom(7);
  const b = seededRandom(7);
  for (let i = 0; i < 1000; i++) {
    const x = a();
    assert.equal(x, b());
    assert.ok(x >= 0 && x < 1);
  }
  assert.notEqual(seededRandom(8)(), seededRandom(7)());
});

Deno.test("RandomBalancer.select() spreads equal weights evenly over 10k draws", () => {
  const members = group({ a: 1, b: 1, c: 1, d: 1 });
  const counts = tally(new RandomBalancer(seededRandom(1)), members, 10_000);
  for (const name of ["a", "b", "c", "d"]) {
    const share = (counts[name] ?? 0) / 10_000;
    assert.ok(Math.abs(share - 0.25) < 0.02, `${name}: ${share}`);
  }
});

Deno.test("RandomBalancer.select() respects weights 6:3:1 over 10k draws", () => {
  const members = group({ a: 6, b: 3, c: 1 });
  const counts = tally(new RandomBalancer(seededRandom(42)), members, 10_000);
  const expected: Record<string, number> = { a: 0.6, b: 0.3, c: 0.1 };
  for (const [name, share] of Object.entries(expected)) {
    const actual = (counts[name] ?? 0) / 10_000;
    assert.ok(Math.abs(actual - share) < 0.02, `${name}: ${actual}, expected ${share}`);
  }
});

Deno.test("RandomBalancer.select() draws only among candidates, by their weights", () => {
  const [, b, c] = group({ a: 6, b: 3, c: 1 });
  const counts = tally(new RandomBalancer(seededRandom(3)), [b!, c!], 10_000);
  assert.equal(counts.a, undefined);
  const share = (counts.b ?? 0) / 10_000;
  assert.ok(Math.abs(share - 0.75) < 0.02, `b: ${share}`);
});

Deno.test("RandomBalancer.select() maps the ends of [0, 1) to the first and last candidates", () => {
  const members = group({ a: 1, b: 1 });
  assert.equal(new RandomBalancer(() => 0).select(members, ctx).name, "a");
  assert.equal(new RandomBalancer(() => 0.9999999999).select(members, ctx).name, "b");
  // A random source that misbehaves with exactly 1 still yields a candidate.
  assert.equal(new RandomBalancer(() => 1).select(members, ctx).name, "b");
});
