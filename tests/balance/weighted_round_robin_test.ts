import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { WeightedRoundRobinBalancer } from "../../src/balance/weighted_round_robin.ts";

function group(weights: Record<string, number>): Member[] {
  return Object.entries(weights).map(([name, weight], index) => ({ name, weight, index }));
}

const ctx = { clientIp: "10.0.0.1", now: 0 };

function picks(
  balancer: WeightedRoundRobinBalancer,
  candidates: readonly Member[],
  n: number,
): string[] {
  return Array.from({ length: n }, () => balancer.select(candidates, ctx).name);
}

function count(names: readonly string[], name: string): number {
  return names.filter((n) => n === name).length;
}

function longestRun(names: readonly string[], name: string): number {
  let longest = 0;
  let run = 0;
  for (const n of names) {
    run = n === name ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
}

Deno.test("WeightedRoundRobinBalancer.select() follows nginx's smooth sequence for 5:1:1", () => {
  const members = group({ a: 5, b: 1, c: 1 });
  const balancer = new WeightedRoundRobinBalancer(members);
  const expected = ["a", "a", "b", "a", "c", "a", "a"];
  assert.deepEqual(picks(balancer, members, 7), expected);
  // The cycle repeats exactly.
  assert.deepEqual(picks(balancer, members, 14), [...expected, ...expected]);
});

Deno.test("WeightedRoundRobinBalancer.select() gives 8:2 exactly per 10 picks without long runs", () => {
  const members = group({ heavy: 8, light: 2 });
  const balancer = new WeightedRoundRobinBalancer(members);
  const names = picks(balancer, members, 100);
  for (let start = 0; start < names.length; start += 10) {
    const window = names.slice(start, start + 10);
    assert.equal(count(window, "heavy"), 8, `window at ${start}: ${window.join(" ")}`);
    assert.equal(count(window, "light"), 2, `window at ${start}: ${window.join(" ")}`);
  }
  assert.ok(longestRun(names, "heavy") <= 4, names.join(" "));
  assert.equal(longestRun(names, "light"), 1);
});

Deno.test("WeightedRoundRobinBalancer.select() skips a member missing from the candidates", () => {
  const [a, b, c] = group({ a: 5, b: 1, c: 1 });
  const balancer = new WeightedRoundRobinBalancer([a!, b!, c!]);
  const names = picks(balancer, [a!, b!], 60);
  assert.equal(count(names, "c"), 0);
  // a:b stays 5:1 in every cycle of 6.
  for (let start = 0; start < names.length; start += 6) {
    const window = names.slice(start, start + 6);
    assert.equal(count(window, "a"), 5, `window at ${start}: ${window.join(" ")}`);
    assert.equal(count(window, "b"), 1, `window at ${start}: ${window.join(" ")}`);
  }
});

Deno.test("WeightedRoundRobinBalancer.select() returns to the full weights when a member comes back", () => {
  const [a, b, c] = group({ a: 5, b: 1, c: 1 });
  const balancer = new WeightedRoundRobinBalancer([a!, b!, c!]);
  picks(balancer, [a!, b!], 13); // leave the state mid-cycle
  const names = picks(balancer, [a!, b!, c!], 700);
  // Over many full cycles the shares converge to 5:1:1 (off by at most one cycle's slack).
  assert.ok(Math.abs(count(names, "a") - 500) <= 5, `a: ${count(names, "a")}`);
  assert.ok(Math.abs(count(names, "b") - 100) <= 5, `b: ${count(names, "b")}`);
  assert.ok(Math.abs(count(names, "c") - 100) <= 5, `c: ${count(names, "c")}`);
});

Deno.test("WeightedRoundRobinBalancer.select() with equal weights is plain round robin", () => {
  const members = group({ a: 1, b: 1, c: 1 });
  const balancer = new WeightedRoundRobinBalancer(members);
  assert.deepEqual(picks(balancer, members, 6), ["a", "b", "c", "a", "b", "c"]);
});

Deno.test("WeightedRoundRobinBalancer.select() rejects a candidate it was not built for", () => {
  const balancer = new WeightedRoundRobinBalancer(group({ a: 1 }));
  assert.throws(
    () => balancer.select([{ name: "x", weight: 1, index: 3 }], ctx),
    (error: unknown) => error instanceof RangeError && /"x": index 3/.test(error.message),
  );
});
