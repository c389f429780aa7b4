import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText } from "../_helpers/prom_parser.ts";
import { assertErrorBody, chat, contentEvents, readEvents, waitFor } from "../_helpers/raw_http.ts";

async function withProxy(
  timeout: string,
  fn: (proxy: TestProxy, mock: MockUpstream) => Promise<void>,
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/v1/chat/completions`], {
    group: `httpClient: {timeout: ${timeout}, retry: {attempts: 0}}`,
  }));
  try {
    await fn(proxy, mock);
  } finally {
    await proxy.stop();
    await mock.close();
  }
}

/** `llmproxy_upstream_errors_total` of upstream u0 by kind. */
function errorKinds(proxy: TestProxy): Record<string, number> {
  const family = parsePrometheusText(proxy.app.registry.render())
    .get("llmproxy_upstream_errors_total");
  return Object.fromEntries(
    (family?.samples ?? []).filter((s) => s.labels.upstream === "u0")
      .map((s) => [s.labels.kind, s.value]),
  );
}

/** A body cut by a deadline is a timeout of the upstream, not a broken stream. */
async function assertCountedAsTimeout(proxy: TestProxy): Promise<void> {
  await waitFor(() => Object.keys(errorKinds(proxy)).length > 0, "upstream error counted");
  assert.deepEqual(errorKinds(proxy), { timeout: 1 });
}

function post(
  proxy: TestProxy,
  headers: Record<string, string>,
  stream: boolean,
  signal?: AbortSignal,
) {
  return fetch(`${proxy.url()}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: chat(stream),
    ...(signal ? { signal } : {}),
  });
}

Deno.test("e2e deadlines: no response headers within firstByte → 504 JSON error", async () => {
  await withProxy(`{firstByte: "200ms"}`, async (proxy, mock) => {
    const start = performance.now();
    // The mock never answers: a broken deadline must fail this test in seconds, not hang it
    // until some outer timeout (the request deadline, 5 min by default).
    const response = await post(proxy, { "x-mock-hang": "1" }, false, AbortSignal.timeout(3000));
    const elapsed = performance.now() - start;
    const error = await assertErrorBody(response, 504, "upstream_timeout");
    assert.equal(error.type, "upstream_timeout");
    assert.ok(response.headers.get("x-request-id"));
    assert.ok(elapsed >= 180 && elapsed < 1500, `answered after ${elapsed} ms`);
    // The hung upstream request was given up, not left running.
    await waitFor(() => mock.requests[0]!.aborted, "upstream request aborted");
  });
});

Deno.test("e2e deadlines: firstByte does not cut an answer that comes in time", async () => {
  await withProxy(`{firstByte: "400ms"}`, async (proxy) => {
    const response = await post(proxy, { "x-mock-hang-ms": "100" }, false);
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
  });
});

Deno.test("e2e deadlines: streamIdle cuts a silent stream with an error event", async () => {
  await withProxy(`{streamIdle: "300ms"}`, async (proxy, mock) => {
    const start = performance.now();
    const response = await post(proxy, { "x-mock-stall-after": "2" }, true);
    assert.equal(response.status, 200);
    const events = await readEvents(response.body!, start);
    assert.equal(contentEvents(events).length, 2);
    const last = events.at(-1)!;
    assert.match(last.text, /^event: error\n/);
    assert.match(last.text, /streamIdle/);
    assert.ok(!events.some((e) => e.text.includes("[DONE]")));
    const silence = last.at - contentEvents(events)[1]!.at;
    assert.ok(silence >= 250 && silence < 1500, `cut after ${silence} ms of silence`);
    await waitFor(() => mock.requests[0]!.aborted, "stalled upstream request aborted");
    await assertCountedAsTimeout(proxy);
  });
});

Deno.test("e2e deadlines: streamIdle lets a stream with short pauses run long", async () => {
  await withProxy(`{streamIdle: "300ms"}`, async (proxy) => {
    const start = performance.now();
    const response = await post(proxy, { "x-mock-chunks": "8", "x-mock-delay-ms": "100" }, true);
    const events = await readEvents(response.body!, start);
    assert.equal(contentEvents(events).length, 8);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    assert.ok(events.at(-1)!.at >= 600, "the stream outlived streamIdle in total");
  });
});

Deno.test("e2e deadlines: a long healthy stream outlives the request deadline", async () => {
  await withProxy(`{request: "500ms"}`, async (proxy) => {
    const start = performance.now();
    const response = await post(proxy, { "x-mock-chunks": "20", "x-mock-delay-ms": "50" }, true);
    assert.equal(response.status, 200);
    const events = await readEvents(response.body!, start);
    assert.equal(contentEvents(events).length, 20);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    assert.ok(events.at(-1)!.at >= 800, `stream ended after ${events.at(-1)!.at} ms`);
  });
});

Deno.test("e2e deadlines: a non-streamed response slower than request is cut", async () => {
  await withProxy(`{request: "500ms"}`, async (proxy, mock) => {
    // A 1 s body sent as JSON (not a stream type): the total deadline applies.
    mock.script({ headers: { "content-type": "application/json" } });
    const start = performance.now();
    const response = await post(proxy, { "x-mock-chunks": "20", "x-mock-delay-ms": "50" }, true);
    assert.equal(response.status, 200);
    await assert.rejects(response.text());
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 400 && elapsed < 900, `body cut after ${elapsed} ms`);
    await waitFor(() => mock.requests[0]!.aborted, "slow upstream request aborted");
    await assertCountedAsTimeout(proxy);
  });
});

Deno.test("e2e deadlines: request counts from the attempt's start, headers included", async () => {
  await withProxy(`{request: "500ms"}`, async (proxy, mock) => {
    // Headers after 300 ms, then a 400 ms body: 700 ms in total, over the 500 ms deadline.
    mock.script({ headers: { "content-type": "application/json" }, hangMs: 300 });
    const start = performance.now();
    const response = await post(proxy, { "x-mock-chunks": "9", "x-mock-delay-ms": "50" }, true);
    assert.equal(response.status, 200);
    await assert.rejects(response.text());
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 400 && elapsed < 650, `body cut after ${elapsed} ms`);
    await waitFor(() => mock.requests[0]!.aborted, "slow upstream request aborted");
  });
});

Deno.test("e2e deadlines: a non-streamed response within request completes", async () => {
  await withProxy(`{request: "500ms"}`, async (proxy, mock) => {
    mock.script({ headers: { "content-type": "application/json" } });
    const response = await post(proxy, { "x-mock-chunks": "4", "x-mock-delay-ms": "50" }, true);
    assert.equal(response.status, 200);
    assert.ok((await response.text()).endsWith("data: [DONE]\n\n"));
  });
});
