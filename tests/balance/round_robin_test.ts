import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { RoundRobinBalancer } from "../../src/balance/round_robin.ts";

function group(...names: string[]): Member[] {
  return names.map((name, index) => ({ name, weight: 1, index }));
}

const ctx = { clientIp: "10.0.0.1", now: 0 };

function picks(balancer: RoundRobinBalancer, candidates: readonly Member[], n: number): string[] {
  return Array.from({ length: n }, () => balancer.select(candidates, ctx).name);
}

function counts(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of names) out[name] = (out[name] ?? 0) + 1;
  return out;
}

Deno.test("RoundRobinBalancer.select() gives three members exactly 10 each over 30 picks", () => {
  const members = group("a", "b", "c");
  const balancer = new RoundRobinBalancer(members);
  const names = picks(balancer, members, 30);
  assert.deepEqual(counts(names), { a: 10, b: 10, c: 10 });
  assert.deepEqual(names.slice(0, 6), ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("RoundRobinBalancer.select() skips an unavailable member and rotates fairly over the rest", () => {
  const [a, b, c] = group("a", "b", "c");
  const balancer = new RoundRobinBalancer([a!, b!, c!]);
  const names = picks(balancer, [a!, c!], 20);
  assert.deepEqual(counts(names), { a: 10, c: 10 });
  assert.deepEqual(names.slice(0, 4), ["a", "c", "a", "c"]);
});

Deno.test("RoundRobinBalancer.select() lets a returning member rejoin in its declared place", () => {
  const [a, b, c] = group("a", "b", "c");
  const balancer = new RoundRobinBalancer([a!, b!, c!]);
  assert.deepEqual(picks(balancer, [a!, b!, c!], 1), ["a"]);
  assert.deepEqual(picks(balancer, [a!, c!], 2), ["c", "a"]);
  assert.deepEqual(picks(balancer, [a!, b!, c!], 4), ["b", "c", "a", "b"]);
});

Deno.test("RoundRobinBalancer.select() rotates when the unavailable member changes every pick", () => {
  const [a, b, c] = group("a", "b", "c");
  const balancer = new RoundRobinBalancer([a!, b!, c!]);
  // b is out for one pick, then c, then a: each pick still takes the next one in order.
  assert.equal(balancer.select([a!, c!], ctx).name, "a");
  assert.equal(balancer.select([a!, b!], ctx).name, "b");
  assert.equal(balancer.select([b!, c!], ctx).name, "c");
  assert.equal(balancer.select([a!, b!, c!], ctx).name, "a");
});

Deno.test("RoundRobinBalancer.select() wraps around after the last declared member", () => {
  const members = group("a", "b", "c");
  const balancer = new RoundRobinBalancer(members, { start: 2 });
  assert.deepEqual(picks(balancer, members, 4), ["c", "a", "b", "c"]);
});

Deno.test("RoundRobinBalancer.select() wraps to the first candidate when the last ones are out", () => {
  const [a, b, c] = group("a", "b", "c");
  const balancer = new RoundRobinBalancer([a!, b!, c!], { start: 2 });
  assert.deepEqual(picks(balancer, [a!, b!], 3), ["a", "b", "a"]);
});

Deno.test("RoundRobinBalancer.select() stays exact over a million picks (the cursor is bounded)", () => {
  const members = group("a", "b", "c");
  const balancer = new RoundRobinBalancer(members);
  for (let i = 0; i < 999_999; i++) balancer.select(members, ctx);
  // 999_999 is a multiple of 3, so the rotation is back at the start.
  assert.deepEqual(picks(balancer, members, 3), ["a", "b", "c"]);
});

Deno.test("RoundRobinBalancer.select() returns the candidate object it was given", () => {
  const members = group("a", "b");
  const balancer = new RoundRobinBalancer(members);
  const wrapper = { ...members[0]!, extra: true };
  assert.equal(balancer.select([wrapper], ctx), wrapper);
});

Deno.test("new RoundRobinBalancer() rejects a start index outside the group", () => {
  assert.throws(() => new RoundRobinBalancer(group("a", "b"), { start: 2 }), RangeError);
  assert.throws(() => new RoundRobinBalancer(group("a", "b"), { start: -1 }), RangeError);
});
