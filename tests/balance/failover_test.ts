import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { FailoverBalancer } from "../../src/balance/failover.ts";

const [primary, secondary, tertiary] = ["primary", "secondary", "tertiary"].map((
  name,
  index,
): Member => ({ name, weight: 1, index }));
const ctx = { clientIp: "10.0.0.1", now: 0 };

Deno.test("FailoverBalancer.select() always returns the first candidate while it is available", () => {
  const balancer = new FailoverBalancer();
  for (let i = 0; i < 5; i++) {
    assert.equal(balancer.select([primary!, secondary!, tertiary!], ctx), primary);
  }
});

Deno.test("FailoverBalancer.select() moves to the next declared member when the first is absent", () => {
  const balancer = new FailoverBalancer();
  assert.equal(balancer.select([secondary!, tertiary!], ctx), secondary);
  assert.equal(balancer.select([tertiary!], ctx), tertiary);
  // And back as soon as the primary is a candidate again: no stickiness.
  assert.equal(balancer.select([primary!, secondary!, tertiary!], ctx), primary);
});

Deno.test("FailoverBalancer.select() goes by declared index even if candidates are reordered", () => {
  const balancer = new FailoverBalancer();
  assert.equal(balancer.select([tertiary!, secondary!], ctx), secondary);
});
