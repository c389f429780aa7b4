import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { rawRequest } from "../_helpers/raw_http.ts";

/** Starts a mock and a proxy to it (`url(mock)` is the upstream URL), runs `fn`, cleans up. */
async function withProxy(
  url: (mock: MockUpstream) => string,
  upstreamExtra: string,
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([url(mock)], { upstream: upstreamExtra }));
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

async function get(url: string): Promise<number> {
  const response = await fetch(url);
  await response.body?.cancel();
  return response.status;
}

Deno.test("e2e url: replace mode sends the seed's example to the upstream URL's path", async () => {
  await withProxy((m) => `${m.url}/v1/chat/completions`, "", async (proxy, mock) => {
    const response = await fetch(`${proxy.url()}/api/v3/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "m" }),
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
    assert.equal(mock.requests.length, 1);
    assert.equal(mock.requests[0]!.path, "/v1/chat/completions");
    assert.equal(mock.requests[0]!.search, "");
  });
});

Deno.test("e2e url: replace mode can be set explicitly and ignores the client path", async () => {
  await withProxy((m) => `${m.url}/v1/models`, "path: {mode: replace}", async (proxy, mock) => {
    await get(`${proxy.url()}/anything/else`);
    assert.equal(mock.requests[0]!.path, "/v1/models");
  });
});

Deno.test("e2e url: append mode joins the upstream path and the client path", async () => {
  await withProxy((m) => `${m.url}/v1`, "path: {mode: append}", async (proxy, mock) => {
    await get(`${proxy.url()}/chat/completions`);
    assert.equal(mock.requests[0]!.path, "/v1/chat/completions");
  });
});

Deno.test("e2e url: a URL with a trailing slash defaults to append with one slash", async () => {
  await withProxy((m) => `${m.url}/v1/`, "", async (proxy, mock) => {
    await get(`${proxy.url()}/chat/completions`);
    assert.equal(mock.requests[0]!.path, "/v1/chat/completions");
  });
});

Deno.test("e2e url: an origin URL sends the client path as it is", async () => {
  await withProxy((m) => m.url, "", async (proxy, mock) => {
    await get(`${proxy.url()}/v1/models`);
    await get(`${proxy.url()}/api/v3/x/y`);
    assert.deepEqual(mock.requests.map((r) => r.path), ["/v1/models", "/api/v3/x/y"]);
  });
});

Deno.test("e2e url: rewrite rules apply to the client path, first match wins", async () => {
  const rules = `path:
  mode: append
  rewrite:
    - {match: "^/api/v3/(.*)", replace: "/v1/$1"}
    - {match: "^/api/(.*)", replace: "/legacy/$1"}
    - {match: "^/api/v3/chat/(.*)", replace: "/never/$1"}`;
  await withProxy((m) => m.url, rules, async (proxy, mock) => {
    await get(`${proxy.url()}/api/v3/chat/completions`);
    await get(`${proxy.url()}/api/v2/embeddings`);
    await get(`${proxy.url()}/other/path`);
    assert.deepEqual(mock.requests.map((r) => r.path), [
      "/v1/chat/completions",
      "/legacy/v2/embeddings",
      "/other/path",
    ]);
  });
});

Deno.test("e2e url: rewrite rules combine with an upstream base path", async () => {
  const rules = `path:
  mode: append
  rewrite: [{match: "^/api/v3/(.*)", replace: "/v1/$1"}]`;
  await withProxy((m) => `${m.url}/openai`, rules, async (proxy, mock) => {
    await get(`${proxy.url()}/api/v3/chat/completions`);
    assert.equal(mock.requests[0]!.path, "/openai/v1/chat/completions");
  });
});

Deno.test("e2e url: the client query is kept and the URL's query parameters are added", async () => {
  await withProxy(
    (m) => `${m.url}/v1/models?api-version=2024-02&deployment=d1`,
    "",
    async (proxy, mock) => {
      await get(`${proxy.url()}/models?limit=5&order=desc`);
      await get(`${proxy.url()}/models`);
      const first = new URLSearchParams(mock.requests[0]!.search);
      assert.equal(first.get("limit"), "5");
      assert.equal(first.get("order"), "desc");
      assert.equal(first.get("api-version"), "2024-02");
      assert.equal(first.get("deployment"), "d1");
      assert.equal(mock.requests[1]!.search, "?api-version=2024-02&deployment=d1");
    },
  );
});

Deno.test("e2e url: the client query travels in append mode", async () => {
  await withProxy((m) => `${m.url}/v1`, "path: {mode: append}", async (proxy, mock) => {
    await get(`${proxy.url()}/models?a=1&b=x%20y`);
    assert.equal(mock.requests[0]!.path, "/v1/models");
    assert.equal(mock.requests[0]!.search, "?a=1&b=x%20y");
  });
});

Deno.test("e2e url: the upstream receives its own authority as Host", async () => {
  await withProxy((m) => `${m.url}/echo`, "", async (proxy, mock) => {
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      headers: { host: "client.example" },
    });
    const echoed = await response.json();
    const authority = new URL(mock.url).host;
    assert.equal(echoed.path, "/echo");
    assert.equal(echoed.headers.host, authority);
    assert.notEqual(authority, new URL(proxy.url()).host);
    assert.equal(mock.requests[0]!.headers.get("host"), authority);
  });
});

Deno.test("e2e url: a client Host header sent on the wire never reaches the upstream", async () => {
  await withProxy((m) => `${m.url}/echo`, "", async (proxy, mock) => {
    const port = Number(new URL(proxy.url()).port);
    const response = await rawRequest(
      port,
      "GET /v1/models HTTP/1.1\nHost: evil.example:1234\nConnection: close",
    );
    assert.equal(response.status, 200);
    assert.equal(mock.requests[0]!.headers.get("host"), new URL(mock.url).host);
    // The client's Host is reported as the forwarded host, never as Host.
    assert.equal(mock.requests[0]!.headers.get("x-forwarded-host"), "evil.example:1234");
  });
});
