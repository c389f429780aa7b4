/**
 * The HTTP/1.1 client over TLS (`tls` option): verification as `fetch` does it, mutual TLS, the
 * connect timeout across the handshake, pooling, streaming, and never sharing a connection
 * between http and https. Real TLS servers on 127.0.0.1 with the fixtures of `tests/_fixtures/tls`.
 *
 * Each verification runs on both ways the client dials: `Deno.startTls` (no client certificate)
 * and `Deno.connectTls` (with one).
 *
 * @module
 */
import assert from "node:assert/strict";
import https from "node:https";
import http2 from "node:http2";
import tls from "node:tls";
import {
  type SendInit,
  type Transport,
  type UpstreamReply,
  type UpstreamTarget,
  UpstreamTlsError,
} from "../../../src/transport/transport.ts";
import { Http1Transport } from "../../../src/transport/http1/transport.ts";
import { ConnectTimeoutError } from "../../../src/transport/http1/connection.ts";
import type { TlsClientOptions } from "../../../src/transport/http1/tls.ts";
import { failureCause } from "../../../src/transport/failure.ts";
import { certified, countingRelay, pem } from "../../_helpers/tls.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const CA = pem("ca.pem");
/** The client certificate: its presence makes the client dial with `Deno.connectTls`. */
const CLIENT = certified("client");

/** The two ways of dialling, with the private CA trusted. */
const DIALS: readonly (readonly [string, TlsClientOptions])[] = [
  ["startTls", { caCerts: [CA] }],
  ["connectTls (client certificate)", { caCerts: [CA], ...CLIENT }],
];

function target(port: number, protocol: "http:" | "https:" = "https:"): UpstreamTarget {
  return {
    url: `${protocol}//127.0.0.1:${port}/x`,
    protocol,
    hostname: "127.0.0.1",
    port,
    host: `127.0.0.1:${port}`,
    path: "/x",
  };
}

function init(more: Partial<SendInit> = {}): SendInit {
  return { method: "GET", headers: {}, body: null, signal: AbortSignal.timeout(5_000), ...more };
}

/** Stands in for fetch: records what it was handed. */
function secureRecorder(): Transport & { sent: UpstreamTarget[]; closed: boolean } {
  const self = {
    kind: "fetch" as const,
    kindFor: () => "fetch" as const,
    sent: [] as UpstreamTarget[],
    closed: false,
    send(target: UpstreamTarget): Promise<UpstreamReply> {
      self.sent.push(target);
      return Promise.reject(new Error("handed to the secure transport"));
    },
    close() {
      self.closed = true;
    },
  };
  return self;
}

function client(tls: TlsClientOptions, more: { connectTimeoutMs?: number } = {}) {
  const secure = secureRecorder();
  const transport = new Http1Transport({
    secure,
    tls,
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
    ...more,
  });
  return {
    transport,
    secure,
    [Symbol.dispose]: () => transport.close(),
  };
}

/** An HTTPS server (Deno.serve) with a fixture's certificate. */
function tlsServer(fixture: string, handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, ...certified(fixture), onListen() {} },
    handler,
  );
  return {
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A TCP listener that accepts and never says a word: a TLS handshake on it never ends. */
function silentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    accepted,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
      for (const conn of accepted) conn.close();
    },
  };
}

async function text(reply: UpstreamReply): Promise<string> {
  return decoder.decode(await reply.bytes());
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 3000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// --- verification ------------------------------------------------------------------------

for (const [dial, tls] of DIALS) {
  for (
    const [fixture, trusted, kind, detail] of [
      ["server", false, "unknown issuer", /UnknownIssuer/],
      ["wrong_name", true, "name mismatch", /not valid for name "127\.0\.0\.1"/],
      ["expired", true, "expired", /expired/],
    ] as const
  ) {
    Deno.test(`http1 tls (${dial}): a ${fixture} certificate${trusted ? "" : " of an unknown CA"} is an UpstreamTlsError (${kind})`, async () => {
      let handled = 0;
      await using server = tlsServer(fixture, () => {
        handled++;
        return new Response("ok");
      });
      using c = client(trusted ? tls : { ...tls, caCerts: [] });
      await assert.rejects(c.transport.send(target(server.port), init()), (error) => {
        assert.ok(error instanceof UpstreamTlsError, String(error));
        assert.equal(error.kind, kind);
        assert.match(error.detail, detail);
        assert.equal(failureCause(error), "TLS error");
        return true;
      });
      assert.equal(handled, 0);
      assert.equal(c.secure.sent.length, 0, "never handed to fetch");
      assert.equal(c.transport.idleConnections, 0);
    });
  }

  Deno.test(`http1 tls (${dial}): a certificate of a trusted CA for the host passes; ALPN is http/1.1`, async () => {
    await using server = tlsServer("server", (req) => new Response(`${req.method} ${req.url}`));
    using c = client(tls);
    const reply = await c.transport.send(target(server.port), init());
    assert.equal(reply.status, 200);
    // Deno.serve offers h2 too: HTTP/1.1 was chosen, or this client could not have read it.
    assert.equal(await text(reply), `GET https://127.0.0.1:${server.port}/x`);
  });

  Deno.test(`http1 tls (${dial}): timeout.connect bounds a handshake the server never answers`, async () => {
    await using server = silentServer();
    using c = client(tls, { connectTimeoutMs: 150 });
    const started = performance.now();
    await assert.rejects(c.transport.send(target(server.port), init()), (error) => {
      assert.ok(error instanceof ConnectTimeoutError, String(error));
      assert.equal(failureCause(error), "connect timeout");
      return true;
    });
    // The first-byte signal (5 s) did not end it.
    assert.ok(performance.now() - started < 4_000);
    assert.equal(server.accepted.length, 1, "the TCP connect was made: the handshake stalled");
    // (Deno keeps the socket of an abandoned handshake until the server answers or closes it:
    // closing the server's side here releases it.)
  });

  Deno.test(`http1 tls (${dial}): an abort during the handshake rejects with its reason`, async () => {
    await using server = silentServer();
    using c = client(tls, { connectTimeoutMs: 10_000 });
    const controller = new AbortController();
    const pending = c.transport.send(target(server.port), init({ signal: controller.signal }));
    await until(() => server.accepted.length === 1, "the TCP connect");
    const reason = new Error("first-byte deadline");
    controller.abort(reason);
    await assert.rejects(pending, (error) => error === reason);
  });
}

Deno.test("http1 tls: a server that closes mid-handshake is a TLS failure, as on fetch", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const loop = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  using c = client({ caCerts: [CA] });
  try {
    await assert.rejects(c.transport.send(target(listener.addr.port), init()), (error) => {
      assert.ok(error instanceof UpstreamTlsError, String(error));
      assert.equal(error.kind, "handshake failed");
      assert.equal(error.detail, "tls handshake eof");
      return true;
    });
  } finally {
    listener.close();
    await loop;
  }
});

// --- mutual TLS --------------------------------------------------------------------------

async function mutualTlsServer(options: https.ServerOptions = {}) {
  const server = https.createServer({
    ...certified("server"),
    ca: CA,
    requestCert: true,
    rejectUnauthorized: true,
    ...options,
  }, (req, res) => {
    // deno-lint-ignore no-explicit-any
    const peer = (req.socket as any).getPeerCertificate?.();
    res.end(`client=${peer?.subject?.CN ?? "none"}`);
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
  Deno.test(`http1 tls: mutual TLS (${version}): tls.cert/tls.key are presented; without them the refusal is a TLS failure`, async () => {
    await using server = await mutualTlsServer({ maxVersion: version });
    {
      using c = client({ caCerts: [CA], ...CLIENT });
      const reply = await c.transport.send(target(server.port), init());
      assert.equal(reply.status, 200);
      assert.equal(await text(reply), "client=llmproxy-client");
    }
    {
      using c = client({ caCerts: [CA] });
      // Under TLS 1.3 the client learns of the refusal with its first read, after the handshake.
      await assert.rejects(c.transport.send(target(server.port), init()), (error) => {
        assert.ok(error instanceof UpstreamTlsError, String(error));
        assert.equal(error.kind, "client certificate refused");
        return true;
      });
      assert.equal(c.transport.idleConnections, 0);
    }
  });
}

// --- HTTP/2-only servers -----------------------------------------------------------------

Deno.test("http1 tls: a server that speaks only HTTP/2 is handed to the secure transport, then always", async () => {
  const server = http2.createSecureServer(
    { ...certified("server"), allowHTTP1: false },
    (_req, res) => res.end("h2"),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const relay = countingRelay((server.address() as { port: number }).port);
  using c = client({ caCerts: [CA] });
  try {
    for (let i = 1; i <= 2; i++) {
      await assert.rejects(
        c.transport.send(target(relay.port), init()),
        /handed to the secure transport/,
      );
      assert.equal(c.secure.sent.length, i);
    }
    assert.equal(relay.connections, 1, "one refused handshake, then straight to fetch");
    assert.equal(c.transport.kindFor("https:"), "http1", "other https origins stay on http1");
  } finally {
    await relay.close();
    await new Promise((resolve) => server.close(resolve));
  }
});

// --- pooling and streaming ---------------------------------------------------------------

Deno.test("http1 tls: a TLS connection is pooled and reused (one handshake for many requests)", async () => {
  await using server = tlsServer("server", async (req) => new Response(await req.text()));
  const relay = countingRelay(server.port);
  using c = client({ caCerts: [CA] });
  try {
    for (let i = 0; i < 5; i++) {
      const reply = await c.transport.send(
        target(relay.port),
        init({ method: "POST", body: encoder.encode(`request ${i}`) }),
      );
      assert.equal(await text(reply), `request ${i}`);
    }
    assert.equal(relay.connections, 1);
    assert.equal(c.transport.idleConnections, 1);
  } finally {
    await relay.close();
  }
});

Deno.test("http1 tls: a pooled connection the server dropped without close_notify is sent again on a new one", async () => {
  // The first connection answers once, then drops the connection on the next request without
  // TLS close_notify (Deno reads that as UnexpectedEof, where a plain socket reads its end).
  let connections = 0;
  const server = tls.createServer(certified("server"), (socket) => {
    const id = ++connections;
    let requests = 0;
    socket.on("data", () => {
      if (id === 1 && ++requests === 2) return void socket.destroy();
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nconn${id}`);
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  using c = client({ caCerts: [CA] });
  try {
    const port = (server.address() as { port: number }).port;
    const answers = [];
    for (let i = 0; i < 3; i++) {
      answers.push(await text(await c.transport.send(target(port), init())));
    }
    assert.deepEqual(answers, ["conn1", "conn2", "conn2"]);
  } finally {
    c.transport.close(); // the pooled connection: node's close() waits for it
    await new Promise((resolve) => server.close(resolve));
  }
});

Deno.test("http1 tls: an SSE body over TLS reaches the reader event by event, unbuffered", async () => {
  // The server sends the next event only after the client has read the previous one: a client
  // that buffered the body would never see the first.
  const sent: ((value: void) => void)[] = [];
  const readNext = () => new Promise<void>((resolve) => sent.push(resolve));
  await using server = tlsServer("server", () => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (let i = 1; i <= 3; i++) {
          controller.enqueue(encoder.encode(`data: ${i}\n\n`));
          await readNext();
        }
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  using c = client({ caCerts: [CA] });
  const reply = await c.transport.send(target(server.port), init());
  assert.equal(reply.headers.get("content-type"), "text/event-stream");
  const reader = reply.reader()!;
  let received = "";
  for (let i = 1; i <= 3; i++) {
    while (!received.includes(`data: ${i}\n\n`)) {
      const { value, done } = await reader.read();
      assert.equal(done, false, `the stream ended before event ${i}`);
      received += decoder.decode(value);
    }
    sent.shift()!();
  }
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    received += decoder.decode(r.value);
  }
  assert.equal(received, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n");
});

/**
 * One port that speaks both: a connection whose first byte opens a TLS handshake (0x16) is
 * relayed to the https server, any other to the plain one. Counts the connections of each.
 */
function schemeSplitter(plainPort: number, tlsPort: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const counts = { plain: 0, tls: 0 };
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const inbound of listener) {
      open.add(inbound);
      const pipe = (async () => {
        const first = new Uint8Array(16 * 1024);
        const n = await inbound.read(first).catch(() => null);
        if (n === null) return;
        const isTls = first[0] === 0x16;
        counts[isTls ? "tls" : "plain"]++;
        const outbound = await Deno.connect({
          hostname: "127.0.0.1",
          port: isTls ? tlsPort : plainPort,
        });
        open.add(outbound);
        await outbound.write(first.subarray(0, n));
        const end = () => {
          for (const conn of [inbound, outbound]) {
            open.delete(conn);
            try {
              conn.close();
            } catch { /* closed */ }
          }
        };
        await Promise.all([
          inbound.readable.pipeTo(outbound.writable, { preventClose: true }).catch(() => {}),
          outbound.readable.pipeTo(inbound.writable, { preventClose: true }).catch(() => {}),
        ].map((p) => p.finally(end)));
      })().catch(() => {});
      pipes.add(pipe);
      pipe.finally(() => pipes.delete(pipe));
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    counts,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of [...open]) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await loop;
      await Promise.allSettled([...pipes]);
    },
  };
}

Deno.test("http1 tls: http and https to the same host:port never share a pooled connection", async () => {
  await using plain = (() => {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("plain"),
    );
    return { port: server.addr.port, [Symbol.asyncDispose]: () => server.shutdown() };
  })();
  await using secure = tlsServer("server", () => new Response("tls"));
  await using splitter = schemeSplitter(plain.port, secure.port);
  using c = client({ caCerts: [CA] });
  for (let i = 0; i < 3; i++) {
    for (const [protocol, expected] of [["http:", "plain"], ["https:", "tls"]] as const) {
      const reply = await c.transport.send(target(splitter.port, protocol), init());
      assert.equal(await text(reply), expected, `${protocol} request ${i}`);
    }
  }
  // One connection per scheme, each reused: an https request never went on the plain one.
  assert.deepEqual(splitter.counts, { plain: 1, tls: 1 });
  assert.equal(c.transport.idleConnections, 2);
});

Deno.test("Http1Transport.kindFor(): https is http1 with tls, the secure transport's without", () => {
  using withTls = client({});
  assert.equal(withTls.transport.kindFor("https:"), "http1");
  assert.equal(withTls.transport.kindFor("http:"), "http1");
  const secure = secureRecorder();
  const without = new Http1Transport({
    secure,
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
  });
  assert.equal(without.kindFor("https:"), "fetch");
  without.close();
});
