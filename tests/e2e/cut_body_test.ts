/**
 * A body cut short of its declared `Content-Length` never reaches the client as a complete
 * answer: the proxy aborts the client's transfer (fewer bytes than declared, then a close)
 * instead of appending an SSE error event the declared length would truncate into a
 * complete-looking body. A scripted raw-TCP upstream sends the exact bytes; the client reads raw
 * TCP (byte-exact) and with fetch. Runs on either transport (`LLMPROXY_TRANSPORT=fetch` for the
 * fetch one, as `.ci/run` does).
 */
import assert from "node:assert/strict";
import { concatBytes } from "../../src/bytes.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const EVENTS = 'data: {"choices":[{"delta":{"content":"a"}}]}\n\n' +
  'data: {"choices":[{"delta":{"content":"b"}}]}\n\n';

/**
 * A raw upstream: every request gets `head` (status line and headers, CRLF-joined by the test)
 * and then `body`, and the connection is closed right after, whatever the head declared.
 */
function scriptedUpstream(head: string, body: string | Uint8Array) {
  const bytes = concatBytes([
    encoder.encode(`${head}\r\n\r\n`),
    typeof body === "string" ? encoder.encode(body) : body,
  ]);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  let requests = 0;
  const serve = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    let pending = "";
    try {
      while (!pending.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) return;
        pending += decoder.decode(buffer.subarray(0, n));
      }
      const headEnd = pending.indexOf("\r\n\r\n") + 4;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(pending)?.[1] ?? 0);
      while (pending.length < headEnd + length) {
        const n = await conn.read(buffer);
        if (n === null) return;
        pending += decoder.decode(buffer.subarray(0, n));
      }
      requests++;
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    } catch {
      // the proxy went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        tasks.push(serve(conn));
      }
    } catch { /* listener closed */ }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}`,
    get requests() {
      return requests;
    },
    async close() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await Promise.all(tasks);
    },
  };
}

/** What a raw client read of one response on a kept-alive connection. */
interface RawRead {
  /** Everything received, as text. */
  text: string;
  /** The body bytes after the head. */
  body: string;
  /** The declared Content-Length, if any. */
  declared: number | undefined;
  /** Whether the proxy closed the connection (false: it was still open after the body). */
  closed: boolean;
}

/**
 * Sends one keep-alive POST over raw TCP and reads until the proxy closes the connection, or
 * until `settleMs` pass with nothing more after the declared length (or a chunked body's last
 * chunk) arrived: the connection is then left open for reuse, what a complete answer looks like.
 */
async function rawPost(proxy: TestProxy, settleMs = 300): Promise<RawRead> {
  const port = Number(new URL(proxy.url()).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const payload = '{"model":"m","stream":true}';
  await conn.write(encoder.encode(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`,
  ));
  const buffer = new Uint8Array(16 * 1024);
  let text = "";
  let closed = false;
  const deadline = performance.now() + 5000;
  try {
    for (;;) {
      const headEnd = text.indexOf("\r\n\r\n");
      const declared = headEnd < 0
        ? undefined
        : Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd))?.[1] ?? NaN);
      // Complete: the declared length arrived, or a chunked body's last chunk did.
      const complete = declared !== undefined &&
        (Number.isNaN(declared)
          ? text.endsWith("\r\n0\r\n\r\n")
          : text.length - headEnd - 4 >= declared);
      const wait = complete ? settleMs : Math.max(0, deadline - performance.now());
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buffer).catch(() => null),
        new Promise<"quiet">((resolve) => timer = setTimeout(() => resolve("quiet"), wait)),
      ]);
      clearTimeout(timer);
      if (n === "quiet") {
        if (!complete) assert.fail(`no answer within 5 s: ${JSON.stringify(text)}`);
        break;
      }
      if (n === null) {
        closed = true;
        break;
      }
      text += decoder.decode(buffer.subarray(0, n));
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  const headEnd = text.indexOf("\r\n\r\n");
  assert.ok(headEnd > 0, `no response head: ${JSON.stringify(text)}`);
  const declared = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd))?.[1];
  return {
    text,
    body: text.slice(headEnd + 4),
    declared: declared === undefined ? undefined : Number(declared),
    closed,
  };
}

async function withUpstream(
  head: string,
  body: string | Uint8Array,
  fn: (proxy: TestProxy) => Promise<void>,
): Promise<void> {
  const upstream = scriptedUpstream(head, body);
  const proxy = await startTestProxy(simpleConfig([`${upstream.url}/v1/chat/completions`], {
    upstream: "breaker: {threshold: 0.5, minRequests: 1, interval: 60, cooldown: 60}",
    group: "httpClient: {retry: {attempts: 0}, timeout: {firstByte: 3s, streamIdle: 3s}}",
  }));
  try {
    await fn(proxy);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}

/** The upstream's breaker saw the broken stream as a failure. */
function assertFailureRecorded(proxy: TestProxy): void {
  const upstream = proxy.app.runtime().upstreams.get("u0")!;
  assert.equal(upstream.errors, 1, "the broken stream was not counted as a failure");
  assert.equal(upstream.breaker.state(performance.now()), "open");
}

// Declared lengths just past what is sent (the proxy's error event would fill them up and look
// complete) and far past it (the event would leave the body short).
for (const missing of [1, 20, 5000]) {
  const head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" +
    `content-length: ${EVENTS.length + missing}`;

  Deno.test(`e2e cut body: SSE declaring ${missing} more bytes than sent aborts the raw client's connection`, async () => {
    await withUpstream(head, EVENTS, async (proxy) => {
      const read = await rawPost(proxy);
      assert.match(read.text, /^HTTP\/1\.1 200 /);
      assert.equal(read.declared, EVENTS.length + missing, read.text);
      assert.ok(read.closed, `the connection stayed open for reuse: ${JSON.stringify(read.text)}`);
      assert.ok(
        read.body.length < read.declared!,
        `a complete-looking body of ${read.body.length} bytes: ${JSON.stringify(read.body)}`,
      );
      // What did arrive is the upstream's bytes only: nothing appended.
      assert.equal(read.body, EVENTS.slice(0, read.body.length));
      assert.ok(!read.body.includes("event: error"), read.body);
      assertFailureRecorded(proxy);
    });
  });

  Deno.test(`e2e cut body: SSE declaring ${missing} more bytes than sent fails fetch's body read`, async () => {
    await withUpstream(head, EVENTS, async (proxy) => {
      const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"model":"m","stream":true}',
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-length"), String(EVENTS.length + missing));
      await assert.rejects(response.text());
      assertFailureRecorded(proxy);
    });
  });
}

Deno.test("e2e cut body: chunked SSE cut short still ends with the proxy's error event", async () => {
  // Chunked framing: the last chunk is missing, so the upstream broke off mid-stream.
  const chunked = EVENTS.length.toString(16) + "\r\n" + EVENTS + "\r\n";
  await withUpstream(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked",
    chunked,
    async (proxy) => {
      const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"model":"m","stream":true}',
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-length"), null);
      const text = await response.text();
      assert.ok(text.startsWith(EVENTS), text);
      assert.match(text.slice(EVENTS.length), /^event: error\ndata: \{.*\}\n\n$/);
      assertFailureRecorded(proxy);
    },
  );
});

Deno.test("e2e cut body: a compressed SSE stream cut short is aborted, never given plain text", async () => {
  const gzipped = new Uint8Array(
    await new Response(
      new Blob([EVENTS.repeat(20)]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  const part = gzipped.subarray(0, gzipped.length >> 1); // half a gzip member
  const chunk = concatBytes([encoder.encode(part.length.toString(16) + "\r\n"), part]);
  await withUpstream(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n" +
      "transfer-encoding: chunked",
    concatBytes([chunk, encoder.encode("\r\n")]),
    async (proxy) => {
      const read = await rawPost(proxy);
      assert.match(read.text, /^HTTP\/1\.1 200 /);
      assert.match(read.text, /\r\ncontent-encoding: gzip\r\n/i);
      assert.ok(read.closed, "the connection stayed open");
      assert.ok(!read.body.includes("event: error"), "plain text after gzip bytes");
      assert.ok(!read.body.endsWith("0\r\n\r\n"), "the chunked body was ended cleanly");
      assertFailureRecorded(proxy);
    },
  );
});

Deno.test("e2e cut body: a complete SSE body with a Content-Length passes byte-exact", async () => {
  await withUpstream(
    `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${EVENTS.length}`,
    EVENTS,
    async (proxy) => {
      const read = await rawPost(proxy);
      assert.equal(read.declared, EVENTS.length);
      assert.equal(read.body, EVENTS);
      assert.equal(read.closed, false, "a complete answer keeps the connection");
      const upstream = proxy.app.runtime().upstreams.get("u0")!;
      assert.equal(upstream.errors, 0);
    },
  );
});
