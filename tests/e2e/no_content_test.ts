/**
 * Answers without content (204, 205, 304, HEAD) from an upstream that sends a body anyway: the
 * proxy answers at once without reading it, and nothing of it reaches a later answer. Runs on
 * either transport (`LLMPROXY_TRANSPORT=fetch` for the fetch one, as `.ci/run` does).
 */
import assert from "node:assert/strict";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the upstream streamed of a 205's declared body. */
interface Streamed {
  /** Body bytes it managed to write. */
  written: number;
  /** Whether the proxy closed the connection (a write failed, or a read saw the end). */
  closed: boolean;
}

/** The body a 205 declares: 1 GiB, far more than the test lets the upstream write. */
const DECLARED_BYTES = 1024 * 1024 * 1024;
/** The most the upstream writes of it before waiting to see whether the proxy closes. */
const CAP_BYTES = 32 * 1024 * 1024;
/** The 205's body bytes spell a whole response: read as one, they would desynchronise. */
const POISON = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON";

/**
 * A raw HTTP/1.1 upstream on keep-alive connections: `/reset` gets a 205 declaring a 1 GiB body
 * that it then streams (up to {@linkcode CAP_BYTES}) until the proxy closes the connection;
 * anything else gets `200 ok`.
 */
function misbehavingUpstream() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  let resolveStreamed: (streamed: Streamed) => void;
  const streamed = new Promise<Streamed>((resolve) => resolveStreamed = resolve);
  let accepts = 0;

  const streamBody = async (conn: Deno.Conn): Promise<Streamed> => {
    const chunk = encoder.encode(POISON.repeat(Math.ceil(64 * 1024 / POISON.length)));
    let written = 0;
    try {
      while (written < CAP_BYTES) written += await conn.write(chunk);
    } catch {
      return { written, closed: true };
    }
    // Everything written and the proxy still listening: does it close now? (bounded)
    let timer: ReturnType<typeof setTimeout> | undefined;
    const closed = await Promise.race([
      conn.read(new Uint8Array(1024)).then((n) => n === null, () => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 2000)),
    ]);
    clearTimeout(timer);
    return { written, closed };
  };

  const serve = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    let pending = "";
    try {
      for (;;) {
        while (!pending.includes("\r\n\r\n")) {
          const n = await conn.read(buffer);
          if (n === null) return;
          pending += decoder.decode(buffer.subarray(0, n));
        }
        const head = pending.slice(0, pending.indexOf("\r\n\r\n"));
        pending = pending.slice(head.length + 4);
        if (head.split(" ")[1] === "/reset") {
          await conn.write(encoder.encode(
            `HTTP/1.1 205 Reset Content\r\ncontent-length: ${DECLARED_BYTES}\r\n\r\n`,
          ));
          resolveStreamed(await streamBody(conn));
          return;
        }
        await conn.write(encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
      }
    } catch {
      // the proxy closed the connection
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
        accepts++;
        conns.add(conn);
        tasks.push(serve(conn));
      }
    } catch { /* listener closed */ }
  })();

  return {
    url: `http://127.0.0.1:${listener.addr.port}`,
    /** What was streamed of the 205's body, once the upstream knows. */
    streamed,
    get accepts() {
      return accepts;
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

/** `promise`, or a rejection naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("e2e: a 205 declaring a 1 GiB body is answered at once; the body is never read, the next answer clean", async () => {
  const upstream = misbehavingUpstream();
  const proxy = await startTestProxy(
    simpleConfig([upstream.url], { group: "httpClient: {retry: {attempts: 0}}" }),
  );
  try {
    const reset = await within(fetch(`${proxy.url()}/reset`), "the 205");
    assert.equal(reset.status, 205);
    assert.equal(await within(reset.text(), "the 205's (empty) body"), "");

    const { written, closed } = await within(upstream.streamed, "the upstream's verdict");
    assert.ok(closed, `the proxy kept reading the 205's body (${written} bytes written)`);
    assert.ok(written < CAP_BYTES, `the proxy read ${written} bytes of the 205's body`);

    // Not desynchronised: the next answer is the upstream's own, not the 205's body bytes.
    for (let i = 0; i < 2; i++) {
      const next = await within(fetch(`${proxy.url()}/next`), "the next answer");
      assert.equal(next.status, 200);
      assert.equal(await next.text(), "ok");
    }
    // The 205's connection was not reused; the next one was.
    assert.equal(upstream.accepts, 2);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
});

Deno.test("e2e: a fetch reply carrying a body on a 205 is cancelled, never read", async () => {
  // Deno's own fetch hands out no body on a 205 (and drops the connection); this stands in for
  // a `fetch` that does, to pin down that the proxy cancels such a body instead of reading it.
  let pulls = 0;
  let cancelled = false;
  let readWhole = false;
  const fakeFetch = (() => {
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // Bounded, so that a proxy that reads it whole fails the test instead of hanging it.
        if (++pulls > 16) controller.close();
        else controller.enqueue(new Uint8Array(64 * 1024));
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    return Promise.resolve({
      status: 205,
      statusText: "Reset Content",
      headers: new Headers({ "content-length": String(DECLARED_BYTES) }),
      body,
      bytes() {
        readWhole = true;
        return new Response(body).bytes();
      },
    } as unknown as Response);
  }) as typeof fetch;
  const proxy = await startTestProxy(
    simpleConfig(["https://127.0.0.1:9"], { group: "httpClient: {retry: {attempts: 0}}" }),
    { fetch: fakeFetch, transport: "fetch" },
  );
  try {
    const reset = await within(fetch(`${proxy.url()}/reset`), "the 205");
    assert.equal(reset.status, 205);
    assert.equal(await within(reset.text(), "the 205's (empty) body"), "");
    assert.equal(readWhole, false, "the proxy read the 205's body whole");
    assert.equal(cancelled, true, "the 205's body was left open");
    assert.ok(pulls <= 1, `the proxy pulled ${pulls} parts of the 205's body`);
  } finally {
    await proxy.stop();
  }
});

Deno.test("e2e: a 205 reaches a keep-alive client framed empty: its connection closes after it", async () => {
  // Deno's server sends a 205 without `Content-Length: 0` and ignores `Connection: close`, so
  // the proxy frames it by closing the connection: a client reading to the end sees the whole
  // (empty) message at once and never waits for a body.
  const upstream = misbehavingUpstream();
  const proxy = await startTestProxy(simpleConfig([upstream.url]));
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(proxy.url()).port),
  });
  try {
    const readToEnd = async () => {
      let text = "";
      const buffer = new Uint8Array(16 * 1024);
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) return text;
        text += decoder.decode(buffer.subarray(0, n));
      }
    };
    await conn.write(encoder.encode("GET /reset HTTP/1.1\r\nhost: x\r\n\r\n"));
    const message = await within(readToEnd(), "the 205, ended by the connection's close");
    assert.match(message, /^HTTP\/1\.1 205 /);
    assert.ok(message.endsWith("\r\n\r\n"), `nothing follows the head: ${JSON.stringify(message)}`);
    assert.doesNotMatch(message, /transfer-encoding/i);
    // The next request on a new connection is answered cleanly.
    const next = await fetch(`${proxy.url()}/next`);
    assert.equal(await next.text(), "ok");
  } finally {
    conn.close();
    await proxy.stop();
    await upstream.close();
  }
});
