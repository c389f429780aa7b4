/**
 * End-to-end: requests a client may send to hurt the proxy or reach past an upstream's base
 * path (methods no transport should carry, dot segments in all their encodings, raw
 * non-ASCII paths, query parameters that shadow the configured ones). Runs on both
 * transports (`LLMPROXY_TRANSPORT=fetch`), byte-exact where bytes matter.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { type RawUpstream, startRawUpstream } from "../_helpers/raw_upstream.ts";
import { rawRequest, type RawResponse } from "../_helpers/raw_http.ts";

/** Three failures in a row would open this breaker; three retries follow every failure. */
const TRIGGER_HAPPY = `breaker: {threshold: 0.5, minRequests: 3, interval: 60, cooldown: 60}`;
const RETRIES = `httpClient: {retry: {attempts: 3, initial: 1}}`;

function port(proxy: TestProxy): number {
  return Number(new URL(proxy.url()).port);
}

/** One raw request: `target` is written as UTF-8, as a client would. */
function send(proxy: TestProxy, target: string, method = "GET"): Promise<RawResponse> {
  return rawRequest(port(proxy), `${method} ${target} HTTP/1.1\nHost: x\nConnection: close`);
}

function errorOf(response: RawResponse): { type: string; code: string; message: string } {
  return JSON.parse(new TextDecoder().decode(response.body)).error;
}

async function withMock(
  upstreamUrl: (mock: MockUpstream) => string,
  extra: { upstream?: string; group?: string; forward?: string },
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([upstreamUrl(mock)], extra));
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

async function withRaw(
  base: string,
  upstreamExtra: string,
  fn: (proxy: TestProxy, upstream: RawUpstream) => Promise<void>,
): Promise<void> {
  const upstream = startRawUpstream();
  const proxy = await startTestProxy(
    simpleConfig([upstream.url + base], { upstream: upstreamExtra }),
  );
  try {
    await fn(proxy, upstream);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}

Deno.test("e2e hostile: refused methods and escaping paths never reach the upstream or its breaker", async () => {
  await withMock((m) => `${m.url}/echo`, {
    upstream: `path: {mode: append}\n${TRIGGER_HAPPY}`,
    group: RETRIES,
  }, async (proxy, mock) => {
    const hostile: [string, string, number, string][] = [
      ["TRACE", "/x", 405, "method_not_allowed"],
      ["TRACK", "/x", 405, "method_not_allowed"],
      ["trace", "/x", 405, "method_not_allowed"],
      ["GET", "/%2e%2e/secret", 400, "invalid_path"],
      ["GET", "/v1/../../admin", 400, "invalid_path"],
      ["GET", "/..%2fadmin", 400, "invalid_path"],
      ["GET", "/.%2E/%2E%2e/x", 400, "invalid_path"],
      ["GET", "/x\\..\\..\\admin", 400, "invalid_path"],
      ["GET", "/x/..;/y", 400, "invalid_path"],
      ["GET", "/x%00.json", 400, "invalid_path"],
    ];
    for (const [method, target, status, code] of hostile) {
      const response = await send(proxy, target, method);
      assert.equal(response.status, status, `${method} ${target}: ${response.raw}`);
      const error = errorOf(response);
      assert.equal(error.code, code, `${method} ${target}`);
      assert.equal(error.type, "invalid_request_error");
      assert.ok(response.get("x-request-id"));
      if (status === 405) assert.match(response.get("allow") ?? "", /\bPOST\b/);
    }
    assert.equal(mock.requests.length, 0, "a hostile request reached the upstream");
    const upstream = proxy.app.runtime().upstreams.get("u0")!;
    assert.equal(upstream.breaker.state(performance.now()), "closed");
    assert.equal(upstream.requests, 0);
    assert.equal(upstream.errors, 0);
    // Everyone else is still served.
    const ok = await fetch(`${proxy.url()}/after`);
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).path, "/echo/after");
  });
});

Deno.test("e2e hostile: raw non-ASCII path bytes reach the upstream as the client sent them", async () => {
  await withRaw("/v1", "path: {mode: append}", async (proxy, upstream) => {
    // rawRequest writes UTF-8: é is C3 A9, € is E2 82 AC.
    for (const target of ["/é", "/€", "/%C3%A9", "/%c3%a9", "/x?q=é€"]) {
      const response = await send(proxy, target);
      assert.equal(response.status, 200, `${target}: ${response.raw}`);
    }
    assert.deepEqual(upstream.lines(), [
      "GET /v1/%C3%A9 HTTP/1.1",
      "GET /v1/%E2%82%AC HTTP/1.1",
      "GET /v1/%C3%A9 HTTP/1.1",
      "GET /v1/%c3%a9 HTTP/1.1",
      "GET /v1/x?q=%C3%A9%E2%82%AC HTTP/1.1",
    ]);
  });
});

Deno.test("e2e hostile: non-ASCII paths are not upstream failures (the breaker stays closed)", async () => {
  await withMock((m) => m.url, { upstream: TRIGGER_HAPPY, group: RETRIES }, async (proxy, mock) => {
    for (let i = 0; i < 5; i++) {
      const response = await send(proxy, `/echo/€${i}`);
      assert.equal(response.status, 200, response.raw);
    }
    assert.equal(mock.requests.length, 5, "each request was sent once, never retried");
    assert.equal(mock.requests[0]!.url.endsWith("/echo/%E2%82%AC0"), true, mock.requests[0]!.url);
    const upstream = proxy.app.runtime().upstreams.get("u0")!;
    assert.equal(upstream.breaker.state(performance.now()), "closed");
    assert.equal(upstream.errors, 0);
  });
});

Deno.test("e2e hostile: both transports send the same normalised path, within the base path", async () => {
  await withRaw("/v1", "path: {mode: append}", async (proxy, upstream) => {
    const cases: [string, string][] = [
      ["/a/./b//c/../d", "/v1/a/b/d"],
      ["/a/%2e/b/%2E%2e/c", "/v1/a/c"],
      ["/a%2fb", "/v1/a/b"],
      ["/a\\b", "/v1/a/b"],
      ["//evil.test/x", "/v1/evil.test/x"],
      ["/x%252e%252e/y", "/v1/x%252e%252e/y"],
      ["/a%3Fb", "/v1/a%3Fb"],
      ["/a;b/c", "/v1/a;b/c"],
      ['/q"<>`{}', "/v1/q%22%3C%3E%60%7B%7D"],
      ["/deployments/gpt-4.1/chat", "/v1/deployments/gpt-4.1/chat"],
      ["/a/..", "/v1/"],
      ["http://evil.test/abs", "/v1/abs"],
    ];
    for (const [target] of cases) {
      const response = await send(proxy, target);
      assert.equal(response.status, 200, `${target}: ${response.raw}`);
    }
    assert.deepEqual(upstream.lines(), cases.map(([, path]) => `GET ${path} HTTP/1.1`));
  });
});

Deno.test("e2e hostile: routing sees the normalised path the upstream gets", async () => {
  const embeddings = await startMockUpstream({ name: "emb" });
  const chat = await startMockUpstream({ name: "chat" });
  const proxy = await startTestProxy(`httpServer:
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: chat
      routing: [{path: "/v1/embeddings", targetGroup: emb}]
upstreams:
  - {name: chat, url: "${chat.url}"}
  - {name: emb, url: "${embeddings.url}"}
upstreamGroups:
  - {name: chat, upstreams: [{name: chat}]}
  - {name: emb, upstreams: [{name: emb}]}
`);
  try {
    for (
      const target of [
        "/v1/./embeddings",
        "/v1//embeddings",
        "/v1/%2e/embeddings",
        "/x/../v1/embeddings",
      ]
    ) {
      const response = await rawRequest(
        port(proxy),
        `POST ${target} HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 27\nConnection: close`,
        '{"model":"m","input":"abc"}',
      );
      assert.equal(response.status, 200, `${target}: ${response.raw}`);
    }
    assert.equal(chat.requests.length, 0);
    assert.deepEqual(embeddings.requests.map((r) => r.url.slice(embeddings.url.length)), [
      "/v1/embeddings",
      "/v1/embeddings",
      "/v1/embeddings",
      "/v1/embeddings",
    ]);
  } finally {
    await proxy.stop();
    await embeddings.close();
    await chat.close();
  }
});

Deno.test("e2e hostile: a rewrite rule cannot lead out of the base path", async () => {
  const rules = `path:
  mode: append
  rewrite: [{match: "^/up/(.*)", replace: "/../$1"}, {match: "^/in/(.*)", replace: "/x/../$1"}]
${TRIGGER_HAPPY}`;
  await withMock(
    (m) => `${m.url}/echo`,
    { upstream: rules, group: RETRIES },
    async (proxy, mock) => {
      for (let i = 0; i < 4; i++) {
        const response = await send(proxy, "/up/admin");
        assert.equal(response.status, 400, response.raw);
        assert.equal(errorOf(response).code, "invalid_path");
      }
      assert.equal(mock.requests.length, 0);
      const upstream = proxy.app.runtime().upstreams.get("u0")!;
      assert.equal(upstream.breaker.state(performance.now()), "closed");
      assert.equal(upstream.requests, 0);
      const inside = await send(proxy, "/in/ok");
      assert.equal(inside.status, 200, inside.raw);
      assert.equal(mock.requests[0]!.url.slice(mock.url.length), "/echo/ok");
    },
  );
});

Deno.test("e2e hostile: the upstream URL's query parameters win over the client's", async () => {
  await withMock(
    (m) => `${m.url}/echo?key=secret&api-version=1`,
    { upstream: "path: {mode: append}" },
    async (proxy, mock) => {
      const response = await send(proxy, "/q?key=x&a=1&k%65y=y&b=2&api-version=2&key");
      assert.equal(response.status, 200, response.raw);
      await send(proxy, "/q");
      await send(proxy, "/q?a=%20&b");
      assert.deepEqual(mock.requests.map((r) => r.url.slice(mock.url.length)), [
        "/echo/q?a=1&b=2&key=secret&api-version=1",
        "/echo/q?key=secret&api-version=1",
        "/echo/q?a=%20&b&key=secret&api-version=1",
      ]);
    },
  );
});
