/**
 * Admin endpoints end to end: /health /ping /ready /metrics /upstreams /config /reload, the
 * admin token, and the start-up warning for an exposed admin listener without one.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText as parsePrometheus } from "../_helpers/prom_parser.ts";
import { chat, delay } from "../_helpers/raw_http.ts";

const TOKEN = "admin-token-for-tests-0123";

/**
 * Groups: `g` (response_aware over a and b; b has a rate limit), `fragile` (one upstream whose
 * breaker opens after one failure, no retries) and `limited` (one upstream, no retries).
 */
function config(mock: MockUpstream, admin = "admin: {port: 0}"): string {
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g,
       routing: [{path: "/fragile", targetGroup: fragile}, {path: "/limited", targetGroup: limited}]}
  ${admin}
upstreams:
  - {name: a, url: "${mock.url}/v1/chat/completions"}
  - {name: b, url: "${mock.url}/v1/chat/completions", ratelimit: {perSecond: 1, burst: 50}}
  - name: f
    url: "${mock.url}/v1/chat/completions"
    breaker: {threshold: 0.5, minRequests: 1, cooldown: 60, interval: 10}
  - {name: l, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - name: g
    upstreams: [{name: a}, {name: b, weight: 3}]
    balance: {strategy: response_aware}
  - name: fragile
    upstreams: [{name: f}]
    httpClient: {retry: {attempts: 0}}
  - name: limited
    upstreams: [{name: l}]
    balance: {strategy: failover}
    httpClient: {retry: {attempts: 0}}
`;
}

async function withProxy(
  admin: string | undefined,
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(config(mock, admin), { env, captureLogs: true });
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

Deno.test("admin: /health, /ping, /metrics content type, unknown route 404", async () => {
  await withProxy(undefined, async (proxy) => {
    const base = proxy.adminUrl();
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    assert.match(health.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(await health.json(), { status: "ok" });

    const ping = await fetch(`${base}/ping`);
    assert.equal(ping.status, 200);
    assert.equal(await ping.text(), "pong");

    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const parsed = parsePrometheus(await metrics.text());
    assert.ok(parsed.has("llmproxy_http_requests_total"));
    assert.ok(parsed.has("process_resident_memory_bytes"));

    const head = await fetch(`${base}/health`, { method: "HEAD" });
    assert.equal(head.status, 200);
    await head.body?.cancel();

    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(typeof (await missing.json()).error.message, "string");
    const wrongMethod = await fetch(`${base}/health`, { method: "DELETE" });
    assert.equal(wrongMethod.status, 404);
    await wrongMethod.body?.cancel();
  });
});

Deno.test("admin: /ready is 200 while every group has an upstream, else 503 naming the groups", async () => {
  await withProxy(undefined, async (proxy) => {
    const base = proxy.adminUrl();
    const ok = await fetch(`${base}/ready`);
    assert.equal(ok.status, 200);
    await ok.body?.cancel();

    // One 500 trips the fragile group's only breaker.
    const failed = await fetch(`${proxy.url()}/fragile`, {
      method: "POST",
      body: chat(),
      headers: { "x-mock-status": "500" },
    });
    assert.equal(failed.status, 500);
    await failed.body?.cancel();

    const notReady = await fetch(`${base}/ready`);
    assert.equal(notReady.status, 503);
    const body = await notReady.json();
    assert.deepEqual(body.groupsWithoutUpstreams, ["fragile"]);
    assert.ok(JSON.stringify(body).includes("fragile"));
    assert.ok(!JSON.stringify(body).includes('"g"'));
  });
});

Deno.test("admin: /upstreams shows strategy, breaker, in-flight, balancer stats, limiter, 429 cool-down, counters", async () => {
  await withProxy(undefined, async (proxy) => {
    const base = proxy.adminUrl();
    const state = async () => {
      const response = await fetch(`${base}/upstreams`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
      // deno-lint-ignore no-explicit-any
      const body: any = await response.json();
      // deno-lint-ignore no-explicit-any
      const groups: Record<string, any> = Object.fromEntries(
        // deno-lint-ignore no-explicit-any
        body.groups.map((g: any) => [g.name, g]),
      );
      // deno-lint-ignore no-explicit-any
      const up = (group: string, name: string): any =>
        // deno-lint-ignore no-explicit-any
        groups[group].upstreams.find((u: any) => u.name === name);
      return { groups, up };
    };

    let s = await state();
    assert.equal(s.groups.g.strategy, "response_aware");
    assert.equal(s.groups.fragile.strategy, "roundrobin");
    assert.equal(s.groups.limited.strategy, "failover");
    assert.deepEqual(
      { ...s.up("g", "a"), balancer: undefined },
      {
        name: "a",
        available: true,
        breaker: "closed",
        breakerCooldownMs: 0,
        inFlight: 0,
        requests: 0,
        errors: 0,
        limiterTokens: null,
        rateLimitedUntil: null,
        weight: 1,
        balancer: undefined,
      },
    );
    assert.equal(s.up("g", "b").weight, 3);
    assert.equal(s.up("g", "b").limiterTokens, 50);
    assert.equal(s.up("fragile", "f").balancer, null, "roundrobin has no stats");

    // Traffic through g: response_aware learns latency (EWMA) and success rate.
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${proxy.url()}/v1/chat/completions`, { method: "POST", body: chat() });
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    s = await state();
    const a = s.up("g", "a");
    const b = s.up("g", "b");
    assert.equal(a.requests + b.requests, 6);
    for (const u of [a, b]) {
      if (u.requests === 0) continue;
      assert.equal(typeof u.balancer.latencyMs, "number", JSON.stringify(u));
      assert.ok(u.balancer.latencyMs >= 0);
      assert.equal(u.balancer.successRate, 1);
      assert.equal(u.balancer.inFlight, 0);
    }
    assert.equal(b.limiterTokens, 50 - b.requests);

    // In flight: a slow stream holds one request until its body ends.
    const streaming = await fetch(`${proxy.url()}/limited`, {
      method: "POST",
      body: chat(true),
      headers: { "x-mock-chunks": "5", "x-mock-delay-ms": "100" },
    });
    const reader = streaming.body!.getReader();
    await reader.read();
    s = await state();
    assert.equal(s.up("limited", "l").inFlight, 1);
    while (!(await reader.read()).done) { /* drain */ }
    // The lease is released when the body ends; allow the event loop a few turns.
    for (let i = 0; i < 50 && (await state()).up("limited", "l").inFlight !== 0; i++) {
      await delay(20);
    }
    s = await state();
    assert.equal(s.up("limited", "l").inFlight, 0);
    assert.equal(s.up("limited", "l").requests, 1);

    // A 429 with Retry-After: the upstream cools down until then and is unavailable.
    const limited = await fetch(`${proxy.url()}/limited`, {
      method: "POST",
      body: chat(),
      headers: { "x-mock-status": "429", "x-mock-retry-after": "30" },
    });
    assert.equal(limited.status, 429);
    await limited.body?.cancel();
    s = await state();
    const l = s.up("limited", "l");
    assert.equal(l.available, false);
    const until = Date.parse(l.rateLimitedUntil);
    assert.ok(until > Date.now() + 25_000 && until <= Date.now() + 31_000, l.rateLimitedUntil);

    // A 500 opens fragile's breaker: state, remaining cool-down and the error count show it.
    const failed = await fetch(`${proxy.url()}/fragile`, {
      method: "POST",
      body: chat(),
      headers: { "x-mock-status": "500" },
    });
    await failed.body?.cancel();
    s = await state();
    const f = s.up("fragile", "f");
    assert.equal(f.breaker, "open");
    assert.equal(f.available, false);
    assert.ok(
      f.breakerCooldownMs > 55_000 && f.breakerCooldownMs <= 60_000,
      String(f.breakerCooldownMs),
    );
    assert.equal(f.requests, 1);
    assert.equal(f.errors, 1);
  });
});

Deno.test("admin: with a token (from ${VAR}), /upstreams /config /reload need it; the rest stay open", async () => {
  await withProxy(`admin: {port: 0, token: "\${ADMIN_TOKEN}"}`, async (proxy) => {
    const base = proxy.adminUrl();
    for (const [method, path] of [["GET", "/upstreams"], ["GET", "/config"], ["POST", "/reload"]]) {
      for (
        const headers of <Record<string, string>[]> [
          {},
          { authorization: "Bearer wrong-token" },
          { authorization: `Bearer ${TOKEN}x` },
          { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
          { authorization: TOKEN },
          { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` },
          { authorization: "Bearer " },
        ]
      ) {
        const response = await fetch(`${base}${path}`, { method, headers });
        const text = await response.text();
        assert.equal(response.status, 401, `${method} ${path} ${JSON.stringify(headers)}: ${text}`);
        assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer/);
        assert.equal(JSON.parse(text).error.code, "invalid_admin_token");
        assert.ok(!text.includes(TOKEN));
      }
    }
    const lower = await fetch(`${base}/upstreams`, {
      headers: { authorization: `bearer ${TOKEN}` },
    });
    assert.equal(lower.status, 200, "the auth scheme is case-insensitive");
    await lower.body?.cancel();
    const upstreams = await fetch(`${base}/upstreams`, bearer(TOKEN));
    assert.equal(upstreams.status, 200);
    assert.ok(Array.isArray((await upstreams.json()).groups));
    const configResponse = await fetch(`${base}/config`, bearer(TOKEN));
    assert.equal(configResponse.status, 200);
    const text = await configResponse.text();
    assert.ok(!text.includes(TOKEN), text);
    assert.equal(JSON.parse(text).httpServer.admin.token, "[REDACTED]");
    // No reload callback in this harness: an authorized reload is refused, not a crash.
    const reload = await fetch(`${base}/reload`, { method: "POST", ...bearer(TOKEN) });
    assert.equal(reload.status, 400);
    assert.equal((await reload.json()).status, "rejected");

    for (const path of ["/health", "/ping", "/ready", "/metrics"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 200, path);
      assert.ok(!(await response.text()).includes(TOKEN));
    }
  }, { ADMIN_TOKEN: TOKEN });
});

Deno.test("admin: without a token /upstreams and /config are open", async () => {
  await withProxy(undefined, async (proxy) => {
    for (const path of ["/upstreams", "/config"]) {
      const response = await fetch(`${proxy.adminUrl()}${path}`);
      assert.equal(response.status, 200, path);
      await response.body?.cancel();
    }
  });
});

Deno.test("admin: a warning at start-up when the admin address is not loopback and there is no token", async () => {
  const warned = (logs: string[]) =>
    logs.some((line) => / WARN /.test(line) && line.includes("without a token"));
  await withProxy(`admin: {port: 0, address: "0.0.0.0"}`, (proxy) => {
    assert.ok(warned(proxy.logs), proxy.logs.join(""));
    return Promise.resolve();
  });
  await withProxy(`admin: {port: 0, address: "0.0.0.0", token: "${TOKEN}"}`, (proxy) => {
    assert.ok(!warned(proxy.logs), proxy.logs.join(""));
    assert.ok(!proxy.logs.join("").includes(TOKEN));
    return Promise.resolve();
  });
  await withProxy(`admin: {port: 0, address: "127.0.0.1"}`, (proxy) => {
    assert.ok(!warned(proxy.logs), proxy.logs.join(""));
    return Promise.resolve();
  });
});
