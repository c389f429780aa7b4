import assert from "node:assert/strict";
import { TokenRate } from "../../src/keys/token_rate.ts";

Deno.test("TokenRate admits while above zero; a charge can overdraw it and delays the next", () => {
  const rate = new TokenRate(1_000);
  assert.equal(rate.msUntilAdmitted(0), 0);
  rate.charge(0, 1_005); // admitted while full, then the answer used more than the minute holds
  assert.equal(rate.level(0), -5);
  // 1000/min = 1/60 per ms: the debt of 5 takes 300 ms, then strictly above zero.
  assert.equal(rate.msUntilAdmitted(0), 301);
  assert.equal(rate.msUntilAdmitted(300), 1);
  assert.equal(rate.msUntilAdmitted(301), 0);
});

Deno.test("TokenRate refills to its per-minute capacity, never above", () => {
  const rate = new TokenRate(600);
  rate.charge(0, 600);
  assert.equal(rate.level(0), 0);
  assert.equal(rate.level(30_000), 300);
  assert.equal(rate.level(600_000), 600);
});

Deno.test("TokenRate: a clock going backwards mints nothing", () => {
  const rate = new TokenRate(600);
  rate.charge(10_000, 600);
  assert.equal(rate.level(5_000), 0);
});
