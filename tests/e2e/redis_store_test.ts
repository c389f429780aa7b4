/**
 * End-to-end with `state.store: redis` against a real `redis-server` (started here on a free
 * port, stopped by PID): two proxy instances share one Redis, so a client key's request rate,
 * its tokens per minute, its budget and a per-IP limit hold for both together; Redis stopped
 * mid-run gives the configured fallback, the store metrics and a degraded `/ready`; Redis back
 * makes the limits shared again. Skipped, loudly, where `redis-server` is not installed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { redisAvailable, type RedisServer, startRedisServer } from "../_helpers/redis_server.ts";

const KEY = "sk-redis-shared-key-0123456789";
const ignore = !redisAvailable();

function config(
  mockUrl: string,
  redis: RedisServer,
  prefix: string,
  extra: { key?: string; forward?: string; onStoreError?: string; upstream?: string } = {},
): string {
  return `httpServer:
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
${extra.forward ? `      ${extra.forward}\n` : ""}  admin: {port: 0}
upstreams:
  - name: u
    url: "${mockUrl}"
${extra.upstream ? `    ${extra.upstream}\n` : ""}upstreamGroups:
  - name: g
    upstreams: [{name: u}]
    httpClient: {retry: {attempts: 0}}
clientKeys:
  - name: team_a
    key: "${KEY}"
${extra.key ? `    ${extra.key}\n` : ""}state:
  store: redis
  redis: {url: "${redis.url}", prefix: "${prefix}", timeout: "200ms"}
  onStoreError: ${extra.onStoreError ?? "local"}
`;
}

interface Pair {
  a: TestProxy;
  b: TestProxy;
  mock: MockUpstream;
  redis: RedisServer;
}

async function withPair(
  extra: Parameters<typeof config>[3],
  fn: (pair: Pair) => Promise<void>,
): Promise<void> {
  const redis = await startRedisServer();
  const mock = await startMockUpstream({ name: "redis-mock" });
  const prefix = `t${crypto.randomUUID().slice(0, 8)}:`;
  const yaml = config(mock.url, redis, prefix, extra);
  const a = await startTestProxy(yaml, { captureLogs: true, logLevel: "warn" });
  const b = await startTestProxy(yaml, { captureLogs: true, logLevel: "warn" });
  try {
    await fn({ a, b, mock, redis });
  } finally {
    await a.stop();
    await b.stop();
    await mock.close();
    await redis.stop();
  }
}

async function post(
  proxy: TestProxy,
  headers: Record<string, string> = {},
): Promise<{ status: number; code: string | undefined; headers: Headers }> {
  const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers },
    body: JSON.stringify({ model: "m", messages: [] }),
  });
  const json = await response.json();
  return { status: response.status, code: json.error?.code, headers: response.headers };
}

interface ReadyBody {
  status: string;
  store?: { status: string; error: string; since: string; onStoreError: string };
}

async function readyOf(proxy: TestProxy): Promise<{ status: number; body: ReadyBody }> {
  const response = await fetch(`${proxy.adminUrl()}/ready`);
  return { status: response.status, body: await response.json() };
}

/** Polls `check` every 25 ms for up to `ms`; true once it holds. */
async function eventually(check: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return false;
}

/** Sends `n` requests alternating between the two proxies; the statuses in order. */
async function alternate(pair: Pair, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) statuses.push((await post(i % 2 === 0 ? pair.a : pair.b)).status);
  return statuses;
}

Deno.test({
  name: "e2e redis: two instances share one client key's request rate (N/s for both together)",
  ignore,
  fn: () =>
    withPair({ key: "ratelimit: {perSecond: 1, burst: 4}" }, async (pair) => {
      const statuses = await alternate(pair, 8);
      const admitted = statuses.filter((s) => s === 200).length;
      // 4 at once, plus at most one refilled while the 8 requests ran.
      assert.ok(admitted === 4 || admitted === 5, `admitted ${admitted}: ${statuses}`);
      assert.ok(statuses.slice(0, 4).every((s) => s === 200), String(statuses));
      assert.equal(statuses.filter((s) => s === 429).length, 8 - admitted);
      // Both instances refuse once the shared bucket is empty.
      assert.equal((await post(pair.a)).code, "rate_limited");
      assert.equal((await post(pair.b)).code, "rate_limited");
      assert.deepEqual((await readyOf(pair.a)).body, { status: "ready" });
      const metrics = await (await fetch(`${pair.a.adminUrl()}/metrics`)).text();
      assert.match(metrics, /llmproxy_store_latency_seconds_count\{op="key_admit"\} [1-9]/);
      assert.doesNotMatch(metrics, /llmproxy_store_errors_total\{/);
    }),
});

Deno.test({
  name: "e2e redis: a per-IP limit holds for both instances together",
  ignore,
  fn: () =>
    withPair({ forward: "ratelimit: {perSecond: 1, burst: 3}" }, async (pair) => {
      const statuses = await alternate(pair, 6);
      const admitted = statuses.filter((s) => s === 200).length;
      assert.ok(admitted === 3 || admitted === 4, `admitted ${admitted}: ${statuses}`);
    }),
});

Deno.test({
  name:
    "e2e redis: tokens per minute and the budget are shared: usage charged on one refuses on the other",
  ignore,
  fn: async () => {
    for (
      const [key, code] of [
        ["tokens: {perMinute: 1000}", "rate_limited"],
        ['budget: {tokens: 1000, period: "1d"}', "budget_exceeded"],
      ] as const
    ) {
      await withPair({ key }, async (pair) => {
        // The mock reports 10 prompt tokens + one completion token per chunk: 2,000 in all.
        assert.equal((await post(pair.a, { "x-mock-chunks": "1990" })).status, 200);
        // The charge is sent when the answer ends (fire and forget): B sees it right after.
        assert.ok(
          await eventually(async () => (await post(pair.b)).code === code, 2_000),
          `${key}: B never refused`,
        );
        if (code === "budget_exceeded") {
          const keys = await (await fetch(`${pair.b.adminUrl()}/keys`)).json();
          assert.ok(
            keys.keys[0].budget.used >= 2_000,
            `B shows the usage charged on A: ${keys.keys[0].budget.used}`,
          );
        }
      });
    }
  },
});

Deno.test({
  name:
    "e2e redis: Redis stopped → local limits, errors counted, /ready degraded; Redis back → shared again",
  ignore,
  fn: () =>
    withPair({ key: "ratelimit: {perSecond: 1, burst: 4}" }, async (pair) => {
      await pair.redis.stop();
      // Each instance now applies its own limit: 4 each.
      const local = [];
      for (let i = 0; i < 5; i++) local.push((await post(pair.a)).status);
      assert.deepEqual(local, [200, 200, 200, 200, 429]);
      const ready = await readyOf(pair.a);
      assert.equal(ready.status, 200);
      assert.equal(ready.body.status, "degraded");
      assert.equal(ready.body.store?.status, "down");
      assert.equal(ready.body.store?.onStoreError, "local");
      const metrics = await (await fetch(`${pair.a.adminUrl()}/metrics`)).text();
      assert.match(metrics, /llmproxy_store_errors_total\{op="key_admit"\} [1-9]/);
      assert.ok(pair.a.logs.some((l) => l.includes("shared limit store failed")), "logged once");

      await pair.redis.restart();
      for (const proxy of [pair.a, pair.b]) {
        assert.ok(
          await eventually(async () => (await readyOf(proxy)).body.status === "ready"),
          "ready again once Redis answers",
        );
      }
      // Shared again (the new Redis is empty: the bucket starts full, for both together).
      const statuses = await alternate(pair, 8);
      const admitted = statuses.filter((s) => s === 200).length;
      assert.ok(admitted === 4 || admitted === 5, `admitted ${admitted}: ${statuses}`);
    }),
});

Deno.test({
  name:
    "e2e redis: with onStoreError reject, Redis down answers 503 store_unavailable and /ready 503",
  ignore,
  fn: () =>
    withPair(
      { key: "ratelimit: {perSecond: 1, burst: 4}", onStoreError: "reject" },
      async (pair) => {
        assert.equal((await post(pair.a)).status, 200);
        await pair.redis.stop();
        const refused = await post(pair.a);
        assert.equal(refused.status, 503);
        assert.equal(refused.code, "store_unavailable");
        const ready = await readyOf(pair.a);
        assert.equal(ready.status, 503);
        assert.equal(ready.body.store?.onStoreError, "reject");
        await pair.redis.restart();
        assert.ok(await eventually(async () => (await post(pair.a)).status === 200));
      },
    ),
});

Deno.test({
  name: "e2e redis: a per-upstream limit holds for both instances together",
  ignore,
  fn: () =>
    withPair({ upstream: "ratelimit: {perSecond: 1, burst: 3}" }, async (pair) => {
      const statuses = await alternate(pair, 6);
      const admitted = statuses.filter((s) => s === 200).length;
      assert.ok(admitted === 3 || admitted === 4, `admitted ${admitted}: ${statuses}`);
      assert.equal(pair.mock.requests.length, admitted);
      assert.equal((await post(pair.b)).code, "upstream_rate_limited");
    }),
});

Deno.test({
  name:
    "e2e redis: a 429 cool-down on one instance keeps the other off that upstream too (no rate limit: read in the background)",
  ignore,
  fn: () =>
    withPair({}, async (pair) => {
      const limited = await post(pair.a, { "x-mock-status": "429", "x-mock-retry-after": "30" });
      assert.equal(limited.status, 429);
      // Without a rate limit an attempt makes no store call: B reads cool-downs every 250 ms.
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal((await post(pair.b)).status, 503, "B skips the upstream A was told to leave");
      assert.equal(pair.mock.requests.length, 1, "nothing more reached the upstream");
      const metrics = await (await fetch(`${pair.b.adminUrl()}/metrics`)).text();
      assert.doesNotMatch(metrics, /op="upstream"/, "no store call per attempt");
    }),
});

Deno.test({
  name:
    "e2e redis: with a per-upstream limit, the attempt's one call reads another instance's cool-down",
  ignore,
  fn: () =>
    withPair({ upstream: "ratelimit: {perSecond: 100, burst: 100}" }, async (pair) => {
      const limited = await post(pair.a, { "x-mock-status": "429", "x-mock-retry-after": "30" });
      assert.equal(limited.status, 429);
      assert.ok(
        await eventually(async () => (await post(pair.b)).status === 503, 2_000),
        "B skips the upstream A was told to leave alone",
      );
      assert.equal(pair.mock.requests.length, 1, "nothing more reached the upstream");
    }),
});
