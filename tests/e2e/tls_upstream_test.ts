import assert from "node:assert/strict";
import https from "node:https";
import http2 from "node:http2";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { certified, countingRelay, fixturePath, pem } from "../_helpers/tls.ts";
import { assertErrorBody, chat, contentEvents, readEvents } from "../_helpers/raw_http.ts";

const CA = fixturePath("ca.pem");
/** `LLMPROXY_TRANSPORT=fetch` runs the suite on the fetch transport (see `.ci/run`). */
const FETCH = Deno.env.get("LLMPROXY_TRANSPORT") === "fetch";
/** Several retries, no backoff: a TLS failure must still be tried once per upstream. */
const RETRIES = "httpClient: {retry: {attempts: 3, initial: 0}}";

async function tlsErrors(adminUrl: string, upstream: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return sampleValue(parsePrometheusText(text), "llmproxy_upstream_errors_total", {
    group: "g",
    upstream,
    kind: "tls",
  }) ?? 0;
}

async function post(url: string, body = chat()): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, { method: "POST", body });
}

Deno.test("tls upstream: a private CA's certificate is refused without tls.ca: 502 tls_error, kind=tls, one handshake, no retry on it", async () => {
  const mock = await startMockUpstream({ tls: certified("server") });
  const relay = countingRelay(mock.port);
  const proxy = await startTestProxy(
    simpleConfig([`https://127.0.0.1:${relay.port}/`], { group: RETRIES }),
    { captureLogs: true, logLevel: "debug" },
  );
  try {
    for (let i = 1; i <= 3; i++) {
      const error = await assertErrorBody(await post(proxy.url()), 502, "tls_error");
      assert.match(error.message, /TLS handshake with upstream "u0" failed: unknown issuer/);
      // Never the address or URL to the client.
      assert.doesNotMatch(error.message, /127\.0\.0\.1|https:/);
      assert.equal(relay.connections, i, "one handshake per request: never retried on it");
    }
    assert.equal(mock.requests.length, 0);
    assert.equal(await tlsErrors(proxy.adminUrl(), "u0"), 3);
    const text = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
    const m = parsePrometheusText(text);
    assert.equal(
      sampleValue(m, "llmproxy_upstream_errors_total", {
        group: "g",
        upstream: "u0",
        kind: "connect",
      }),
      undefined,
      "not a connect error",
    );
    // Logged once with the reason, not once per request.
    const warnings = proxy.logs.filter((l) => /WARN/i.test(l) && /TLS handshake/.test(l));
    assert.equal(warnings.length, 1, proxy.logs.join("\n"));
    assert.match(warnings[0]!, /UnknownIssuer/);
    assert.equal(proxy.logs.filter((l) => /attempt failed/.test(l)).length, 0);
  } finally {
    await proxy.stop();
    await relay.close();
    await mock.close();
  }
});

Deno.test("tls upstream: with tls.ca the private CA is trusted: JSON and SSE pass through", async () => {
  const mock = await startMockUpstream({ tls: certified("server") });
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/`], { group: `httpClient: {tls: {ca: "${CA}"}}` }),
  );
  try {
    const json = await post(proxy.url());
    assert.equal(json.status, 200);
    assert.equal((await json.json()).object, "chat.completion");

    const start = performance.now();
    const sse = await post(proxy.url(), chat(true));
    assert.equal(sse.status, 200);
    assert.equal(sse.headers.get("content-type"), "text/event-stream");
    const events = await readEvents(sse.body!, start);
    assert.equal(contentEvents(events).length, 5);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("tls upstream: inline PEM in tls.ca works like a file", async () => {
  const mock = await startMockUpstream({ tls: certified("server") });
  const inline = pem("ca.pem").trimEnd().split("\n").map((l) => `          ${l}`).join("\n");
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/`], { group: `httpClient:\n  tls:\n    ca: |\n${inline}` }),
  );
  try {
    const response = await post(proxy.url());
    assert.equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

for (
  const [fixture, reason] of [
    ["wrong_name", /name mismatch/],
    ["expired", /expired/],
  ] as const
) {
  Deno.test(`tls upstream: a ${fixture} certificate is a tls_error even with tls.ca`, async () => {
    const mock = await startMockUpstream({ tls: certified(fixture) });
    const proxy = await startTestProxy(
      simpleConfig([`${mock.url}/`], {
        group: `httpClient: {tls: {ca: "${CA}"}, retry: {attempts: 2, initial: 0}}`,
      }),
    );
    try {
      const error = await assertErrorBody(await post(proxy.url()), 502, "tls_error");
      assert.match(error.message, reason);
      assert.equal(await tlsErrors(proxy.adminUrl(), "u0"), 1);
    } finally {
      await proxy.stop();
      await mock.close();
    }
  });
}

Deno.test("tls upstream: a tls_error is retried on another upstream of the group, once on the bad one", async () => {
  const bad = await startMockUpstream({ tls: certified("wrong_name") });
  const relay = countingRelay(bad.port);
  const good = await startMockUpstream({ tls: certified("server") });
  const proxy = await startTestProxy(
    simpleConfig([`https://127.0.0.1:${relay.port}/`, `${good.url}/`], {
      group:
        `balance: {strategy: failover}\nhttpClient: {tls: {ca: "${CA}"}, retry: {attempts: 3, initial: 0}}`,
    }),
  );
  try {
    const response = await post(proxy.url());
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(relay.connections, 1);
    assert.equal(good.requests.length, 1);
    assert.equal(await tlsErrors(proxy.adminUrl(), "u0"), 1);
  } finally {
    await proxy.stop();
    await relay.close();
    await bad.close();
    await good.close();
  }
});

Deno.test("tls upstream: mutual TLS: an upstream that requires a client certificate gets tls.cert/tls.key", async () => {
  // Deno.serve cannot ask for client certificates; node:https can.
  const server = https.createServer({
    ...certified("server"),
    ca: pem("ca.pem"),
    requestCert: true,
    rejectUnauthorized: true,
  }, (req, res) => {
    // deno-lint-ignore no-explicit-any
    const peer = (req.socket as any).getPeerCertificate?.();
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ client: peer?.subject?.CN ?? null }));
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const upstream = `https://127.0.0.1:${port}/`;
  const without = await startTestProxy(
    simpleConfig([upstream], { group: `httpClient: {tls: {ca: "${CA}"}}` }),
  );
  const withCert = await startTestProxy(simpleConfig([upstream], {
    group: `httpClient: {tls: {ca: "${CA}", cert: "${fixturePath("client.pem")}", key: "${
      fixturePath("client.key")
    }"}}`,
  }));
  try {
    const refused = await assertErrorBody(await post(without.url()), 502, "tls_error");
    assert.match(refused.message, /client certificate refused/);
    const response = await post(withCert.url());
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { client: "llmproxy-client" });
  } finally {
    await without.stop();
    await withCert.stop();
    await new Promise((resolve) => server.close(resolve));
  }
});

Deno.test("start-up log: each group names the transport its upstreams really use", async () => {
  const proxy = await startTestProxy(
    `httpServer:
  forwards: [{name: main, port: 0, address: 127.0.0.1, defaultGroup: plain}]
upstreams:
  - {name: p, url: "http://127.0.0.1:9/"}
  - {name: s, url: "https://127.0.0.1:9/"}
upstreamGroups:
  - {name: plain, upstreams: [{name: p}]}
  - {name: secure, upstreams: [{name: s}]}
  - {name: mixed, upstreams: [{name: p}, {name: s}]}
`,
    { captureLogs: true, logLevel: "info" },
  );
  try {
    const line = (group: string) => proxy.logs.find((l) => l.includes(`group "${group}"`)) ?? "";
    // Direct https upstreams go over the HTTP/1.1 client's own TLS connections.
    for (const group of ["plain", "secure", "mixed"]) {
      assert.match(line(group), FETCH ? /transport=fetch\b/ : /transport=http1\b/);
    }
  } finally {
    await proxy.stop();
  }
});

Deno.test("tls upstream: timeout.connect bounds a TLS handshake the upstream never answers", async () => {
  // Accepts TCP connections and never says a word: the handshake never ends.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })().catch(() => {});
  const proxy = await startTestProxy(
    simpleConfig([`https://127.0.0.1:${listener.addr.port}/`], {
      group:
        `httpClient: {timeout: {connect: "150ms", firstByte: "1s"}, retry: {attempts: 1, initial: "5ms"}}`,
    }),
  );
  try {
    const started = performance.now();
    const response = await post(proxy.url());
    const elapsed = performance.now() - started;
    const m = parsePrometheusText(await (await fetch(`${proxy.adminUrl()}/metrics`)).text());
    const errors = (kind: string) =>
      sampleValue(m, "llmproxy_upstream_errors_total", { group: "g", upstream: "u0", kind });
    assert.equal(accepted.length, 2, "two attempts, each a TCP connect and a stalled handshake");
    if (FETCH) {
      // Deno's fetch has no connect timeout: the first-byte deadline ends each attempt.
      await assertErrorBody(response, 504);
      assert.equal(errors("timeout"), 2);
    } else {
      // The HTTP/1.1 client's connect timeout covers the handshake: a connect failure.
      const error = await assertErrorBody(response, 502);
      assert.equal(error.message, 'cannot reach upstream "u0": connect timeout');
      assert.equal(errors("connect"), 2);
      assert.equal(errors("tls"), undefined);
      assert.ok(elapsed < 900, `gave up after ${elapsed} ms`);
    }
  } finally {
    await proxy.stop();
    listener.close();
    await loop;
    // Closing the upstream's side also releases what Deno keeps of an abandoned handshake.
    for (const conn of accepted) conn.close();
  }
});

Deno.test("tls upstream: connections to an https upstream are pooled: one handshake for many requests", async () => {
  const mock = await startMockUpstream({ tls: certified("server") });
  const relay = countingRelay(mock.port);
  const proxy = await startTestProxy(
    simpleConfig([`https://127.0.0.1:${relay.port}/`], {
      group: `httpClient: {tls: {ca: "${CA}"}}`,
    }),
  );
  try {
    for (let i = 0; i < 5; i++) {
      const response = await post(proxy.url());
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    assert.equal(mock.requests.length, 5);
    assert.equal(relay.connections, 1);
  } finally {
    await proxy.stop();
    await relay.close();
    await mock.close();
  }
});

Deno.test("tls upstream: SSE over TLS reaches the client chunk by chunk, unbuffered", async () => {
  const mock = await startMockUpstream({ tls: certified("server") });
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/`], { group: `httpClient: {tls: {ca: "${CA}"}}` }),
  );
  try {
    const start = performance.now();
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-mock-chunks": "10",
        "x-mock-delay-ms": "50",
      },
      body: chat(true),
    });
    assert.equal(response.status, 200);
    const content = contentEvents(await readEvents(response.body!, start));
    assert.equal(content.length, 10);
    const first = content[0]!.at;
    const last = content.at(-1)!.at;
    // The mock sends the last chunk ≥ 450 ms after the first: a buffering client would
    // deliver them together.
    assert.ok(last - first >= 300, `chunks arrived within ${last - first} ms of each other`);
    assert.ok(first < 250, `first chunk only after ${first} ms (last at ${last} ms)`);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("tls upstream: an upstream that speaks only HTTP/2 is served (through fetch)", async () => {
  const server = http2.createSecureServer(
    { ...certified("server"), allowHTTP1: false },
    (_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ object: "chat.completion", via: "h2" }));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const proxy = await startTestProxy(
    simpleConfig([`https://127.0.0.1:${port}/`], { group: `httpClient: {tls: {ca: "${CA}"}}` }),
  );
  try {
    for (let i = 0; i < 2; i++) {
      const response = await post(proxy.url());
      assert.equal(response.status, 200, await response.clone().text());
      assert.deepEqual(await response.json(), { object: "chat.completion", via: "h2" });
    }
  } finally {
    await proxy.stop();
    await new Promise((resolve) => server.close(resolve));
  }
});
