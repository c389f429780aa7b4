/**
 * End-to-end resilience: retries, failover, 429 back-off, circuit breakers, retry budget and
 * per-upstream rate limits, against real listeners and mock upstreams on port 0.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../_helpers/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";

const CHAT = "/v1/chat/completions";

/** A port on 127.0.0.1 that refuses connections: bound once, then closed. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  ms: number;
}

/** POSTs a small chat completion through the proxy and reads the whole answer. */
async function chat(
  proxy: TestProxy,
  options: { headers?: Record<string, string>; stream?: boolean } = {},
): Promise<Reply> {
  const started = performance.now();
  const response = await fetch(`${proxy.url()}${CHAT}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: JSON.stringify({ model: "m", stream: options.stream ?? false }),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    ms: performance.now() - started,
  };
}

/** Starts `count` named mocks, runs `fn`, and always cleans everything up. */
async function withMocks(
  names: readonly string[],
  fn: (mocks: MockUpstream[]) => Promise<void>,
): Promise<void> {
  const mocks: MockUpstream[] = [];
  try {
    for (const name of names) mocks.push(await startMockUpstream({ name }));
    await fn(mocks);
  } finally {
    for (const mock of mocks) await mock.close();
  }
}

async function withProxy(yaml: string, fn: (proxy: TestProxy) => Promise<void>): Promise<void> {
  const proxy = await startTestProxy(yaml);
  try {
    await fn(proxy);
  } finally {
    await proxy.stop();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function errorCode(reply: Reply): string {
  return JSON.parse(reply.text).error.code;
}

const FAST_RETRY = `httpClient:
  retry: {attempts: 1, initial: "10ms"}`;

Deno.test("e2e: a refused first upstream fails over to the healthy second for every request", async () => {
  await withMocks(["b"], async ([b]) => {
    const dead = `http://127.0.0.1:${closedPort()}${CHAT}`;
    await withProxy(
      simpleConfig([dead, `${b!.url}${CHAT}`], { group: FAST_RETRY }),
      async (proxy) => {
        for (let i = 0; i < 20; i++) {
          const reply = await chat(proxy);
          assert.equal(reply.status, 200, `request ${i}: ${reply.text}`);
          assert.equal(reply.headers.get("x-mock-upstream"), "b");
        }
        assert.equal(b!.requests.length, 20);
      },
    );
  });
});

Deno.test("e2e: a 503 from the first upstream of two is retried on the second", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    a!.script({ status: 503 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`, `${b!.url}${CHAT}`], { group: FAST_RETRY });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.headers.get("x-mock-upstream"), "b");
      assert.equal(JSON.parse(reply.text).object, "chat.completion");
      assert.equal(a!.requests.length, 1);
      assert.equal(b!.requests.length, 1);
      // The replayed body is the client's.
      assert.deepEqual(JSON.parse(b!.requests[0]!.body), { model: "m", stream: false });
    });
  });
});

Deno.test("e2e: a lone upstream's 503 is retried on the same upstream", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.script({ status: 503 });
    await withProxy(simpleConfig([`${a!.url}${CHAT}`], { group: FAST_RETRY }), async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 200, reply.text);
      assert.equal(a!.requests.length, 2);
    });
  });
});

Deno.test("e2e: a 429 with retry-after-ms keeps that upstream out until it passes", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    a!.script({ status: 429, headers: { "retry-after-ms": "300" } });
    const yaml = simpleConfig([`${a!.url}${CHAT}`, `${b!.url}${CHAT}`], { group: FAST_RETRY });
    await withProxy(yaml, async (proxy) => {
      const first = await chat(proxy);
      const limitedAt = performance.now();
      assert.equal(first.status, 200, first.text);
      assert.equal(first.headers.get("x-mock-upstream"), "b");
      assert.equal(a!.requests.length, 1);

      // Round robin would alternate; while A cools down, everything goes to B.
      let backAt: number | undefined;
      for (let i = 0; i < 200 && backAt === undefined; i++) {
        const sentAt = performance.now();
        const reply = await chat(proxy);
        assert.equal(reply.status, 200, reply.text);
        if (reply.headers.get("x-mock-upstream") === "a") backAt = sentAt;
        else await sleep(20);
      }
      assert.ok(backAt !== undefined, "upstream a never received traffic again");
      const waited = backAt - limitedAt;
      assert.ok(waited >= 250, `a was back after ${waited.toFixed(0)} ms, before its 300 ms`);
      assert.ok(waited < 1500, `a was back only after ${waited.toFixed(0)} ms`);
      assert.equal(a!.requests.length, 2);
    });
  });
});

Deno.test("e2e: a 429 with Retry-After: 1 sends the next requests to the other upstream", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    a!.script({ status: 429, retryAfter: "1" });
    const yaml = simpleConfig([`${a!.url}${CHAT}`, `${b!.url}${CHAT}`], { group: FAST_RETRY });
    await withProxy(yaml, async (proxy) => {
      for (let i = 0; i < 6; i++) {
        const reply = await chat(proxy);
        assert.equal(reply.status, 200, reply.text);
        assert.equal(reply.headers.get("x-mock-upstream"), "b");
      }
      assert.equal(a!.requests.length, 1);
      assert.equal(b!.requests.length, 6);
    });
  });
});

Deno.test("e2e: a lone upstream's 429 is retried after its Retry-After, or passed through", async () => {
  await withMocks(["a"], async ([a]) => {
    // Waits the upstream's 200 ms, then retries the same (only) upstream.
    a!.script({ status: 429, headers: { "retry-after-ms": "200" } });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      group: `httpClient:
  retry: {attempts: 2, initial: "10ms", budget: "1s"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 200, reply.text);
      assert.equal(a!.requests.length, 2);
      assert.ok(reply.ms >= 180, `retried after ${reply.ms.toFixed(0)} ms`);

      // A Retry-After beyond the budget: the upstream's own 429 reaches the client.
      a!.script({ status: 429, retryAfter: "30" });
      const limited = await chat(proxy);
      assert.equal(limited.status, 429, limited.text);
      assert.equal(limited.headers.get("retry-after"), "30");
      assert.equal(limited.headers.get("x-mock-upstream"), "a");
      assert.equal(JSON.parse(limited.text).error.type, "rate_limit_error");
      assert.equal(a!.requests.length, 3);
    });
  });
});

const BREAKER =
  `breaker: {threshold: 0.5, minRequests: 4, interval: 10, cooldown: "500ms", maxRequests: 1}`;

Deno.test("e2e: an always-500 upstream trips its breaker, gets a half-open probe, then recovers", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    a!.always({ status: 500 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`, `${b!.url}${CHAT}`], {
      upstream: BREAKER,
      group: FAST_RETRY,
    });
    await withProxy(yaml, async (proxy) => {
      const upstreamA = proxy.app.runtime().upstreams.get("u0")!;
      // Round robin comes back to A on every request until the breaker opens.
      for (let i = 0; i < 4; i++) {
        const reply = await chat(proxy);
        assert.equal(reply.status, 200, reply.text);
        assert.equal(reply.headers.get("x-mock-upstream"), "b");
      }
      assert.equal(a!.requests.length, 4);
      assert.equal(upstreamA.breaker.state(Date.now()), "open");

      for (let i = 0; i < 6; i++) assert.equal((await chat(proxy)).status, 200);
      assert.equal(a!.requests.length, 4, "an open breaker still let traffic through");

      // After the cooldown: one probe, which fails → open again, no further traffic.
      await sleep(600);
      assert.equal((await chat(proxy)).status, 200);
      assert.equal(a!.requests.length, 5);
      assert.equal(upstreamA.breaker.state(Date.now()), "open");
      for (let i = 0; i < 3; i++) assert.equal((await chat(proxy)).status, 200);
      assert.equal(a!.requests.length, 5);

      // Healthy again: the next probe closes the breaker and A takes its share.
      a!.always(undefined);
      await sleep(600);
      const probe = await chat(proxy);
      assert.equal(probe.status, 200);
      assert.equal(probe.headers.get("x-mock-upstream"), "a");
      assert.equal(upstreamA.breaker.state(Date.now()), "closed");
      const seen: string[] = [];
      for (let i = 0; i < 4; i++) seen.push((await chat(proxy)).headers.get("x-mock-upstream")!);
      assert.deepEqual(seen.sort(), ["a", "a", "b", "b"]);
    });
  });
});

Deno.test("e2e: when the only upstream's breaker is open the proxy answers 503 at once", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.always({ status: 500 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      upstream:
        `breaker: {threshold: 0.5, minRequests: 4, interval: 10, cooldown: 30, maxRequests: 1}`,
      group: `httpClient:
  retry: {attempts: 0}`,
    });
    await withProxy(yaml, async (proxy) => {
      for (let i = 0; i < 4; i++) assert.equal((await chat(proxy)).status, 500);
      const reply = await chat(proxy);
      assert.equal(reply.status, 503, reply.text);
      assert.equal(errorCode(reply), "no_upstream_available");
      assert.equal(JSON.parse(reply.text).error.type, "upstream_unavailable");
      assert.ok(reply.headers.get("x-request-id"));
      assert.ok(reply.ms < 500, `took ${reply.ms.toFixed(0)} ms`);
      assert.equal(a!.requests.length, 4);
    });
  });
});

Deno.test("e2e: a stream cut mid-way is not retried and ends with an SSE error event", async () => {
  await withMocks(["a"], async ([a]) => {
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      group: `httpClient:
  retry: {attempts: 3, initial: "10ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy, { stream: true, headers: { "x-mock-cut-after": "2" } });
      assert.equal(reply.status, 200);
      assert.match(reply.headers.get("content-type") ?? "", /^text\/event-stream/);
      assert.equal(reply.text.match(/chat\.completion\.chunk/g)?.length, 2);
      assert.match(reply.text, /event: error\ndata: .*upstream_stream_error/);
      assert.doesNotMatch(reply.text, /\[DONE\]/);
      await sleep(50);
      assert.equal(a!.requests.length, 1);
      assert.equal(proxy.app.runtime().upstreams.get("u0")!.errors, 1);
    });
  });
});

Deno.test("e2e: upstream 400 and 404 pass through, are not retried and do not trip the breaker", async () => {
  await withMocks(["a"], async ([a]) => {
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      upstream: `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: 30}`,
      group: `httpClient:
  retry: {attempts: 3, initial: "10ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      for (const status of [400, 404, 400, 404, 400, 404]) {
        const reply = await chat(proxy, { headers: { "x-mock-status": String(status) } });
        assert.equal(reply.status, status);
        assert.equal(reply.headers.get("x-mock-upstream"), "a");
        assert.equal(JSON.parse(reply.text).error.message, `Mock upstream error ${status}`);
      }
      assert.equal(a!.requests.length, 6);
      const upstream = proxy.app.runtime().upstreams.get("u0")!;
      assert.equal(upstream.breaker.state(Date.now()), "closed");
      assert.equal(upstream.errors, 0);
      assert.equal((await chat(proxy)).status, 200);
    });
  });
});

Deno.test("e2e: when retries are exhausted the last upstream 5xx passes through as is", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    a!.always({ status: 502, body: '{"custom":"from a"}' });
    b!.always({ status: 503, body: '{"custom":"from b"}' });
    const yaml = simpleConfig([`${a!.url}${CHAT}`, `${b!.url}${CHAT}`], { group: FAST_RETRY });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 503);
      assert.equal(reply.text, '{"custom":"from b"}');
      assert.equal(reply.headers.get("x-mock-upstream"), "b");
      assert.equal(a!.requests.length, 1);
      assert.equal(b!.requests.length, 1);
    });
  });
});

Deno.test("e2e: a lone upstream's 500 is retried `attempts` times, then passed through", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.always({ status: 500 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      group: `httpClient:
  retry: {attempts: 2, initial: "10ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 500);
      assert.equal(JSON.parse(reply.text).error.message, "Mock upstream error 500");
      assert.equal(a!.requests.length, 3);
    });
  });
});

Deno.test("e2e: a breaker opening during retries passes the last 5xx through, not a 503", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.always({ status: 500 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      upstream: `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: 30}`,
      group: `httpClient:
  retry: {attempts: 3, initial: "10ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 500, reply.text);
      assert.equal(JSON.parse(reply.text).error.message, "Mock upstream error 500");
      assert.equal(a!.requests.length, 2);
      const next = await chat(proxy);
      assert.equal(next.status, 503);
      assert.equal(errorCode(next), "no_upstream_available");
      assert.equal(a!.requests.length, 2);
    });
  });
});

Deno.test("e2e: a refused lone upstream answers 502 upstream_unreachable", async () => {
  const dead = `http://127.0.0.1:${closedPort()}${CHAT}`;
  const yaml = simpleConfig([dead], {
    upstream: `breaker: {threshold: 0.5, minRequests: 2, interval: 10, cooldown: 30}`,
    group: `httpClient:
  retry: {attempts: 3, initial: "10ms"}`,
  });
  await withProxy(yaml, async (proxy) => {
    // Two refusals open the breaker: the retries stop there, with the connect error.
    const reply = await chat(proxy);
    assert.equal(reply.status, 502, reply.text);
    assert.equal(errorCode(reply), "upstream_unreachable");
    assert.equal(proxy.app.runtime().upstreams.get("u0")!.requests, 2);
    const next = await chat(proxy);
    assert.equal(next.status, 503);
    assert.equal(errorCode(next), "no_upstream_available");
  });
});

Deno.test("e2e: the retry budget bounds the time spent retrying", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.always({ status: 503 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      group: `httpClient:
  retry: {attempts: 5, initial: "200ms", budget: "300ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const reply = await chat(proxy);
      assert.equal(reply.status, 503);
      assert.equal(JSON.parse(reply.text).error.message, "Mock upstream error 503");
      assert.ok(reply.ms < 1500, `took ${reply.ms.toFixed(0)} ms`);
      // 5 retries at 100–200, 200–400, … ms would take far longer than 300 ms.
      assert.ok(a!.requests.length >= 2 && a!.requests.length <= 3, `${a!.requests.length}`);
    });
  });
});

Deno.test("e2e: a lone upstream at its rate limit answers 429 upstream_rate_limited", async () => {
  await withMocks(["a"], async ([a]) => {
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      upstream: "ratelimit: {perSecond: 1, burst: 2}",
    });
    await withProxy(yaml, async (proxy) => {
      assert.equal((await chat(proxy)).status, 200);
      assert.equal((await chat(proxy)).status, 200);
      const reply = await chat(proxy);
      assert.equal(reply.status, 429, reply.text);
      assert.equal(errorCode(reply), "upstream_rate_limited");
      assert.equal(JSON.parse(reply.text).error.type, "rate_limit_error");
      const retryAfter = Number(reply.headers.get("retry-after"));
      assert.ok(retryAfter >= 1 && retryAfter <= 2, `retry-after ${retryAfter}`);
      assert.equal(a!.requests.length, 2);
    });
  });
});

Deno.test("e2e: an upstream at its rate limit is skipped while another has room", async () => {
  await withMocks(["a", "b"], async ([a, b]) => {
    const yaml = `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g}
upstreams:
  - name: a
    url: "${a!.url}${CHAT}"
    ratelimit: {perSecond: 0.1, burst: 2}
  - name: b
    url: "${b!.url}${CHAT}"
upstreamGroups:
  - name: g
    upstreams: [{name: a}, {name: b}]
`;
    await withProxy(yaml, async (proxy) => {
      for (let i = 0; i < 8; i++) assert.equal((await chat(proxy)).status, 200);
      assert.equal(a!.requests.length, 2);
      assert.equal(b!.requests.length, 6);
    });
  });
});

Deno.test("e2e: a client that leaves during the retry delay gets no further upstream attempt", async () => {
  await withMocks(["a"], async ([a]) => {
    a!.always({ status: 503 });
    const yaml = simpleConfig([`${a!.url}${CHAT}`], {
      group: `httpClient:
  retry: {attempts: 2, initial: "400ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      const controller = new AbortController();
      const pending = fetch(`${proxy.url()}${CHAT}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m" }),
        signal: controller.signal,
      });
      await a!.waitForRequests(1, 2000);
      controller.abort(); // during the 200–400 ms back-off before the retry
      await assert.rejects(pending);
      await sleep(700);
      assert.equal(a!.requests.length, 1, "the proxy retried for a client that was gone");
      const upstream = proxy.app.runtime().upstreams.get("u0")!;
      assert.equal(upstream.inFlight, 0);
      assert.equal(proxy.app.runtime().inFlight, 0);
    });
  });
});

Deno.test("e2e: a shutdown past its drain deadline ends a request waiting to retry, sending nothing more", async () => {
  const mock = await startMockUpstream();
  mock.always({ status: 503 });
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/v1/chat/completions`], {
      group: `httpClient: {retry: {attempts: 2, initial: "5s", budget: "30s"}}`,
    }),
  );
  try {
    const started = performance.now();
    const pending = fetch(`${proxy.url()}/v1/chat/completions`, { method: "POST", body: "{}" });
    await mock.waitForRequests(1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    proxy.app.runtime().shutdown(new Error("drain deadline passed"));
    const response = await pending;
    const body = await response.json();
    assert.equal(response.status, 503);
    assert.equal(body.error.code, "shutting_down");
    assert.ok(performance.now() - started < 2_000, "the 5 s retry wait was cut short");
    assert.equal(mock.requests.length, 1);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e: a final answer kept after a retry decision is still ended by a shutdown", async () => {
  // The upstream answers 500 with an SSE body that never ends. The 500 opens its breaker
  // (one failure is enough here), so the retry has nowhere to go and the 500 passes through.
  const encoder = new TextEncoder();
  let upstreamBodyCancelled = false;
  const bodies: ReadableStreamDefaultController<Uint8Array>[] = [];
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        bodies.push(controller);
        controller.enqueue(encoder.encode("data: partial\n\n"));
      },
      cancel() {
        upstreamBodyCancelled = true;
      },
    });
    return new Response(body, { status: 500, headers: { "content-type": "text/event-stream" } });
  });
  try {
    const yaml = simpleConfig([`http://127.0.0.1:${upstream.addr.port}${CHAT}`], {
      server: `shutdownTimeout: "200ms"`,
      upstream:
        `breaker: {threshold: 0.5, minRequests: 1, interval: 10, cooldown: 30, maxRequests: 1}`,
      group: `httpClient:
  retry: {attempts: 1, initial: "10ms"}`,
    });
    const proxy = await startTestProxy(yaml);
    const response = await fetch(`${proxy.url()}${CHAT}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", stream: true }),
    });
    assert.equal(response.status, 500);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    assert.match(text, /data: partial/);

    const started = Date.now();
    const stopped = proxy.stop();
    // The shutdown ends the stream after its drain deadline, with an error event.
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const endedAfter = Date.now() - started;
    await stopped;
    assert.ok(endedAfter < 2_000, `the stream ended ${endedAfter} ms after the stop`);
    assert.match(text, /event: error/);
    assert.match(text, /"code":"shutting_down"/);
    // The upstream's side was let go too: its connection closed, its body cancelled.
    for (let waited = 0; !upstreamBodyCancelled && waited < 2_000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(upstreamBodyCancelled, "the upstream body was never cancelled");
  } finally {
    for (const body of bodies) {
      try {
        body.close();
      } catch { /* cancelled already */ }
    }
    await upstream.shutdown();
  }
});

Deno.test("e2e: a shutdown during a whole-body read answers 503 shutting_down, not a client disconnect", async () => {
  // A raw upstream: announces 100 bytes of JSON, sends 10, then stalls.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      await conn.read(new Uint8Array(64 * 1024)); // the request (small, one read)
      await conn.write(
        new TextEncoder().encode(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":"x",',
        ),
      );
    }
  })();
  try {
    const yaml = simpleConfig([`http://127.0.0.1:${listener.addr.port}${CHAT}`], {
      server: `shutdownTimeout: "200ms"`,
      group: `httpClient:
  retry: {attempts: 0}`,
    });
    const proxy = await startTestProxy(yaml, { captureLogs: true, logLevel: "info", json: true });
    const pending = fetch(`${proxy.url()}${CHAT}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m" }),
    });
    for (let waited = 0; held.length === 0 && waited < 2_000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // the partial body is in
    const stopped = proxy.stop();
    const response = await pending;
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.error.code, "shutting_down");
    await stopped;
    const access = proxy.logs.map((line) => JSON.parse(line)).find((entry) =>
      entry.log === "access"
    );
    assert.equal(access?.status, 503);
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed by the proxy */ }
    }
    listener.close();
    await serving.catch(() => {});
  }
});

/** A breaker that a single failure opens: a test sees at once whether one was counted. */
const ONE_FAILURE_OPENS =
  `breaker: {threshold: 0.5, minRequests: 1, interval: 10, cooldown: 30, maxRequests: 1}`;

Deno.test("e2e: a shutdown while waiting for response headers answers 503 shutting_down", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], {
      server: `shutdownTimeout: "200ms"`,
      upstream: ONE_FAILURE_OPENS,
      group: `httpClient: {retry: {attempts: 0}}`,
    }),
  );
  try {
    const pending = fetch(`${proxy.url()}${CHAT}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-mock-hang": "1" },
      body: JSON.stringify({ model: "m" }),
    });
    await mock.waitForRequests(1);
    const stopped = proxy.stop();
    const response = await pending;
    assert.equal(response.status, 503);
    assert.equal((await response.json()).error.code, "shutting_down");
    await stopped;
    // Nobody's failure: the upstream's breaker saw nothing.
    assert.equal(proxy.app.runtime().upstreams.get("u0")!.breaker.state(Date.now()), "closed");
  } finally {
    await mock.close();
  }
});

/** A raw HTTP/1.1 upstream answering each request with the next of `answers`. */
function scriptedUpstream(answers: string[]): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const buffer = new Uint8Array(64 * 1024);
        while (answers.length > 0) {
          const n = await conn.read(buffer).catch(() => null);
          if (n === null) return;
          await conn.write(new TextEncoder().encode(answers.shift()!));
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await serving.catch(() => {});
    },
  };
}

Deno.test("e2e: 204, 205 and 304 answers pass through without a body, however they are framed", async () => {
  const upstream = scriptedUpstream([
    "HTTP/1.1 205 Reset Content\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 205 Reset Content\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 204 No Content\r\n\r\n",
    'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n',
  ]);
  const proxy = await startTestProxy(
    simpleConfig([`http://127.0.0.1:${upstream.port}${CHAT}`], {
      upstream: ONE_FAILURE_OPENS,
      group: `httpClient: {retry: {attempts: 0}}`,
    }),
  );
  try {
    for (const expected of [205, 205, 204, 304]) {
      const response = await fetch(`${proxy.url()}${CHAT}`, { method: "POST", body: "{}" });
      assert.equal(response.status, expected);
      assert.equal(await response.text(), "");
    }
    // All successes: nothing counted against the upstream.
    assert.equal(proxy.app.runtime().upstreams.get("u0")!.breaker.state(Date.now()), "closed");
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});
