/**
 * End-to-end per-client-IP rate limits and client-IP resolution (trusted proxies, iphash),
 * against real listeners and mock upstreams on port 0.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";

const CHAT = "/v1/chat/completions";
const LIMIT = "ratelimit: {perSecond: 1, burst: 2}";

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

async function chat(proxy: TestProxy, headers: Record<string, string> = {}): Promise<Reply> {
  const response = await fetch(`${proxy.url()}${CHAT}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "m" }),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function withSetup(
  mockNames: readonly string[],
  yaml: (mocks: MockUpstream[]) => string,
  fn: (proxy: TestProxy, mocks: MockUpstream[]) => Promise<void>,
): Promise<void> {
  const mocks: MockUpstream[] = [];
  let proxy: TestProxy | undefined;
  try {
    for (const name of mockNames) mocks.push(await startMockUpstream({ name }));
    proxy = await startTestProxy(yaml(mocks));
    await fn(proxy, mocks);
  } finally {
    await proxy?.stop();
    for (const mock of mocks) await mock.close();
  }
}

const urls = (mocks: MockUpstream[]) => mocks.map((m) => `${m.url}${CHAT}`);

Deno.test("e2e: per-IP limit: the third rapid request gets 429 with Retry-After and X-RateLimit-*", async () => {
  await withSetup(["a"], (m) => simpleConfig(urls(m), { forward: LIMIT }), async (proxy, [a]) => {
    const first = await chat(proxy);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-limit"), "2");
    assert.equal(first.headers.get("x-ratelimit-remaining"), "1");
    assert.match(first.headers.get("x-ratelimit-reset") ?? "", /^[12]$/);
    assert.ok(first.headers.get("x-request-id"));

    const second = await chat(proxy);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get("x-ratelimit-remaining"), "0");

    const third = await chat(proxy);
    assert.equal(third.status, 429, third.text);
    const error = JSON.parse(third.text).error;
    assert.equal(error.code, "rate_limit_exceeded");
    assert.equal(error.type, "rate_limit_error");
    assert.equal(third.headers.get("retry-after"), "1");
    assert.equal(third.headers.get("x-ratelimit-limit"), "2");
    assert.equal(third.headers.get("x-ratelimit-remaining"), "0");
    assert.match(third.headers.get("x-ratelimit-reset") ?? "", /^[12]$/);
    assert.ok(third.headers.get("x-request-id"));
    assert.equal(a!.requests.length, 2, "a rejected request reached the upstream");
  });
});

Deno.test("e2e: per-IP limit: a spoofed X-Forwarded-For from an untrusted peer changes nothing", async () => {
  await withSetup(["a"], (m) => simpleConfig(urls(m), { forward: LIMIT }), async (proxy, [a]) => {
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await chat(proxy, { "x-forwarded-for": `203.0.113.${i + 1}` })).status);
    }
    assert.deepEqual(statuses, [200, 200, 429, 429]);
    // The header travels on with the real peer appended; it is just not believed.
    assert.equal(a!.requests[0]!.headers.get("x-forwarded-for"), "203.0.113.1, 127.0.0.1");
  });
});

Deno.test("e2e: per-IP limit: behind a trusted proxy each X-Forwarded-For client has its own bucket", async () => {
  await withSetup(
    ["a"],
    (m) => simpleConfig(urls(m), { forward: LIMIT, server: 'trustedProxies: ["127.0.0.1/32"]' }),
    async (proxy, [a]) => {
      const client1 = { "x-forwarded-for": "198.51.100.1" };
      const client2 = { "x-forwarded-for": "198.51.100.2" };
      assert.equal((await chat(proxy, client1)).status, 200);
      assert.equal((await chat(proxy, client1)).status, 200);
      const limited = await chat(proxy, client1);
      assert.equal(limited.status, 429);
      assert.match(JSON.parse(limited.text).error.message, /198\.51\.100\.1/);

      const other = await chat(proxy, client2);
      assert.equal(other.status, 200);
      assert.equal(other.headers.get("x-ratelimit-remaining"), "1");
      // The socket peer itself is yet another key.
      assert.equal((await chat(proxy)).status, 200);

      assert.equal(a!.requests.length, 4);
      assert.equal(a!.requests[0]!.headers.get("x-forwarded-for"), "198.51.100.1, 127.0.0.1");
      assert.equal(a!.requests[2]!.headers.get("x-forwarded-for"), "198.51.100.2, 127.0.0.1");
      assert.equal(a!.requests[3]!.headers.get("x-forwarded-for"), "127.0.0.1");
    },
  );
});

Deno.test("e2e: iphash: one client (trusted X-Forwarded-For) sticks to one upstream", async () => {
  await withSetup(
    ["a", "b", "c"],
    (m) =>
      simpleConfig(urls(m), {
        server: 'trustedProxies: ["127.0.0.1"]',
        group: "balance: {strategy: iphash}",
      }),
    async (proxy, mocks) => {
      const upstreamOf = new Map<string, Set<string>>();
      for (let round = 0; round < 3; round++) {
        for (let client = 1; client <= 20; client++) {
          const ip = `192.0.2.${client}`;
          const reply = await chat(proxy, { "x-forwarded-for": ip });
          assert.equal(reply.status, 200);
          const seen = upstreamOf.get(ip) ?? new Set();
          seen.add(reply.headers.get("x-mock-upstream")!);
          upstreamOf.set(ip, seen);
        }
      }
      for (const [ip, seen] of upstreamOf) {
        assert.equal(seen.size, 1, `${ip} went to ${[...seen].join(", ")}`);
      }
      // Different clients still spread over the group.
      const used = mocks.filter((m) => m.requests.length > 0).length;
      assert.ok(used >= 2, `20 clients all went to one upstream`);
    },
  );
});
