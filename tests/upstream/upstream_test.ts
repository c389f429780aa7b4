import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import type { UpstreamConfig } from "../../src/config/schema.ts";
import type { BreakerState } from "../../src/resilience/circuit_breaker.ts";
import { Upstream } from "../../src/upstream/upstream.ts";

/** A validated upstream config with `extra` YAML lines (indented 4). */
function upstreamConfig(extra = ""): UpstreamConfig {
  const yaml = `httpServer:
  forwards: [{name: f, port: 3000, defaultGroup: g}]
upstreams:
  - name: u
    url: "http://127.0.0.1:9/v1"
${extra.split("\n").filter((l) => l.trim()).map((l) => "    " + l).join("\n")}
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`;
  return parseConfig(yaml, "test.yaml", () => undefined).config.upstreams[0]!;
}

const BREAKER =
  'breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: "1s", maxRequests: 1}';

function fail(upstream: Upstream, now: number): void {
  const lease = upstream.acquire(now);
  assert.ok(lease, `no lease at ${now}`);
  upstream.settle(lease, "failure", now);
}

Deno.test("Upstream is available by default and builds its URL from config", () => {
  const upstream = new Upstream(upstreamConfig());
  assert.equal(upstream.name, "u");
  assert.equal(upstream.available(0), true);
  assert.equal(upstream.rateLimited(0), false);
  assert.equal(upstream.limiter, undefined);
  assert.equal(upstream.url.build("/chat", ""), "http://127.0.0.1:9/v1");
});

Deno.test("Upstream.acquire()/settle() keep the request, error and in-flight counters", () => {
  const upstream = new Upstream(upstreamConfig());
  const a = upstream.acquire(0)!;
  const b = upstream.acquire(0)!;
  const c = upstream.acquire(0)!;
  assert.equal(upstream.requests, 3);
  assert.equal(upstream.inFlight, 3);
  upstream.settle(a, "success", 1);
  upstream.settle(b, "failure", 1);
  upstream.settle(c, "neutral", 1);
  assert.equal(upstream.inFlight, 0);
  assert.equal(upstream.requests, 3);
  assert.equal(upstream.errors, 1);
});

Deno.test("Upstream with an open breaker is unavailable until the cooldown, then probes", () => {
  const changes: [BreakerState, BreakerState][] = [];
  const upstream = new Upstream(upstreamConfig(BREAKER), {
    onStateChange: (from, to) => changes.push([from, to]),
  });
  fail(upstream, 0);
  assert.equal(upstream.available(1), true, "below minRequests");
  fail(upstream, 1);
  assert.deepEqual(changes, [["closed", "open"]]);
  assert.equal(upstream.available(2), false);
  assert.equal(upstream.acquire(2), undefined);
  assert.equal(upstream.requests, 2, "a refused acquire is not a request");
  assert.equal(upstream.available(1000), false, "opened at 1, so the cooldown ends at 1001");
  assert.equal(upstream.available(1001), true, "cooldown over: a probe may go");

  const probe = upstream.acquire(1001)!;
  assert.ok(probe);
  assert.equal(upstream.available(1001), false, "the only probe slot is taken");
  assert.equal(upstream.acquire(1001), undefined);
  upstream.settle(probe, "success", 1002);
  assert.equal(upstream.breaker.state(1002), "closed");
  assert.equal(upstream.available(1002), true);
  assert.deepEqual(changes.at(-1), ["half_open", "closed"]);
});

Deno.test("Upstream: a failed half-open probe opens the breaker for another cooldown", () => {
  const upstream = new Upstream(upstreamConfig(BREAKER));
  fail(upstream, 0);
  fail(upstream, 0);
  fail(upstream, 1000);
  assert.equal(upstream.available(1500), false);
  assert.equal(upstream.available(2000), true);
});

Deno.test("Upstream: a neutral probe result gives the probe slot back", () => {
  const upstream = new Upstream(upstreamConfig(BREAKER));
  fail(upstream, 0);
  fail(upstream, 0);
  const probe = upstream.acquire(1000)!;
  assert.equal(upstream.available(1000), false);
  upstream.settle(probe, "neutral", 1000);
  assert.equal(upstream.available(1000), true);
  assert.equal(upstream.breaker.state(1000), "half_open");
});

Deno.test("Upstream: a late result from before the trip does not move the breaker", () => {
  const upstream = new Upstream(upstreamConfig(BREAKER));
  const slow = upstream.acquire(0)!;
  fail(upstream, 0);
  fail(upstream, 0);
  const probe = upstream.acquire(1000)!;
  // The slow request from before the trip succeeds during the probe: it must not count.
  upstream.settle(slow, "success", 1001);
  assert.equal(upstream.breaker.state(1001), "half_open");
  upstream.settle(probe, "failure", 1002);
  assert.equal(upstream.breaker.state(1002), "open");
});

Deno.test("Upstream with a rate limit is unavailable when out of tokens, then refills", () => {
  const upstream = new Upstream(upstreamConfig("ratelimit: {perSecond: 1, burst: 2}"));
  assert.ok(upstream.acquire(0));
  assert.ok(upstream.acquire(0));
  assert.equal(upstream.available(0), false);
  assert.equal(upstream.rateLimited(0), true);
  assert.equal(upstream.acquire(0), undefined);
  assert.equal(upstream.requests, 2);
  assert.equal(upstream.available(999), false);
  assert.equal(upstream.available(1000), true);
  assert.equal(upstream.rateLimited(1000), false);
  assert.equal(upstream.limiter!.msUntil(500), 500);
});

Deno.test("Upstream.rateLimited() is false when something else keeps it out", () => {
  const upstream = new Upstream(
    upstreamConfig(`ratelimit: {perSecond: 1, burst: 2}\n${BREAKER}`),
  );
  fail(upstream, 0);
  fail(upstream, 0);
  assert.equal(upstream.available(0), false);
  assert.equal(upstream.rateLimited(0), false, "open breaker, not the limit");
});

Deno.test("Upstream.acquire() refused by the breaker takes no token", () => {
  const upstream = new Upstream(
    upstreamConfig(`ratelimit: {perSecond: 1, burst: 3}\n${BREAKER}`),
  );
  fail(upstream, 0);
  fail(upstream, 0);
  assert.equal(upstream.acquire(0), undefined);
  assert.equal(upstream.limiter!.tokens(0), 1);
});

Deno.test("Upstream.coolDownUntil() (429 Retry-After) keeps it out until then, never shorter", () => {
  const upstream = new Upstream(upstreamConfig("ratelimit: {perSecond: 1, burst: 1}"));
  upstream.coolDownUntil(500);
  assert.equal(upstream.available(499), false);
  assert.equal(upstream.acquire(499), undefined);
  assert.equal(upstream.rateLimited(499), false, "a 429 cool-down is not our own limit");
  assert.equal(upstream.limiter!.tokens(499), 1, "no token taken while cooling down");
  upstream.coolDownUntil(200);
  assert.equal(upstream.available(499), false);
  assert.equal(upstream.available(500), true);
  assert.ok(upstream.acquire(500));
});

Deno.test("Upstream.snapshot() reports state for the admin API", () => {
  const upstream = new Upstream(
    upstreamConfig(`ratelimit: {perSecond: 1, burst: 5}\n${BREAKER}`),
  );
  const lease = upstream.acquire(0)!;
  upstream.coolDownUntil(5_000);
  // Monotonic 0 is 5 s before 2030-01-01 on the wall clock.
  const snap = upstream.snapshot(0, Date.UTC(2030, 0, 1) - 5_000);
  assert.deepEqual(snap, {
    name: "u",
    available: false,
    breaker: "closed",
    breakerCooldownMs: 0,
    inFlight: 1,
    requests: 1,
    errors: 0,
    limiterTokens: 4,
    rateLimitedUntil: "2030-01-01T00:00:00.000Z",
  });
  upstream.settle(lease, "success", 0);

  const broken = new Upstream(upstreamConfig(BREAKER));
  fail(broken, 1);
  fail(broken, 1);
  const open = broken.snapshot(101, 101);
  assert.equal(open.breaker, "open");
  assert.equal(open.breakerCooldownMs, 900);
  assert.equal(open.errors, 2);
});
