import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../_helpers/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { chat, contentEvents, readEvents, waitFor } from "./_e2e.ts";

async function withProxy(
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
  group = "httpClient: {retry: {attempts: 0}}",
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
    assert.ok(first < last - 300, `first chunk at ${first} ms, last at ${last} ms`);
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
    const headers = { "x-mock-gzip": "1", "accept-encoding": "gzip" };
    const direct = await fetch(`${mock.url}/v1/chat/completions`, {
      method: "POST",
      headers,
      body: chat(false),
    });
    const directBytes = new Uint8Array(await direct.arrayBuffer());
    assert.equal(direct.headers.get("content-encoding"), "gzip");

    const response = await post(proxy, headers, chat(false));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-encoding"), "gzip");
    const bytes = new Uint8Array(await response.arrayBuffer());
    // gzip magic: the body was not decoded on the way.
    assert.deepEqual([...bytes.slice(0, 2)], [0x1f, 0x8b]);
    assert.deepEqual(bytes, directBytes);
    const decoded = await new Response(
      new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip")),
    ).json();
    assert.equal(decoded.object, "chat.completion");
    // The client's preference travelled to the upstream.
    assert.equal(mock.requests.at(-1)!.headers.get("accept-encoding"), "gzip");
  });
});

Deno.test("e2e streaming: without Accept-Encoding the upstream is asked for identity", async () => {
  await withProxy(async (proxy, mock) => {
    const response = await post(proxy, {}, chat(false));
    await response.body?.cancel();
    const sent = mock.requests[0]!.headers.get("accept-encoding");
    assert.ok(sent === null || sent === "identity", `upstream asked for ${sent}`);
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
