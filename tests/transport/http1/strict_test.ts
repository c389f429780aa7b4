/**
 * The HTTP/1.1 client parses upstream answers like llhttp's strict mode (RFC 9112): each rule
 * is checked byte-exact against a scripted TCP upstream, the answer delivered in one write and
 * again one byte per write and per read (so the parser sees every split). A refused answer
 * fails the exchange with an `UpstreamProtocolError` and its connection is never reused.
 */
import assert from "node:assert/strict";
import { Http1Transport, MAX_INTERIM_RESPONSES } from "../../../src/transport/http1/transport.ts";
import { MAX_HEAD_BYTES, UpstreamProtocolError } from "../../../src/transport/http1/head.ts";
import type { UpstreamReply, UpstreamTarget } from "../../../src/transport/transport.ts";

const HOSTNAME = "127.0.0.1";
const decoder = new TextDecoder();
const OK = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const CHUNKED = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

/** `whole`: one write, reads as they come; `bytewise`: one byte per write and per read. */
type Delivery = "whole" | "bytewise";

/** One scripted answer: Latin-1 text, and whether the upstream closes after writing it. */
interface Answer {
  readonly text: string;
  readonly close?: boolean;
}

/** `promise`, or a rejection naming `what` after `ms`: no test waits forever. */
function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/**
 * A raw TCP upstream on 127.0.0.1: on every connection it reads request heads (bodyless) and
 * answers each with the next scripted answer. It records which connection each request came
 * on, and whether the client closed each connection.
 */
class ScriptedUpstream {
  readonly #listener = Deno.listen({ hostname: HOSTNAME, port: 0 });
  readonly #answers: Answer[] = [];
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #handlers = new Map<number, Promise<void>>();
  readonly #accepting: Promise<void>;
  readonly #delivery: Delivery;
  /** The connection number (from 1) of each request, in order. */
  readonly requests: number[] = [];
  /** Connection numbers the client closed (end of stream or reset seen). */
  readonly #closedByClient = new Set<number>();

  constructor(delivery: Delivery) {
    this.#delivery = delivery;
    this.#accepting = this.#acceptAll();
  }

  get target(): UpstreamTarget {
    const port = this.#listener.addr.port;
    return {
      url: `http://${HOSTNAME}:${port}/x`,
      protocol: "http:",
      hostname: HOSTNAME,
      port,
      host: `${HOSTNAME}:${port}`,
      path: "/x",
    };
  }

  /** Queues answers for the next requests, whatever connection they come on. */
  script(...answers: (string | Answer)[]): void {
    for (const answer of answers) {
      this.#answers.push(typeof answer === "string" ? { text: answer } : answer);
    }
  }

  async #acceptAll(): Promise<void> {
    let count = 0;
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        count++;
        this.#handlers.set(count, this.#serve(conn, count));
      }
    } catch {
      // listener closed
    }
  }

  async #serve(conn: Deno.TcpConn, number: number): Promise<void> {
    conn.setNoDelay(true); // each scripted write goes out at once
    const buffer = new Uint8Array(16 * 1024);
    let text = "";
    try {
      for (;;) {
        while (!text.includes("\r\n\r\n")) {
          const n = await conn.read(buffer);
          if (n === null) {
            this.#closedByClient.add(number);
            return;
          }
          text += String.fromCharCode(...buffer.subarray(0, n));
        }
        text = text.slice(text.indexOf("\r\n\r\n") + 4);
        this.requests.push(number);
        const answer = this.#answers.shift();
        if (!answer) throw new Error("no answer scripted");
        const bytes = latin1Bytes(answer.text);
        if (this.#delivery === "whole") await writeAll(conn, bytes);
        else for (let i = 0; i < bytes.length; i++) await writeAll(conn, bytes.subarray(i, i + 1));
        if (answer.close) return;
      }
    } catch {
      // The client closed the connection (a reset, or a write after its close).
      this.#closedByClient.add(number);
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await Promise.all(this.#handlers.values());
  }

  /** Whether the client closed connection `number`, once the upstream is done with it. */
  async closedByClientOn(number: number): Promise<boolean> {
    await within(this.#handlers.get(number)!, `connection ${number} to end`);
    return this.#closedByClient.has(number);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * While in scope, client connections read at most one byte per read (by wrapping
 * `Deno.connect`, which the transport calls): the parser sees every split of the answer.
 */
function oneBytePerRead(): Disposable {
  const connect = Deno.connect;
  const wrapped = async (options: Deno.ConnectOptions) => {
    const conn = await connect(options);
    const read = conn.read.bind(conn);
    conn.read = (into: Uint8Array) => read(into.subarray(0, 1));
    return conn;
  };
  Deno.connect = wrapped as typeof Deno.connect;
  return {
    [Symbol.dispose]() {
      Deno.connect = connect;
    },
  };
}

/** A keep-alive transport; `https:` is never used here. */
function newTransport(): Http1Transport {
  return new Http1Transport({
    secure: {
      kind: "fetch",
      kindFor: () => "fetch",
      send: () => Promise.reject(new Error("not expected")),
      close() {},
    },
    keepAlive: true,
    maxIdlePerHost: 4,
    idleTimeoutMs: 0,
  });
}

/** A GET's reply and its whole body, or the error either failed with. */
async function exchange(
  transport: Http1Transport,
  upstream: ScriptedUpstream,
): Promise<{ reply: UpstreamReply; body: string } | { error: unknown }> {
  const signal = new AbortController().signal;
  try {
    const reply = await within(
      transport.send(upstream.target, { method: "GET", headers: {}, body: null, signal }),
      "the response head",
    );
    return { reply, body: decoder.decode(await within(reply.bytes(), "the body")) };
  } catch (error) {
    return { error };
  }
}

/** Runs `check` once per delivery, each with its own upstream and transport. */
async function eachDelivery(
  check: (
    upstream: ScriptedUpstream,
    transport: Http1Transport,
    delivery: Delivery,
  ) => Promise<void>,
): Promise<void> {
  for (const delivery of ["whole", "bytewise"] as const) {
    await using upstream = new ScriptedUpstream(delivery);
    using _reads = delivery === "bytewise" ? oneBytePerRead() : undefined;
    const transport = newTransport();
    try {
      await check(upstream, transport, delivery);
    } finally {
      transport.close();
    }
  }
}

/**
 * `answer` fails the exchange with an UpstreamProtocolError, whole and byte by byte; its
 * connection is closed, never pooled, and the next request goes on a new connection.
 */
function refuses(answer: string): Promise<void> {
  return eachDelivery(async (upstream, transport, delivery) => {
    upstream.script(answer, OK);
    const result = await exchange(transport, upstream);
    assert.ok("error" in result, `${delivery}: accepted ${JSON.stringify(answer)}`);
    assert.ok(result.error instanceof UpstreamProtocolError, `${delivery}: ${result.error}`);
    assert.equal(transport.idleConnections, 0, delivery);
    const next = await exchange(transport, upstream);
    assert.ok("body" in next && next.body === "ok", delivery);
    assert.deepEqual(
      upstream.requests,
      [1, 2],
      `${delivery}: the next request on a new connection`,
    );
    assert.ok(await upstream.closedByClientOn(1), `${delivery}: the refused connection is closed`);
  });
}

/** `answer` gives `body`, whole and byte by byte, and its connection is reused (or not). */
function accepts(answer: string | Answer, body: string, reused = true): Promise<void> {
  return eachDelivery(async (upstream, transport, delivery) => {
    upstream.script(answer, OK);
    const result = await exchange(transport, upstream);
    assert.ok("body" in result, `${delivery}: ${"error" in result && result.error}`);
    assert.equal(result.reply.status, 200, delivery);
    assert.equal(result.body, body, delivery);
    assert.ok("body" in await exchange(transport, upstream), delivery);
    assert.deepEqual(upstream.requests, reused ? [1, 1] : [1, 2], delivery);
  });
}

// --- line ends in the head -----------------------------------------------------------------

const REFUSED_HEADS: [string, string][] = [
  [
    "a bare LF hiding a Content-Length behind what reads as one field line",
    "HTTP/1.1 200 OK\r\nx-a: 1\ncontent-length: 5\r\n\r\nhello",
  ],
  [
    "a bare LF hiding a Transfer-Encoding",
    "HTTP/1.1 200 OK\r\nx-a: 1\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  ],
  ["a head of bare-LF lines", "HTTP/1.1 200 OK\ncontent-length: 2\n\nok"],
  ["a head ended by CRLF LF", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\nok"],
  ["a head ended by LF CRLF", "HTTP/1.1 200 OK\r\ncontent-length: 2\n\r\nok"],
  ["a status line ended by a bare LF", "HTTP/1.1 200 OK\ncontent-length: 2\r\n\r\nok"],
  // Rules the parser had already: kept under the same byte-exact test.
  ["a bare CR inside a field line", "HTTP/1.1 200 OK\r\nx-a: 1\rcontent-length: 2\r\n\r\nok"],
  ["a bare CR before a CRLF", "HTTP/1.1 200 OK\r\nx-a: 1\r\r\ncontent-length: 2\r\n\r\nok"],
  ["a bare CR in the status line", "HTTP/1.1 200 O\rK\r\ncontent-length: 2\r\n\r\nok"],
  ["a bare LF before the status line", "\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
  ["a bare CR before the status line", "\rHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
  ["obs-fold", "HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 2\r\n\r\nok"],
  ["obs-fold with a tab", "HTTP/1.1 200 OK\r\nx-a: 1\r\n\t2\r\ncontent-length: 2\r\n\r\nok"],
  ["whitespace between a name and its colon", "HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok"],
  [
    "a name with a non-token character",
    "HTTP/1.1 200 OK\r\nx(a): 1\r\ncontent-length: 2\r\n\r\nok",
  ],
  ["a NUL in a field value", "HTTP/1.1 200 OK\r\nx-a: 1\x002\r\ncontent-length: 2\r\n\r\nok"],
  ["a DEL in a field value", "HTTP/1.1 200 OK\r\nx-a: 1\x7f\r\ncontent-length: 2\r\n\r\nok"],
  ["an ESC in a field value", "HTTP/1.1 200 OK\r\nx-a: \x1b[0m\r\ncontent-length: 2\r\n\r\nok"],
  [
    "both Content-Length and Transfer-Encoding",
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  ],
  [
    "differing Content-Lengths",
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
  ],
  ["a listed differing Content-Length", "HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok!"],
];

for (const [name, answer] of REFUSED_HEADS) {
  Deno.test(`http1 strict: ${name} is refused`, () => refuses(answer));
}

// --- chunked framing ------------------------------------------------------------------------

const REFUSED_CHUNKED: [string, string][] = [
  ["a chunk-size line ended by a bare LF", "5\nhello\r\n0\r\n\r\n"],
  ["a chunk-size line with extensions ended by a bare LF", "5;a=b\nhello\r\n0\r\n\r\n"],
  ["chunk data ended by a bare LF", "5\r\nhello\n0\r\n\r\n"],
  ["the last chunk ended by a bare LF", "5\r\nhello\r\n0\n\r\n"],
  ["a trailer section ended by a bare LF", "5\r\nhello\r\n0\r\n\n"],
  ["a trailer field ended by a bare LF", "5\r\nhello\r\n0\r\nx-t: 1\n\r\n"],
  ["a bare CR after a chunk size", "5\rhello\r\n0\r\n\r\n"],
  ["whitespace after a chunk size (`25  `)", `25  \r\n${"x".repeat(0x25)}\r\n0\r\n\r\n`],
  ["whitespace after a chunk extension", "2;a=b \r\nok\r\n0\r\n\r\n"],
  ["an empty chunk extension (`2;`)", "2;\r\nok\r\n0\r\n\r\n"],
  ["whitespace after `;`", "2; a\r\nok\r\n0\r\n\r\n"],
  ["whitespace around `=`", "2;a = b\r\nok\r\n0\r\n\r\n"],
  ["an unbalanced quote in a chunk extension", '2;a="b\r\nok\r\n0\r\n\r\n'],
  ["a control character in a chunk extension", "2;a=b\x01\r\nok\r\n0\r\n\r\n"],
  ["a control character in a quoted chunk extension", '2;a="\x01"\r\nok\r\n0\r\n\r\n'],
  ["a bare CR in a chunk extension", "2;a\rb\r\nok\r\n0\r\n\r\n"],
  ["a malformed trailer field", "2\r\nok\r\n0\r\nx-t : 1\r\n\r\n"],
  // Rules the parser had already.
  ["a chunk size with a sign", "+2\r\nok\r\n0\r\n\r\n"],
  ["a negative chunk size", "-2\r\nok\r\n0\r\n\r\n"],
  ["a chunk size with 0x", "0x2\r\nok\r\n0\r\n\r\n"],
  ["a chunk size past 12 hex digits", "10000000000000\r\nok\r\n0\r\n\r\n"],
  ["a chunk size that overflows 64 bits", "1FFFFFFFFFFFFFFFF\r\nok\r\n0\r\n\r\n"],
];

for (const [name, body] of REFUSED_CHUNKED) {
  Deno.test(`http1 strict: ${name} is refused`, () => refuses(CHUNKED + body));
}

// --- what strict still accepts --------------------------------------------------------------

Deno.test("http1 strict: empty lines before a status line are skipped", () => {
  return accepts("\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "ok");
});

Deno.test("http1 strict: a CRLF after 100 Continue (aiohttp) is skipped", () => {
  return accepts(
    "HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "ok",
  );
});

Deno.test("http1 strict: chunk extensions, BWS before `;`, quoted strings and trailers pass", () => {
  return accepts(
    CHUNKED + '2 ;a=b;c="d;\\"e\\"\te"\r\nok\r\n1\t;x\r\n!\r\n0;f=g\r\nx-t: 1\r\n\r\n',
    "ok!",
  );
});

Deno.test("http1 strict: a transfer coding not ending in chunked is read until the close", () => {
  return accepts(
    { text: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\n2\r\nok", close: true },
    "2\r\nok",
    false,
  );
});

/**
 * A 200 head of exactly `bytes` bytes, status line to the blank line that ends it included,
 * padded with one header; a 2-byte body follows.
 */
function headOf(bytes: number): string {
  const head = HEAD_START + "a".repeat(bytes - HEAD_START.length - 4) + "\r\n\r\n";
  assert.equal(head.length, bytes);
  return head + "ok";
}

const HEAD_START = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-pad: ";

/** The documented limit of a response head: 64 KiB, status line and blank line included. */
const HEAD_LIMIT = 64 * 1024;

Deno.test("http1 strict: a response head of exactly 64 KiB is read", async () => {
  await using upstream = new ScriptedUpstream("whole");
  const transport = newTransport();
  try {
    upstream.script(headOf(HEAD_LIMIT));
    const result = await exchange(transport, upstream);
    assert.ok("reply" in result, String("error" in result && result.error));
    assert.equal(result.reply.status, 200);
    assert.equal(result.reply.headers.get("x-pad")?.length, HEAD_LIMIT - HEAD_START.length - 4);
    assert.equal(result.body, "ok");
  } finally {
    transport.close();
  }
});

Deno.test("http1 strict: a response head of 64 KiB + 1 byte is a protocol error", async () => {
  await using upstream = new ScriptedUpstream("whole");
  const transport = newTransport();
  try {
    upstream.script(headOf(HEAD_LIMIT + 1));
    const result = await exchange(transport, upstream);
    assert.ok("error" in result && result.error instanceof UpstreamProtocolError, String(result));
    assert.match(String(result.error), /response head larger than 65536 bytes/);
  } finally {
    transport.close();
  }
});

Deno.test("http1 strict: empty lines before a status line count toward the head size limit", async () => {
  await using upstream = new ScriptedUpstream("whole");
  const transport = newTransport();
  try {
    upstream.script("\r\n".repeat(MAX_HEAD_BYTES / 2) + OK);
    const result = await exchange(transport, upstream);
    assert.ok("error" in result && result.error instanceof UpstreamProtocolError);
    assert.match(String(result.error), /larger than/);
  } finally {
    transport.close();
  }
});

// --- interim answers ------------------------------------------------------------------------

const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

Deno.test(`http1 strict: ${MAX_INTERIM_RESPONSES} interim answers are skipped`, () => {
  assert.equal(MAX_INTERIM_RESPONSES, 32);
  return accepts(CONTINUE.repeat(MAX_INTERIM_RESPONSES) + OK, "ok");
});

Deno.test(`http1 strict: interim answer ${MAX_INTERIM_RESPONSES + 1} is refused`, () => {
  return refuses(CONTINUE.repeat(MAX_INTERIM_RESPONSES + 1) + OK);
});

Deno.test("http1 strict: an upstream streaming hundreds of 100 Continue is cut off", () => {
  return refuses(CONTINUE.repeat(500) + OK);
});
