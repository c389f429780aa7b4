import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { chat, contentEvents, rawRequest, readEvents, waitFor } from "../_helpers/raw_http.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

async function withProxy(
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
  group = `httpClient: {retry: {attempts: 0}, timeout: {firstByte: "3s"}}`,
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/v1/chat/completions`], { group }),
  );
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

function post(proxy: TestProxy, headers: Record<string, string>, body = chat(true)) {
  return fetch(`${proxy.url()}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
}

Deno.test("e2e streaming: SSE chunks reach the client as they are sent", async () => {
  await withProxy(async (proxy) => {
    const start = performance.now();
    const response = await post(proxy, { "x-mock-chunks": "10", "x-mock-delay-ms": "50" });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(response.headers.get("x-accel-buffering"), "no");
    const events = await readEvents(response.body!, start);
    const content = contentEvents(events);
    assert.equal(content.length, 10);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    const first = content[0]!.at;
    const last = content.at(-1)!.at;
    // The mock sends the last chunk ≥ 450 ms after the first; a buffering proxy would
    // deliver them together.
    assert.ok(last - first >= 300, `chunks arrived within ${last - first} ms of each other`);
    // The first chunk is there long before the mock even sends the last (≥ 450 ms in).
    assert.ok(first < 250, `first chunk only after ${first} ms (last at ${last} ms)`);
    // Each chunk arrives on its own: arrival times are spread, not bunched.
    const distinct = new Set(content.map((e) => Math.round(e.at / 25))).size;
    assert.ok(distinct >= 8, `only ${distinct} distinct arrival slots`);
  });
});

Deno.test("e2e streaming: a non-SSE response gets no X-Accel-Buffering", async () => {
  await withProxy(async (proxy) => {
    const response = await post(proxy, {}, chat(false));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-accel-buffering"), null);
    assert.equal((await response.json()).object, "chat.completion");
  });
});

Deno.test("e2e streaming: gzip from the upstream passes through byte-exact", async () => {
  await withProxy(async (proxy, mock) => {
    // Raw HTTP on both sides: a fetch client would decode the body itself.
    const body = chat(false);
    const head = (port: number) =>
      `POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1:${port}\nConnection: close\n` +
      `Content-Type: application/json\nAccept-Encoding: gzip\nX-Mock-Gzip: 1\n` +
      `Content-Length: ${body.length}`;
    const direct = await rawRequest(mock.port, head(mock.port), body);
    assert.equal(direct.get("content-encoding"), "gzip");
    const port = Number(new URL(proxy.url()).port);
    const response = await rawRequest(port, head(port), body);
    assert.equal(response.status, 200);
    assert.equal(response.get("content-encoding"), "gzip");
    // gzip magic: the body was not decoded on the way; and it is the upstream's very bytes.
    assert.deepEqual([...response.body.slice(0, 2)], [0x1f, 0x8b]);
    assert.deepEqual(response.body, direct.body);
    const decoded = await new Response(
      new Blob([response.body]).stream().pipeThrough(new DecompressionStream("gzip")),
    ).json();
    assert.equal(decoded.object, "chat.completion");
    // The proxy asked for identity, so its own fetch could not decode what the upstream sent.
    assert.equal(mock.requests.at(-1)!.headers.get("accept-encoding"), "identity");
  });
});

Deno.test("e2e streaming: a gzipped SSE stream passes through with its encoding", async () => {
  await withProxy(async (proxy) => {
    const body = chat(true);
    const port = Number(new URL(proxy.url()).port);
    const response = await rawRequest(
      port,
      `POST /v1/chat/completions HTTP/1.1\nHost: 127.0.0.1:${port}\nConnection: close\n` +
        `Accept-Encoding: gzip\nX-Mock-Gzip: 1\nContent-Length: ${body.length}`,
      body,
    );
    assert.equal(response.status, 200);
    assert.equal(response.get("content-encoding"), "gzip");
    assert.equal(response.get("x-accel-buffering"), "no");
    const text = await new Response(
      new Blob([response.body]).stream().pipeThrough(new DecompressionStream("gzip")),
    ).text();
    assert.equal((text.match(/chat\.completion\.chunk/g) ?? []).length, 5);
    assert.ok(text.endsWith("data: [DONE]\n\n"));
  });
});

Deno.test("e2e streaming: a client disconnect mid-stream aborts the upstream request", async () => {
  await withProxy(async (proxy, mock) => {
    const response = await post(proxy, { "x-mock-stall-after": "2" });
    assert.equal(response.status, 200);
    const events = await readEvents(response.body!, performance.now(), 2);
    assert.equal(contentEvents(events).length, 2);
    // readEvents cancelled the body after 2 events.
    await waitFor(() => mock.requests[0]?.aborted === true, "upstream request aborted");
  });
});

Deno.test("e2e streaming: a client disconnect before headers aborts the upstream request", async () => {
  await withProxy(async (proxy, mock) => {
    const controller = new AbortController();
    const pending = fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      headers: { "x-mock-hang": "1" },
      body: chat(false),
      signal: controller.signal,
    });
    await mock.waitForRequests(1, 2000);
    controller.abort();
    await assert.rejects(pending);
    await waitFor(() => mock.requests[0]!.aborted, "upstream request aborted");
  });
});

Deno.test("e2e streaming: an upstream dying mid-stream ends the SSE with an error event", async () => {
  await withProxy(async (proxy) => {
    const response = await post(proxy, { "x-mock-cut-after": "3", "x-mock-chunks": "10" });
    assert.equal(response.status, 200);
    const events = await readEvents(response.body!, performance.now());
    assert.equal(contentEvents(events).length, 3);
    const last = events.at(-1)!.text;
    assert.match(last, /^event: error\ndata: /);
    const error = JSON.parse(last.slice(last.indexOf("data: ") + 6)).error;
    assert.equal(typeof error.message, "string");
    assert.equal(typeof error.code, "string");
    assert.ok(!events.some((e) => e.text.includes("[DONE]")), "a [DONE] made it look complete");
  });
});

Deno.test("e2e streaming: an upstream dying mid-body aborts a non-SSE body", async () => {
  await withProxy(async (proxy, mock) => {
    // An SSE-producing mock stream relabelled as JSON: the break must not look like an end.
    mock.script({ headers: { "content-type": "application/json" } });
    const response = await post(proxy, { "x-mock-cut-after": "3", "x-mock-chunks": "10" });
    assert.equal(response.status, 200);
    await assert.rejects(response.text());
  });
});

Deno.test("e2e streaming: token usage is counted from SSE written with Python's JSON spacing", async () => {
  await withProxy(async (proxy, mock) => {
    // json.dumps defaults: `"usage": null` on the chunks, `"usage": {` on the last one.
    const body = 'data: {"choices": [{"delta": {"content": "hi"}}], "usage": null}\n\n' +
      'data: {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 8}}\n\n' +
      "data: [DONE]\n\n";
    mock.script({ headers: { "content-type": "text/event-stream" }, body });
    const response = await post(proxy, {});
    assert.equal(response.status, 200);
    assert.equal(await response.text(), body);
    const tokens = async (type: string) => {
      const metrics = parsePrometheusText(
        await (await fetch(`${proxy.adminUrl()}/metrics`)).text(),
      );
      const labels = { group: "g", upstream: "u0", model: "other", type };
      return sampleValue(metrics, "llmproxy_tokens_total", labels);
    };
    assert.equal(await tokens("prompt"), 21);
    assert.equal(await tokens("completion"), 8);
  });
});
