import assert from "node:assert/strict";
import type { Member } from "../../src/balance/balancer.ts";
import { IpHashBalancer } from "../../src/balance/ip_hash.ts";
import { seededRandom } from "../_helpers/seeded_random.ts";

function group(weights: Record<string, number>): Member[] {
  return Object.entries(weights).map(([name, weight], index) => ({ name, weight, index }));
}

function randomIps(n: number, seed: number): string[] {
  const random = seededRandom(seed);
  const octet = () => Math.floor(random() * 256);
  return Array.from({ length: n }, () => `${octet()}.${octet()}.${octet()}.${octet()}`);
}

function assign(balancer: IpHashBalancer, candidates: readonly Member[], ips: readonly string[]) {
  return new Map(ips.map((ip) => [ip, balancer.select(candidates, { clientIp: ip, now: 0 }).name]));
}

function shares(assignment: Map<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of assignment.values()) out[name] = (out[name] ?? 0) + 1 / assignment.size;
  return out;
}

Deno.test("IpHashBalancer.select() sends the same IP to the same member every time", () => {
  const members = group({ a: 1, b: 1, c: 1, d: 1 });
  const balancer = new IpHashBalancer(members);
  for (const ip of ["10.0.0.1", "192.168.1.77", "2001:db8::1"]) {
    const first = balancer.select(members, { clientIp: ip, now: 0 });
    for (let now = 1; now <= 20; now++) {
      assert.equal(balancer.select(members, { clientIp: ip, now }), first);
    }
    // A separately built balancer agrees: the ring depends only on the members.
    assert.equal(new IpHashBalancer(members).select(members, { clientIp: ip, now: 0 }), first);
  }
});

Deno.test("IpHashBalancer.select() spreads 1000 IPs roughly evenly over 4 members", () => {
  const members = group({ a: 1, b: 1, c: 1, d: 1 });
  const assignment = assign(new IpHashBalancer(members), members, randomIps(1000, 11));
  const byMember = shares(assignment);
  for (const name of ["a", "b", "c", "d"]) {
    const share = byMember[name] ?? 0;
    assert.ok(share >= 0.15 && share <= 0.35, `${name}: ${share.toFixed(3)}`);
  }
});

Deno.test("IpHashBalancer.select() moves only the IPs of a member that became unavailable", () => {
  const members = group({ a: 1, b: 1, c: 1, d: 1 });
  const balancer = new IpHashBalancer(members);
  const ips = randomIps(1000, 12);
  const before = assign(balancer, members, ips);
  for (const gone of members) {
    const after = assign(balancer, members.filter((m) => m !== gone), ips);
    let moved = 0;
    for (const ip of ips) {
      if (before.get(ip) === gone.name) {
        assert.notEqual(after.get(ip), gone.name);
        moved++;
      } else {
        assert.equal(after.get(ip), before.get(ip), `${ip} moved although ${gone.name} left`);
      }
    }
    assert.ok(moved > 0);
    // The orphaned IPs spread over the others instead of all landing on one neighbour.
    const receivers = new Set(
      ips.filter((ip) => before.get(ip) === gone.name).map((ip) => after.get(ip)),
    );
    assert.equal(receivers.size, 3, `${gone.name}'s IPs went to ${[...receivers].join(", ")}`);
  }
  // And they return when it does.
  assert.deepEqual(assign(balancer, members, ips), before);
});

Deno.test("IpHashBalancer.select() gives a heavier member a proportionally larger share", () => {
  const members = group({ a: 3, b: 1 });
  const byMember = shares(assign(new IpHashBalancer(members), members, randomIps(2000, 13)));
  assert.ok(Math.abs((byMember.a ?? 0) - 0.75) < 0.07, `a: ${byMember.a}`);
});

Deno.test("IpHashBalancer.select() returns the lone candidate whatever the IP", () => {
  const members = group({ a: 1, b: 1, c: 1 });
  const balancer = new IpHashBalancer(members);
  for (const ip of randomIps(50, 14)) {
    assert.equal(balancer.select([members[2]!], { clientIp: ip, now: 0 }), members[2]);
  }
});

Deno.test("IpHashBalancer.select() keeps the ring when members are declared in another order", () => {
  const members = group({ a: 1, b: 1, c: 1 });
  const reversed = [...members].reverse().map((m, index) => ({ ...m, index }));
  const ips = randomIps(200, 15);
  assert.deepEqual(
    assign(new IpHashBalancer(reversed), reversed, ips),
    assign(new IpHashBalancer(members), members, ips),
  );
});

Deno.test("IpHashBalancer.select() rejects a candidate it was not built for", () => {
  const balancer = new IpHashBalancer(group({ a: 1 }));
  assert.throws(
    () => balancer.select([{ name: "x", weight: 1, index: 1 }], { clientIp: "1.2.3.4", now: 0 }),
    RangeError,
  );
});
