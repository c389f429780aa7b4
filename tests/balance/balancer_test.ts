import assert from "node:assert/strict";
import { createBalancer, type Member, type Strategy } from "../../src/balance/balancer.ts";
import { FailoverBalancer } from "../../src/balance/failover.ts";
import { IpHashBalancer } from "../../src/balance/ip_hash.ts";
import { RandomBalancer } from "../../src/balance/random.ts";
import { ResponseAwareBalancer } from "../../src/balance/response_aware.ts";
import { RoundRobinBalancer } from "../../src/balance/round_robin.ts";
import { WeightedRoundRobinBalancer } from "../../src/balance/weighted_round_robin.ts";
import { seededRandom } from "../_helpers/seeded_random.ts";

interface Upstream extends Member {
  readonly url: string;
}

const upstreams: Upstream[] = ["a", "b", "c"].map((name, index) => ({
  name,
  weight: index + 1,
  index,
  url: `http://${name}.test`,
}));

const expected: Record<Strategy, abstract new (...args: never[]) => unknown> = {
  roundrobin: RoundRobinBalancer,
  weighted_roundrobin: WeightedRoundRobinBalancer,
  random: RandomBalancer,
  response_aware: ResponseAwareBalancer,
  failover: FailoverBalancer,
  iphash: IpHashBalancer,
};

for (const [strategy, type] of Object.entries(expected) as [Strategy, typeof expected.random][]) {
  Deno.test(`createBalancer("${strategy}") returns a working ${type.name}`, () => {
    const balancer = createBalancer(strategy, upstreams, { random: seededRandom(1) });
    assert.ok(balancer instanceof type);
    // The member type flows through: the pick is one of the given upstream objects.
    const picked: Upstream = balancer.select(upstreams, { clientIp: "10.0.0.1", now: 0 });
    assert.ok(upstreams.includes(picked));
    balancer.begin?.(picked);
    balancer.end?.(picked, { ok: true, latencyMs: 10 });
  });
}

Deno.test("createBalancer() passes the injected random source to the random strategy", () => {
  const balancer = createBalancer("random", upstreams, { random: () => 0.99 });
  assert.equal(balancer.select(upstreams, { clientIp: "10.0.0.1", now: 0 }).name, "c");
});

Deno.test("createBalancer() rejects an unknown strategy name with a clear message", () => {
  assert.throws(
    () => createBalancer("fastest" as Strategy, upstreams, { random: Math.random }),
    { name: "TypeError", message: 'Unknown balancing strategy "fastest"' },
  );
});
