/**
 * A client that disconnects is recorded as status 499 (nginx's convention) in
 * `llmproxy_http_requests_total` and the access log, never as a 502.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { delay, waitFor } from "../_helpers/raw_http.ts";

const CHAT = "/v1/chat/completions";

async function requestsByStatus(proxy: TestProxy, status: string): Promise<number | undefined> {
  const text = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
  return sampleValue(parsePrometheusText(text), "llmproxy_http_requests_total", {
    forward: "main",
    method: "POST",
    status,
  });
}

/** Polls the metrics until `status` has been counted once (the access log runs at body end). */
async function counted(proxy: TestProxy, status: string): Promise<void> {
  for (let waited = 0; await requestsByStatus(proxy, status) !== 1; waited += 20) {
    if (waited > 2_000) assert.fail(`no request counted with status ${status}`);
    await delay(20);
  }
}

/** Sends a request with `headers` and aborts it once the upstream has seen `seen` requests. */
async function abandon(
  proxy: TestProxy,
  headers: Record<string, string>,
  upstreamSeen: () => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  const pending = fetch(`${proxy.url()}${CHAT}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "m" }),
    signal: controller.signal,
  });
  await upstreamSeen();
  controller.abort();
  await assert.rejects(pending);
}

Deno.test("e2e: a client that leaves while the upstream hangs is counted and logged as 499, not 502", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], { group: `httpClient: {retry: {attempts: 0}}` }),
    { captureLogs: true, logLevel: "info", json: true },
  );
  try {
    await abandon(proxy, { "x-mock-hang": "1" }, () => mock.waitForRequests(1));
    await waitFor(() => mock.requests[0]!.aborted, "the upstream request was ended");
    await counted(proxy, "499");
    assert.equal(await requestsByStatus(proxy, "502"), undefined);
    const access = proxy.logs.map((line) => JSON.parse(line)).filter((e) => e.log === "access");
    assert.deepEqual(access.map((e) => e.status), [499]);
    // Nobody's failure: the upstream's breaker saw nothing.
    assert.equal(proxy.app.runtime().upstreams.get("u0")!.errors, 0);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e: a client that leaves during a retry wait is counted as 499", async () => {
  const mock = await startMockUpstream();
  mock.always({ status: 503 });
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], {
      group: `httpClient: {retry: {attempts: 2, initial: "10s", budget: "60s"}}`,
    }),
  );
  try {
    await abandon(proxy, {}, () => mock.waitForRequests(1));
    await counted(proxy, "499");
    assert.equal(await requestsByStatus(proxy, "502"), undefined);
    assert.equal(mock.requests.length, 1);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});
