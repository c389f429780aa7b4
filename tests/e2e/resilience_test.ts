/**
 * End-to-end resilience over real sockets: failover from a refused upstream, retries replayed on
 * the wire, streams cut mid-way, client disconnects, shutdowns and bodyless answers, against real
 * listeners and mock upstreams on port 0. The loop's decisions (retries, failover order,
 * breakers, 429 cool-downs, budgets, rate limits) are tested in-process with a fake clock in
 * tests/pipeline/proxy_loop_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
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

Deno.test("e2e: failover: a retry goes to the next upstream in order, never back to the one just tried", async () => {
  await withMocks(["a", "b", "c"], async ([a, b, c]) => {
    a!.always({ status: 503 });
    const yaml = simpleConfig([a, b, c].map((m) => `${m!.url}${CHAT}`), {
      group: `balance: {strategy: failover}
httpClient:
  retry: {attempts: 2, initial: "10ms"}`,
    });
    await withProxy(yaml, async (proxy) => {
      for (let i = 0; i < 3; i++) {
        const reply = await chat(proxy);
        assert.equal(reply.status, 200, `request ${i}: ${reply.text}`);
        assert.equal(reply.headers.get("x-mock-upstream"), "b");
      }
      // Each client request: a once, then b; the failing first choice is never asked twice.
      assert.equal(a!.requests.length, 3);
      assert.equal(b!.requests.length, 3);
      assert.equal(c!.requests.length, 0);
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
    assert.equal(
      proxy.app.runtime().upstreams.get("u0")!.breaker.state(performance.now()),
      "closed",
    );
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
    assert.equal(
      proxy.app.runtime().upstreams.get("u0")!.breaker.state(performance.now()),
      "closed",
    );
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});
