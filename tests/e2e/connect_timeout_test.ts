/**
 * End-to-end: `httpClient.timeout.connect` against an upstream whose TCP handshake never
 * completes. On loopback that is a listener whose accept queue is full: the kernel drops the
 * SYNs of further connects, which then hang as they would towards a black-holed address.
 *
 * On the HTTP/1.1 client the connect gives up after `timeout.connect`: a connect failure
 * (`kind="connect"`, retried on another upstream, a breaker failure). Deno's fetch has no connect
 * timeout (`LLMPROXY_TRANSPORT=fetch`): there the first-byte deadline ends the attempt.
 *
 * @module
 */
import assert from "node:assert/strict";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { assertErrorBody, chat } from "../_helpers/raw_http.ts";

const FETCH = Deno.env.get("LLMPROXY_TRANSPORT") === "fetch";

/** A listener that never completes another handshake: its accept queue is filled, never read. */
async function unansweredListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const queued: Deno.TcpConn[] = [];
  // Deno listens with a backlog of 511 (less where somaxconn is lower): a few hundred connects.
  for (let i = 0; i < 4096; i++) {
    const controller = new AbortController();
    const connecting = Deno.connect({ hostname: "127.0.0.1", port, signal: controller.signal });
    // A loopback connect with room in the queue takes microseconds; one pending this long waits
    // for a SYN retransmission (a second away).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const conn = await Promise.race([
      connecting,
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 400)),
    ]).finally(() => clearTimeout(timer));
    if (conn === null) {
      controller.abort();
      await connecting.then((c) => c.close(), () => {});
      return {
        url: `http://127.0.0.1:${port}`,
        close() {
          for (const c of queued) c.close();
          listener.close();
        },
      };
    }
    queued.push(conn);
  }
  for (const c of queued) c.close();
  listener.close();
  throw new Error("the accept queue never filled");
}

function timeouts(connect: string): string {
  return `httpClient: {timeout: {connect: "${connect}", firstByte: "1s"}, retry: {attempts: 1, initial: "5ms"}}`;
}

Deno.test("e2e: a connect that does not finish within timeout.connect is a connect failure (502 connect timeout)", async () => {
  const dark = await unansweredListener();
  const proxy = await startTestProxy(
    simpleConfig([dark.url], { group: timeouts("150ms") }),
  );
  try {
    const started = performance.now();
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
      signal: AbortSignal.timeout(5_000),
    });
    const elapsed = performance.now() - started;
    const metrics = parsePrometheusText(
      await (await fetch(`${proxy.adminUrl()}/metrics`)).text(),
    );
    const errors = (kind: string) =>
      sampleValue(metrics, "llmproxy_upstream_errors_total", { group: "g", upstream: "u0", kind });
    if (FETCH) {
      // Deno's fetch has no connect timeout: the first-byte deadline ends each attempt.
      await assertErrorBody(response, 504);
      assert.equal(errors("timeout"), 2);
      assert.ok(elapsed >= 1_900, `${elapsed} ms`);
    } else {
      // With the bug: 504 after the first-byte deadline (1 s) of each of the two attempts.
      const error = await assertErrorBody(response, 502);
      assert.equal(error.message, 'cannot reach upstream "u0": connect timeout');
      assert.equal(errors("connect"), 2, "both attempts are connect failures");
      assert.ok(elapsed < 900, `gave up after ${elapsed} ms`);
    }
  } finally {
    await proxy.stop();
    dark.close();
  }
});

Deno.test("e2e: a connect timeout is retried on another upstream and counted by the breaker", async () => {
  const dark = await unansweredListener();
  const healthy = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([dark.url, healthy.url], {
      upstream: `breaker: {threshold: 0.5, minRequests: 1, interval: 60, cooldown: 60}`,
      group: `balance: {strategy: failover}\n${timeouts("150ms")}`,
    }),
  );
  try {
    const started = performance.now();
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
    const elapsed = performance.now() - started;
    assert.equal(healthy.requests.length, 1);
    // One failure opens this breaker: the dark upstream is out of the candidates.
    const u0 = proxy.app.runtime().upstreams.get("u0")!;
    assert.equal(u0.breaker.state(performance.now()), "open");
    if (!FETCH) assert.ok(elapsed < 900, `failed over after ${elapsed} ms`);
  } finally {
    await proxy.stop();
    await healthy.close();
    dark.close();
  }
});
