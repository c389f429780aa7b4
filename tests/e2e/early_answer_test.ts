/**
 * End-to-end: an upstream that answers before it has read the request body (a 413 on the head
 * of a large upload) and closes the connection. The answer is the answer: passed to the client
 * byte-exact, not retried, not a breaker failure. Runs on both transports
 * (`LLMPROXY_TRANSPORT=fetch` for the fetch one: Deno's client keeps the early answer too).
 *
 * @module
 */
import assert from "node:assert/strict";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

const encoder = new TextEncoder();

const TOO_LARGE_BODY =
  '{"error":{"message":"request body exceeds 1 MiB","type":"invalid_request_error","code":"too_large"}}';
const TOO_LARGE = encoder.encode(
  "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n" +
    `content-length: ${TOO_LARGE_BODY.length}\r\nconnection: close\r\n\r\n${TOO_LARGE_BODY}`,
);
const TWENTY_MB = 20 * 1024 * 1024;

/** Three failures in a row would open this breaker; three retries would follow each one. */
const TRIGGER_HAPPY = `breaker: {threshold: 0.5, minRequests: 3, interval: 60, cooldown: 60}`;
const RETRIES = `httpClient: {retry: {attempts: 3, initial: "5ms"}}`;

/**
 * A raw upstream that reads each request's head only, answers {@linkcode TOO_LARGE} and closes
 * the connection with the body unread (so the kernel resets it under the proxy's writes).
 */
function refusingUpstream() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  let accepts = 0;
  const serve = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    let head = "";
    try {
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) return;
        head += new TextDecoder().decode(buffer.subarray(0, n));
      }
      await conn.write(TOO_LARGE);
    } catch {
      // the proxy went away
    } finally {
      conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepts++;
        tasks.push(serve(conn));
      }
    } catch { /* listener closed */ }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}`,
    get accepts() {
      return accepts;
    },
    async close() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("e2e: a 413 sent while a 20 MB body is written is the answer: exact, not retried, no breaker failure", async () => {
  const upstream = refusingUpstream();
  const proxy = await startTestProxy(
    simpleConfig([upstream.url], {
      server: `maxBodySize: "32MiB"`,
      upstream: TRIGGER_HAPPY,
      group: RETRIES,
    }),
  );
  try {
    const body = new Uint8Array(TWENTY_MB).fill(0x61);
    for (let i = 1; i <= 3; i++) {
      const response = await fetch(`${proxy.url()}/v1/files`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      // With the bug: 502 "connection reset" after three retries.
      assert.equal(response.status, 413, `request ${i}`);
      assert.equal(response.headers.get("content-type"), "application/json");
      assert.equal(await response.text(), TOO_LARGE_BODY);
      assert.equal(upstream.accepts, i, `request ${i}: one upstream connection, no retry`);
    }
    const u0 = proxy.app.runtime().upstreams.get("u0")!;
    assert.equal(u0.breaker.state(performance.now()), "closed");
    const metrics = parsePrometheusText(
      await (await fetch(`${proxy.adminUrl()}/metrics`)).text(),
    );
    const errors = sampleValue(metrics, "llmproxy_upstream_errors_total", {
      group: "g",
      upstream: "u0",
      kind: "connect",
    });
    assert.ok(errors === undefined || errors === 0, `connect errors counted: ${errors}`);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});
