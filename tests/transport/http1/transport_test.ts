import assert from "node:assert/strict";
import { FakeClock } from "../../_helpers/fake_clock.ts";
import {
  NotSentError,
  type SendInit,
  type Transport,
  type UpstreamReply,
  type UpstreamTarget,
} from "../../../src/transport/transport.ts";
import {
  Http1Transport,
  type Http1TransportOptions,
} from "../../../src/transport/http1/transport.ts";
import {
  Connection,
  ConnectTimeoutError,
  type Dial,
} from "../../../src/transport/http1/connection.ts";
import { failureCause } from "../../../src/transport/failure.ts";
import { Pool } from "../../../src/transport/http1/pool.ts";
import { BodyCutError } from "../../../src/transport/http1/body.ts";
import { UpstreamProtocolError } from "../../../src/transport/http1/head.ts";

// --- helpers: a scripted raw TCP upstream ------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HOSTNAME = "127.0.0.1";

/**
 * `promise`, or a rejection naming `what` after `ms`: no test waits forever. A rejection
 * before the test awaits the result fails that test, not the whole module.
 */
function within<T>(promise: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  const result = Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  result.catch(() => {});
  return result;
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every few ms until it holds (bounded). */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 3000) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

/** One request as the upstream read it. */
interface ReceivedRequest {
  /** The exact bytes (Latin-1), head and body. */
  raw: string;
  head: string;
  body: string;
  /** Socket reads it took. */
  reads: number;
}

/** The upstream's end of one accepted connection. */
class Peer {
  readonly conn: Deno.TcpConn;
  #buffered = new Uint8Array(0);
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    conn.setNoDelay(true); // each scripted write goes out at once
  }

  /** Reads more bytes; false at end of stream. */
  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(128 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffered.length + n);
    joined.set(this.#buffered);
    joined.set(chunk.subarray(0, n), this.#buffered.length);
    this.#buffered = joined;
    return true;
  }

  /** Reads one request: its head and its content-length body. */
  request(): Promise<ReceivedRequest> {
    return within(this.#request(), "a request");
  }

  async #request(): Promise<ReceivedRequest> {
    let reads = 0;
    const text = () => latin1(this.#buffered);
    while (!text().includes("\r\n\r\n")) {
      if (!(await this.#more())) throw new Error("client closed before a whole request head");
      reads++;
    }
    const headEnd = text().indexOf("\r\n\r\n") + 4;
    const head = text().slice(0, headEnd);
    const length = Number(/\r\ncontent-length: (\d+)\r\n/i.exec(head)?.[1] ?? 0);
    while (this.#buffered.length < headEnd + length) {
      if (!(await this.#more())) throw new Error("client closed before a whole request body");
      reads++;
    }
    const raw = text().slice(0, headEnd + length);
    this.#buffered = this.#buffered.slice(headEnd + length);
    return { raw, head, body: raw.slice(headEnd), reads };
  }

  /** Reads a request head only, leaving its body unread. */
  head(): Promise<string> {
    return within(
      (async () => {
        let end = -1;
        while ((end = latin1(this.#buffered).indexOf("\r\n\r\n")) === -1) {
          if (!(await this.#more())) throw new Error("client closed before a whole request head");
        }
        const head = latin1(this.#buffered.subarray(0, end + 4));
        this.#buffered = this.#buffered.slice(end + 4);
        return head;
      })(),
      "a request head",
    );
  }

  /** Reads and drops `length` bytes (a body too large to keep). */
  skip(length: number): Promise<void> {
    return within(
      (async () => {
        const buffered = Math.min(length, this.#buffered.length);
        this.#buffered = this.#buffered.slice(buffered);
        let left = length - buffered;
        const chunk = new Uint8Array(1024 * 1024);
        while (left > 0) {
          const n = await this.conn.read(chunk.subarray(0, Math.min(left, chunk.length)));
          if (n === null) throw new Error("client closed before the whole body");
          left -= n;
        }
      })(),
      "the request body",
    );
  }

  /** Reads until the client closes the connection; resolves with the bytes read (unparsed). */
  drain(): Promise<number> {
    return within(
      (async () => {
        let total = this.#buffered.length;
        this.#buffered = new Uint8Array(0);
        const chunk = new Uint8Array(1024 * 1024);
        for (;;) {
          const n = await this.conn.read(chunk).catch(() => null);
          if (n === null) return total;
          total += n;
        }
      })(),
      "the client to close",
    );
  }

  /** Whether the client closed the connection (end of stream or reset) with nothing more sent. */
  eof(): Promise<boolean> {
    return within(
      this.#more().then((more) => !more, () => true),
      "the client to close",
    );
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.conn.write(bytes.subarray(offset));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** A raw TCP listener on 127.0.0.1 handing out accepted connections in order. */
class ScriptedServer {
  readonly #listener = Deno.listen({ hostname: HOSTNAME, port: 0 });
  readonly #peers: Peer[] = [];
  readonly #ready: Peer[] = [];
  readonly #waiting = new Set<() => void>();
  #closed = false;
  readonly #loop: Promise<void>;
  /** Connections accepted so far. */
  accepts = 0;

  constructor() {
    this.#loop = this.#acceptAll();
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  /** A target on this server. */
  target(path = "/x?y=1"): UpstreamTarget {
    return {
      url: `http://${HOSTNAME}:${this.port}${path}`,
      protocol: "http:",
      hostname: HOSTNAME,
      port: this.port,
      host: `${HOSTNAME}:${this.port}`,
      path,
    };
  }

  async #acceptAll(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.accepts++;
        const peer = new Peer(conn);
        this.#peers.push(peer);
        this.#ready.push(peer);
        this.#wake();
      }
    } catch {
      // listener closed
    }
  }

  /** The next accepted connection. */
  next(): Promise<Peer> {
    return within(
      (async () => {
        while (this.#ready.length === 0) {
          if (this.#closed) throw new Error("server closed");
          await new Promise<void>((resolve) => this.#waiting.add(resolve));
        }
        return this.#ready.shift()!;
      })(),
      "a connection",
    );
  }

  /** Reads one request on `peer` and writes `response`. */
  async answer(peer: Peer, response: string | Uint8Array): Promise<ReceivedRequest> {
    const request = await peer.request();
    await peer.write(response);
    return request;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    this.#listener.close();
    await this.#loop;
    for (const peer of this.#peers) peer.close();
    this.#wake();
  }

  #wake(): void {
    for (const resolve of this.#waiting) resolve();
    this.#waiting.clear();
  }
}

/** Stands in for the https transport: never used by these tests. */
function secureStub(): Transport & { closed: boolean } {
  return {
    kind: "fetch",
    kindFor: () => "fetch",
    closed: false,
    send(): Promise<UpstreamReply> {
      return Promise.reject(new Error("secure transport not expected here"));
    },
    close() {
      this.closed = true;
    },
  };
}

/** A transport and a server, both released at the end of the test. */
function setup(options: Partial<Http1TransportOptions> = {}) {
  const server = new ScriptedServer();
  const transport = new Http1Transport({
    secure: secureStub(),
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
    ...options,
  });
  return {
    server,
    transport,
    /** Sends to the server (by default), bounded in time. */
    send(sendInit: SendInit, target = server.target()): Promise<UpstreamReply> {
      return within(transport.send(target, sendInit), "the response head");
    },
    async [Symbol.asyncDispose]() {
      transport.close();
      await server[Symbol.asyncDispose]();
      await tick(0); // let cancelled socket reads settle
    },
  };
}

/**
 * Records the size of every write on client connections opened while it is in scope (by
 * wrapping `Deno.connect`, which the transport calls at connect time).
 */
function recordClientWrites(): { sizes: number[] } & Disposable {
  const connect = Deno.connect;
  const sizes: number[] = [];
  const wrapped = async (options: Deno.ConnectOptions) => {
    const conn = await connect(options);
    const write = conn.write.bind(conn);
    conn.write = (bytes: Uint8Array) => {
      sizes.push(bytes.byteLength);
      return write(bytes);
    };
    return conn;
  };
  Deno.connect = wrapped as typeof Deno.connect;
  return {
    sizes,
    [Symbol.dispose]() {
      Deno.connect = connect;
    },
  };
}

function init(method = "GET", more: Partial<SendInit> = {}): SendInit {
  return { method, headers: {}, body: null, signal: new AbortController().signal, ...more };
}

const OK = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/** A whole stream, as text (bounded in time). */
function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return within(
    (async () => {
      let text = "";
      for await (const part of stream) text += decoder.decode(part, { stream: true });
      return text;
    })(),
    "the whole body stream",
  );
}

/** The next part of a body stream (bounded in time). */
function read(reader: ReadableStreamDefaultReader<Uint8Array>) {
  return within(reader.read(), "a body part");
}

/** The whole body through `bytes()` (bounded in time). */
function bytesOf(reply: UpstreamReply): Promise<Uint8Array> {
  return within(reply.bytes(), "the body");
}

// --- the request on the wire -------------------------------------------------------------

Deno.test("http1: the exact request bytes, head and body in one write", async () => {
  await using t = setup();
  const { server, send } = t;
  using writes = recordClientWrites();
  const body = encoder.encode('{"model":"m","n":1}');
  const pending = send(
    init("POST", {
      headers: { "content-type": "application/json", "x-trace": "abc" },
      body,
    }),
  );
  const peer = await server.next();
  const request = await server.answer(peer, OK);
  assert.equal(
    request.raw,
    `POST /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\n` +
      "content-type: application/json\r\nx-trace: abc\r\ncontent-length: 19\r\n\r\n" +
      '{"model":"m","n":1}',
  );
  assert.equal(request.reads, 1, "head and body arrive together");
  assert.deepEqual(writes.sizes, [request.raw.length], "one write");
  const reply = await pending;
  assert.equal(reply.status, 200);
  assert.equal(reply.statusText, "OK");
  assert.equal(decoder.decode(await bytesOf(reply)), "ok");
});

Deno.test("http1: GET without a body, Latin-1 header values sent as single bytes", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(
    init("GET", { headers: { accept: "*/*", "x-name": "caf\u00e9" } }),
    server.target("/v1/models"),
  );
  const request = await server.answer(await server.next(), OK);
  assert.equal(
    request.raw,
    `GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\naccept: */*\r\nx-name: caf\u00e9\r\n\r\n`,
  );
  await bytesOf(await pending);
});

Deno.test("http1: a body larger than 64 KiB arrives whole", async () => {
  await using t = setup();
  const { server, send } = t;
  const body = new Uint8Array(200_000).map((_, i) => 97 + (i % 26));
  const pending = send(init("PUT", { body }));
  const request = await server.answer(await server.next(), OK);
  assert.match(request.head, /\r\ncontent-length: 200000\r\n/);
  assert.equal(request.body, latin1(body));
  assert.equal(decoder.decode(await bytesOf(await pending)), "ok");
});

// --- response bodies ---------------------------------------------------------------------

Deno.test("http1: content-length body through bytes() and through the body stream", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const response =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, response);
  const reply = await first;
  assert.equal(reply.hasBody, true);
  assert.equal(reply.headers.get("content-type"), "text/plain");
  assert.equal(reply.headers.get("content-length"), "11");
  assert.equal(decoder.decode(await bytesOf(reply)), "hello world");

  const second = send(init());
  await server.answer(peer, response);
  assert.equal(await readAll((await second).body!), "hello world");
  assert.equal(server.accepts, 1);
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: content-length body arriving in several writes", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
  const reply = await pending;
  const reader = reply.body!.getReader();
  assert.equal(decoder.decode((await read(reader)).value), "abc");
  await peer.write("defg");
  assert.equal(decoder.decode((await read(reader)).value), "defg");
  await peer.write("hij");
  assert.equal(decoder.decode((await read(reader)).value), "hij");
  assert.equal((await read(reader)).done, true);
  assert.equal(transport.idleConnections, 1);

  // The same through bytes().
  const again = send(init());
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc");
  const reply2 = await again;
  const whole = bytesOf(reply2);
  await tick();
  await peer.write("def");
  assert.equal(decoder.decode(await whole), "abcdef");
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: a chunked body is streamed chunk by chunk", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  const reply = await pending;
  assert.equal(reply.hasBody, true);
  const reader = reply.body!.getReader();
  // The second chunk is not written yet: the first one came through on its own.
  assert.equal(decoder.decode((await read(reader)).value), "hello");
  await peer.write("6;ext=1\r\n world\r\n");
  assert.equal(decoder.decode((await read(reader)).value), " world");
  await peer.write("0\r\nx-trailer: t\r\n\r\n");
  assert.equal((await read(reader)).done, true);
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: a chunked body through bytes(), cut across writes", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r");
  const whole = bytesOf(await pending);
  for (const piece of ["\nab", "c\r", "\n", "A\r\n0123", "456789\r\n0\r", "\n\r\n"]) {
    await tick(1);
    await peer.write(piece);
  }
  assert.equal(decoder.decode(await whole), "abc0123456789");
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: a close-delimited body runs to the end of the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nabc");
  const reply = await pending;
  assert.equal(reply.hasBody, true);
  const whole = bytesOf(reply);
  await peer.write("def");
  peer.close();
  assert.equal(decoder.decode(await whole), "abcdef");
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: 204 and HEAD have no body and keep the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init("DELETE"));
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n");
  const noContent = await first;
  assert.equal(noContent.status, 204);
  assert.equal(noContent.hasBody, false);
  assert.equal(noContent.body, null);
  assert.equal((await bytesOf(noContent)).byteLength, 0);
  assert.equal(transport.idleConnections, 1);

  const second = send(init("HEAD"));
  const request = await server.answer(
    peer,
    "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ncontent-type: application/json\r\n\r\n",
  );
  assert.match(request.raw, /^HEAD \/x\?y=1 HTTP\/1\.1\r\n/);
  const head = await second;
  assert.equal(head.status, 200);
  assert.equal(head.hasBody, false);
  assert.equal(head.body, null);
  assert.equal(head.headers.get("content-length"), "1234");
  assert.equal((await bytesOf(head)).byteLength, 0);
  assert.equal(transport.idleConnections, 1);

  // Still the one connection.
  const third = send(init());
  await server.answer(peer, OK);
  assert.equal(decoder.decode(await bytesOf(await third)), "ok");
  assert.equal(server.accepts, 1);
});

Deno.test("http1: a 205 declaring a 1 GiB body: nothing read, the connection closed, the next request clean", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init("POST"));
  const peer = await server.next();
  // The head and the first bytes of the body in one write, as a misbehaving upstream sends them.
  await server.answer(
    peer,
    "HTTP/1.1 205 Reset Content\r\ncontent-length: 1073741824\r\n\r\n" + "x".repeat(1000),
  );
  const reset = await first;
  assert.equal(reset.status, 205);
  assert.equal(reset.hasBody, false);
  assert.equal(reset.body, null);
  assert.equal(reset.reader(), null);
  assert.equal((await bytesOf(reset)).byteLength, 0);
  // Closed, not pooled: the body is never read, and its bytes can reach no later request.
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer.eof(), true);

  const second = send(init());
  await server.answer(await server.next(), OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 2);
});

Deno.test("http1: a 205 framed empty (content-length: 0) keeps the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init("POST"));
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 205 Reset Content\r\ncontent-length: 0\r\n\r\n");
  const reset = await first;
  assert.equal(reset.status, 205);
  assert.equal(reset.hasBody, false);
  assert.equal(transport.idleConnections, 1);
  const second = send(init());
  await server.answer(peer, OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 1);
});

Deno.test("http1: a 204 declaring a body that comes late: the next request never reads it", async () => {
  await using t = setup();
  const { server, send } = t;
  const first = send(init("DELETE"));
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 204 No Content\r\ncontent-length: 44\r\n\r\n");
  assert.equal((await first).status, 204);
  // Sent at once: were the connection pooled, it would carry this request.
  const second = send(init());
  const poison = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON";
  // The 204's declared body, as a broken upstream writes it after the head.
  await peer.write(poison).catch(() => {});
  assert.equal(await peer.eof(), true, "the 204's connection carried the next request");
  await server.answer(await server.next(), OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 2);
});

Deno.test("http1: an empty content-length body keeps the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init("POST"));
  const peer = await server.next();
  const request = await server.answer(peer, "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
  assert.match(request.head, /\r\ncontent-length: 0\r\n/);
  const reply = await first;
  assert.equal(reply.status, 202);
  assert.equal(reply.hasBody, true);
  assert.equal(await readAll(reply.body!), "");
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: interim 100 and 103 responses are skipped", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init("POST", { body: encoder.encode("x") }));
  const peer = await server.next();
  await server.answer(
    peer,
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
      "HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
  );
  const reply = await first;
  assert.equal(reply.status, 201);
  assert.equal(reply.statusText, "Created");
  assert.equal(reply.headers.has("link"), false);
  assert.equal(decoder.decode(await bytesOf(reply)), "done");

  // The same, each head in its own write.
  const second = send(init());
  await peer.request();
  await peer.write("HTTP/1.1 100 Continue\r\n\r\n");
  await tick(1);
  await peer.write("HTTP/1.1 103 Early Hints\r\nlink: </b>\r\n\r\n");
  await tick(1);
  await peer.write(OK);
  const reply2 = await second;
  assert.equal(reply2.status, 200);
  assert.equal(decoder.decode(await bytesOf(reply2)), "ok");
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: 101 Switching Protocols rejects and closes the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n");
  await assert.rejects(pending, UpstreamProtocolError);
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: a malformed status line rejects and closes the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 OK 200\r\ncontent-length: 0\r\n\r\n");
  await assert.rejects(pending, UpstreamProtocolError);
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: a malformed header or content-length rejects", async () => {
  await using t = setup();
  const { server, send } = t;
  for (
    const response of [
      "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    ]
  ) {
    const pending = send(init());
    const peer = await server.next();
    await server.answer(peer, response);
    await assert.rejects(pending, UpstreamProtocolError);
    assert.equal(await peer.eof(), true);
  }
});

Deno.test("http1: a connection closed mid-head rejects", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-le");
  peer.close();
  await assert.rejects(pending, UpstreamProtocolError);
});

Deno.test("http1: a head cut anywhere near its end", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  let peer: Peer | undefined;
  // (A bare-LF head is refused: tests/transport/http1/strict_test.ts.)
  const responses = ["HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\nok"];
  for (const response of responses) {
    const headEnd = response.length - 2;
    for (let cut = headEnd - 8; cut <= headEnd + 1; cut++) {
      const pending = send(init());
      peer ??= await server.next();
      await peer.request();
      await peer.write(response.slice(0, cut));
      await tick(1);
      await peer.write(response.slice(cut));
      const reply = await pending;
      assert.equal(reply.headers.get("x-a"), "1", `cut at ${cut}`);
      assert.equal(decoder.decode(await bytesOf(reply)), "ok");
    }
  }
  assert.equal(server.accepts, 1);
  assert.equal(transport.idleConnections, 1);
});

// --- connection reuse --------------------------------------------------------------------

Deno.test("http1: sequential requests share one connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  assert.equal(transport.idleConnections, 0);
  let peer: Peer | undefined;
  for (let i = 0; i < 3; i++) {
    const pending = send(init(), server.target(`/n/${i}`));
    peer ??= await server.next();
    const request = await server.answer(peer, `HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n${i}`);
    assert.match(request.raw, new RegExp(`^GET /n/${i} `));
    const reply = await pending;
    assert.equal(transport.idleConnections, 0, "busy while its body is unread");
    assert.equal(decoder.decode(await bytesOf(reply)), String(i));
    assert.equal(transport.idleConnections, 1);
  }
  assert.equal(server.accepts, 1);
});

Deno.test("http1: a connection: close response is not reused", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok");
  assert.equal(decoder.decode(await bytesOf(await first)), "ok");
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer.eof(), true);

  const second = send(init());
  await server.answer(await server.next(), OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 2);
});

Deno.test("http1: an HTTP/1.0 response is not reused", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
  assert.equal(decoder.decode(await bytesOf(await pending)), "ok");
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer.eof(), true);
});

Deno.test("http1: stray bytes after a content-length body: the connection is not reused", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokJUNK");
  assert.equal(decoder.decode(await bytesOf(await first)), "ok");
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer.eof(), true);

  // Through the stream too.
  const second = send(init());
  const peer2 = await server.next();
  await server.answer(
    peer2,
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
  );
  assert.equal(await readAll((await second).body!), "ok");
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer2.eof(), true);
});

Deno.test("http1: an idle connection the upstream closes leaves the pool", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);
  assert.equal(transport.idleConnections, 1);

  peer.close();
  await until(() => transport.idleConnections === 0, "the closed connection to leave the pool");

  const second = send(init());
  await server.answer(await server.next(), OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 2);
});

Deno.test("http1: an idle connection the upstream writes on leaves the pool", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);
  assert.equal(transport.idleConnections, 1);

  await peer.write("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n");
  await until(() => transport.idleConnections === 0, "the connection to leave the pool");
  assert.equal(await peer.eof(), true);

  const second = send(init());
  await server.answer(await server.next(), OK);
  assert.equal((await second).status, 200);
  await bytesOf(await second);
});

Deno.test("http1: a GET on a stale reused connection is retried on a new one", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);

  // The upstream takes the next request and closes without answering.
  const second = send(init(), server.target("/again"));
  const lost = await peer.request();
  assert.match(lost.raw, /^GET \/again /);
  peer.close();
  const retry = await server.answer(
    await server.next(),
    "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nretried",
  );
  assert.equal(retry.raw, lost.raw);
  assert.equal(decoder.decode(await bytesOf(await second)), "retried");
  assert.equal(server.accepts, 2);
  assert.equal(transport.idleConnections, 1);
});

Deno.test("http1: a POST on a stale reused connection is not retried", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);

  const second = send(init("POST", { body: encoder.encode("{}") }));
  const lost = await peer.request();
  assert.equal(lost.body, "{}");
  peer.close();
  await assert.rejects(second);
  assert.equal(server.accepts, 1, "no second connection");
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: a fresh connection closed before responding is not retried", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  peer.close();
  await assert.rejects(pending);
  assert.equal(server.accepts, 1);
});

Deno.test({
  name: "http1: the stale-connection retry opens a fresh connection, not another pooled one",
  async fn() {
    await using t = setup({ maxIdlePerHost: 2 });
    const { server, transport, send } = t;
    // Two pooled connections.
    const a = send(init());
    const b = send(init());
    const peers = [await server.next(), await server.next()];
    await Promise.all(peers.map((peer) => server.answer(peer, OK)));
    await Promise.all([bytesOf(await a), bytesOf(await b)]);
    assert.equal(transport.idleConnections, 2);

    // Both drop the next request they get, without answering.
    const dropping = peers.map((peer) =>
      peer.request().then(() => peer.close(), () => {/* closed by the client */})
    );
    const pending = send(init());
    const serving = server.next().then((peer) => server.answer(peer, OK)).catch((error) => error);
    // With the bug: rejects with ClosedBeforeResponse from the second pooled connection.
    assert.equal(decoder.decode(await bytesOf(await pending)), "ok");
    await serving;
    transport.close();
    await Promise.all(dropping);
  },
});

// --- answers that come while the request is written --------------------------------------

const TOO_LARGE_BODY = '{"error":{"message":"request body too large","code":"too_large"}}';
const TOO_LARGE = "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n" +
  `content-length: ${TOO_LARGE_BODY.length}\r\nconnection: close\r\n\r\n${TOO_LARGE_BODY}`;
const TWENTY_MB = 20 * 1024 * 1024;

Deno.test("http1: a 413 on the head of a 20 MB body, then a close: the answer, not the write error", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init("POST", { body: new Uint8Array(TWENTY_MB) }));
  const peer = await server.next();
  assert.match(await peer.head(), /^POST \/x\?y=1 HTTP\/1\.1\r\n[^]*content-length: 20971520\r\n/);
  await peer.write(TOO_LARGE);
  peer.close(); // with the body unread: the kernel resets the connection, the writes fail
  // With the bug: rejects with BrokenPipe (or ConnectionReset).
  const reply = await pending;
  assert.equal(reply.status, 413);
  assert.equal(reply.headers.get("content-type"), "application/json");
  assert.equal(decoder.decode(await bytesOf(reply)), TOO_LARGE_BODY);
  assert.equal(server.accepts, 1);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: an answer before the body is written, the upstream keeping the connection: delivered, writing stops, never pooled", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init("POST", { body: new Uint8Array(TWENTY_MB) }));
  const peer = await server.next();
  await peer.head();
  // A keep-alive answer: only the request left unsent keeps the connection out of the pool.
  await peer.write("HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno");
  // The upstream reads nothing more until the answer is in: the client's writes are stuck.
  // With the bug: the head is never read (timeout).
  const reply = await pending;
  const draining = peer.drain();
  assert.equal(reply.status, 413);
  assert.equal(decoder.decode(await bytesOf(reply)), "no");
  const received = await draining; // the client closes the connection after the answer
  assert.ok(received < TWENTY_MB, `the whole body was written after the answer (${received})`);
  assert.equal(transport.idleConnections, 0);
  assert.equal(server.accepts, 1);
});

Deno.test("http1: an early answer whose body comes after the upstream read on: still never pooled", async () => {
  // Socket writes in flight on the client's connection.
  let inFlight = 0;
  const dial: Dial = async (options) => {
    const conn = await Deno.connect(options);
    const write = conn.write.bind(conn);
    conn.write = (bytes: Uint8Array) => {
      inFlight++;
      return write(bytes).finally(() => inFlight--);
    };
    return conn;
  };
  await using t = setup({ dial });
  const { server, transport, send } = t;
  const pending = send(init("POST", { body: new Uint8Array(TWENTY_MB) }));
  const peer = await server.next();
  await peer.head();
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");
  const reply = await pending;
  // The upstream reads what was in flight; the client writes nothing more.
  const draining = peer.drain();
  await until(() => inFlight === 0, "the client's last write to finish");
  await peer.write("ok");
  assert.equal(decoder.decode(await bytesOf(reply)), "ok");
  assert.ok((await draining) < TWENTY_MB, "the client stopped writing");
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: an answer that came before the request could be written (the write fails) is the answer", async () => {
  const scripted: { server?: ScriptedServer } = {};
  // The upstream answers on accept and closes; the connection is handed over only once its
  // reset has come back, so the transport's own write fails.
  const dial: Dial = async (options) => {
    const conn = await Deno.connect(options);
    const peer = await scripted.server!.next();
    await peer.write("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy");
    peer.close();
    const probe = new Uint8Array(1);
    for (let tries = 0;; tries++) {
      if (tries > 600) throw new Error("the upstream's reset never came");
      try {
        await conn.write(probe);
      } catch {
        break;
      }
      await tick(1);
    }
    return conn;
  };
  await using t = setup({ dial });
  scripted.server = t.server;
  using writes = recordClientWrites();
  // With the bug: rejects with BrokenPipe.
  const reply = await t.send(init("POST", { body: encoder.encode('{"n":1}') }));
  assert.equal(reply.status, 503);
  assert.equal(decoder.decode(await bytesOf(reply)), "busy");
  assert.equal(t.server.accepts, 1);
  assert.equal(t.transport.idleConnections, 0);
  // Probes until one failed, then the request's own write (which failed too).
  const request = writes.sizes.at(-1)!;
  assert.ok(request > 1, `the request was written after the reset: ${writes.sizes}`);
});

Deno.test("http1: a large POST on a reused connection dropped before it was all written goes again on a new one", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const first = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);

  // More than the socket buffers hold: the request cannot be all written when the upstream,
  // having read its head, drops the connection (as one that timed it out just then would).
  const second = send(init("POST", { body: new Uint8Array(TWENTY_MB) }));
  await peer.head();
  peer.close();
  const fresh = await server.next();
  assert.match(await fresh.head(), /content-length: 20971520\r\n/);
  await fresh.skip(TWENTY_MB);
  await fresh.write(OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 2);
  assert.equal(transport.idleConnections, 1);
});

// --- connect timeout ---------------------------------------------------------------------

/** Deadlines the test fires by hand. */
function manualDeadlines() {
  const armed = new Set<{ ms: number; fire: () => void }>();
  return {
    armed,
    after(ms: number, fire: () => void) {
      const entry = { ms, fire };
      armed.add(entry);
      return { cancel: () => void armed.delete(entry) };
    },
    fireAll() {
      for (const entry of [...armed]) {
        armed.delete(entry);
        entry.fire();
      }
    },
  };
}

/** A connect that never completes (a SYN nobody answers) until its signal aborts it. */
function hangingDial() {
  const signals: AbortSignal[] = [];
  const dial: Dial = (options) => {
    const signal = options.signal!;
    signals.push(signal);
    return new Promise((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  };
  return { signals, dial };
}

/** A target nothing is asked to reach (the dial is a stand-in). */
const UNREACHED: UpstreamTarget = {
  url: "http://127.0.0.1:9/x",
  protocol: "http:",
  hostname: "127.0.0.1",
  port: 9,
  host: "127.0.0.1:9",
  path: "/x",
};

Deno.test("http1: a connect not done within connectTimeoutMs fails as a connect timeout", async () => {
  const deadlines = manualDeadlines();
  const hanging = hangingDial();
  const transport = new Http1Transport({
    secure: secureStub(),
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
    connectTimeoutMs: 2_500,
    deadlines,
    dial: hanging.dial,
  });
  const pending = transport.send(UNREACHED, init("POST", { body: encoder.encode("{}") }));
  pending.catch(() => {});
  assert.equal(hanging.signals.length, 1);
  assert.deepEqual([...deadlines.armed].map((d) => d.ms), [2_500]);
  deadlines.fireAll();
  await assert.rejects(within(pending, "the connect timeout"), (error) => {
    assert.ok(error instanceof ConnectTimeoutError, String(error));
    assert.equal(failureCause(error), "connect timeout");
    assert.doesNotMatch(error.message, /127\.0\.0\.1|:9\b/);
    return true;
  });
  assert.equal(hanging.signals[0]!.aborted, true, "the connect itself was aborted");
  transport.close();
});

Deno.test("http1: the attempt's signal (first-byte deadline) still ends a pending connect, with its reason", async () => {
  const deadlines = manualDeadlines();
  const hanging = hangingDial();
  const transport = new Http1Transport({
    secure: secureStub(),
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
    connectTimeoutMs: 10_000,
    deadlines,
    dial: hanging.dial,
  });
  const controller = new AbortController();
  const pending = transport.send(UNREACHED, init("GET", { signal: controller.signal }));
  pending.catch(() => {});
  const reason = new Error("no response headers within the first-byte deadline");
  controller.abort(reason);
  await assert.rejects(within(pending, "the aborted connect"), (error) => error === reason);
  assert.equal(deadlines.armed.size, 0, "the connect timeout is cancelled");
  transport.close();
});

Deno.test("http1: a connect that finishes cancels its timeout; connectTimeoutMs 0 arms none", async () => {
  await using server = new ScriptedServer();
  for (const connectTimeoutMs of [1_000, 0]) {
    const deadlines = manualDeadlines();
    let dialled = 0;
    const transport = new Http1Transport({
      secure: secureStub(),
      keepAlive: true,
      maxIdlePerHost: 4,
      idleTimeoutMs: 0,
      connectTimeoutMs,
      deadlines,
      dial: (options) => {
        dialled++;
        return Deno.connect(options);
      },
    });
    const pending = within(transport.send(server.target(), init()), "the response head");
    await server.answer(await server.next(), OK);
    assert.equal(decoder.decode(await bytesOf(await pending)), "ok");
    assert.equal(dialled, 1);
    assert.equal(deadlines.armed.size, 0);
    transport.close();
  }
});

// --- abort and cancel --------------------------------------------------------------------

Deno.test("http1: an already aborted signal rejects without connecting", async () => {
  await using t = setup();
  const { server, send } = t;
  const controller = new AbortController();
  const reason = new Error("aborted early");
  controller.abort(reason);
  await assert.rejects(
    send(init("GET", { signal: controller.signal })),
    (error) => error === reason,
  );
  assert.equal(server.accepts, 0);
});

Deno.test("http1: abort before the response head rejects with the reason and closes", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const controller = new AbortController();
  const pending = send(init("GET", { signal: controller.signal }));
  const peer = await server.next();
  await peer.request();
  const reason = new Error("client went away");
  controller.abort(reason);
  await assert.rejects(pending, (error) => error === reason);
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: abort mid-body errors the stream with the reason and closes", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const controller = new AbortController();
  const pending = send(init("GET", { signal: controller.signal }));
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello");
  const reply = await pending;
  const reader = reply.body!.getReader();
  assert.equal(decoder.decode((await read(reader)).value), "hello");
  const reason = new DOMException("deadline", "TimeoutError");
  controller.abort(reason);
  await assert.rejects(read(reader), (error) => error === reason);
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: abort during bytes() rejects with the reason", async () => {
  await using t = setup();
  const { server, send } = t;
  const controller = new AbortController();
  const pending = send(init("GET", { signal: controller.signal }));
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n");
  const whole = bytesOf(await pending);
  await tick();
  const reason = new Error("stop");
  controller.abort(reason);
  await assert.rejects(whole, (error) => error === reason);
  assert.equal(await peer.eof(), true);
});

Deno.test("http1: cancelling the body stream closes the connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n");
  const reader = (await pending).body!.getReader();
  assert.equal(decoder.decode((await read(reader)).value), "first");
  await reader.cancel();
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: aborting after the body ended does not touch the pooled connection", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const controller = new AbortController();
  const first = send(init("GET", { signal: controller.signal }));
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await first);
  controller.abort(new Error("late"));
  assert.equal(transport.idleConnections, 1);
  const second = send(init());
  await server.answer(peer, OK);
  assert.equal(decoder.decode(await bytesOf(await second)), "ok");
  assert.equal(server.accepts, 1);
});

// --- broken bodies -----------------------------------------------------------------------

Deno.test("http1: a content-length body cut short rejects bytes()", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf");
  const whole = bytesOf(await pending);
  peer.close();
  await assert.rejects(whole, BodyCutError);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: a body cut short errors the stream", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  for (
    const response of [
      "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nhalf\r\n",
    ]
  ) {
    const pending = send(init());
    const peer = await server.next();
    await server.answer(peer, response);
    const reader = (await pending).body!.getReader();
    assert.equal(decoder.decode((await read(reader)).value), "half");
    peer.close();
    await assert.rejects(read(reader), BodyCutError);
    assert.equal(transport.idleConnections, 0);
  }
});

Deno.test("http1: a malformed chunked body errors the stream", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n");
  await assert.rejects(bytesOf(await pending), UpstreamProtocolError);
  assert.equal(await peer.eof(), true);
});

// --- limits and options ------------------------------------------------------------------

Deno.test("http1: a response head larger than 64 KiB rejects", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  const writing = peer.write(`HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(70_000)}\r\n\r\n`).catch(
    () => {},
  );
  await assert.rejects(pending, /larger than 65536/);
  await writing;
  assert.equal(await peer.eof(), true);
});

Deno.test("http1: a response head of 60 KiB, in pieces, is read", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  const big = "b".repeat(60_000);
  const response = `HTTP/1.1 200 OK\r\nx-big: ${big}\r\ncontent-length: 2\r\n\r\nok`;
  for (let at = 0; at < response.length; at += 20_000) {
    await peer.write(response.slice(at, at + 20_000));
    await tick(1);
  }
  const reply = await pending;
  assert.equal(reply.headers.get("x-big"), big);
  assert.equal(decoder.decode(await bytesOf(reply)), "ok");
  assert.equal(transport.idleConnections, 1);
});

Deno.test({
  name: "http1: a chunked trailer line between 16 and 64 KiB is skipped",
  async fn() {
    await using t = setup();
    const { server, send } = t;
    const pending = send(init());
    const peer = await server.next();
    await server.answer(
      peer,
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
    );
    const whole = bytesOf(await pending);
    await peer.write(`x-trailer: ${"t".repeat(20_000)}\r\n\r\n`);
    assert.equal(decoder.decode(await whole), "abc");
  },
});

Deno.test("http1: keepAlive false sends connection: close and pools nothing", async () => {
  await using t = setup({ keepAlive: false });
  const { server, transport, send } = t;
  for (let i = 0; i < 2; i++) {
    const pending = send(init());
    const peer = await server.next();
    const request = await server.answer(peer, OK);
    assert.equal(
      request.raw,
      `GET /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\nconnection: close\r\n\r\n`,
    );
    assert.equal(decoder.decode(await bytesOf(await pending)), "ok");
    assert.equal(transport.idleConnections, 0);
    assert.equal(await peer.eof(), true);
  }
  assert.equal(server.accepts, 2);
});

Deno.test("http1: maxIdlePerHost 0 also sends connection: close", async () => {
  await using t = setup({ maxIdlePerHost: 0 });
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  const request = await server.answer(peer, OK);
  assert.match(request.head, /\r\nconnection: close\r\n/);
  await bytesOf(await pending);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: maxIdlePerHost is respected", async () => {
  await using t = setup({ maxIdlePerHost: 1 });
  const { server, transport, send } = t;
  const sends = [0, 1, 2].map(() => send(init()));
  const peers = [await server.next(), await server.next(), await server.next()];
  await Promise.all(peers.map((peer) => server.answer(peer, OK)));
  const replies = await Promise.all(sends);
  let closed = 0;
  const eofs = peers.map((peer) => peer.eof().then((eof) => eof && closed++));
  for (const reply of replies) assert.equal(decoder.decode(await bytesOf(reply)), "ok");
  assert.equal(transport.idleConnections, 1);
  await until(() => closed === 2, "two connections to close");
  transport.close();
  await Promise.all(eofs);
  assert.equal(closed, 3);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: close() closes idle connections and the secure transport", async () => {
  const secure = secureStub();
  // With an idle timeout, the pool also runs its sweep timer: close() must stop it too.
  await using t = setup({ secure, idleTimeoutMs: 30_000 });
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, OK);
  await bytesOf(await pending);
  assert.equal(transport.idleConnections, 1);
  transport.close();
  assert.equal(transport.idleConnections, 0);
  assert.equal(secure.closed, true);
  assert.equal(await peer.eof(), true);
});

Deno.test("http1: a connection returned after close() is closed, not pooled", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await server.answer(peer, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no");
  const reply = await pending;
  const whole = bytesOf(reply);
  transport.close();
  await peer.write("k");
  assert.equal(decoder.decode(await whole), "ok");
  assert.equal(transport.idleConnections, 0);
  assert.equal(await peer.eof(), true);
});

Deno.test("http1: https targets go to the secure transport", async () => {
  await using t = setup();
  const { server, transport } = t;
  const target = { ...server.target(), protocol: "https:" as const };
  await assert.rejects(transport.send(target, init()), /secure transport not expected/);
  assert.equal(server.accepts, 0);
});

// --- the pool ----------------------------------------------------------------------------

Deno.test("Pool: LIFO reuse and the idle-timeout sweep with an injected clock", async () => {
  await using server = new ScriptedServer();
  const clock = new FakeClock(1_000);
  const pool = new Pool({ maxIdlePerHost: 4, idleTimeoutMs: 100, clock });
  const controller = new AbortController();
  const key = `${HOSTNAME}:${server.port}`;
  try {
    const connections: Connection[] = [];
    const peers: Peer[] = [];
    for (let i = 0; i < 3; i++) {
      connections.push(await Connection.open(HOSTNAME, server.port, controller.signal));
      peers.push(await server.next());
    }
    const [c0, c1, c2] = connections as [Connection, Connection, Connection];
    pool.put(key, c0); // idle since 1000
    clock.set(1_030);
    pool.put(key, c1); // idle since 1030
    clock.set(1_060);
    pool.put(key, c2); // idle since 1060
    assert.equal(pool.size, 3);
    assert.equal(c0.idleSince, 1_000);

    clock.set(1_099);
    pool.sweep();
    assert.equal(pool.size, 3, "none is 100 ms old yet");

    clock.set(1_140); // c0 is 140 ms idle, c1 110 ms, c2 80 ms
    pool.sweep();
    assert.equal(pool.size, 1);
    assert.equal(c0.closed, true);
    assert.equal(c1.closed, true);
    assert.equal(c2.closed, false);
    assert.equal(await peers[0]!.eof(), true);
    assert.equal(await peers[1]!.eof(), true);

    // The survivor is taken (most recent first), and nothing else is there.
    assert.equal(pool.take(key), c2);
    assert.equal(pool.take(key), undefined);
    assert.equal(pool.take("127.0.0.1:1"), undefined);
    assert.equal(pool.size, 0);

    // Put back much later: it gets the new idle time and survives a sweep.
    clock.set(5_000);
    pool.put(key, c2);
    assert.equal(c2.idleSince, 5_000);
    pool.sweep();
    assert.equal(pool.size, 1);
    clock.set(5_100);
    pool.sweep();
    assert.equal(pool.size, 0);
    assert.equal(c2.closed, true);
    assert.equal(await peers[2]!.eof(), true);
  } finally {
    pool.close();
  }
});

Deno.test("Pool: the idle sweep is an unref'd timer on the injected clock", async () => {
  await using server = new ScriptedServer();
  const clock = new FakeClock(1_000);
  const pool = new Pool({ maxIdlePerHost: 4, idleTimeoutMs: 300, clock });
  const key = `${HOSTNAME}:${server.port}`;
  try {
    const c0 = await Connection.open(HOSTNAME, server.port, new AbortController().signal);
    const p0 = await server.next();
    const c1 = await Connection.open(HOSTNAME, server.port, new AbortController().signal);
    await server.next();
    assert.equal(clock.pending, 0, "no sweep before a connection is parked");
    pool.put(key, c0); // idle since 1000
    // Every half idle timeout, at least 100 ms; it does not keep the process alive.
    assert.deepEqual(clock.dueIn, [150]);
    assert.equal(clock.unrefPending, 1);
    clock.advance(100);
    pool.put(key, c1); // idle since 1100
    clock.advance(200); // sweeps at 1150 and 1300: c0 is 300 ms idle
    assert.equal(c0.closed, true);
    assert.equal(c1.closed, false);
    assert.equal(await p0.eof(), true);
    clock.advance(150); // 1450: c1 is 350 ms idle
    assert.equal(c1.closed, true);
    assert.equal(pool.size, 0);
    assert.equal(clock.pending, 1, "the sweep goes on while the pool is open");
  } finally {
    pool.close();
  }
  assert.equal(clock.pending, 0);
});

Deno.test("Pool: take() returns the most recently parked connection", async () => {
  await using server = new ScriptedServer();
  const pool = new Pool({ maxIdlePerHost: 2, idleTimeoutMs: 0 });
  const key = `${HOSTNAME}:${server.port}`;
  const signal = new AbortController().signal;
  const connections: Connection[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      connections.push(await Connection.open(HOSTNAME, server.port, signal));
    }
    const [c0, c1, c2] = connections as [Connection, Connection, Connection];
    pool.put(key, c0);
    pool.put(key, c1);
    pool.put(key, c2); // over the limit: closed
    assert.equal(c2.closed, true);
    assert.equal(pool.size, 2);
    assert.equal(pool.take(key), c1);
    assert.equal(pool.take(key), c0);
    assert.equal(pool.size, 0);
    // A closed connection is never parked.
    pool.put(key, c2);
    assert.equal(pool.size, 0);
    // After close(), returned connections are closed.
    pool.close();
    pool.put(key, c0);
    assert.equal(c0.closed, true);
    assert.equal(pool.size, 0);
  } finally {
    pool.close();
    for (const connection of connections) connection.close();
  }
});

Deno.test("Pool: close() closes every idle connection", async () => {
  await using server = new ScriptedServer();
  const pool = new Pool({ maxIdlePerHost: 4, idleTimeoutMs: 60_000 });
  const signal = new AbortController().signal;
  const a = await Connection.open(HOSTNAME, server.port, signal);
  const b = await Connection.open(HOSTNAME, server.port, signal);
  const peers = [await server.next(), await server.next()];
  pool.put("a", a);
  pool.put("b", b);
  assert.equal(pool.size, 2);
  pool.close();
  assert.equal(pool.size, 0);
  assert.equal(a.closed && b.closed, true);
  for (const peer of peers) assert.equal(await peer.eof(), true);
});

Deno.test("http1: reader() pulls a chunked body chunk by chunk without a stream; cancel closes", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init());
  const peer = await server.next();
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n");
  const reply = await pending;
  const reader = reply.reader()!;
  assert.equal(decoder.decode((await reader.read()).value), "abc");
  await peer.write("2\r\nde\r\n0\r\n\r\n");
  assert.equal(decoder.decode((await reader.read()).value), "de");
  assert.equal((await reader.read()).done, true);
  assert.equal(transport.idleConnections, 1);

  // Cancelled mid-body: the connection is closed, not pooled.
  const again = send(init());
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
  const partial = (await again).reader()!;
  assert.equal(decoder.decode((await partial.read()).value), "abc");
  await partial.cancel();
  assert.equal(await peer.eof(), true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("http1: reader() is null without a body (HEAD, 204)", async () => {
  await using t = setup();
  const { server, send } = t;
  const pending = send(init("HEAD"));
  const peer = await server.next();
  await peer.request();
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
  assert.equal((await pending).reader(), null);
});

Deno.test("http1: a lower-case standard method goes out upper-cased (a HEAD has no body)", async () => {
  await using t = setup();
  const { server, transport, send } = t;
  const pending = send(init("head"));
  const peer = await server.next();
  const request = await peer.request();
  assert.match(request.head, /^HEAD \/x\?y=1 HTTP\/1\.1\r\n/);
  await peer.write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
  const reply = await pending;
  assert.equal(reply.hasBody, false);
  assert.equal(transport.idleConnections, 1);
  // Extension methods are case-sensitive tokens: passed as they are.
  const custom = send(init("Purge"));
  assert.match((await peer.request()).head, /^Purge \/x\?y=1 HTTP\/1\.1\r\n/);
  await peer.write("HTTP/1.1 204 No Content\r\n\r\n");
  assert.equal((await custom).status, 204);
});

Deno.test("http1: a header that is not a byte string rejects the send as not sent, the proxy's fault", async () => {
  await using t = setup();
  const { transport, server } = t;
  let promise: Promise<UpstreamReply> | undefined;
  assert.doesNotThrow(() => {
    promise = transport.send(server.target(), init("GET", { headers: { "x-a": "\u20ac" } }));
  });
  await assert.rejects(promise!, (error) => {
    assert.ok(error instanceof NotSentError);
    assert.equal(error.fault, "proxy");
    assert.ok(error.cause instanceof TypeError);
    return true;
  });
});

Deno.test("http1: an abort while a large body is being written (upstream not reading) rejects at once", async () => {
  await using t = setup();
  const { server, transport } = t;
  const controller = new AbortController();
  const body = new Uint8Array(32 * 1024 * 1024); // far more than the socket buffers hold
  const pending = transport.send(
    server.target(),
    init("POST", { body, signal: controller.signal }),
  );
  pending.catch(() => {});
  const peer = await server.next(); // accepted, never read
  await tick(50);
  const reason = new Error("first byte deadline");
  const started = Date.now();
  controller.abort(reason);
  await assert.rejects(within(pending, "the aborted send", 2000), (error) => error === reason);
  assert.ok(Date.now() - started < 1000);
  // What the socket buffers held still arrives; then the connection ends.
  let closed = false;
  for (let reads = 0; !closed && reads < 10_000; reads++) closed = await peer.eof();
  assert.equal(closed, true);
  assert.equal(transport.idleConnections, 0);
});

Deno.test("Pool: no sweep timer until a connection is parked", async () => {
  await using server = new ScriptedServer();
  const pool = new Pool({ maxIdlePerHost: 4, idleTimeoutMs: 1_000 });
  assert.equal(pool.sweeping, false);
  const connection = await Connection.open(HOSTNAME, server.port, new AbortController().signal);
  await server.next();
  pool.put(`${HOSTNAME}:${server.port}`, connection);
  assert.equal(pool.sweeping, true);
  pool.close();
  assert.equal(pool.sweeping, false);
  // Without an idle timeout there is nothing to sweep.
  const untimed = new Pool({ maxIdlePerHost: 4, idleTimeoutMs: 0 });
  const other = await Connection.open(HOSTNAME, server.port, new AbortController().signal);
  await server.next();
  untimed.put(`${HOSTNAME}:${server.port}`, other);
  assert.equal(untimed.sweeping, false);
  untimed.close();
});
