import type { Transport } from "../../src/transport/transport.ts";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { Group, type GroupMember } from "../../src/upstream/group.ts";
import { Upstream } from "../../src/upstream/upstream.ts";

/** No sockets: the group only stores its client. */
const NO_TRANSPORT = { close() {} } as unknown as Transport;

/** A group `g` of upstreams a, b, c (`upstreamExtra` applies to each; `groupExtra` to g). */
function makeGroup(upstreamExtra = "", groupExtra = ""): Group {
  const upstreams = ["a", "b", "c"].map((name) =>
    `  - name: ${name}\n    url: "http://${name}.test/v1"\n${
      upstreamExtra ? `    ${upstreamExtra}\n` : ""
    }`
  ).join("");
  const yaml = `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
${upstreams}upstreamGroups:
  - name: g
    upstreams: [{name: a}, {name: b, weight: 3}, {name: c}]
${groupExtra ? `    ${groupExtra}\n` : ""}`;
  const { config } = parseConfig(yaml, "test.yaml", () => undefined);
  const map = new Map(config.upstreams.map((u) => [u.name, new Upstream(u)]));
  return new Group(config.upstreamGroups[0]!, {
    upstreams: map,
    transport: NO_TRANSPORT,
    random: () => 0.5,
  });
}

const names = (members: readonly GroupMember[]) => members.map((m) => m.name);
const NONE = new Set<GroupMember>();

function trip(member: GroupMember, now: number): void {
  for (let i = 0; i < 2; i++) {
    const lease = member.upstream.acquire(now)!;
    member.upstream.settle(lease, "failure", now);
  }
  assert.equal(member.upstream.available(now), false);
}

Deno.test("Group builds members in declared order with weights and indexes", () => {
  const group = makeGroup();
  assert.deepEqual(
    group.members.map((m) => [m.name, m.weight, m.index]),
    [["a", 1, 0], ["b", 3, 1], ["c", 1, 2]],
  );
  assert.equal(group.members[0]!.upstream.name, "a");
});

Deno.test("Group maps httpClient retry and timeouts to milliseconds", () => {
  const group = makeGroup(
    "",
    `httpClient: {retry: {attempts: 2, initial: 250, budget: 5}, timeout: {firstByte: 7, streamIdle: "1500ms", request: 60}}`,
  );
  assert.deepEqual(group.retry, {
    attempts: 2,
    initialMs: 250,
    maxDelayMs: 30_000,
    budgetMs: 5_000,
  });
  assert.deepEqual(group.timeouts, { firstByteMs: 7_000, streamIdleMs: 1_500, requestMs: 60_000 });
  assert.equal(group.viaProxy, false);
});

Deno.test("Group rejects a reference to an unknown upstream", () => {
  const { config } = parseConfig(
    `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams: [{name: a, url: "http://a.test"}]
upstreamGroups: [{name: g, upstreams: [{name: a}]}]
`,
    "test.yaml",
    () => undefined,
  );
  assert.throws(
    () =>
      new Group(config.upstreamGroups[0]!, {
        upstreams: new Map(),
        transport: NO_TRANSPORT,
        random: Math.random,
      }),
    /unknown upstream "a"/,
  );
});

Deno.test("Group.candidates() returns every available member in declared order", () => {
  const group = makeGroup();
  assert.deepEqual(names(group.candidates(0, NONE)), ["a", "b", "c"]);
});

Deno.test("Group.candidates() leaves out unavailable members", () => {
  const group = makeGroup(
    `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: "1s"}`,
  );
  trip(group.members[1]!, 0);
  assert.deepEqual(names(group.candidates(0, NONE)), ["a", "c"]);
  group.members[0]!.upstream.coolDownUntil(500);
  assert.deepEqual(names(group.candidates(0, NONE)), ["c"]);
  assert.deepEqual(names(group.candidates(1000, NONE)), ["a", "b", "c"]);
});

Deno.test("Group.candidates() excludes members already tried while others are left", () => {
  const group = makeGroup();
  const [a, b, c] = group.members as [GroupMember, GroupMember, GroupMember];
  assert.deepEqual(names(group.candidates(0, new Set([a]))), ["b", "c"]);
  assert.deepEqual(names(group.candidates(0, new Set([a, c]))), ["b"]);
  // Everyone tried: any available member may be tried again.
  assert.deepEqual(names(group.candidates(0, new Set([a, b, c]))), ["a", "b", "c"]);
});

Deno.test("Group.candidates() falls back to tried members when the untried are unavailable", () => {
  const group = makeGroup(
    `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: "1s"}`,
  );
  const [a, b, c] = group.members as [GroupMember, GroupMember, GroupMember];
  trip(b, 0);
  trip(c, 0);
  // Only a is available and it was tried: it is alone, so it gets the retry.
  assert.deepEqual(names(group.candidates(0, new Set([a]))), ["a"]);
  // Nothing available at all: no candidate, tried or not.
  trip(a, 0);
  assert.deepEqual(names(group.candidates(0, new Set([a]))), []);
  assert.deepEqual(names(group.candidates(0, NONE)), []);
});

Deno.test("Group.candidates() never returns an unavailable tried member", () => {
  const group = makeGroup(
    `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: "1s"}`,
  );
  const [a, b] = group.members as [GroupMember, GroupMember, GroupMember];
  trip(a, 0);
  assert.deepEqual(names(group.candidates(0, new Set([a, b]))), ["c"]);
});
