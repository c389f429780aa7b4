/**
 * Direct plain-HTTP traffic over the project's own HTTP/1.1 client: one write per request
 * (head and body together), the response head parsed from the read buffer, the body read as
 * the client pulls it. Measured here, a bare pass-through on this client costs about half the
 * CPU per request of one on `fetch`, and a quarter less than one on `node:http`.
 *
 * Bodies pass through byte-exact (nothing is decoded). `https:` targets go to the `secure`
 * transport (Deno's client verifies TLS).
 *
 * @module
 */
import {
  NotSentError,
  type SendInit,
  type Transport,
  type TransportKind,
  type UpstreamReply,
  type UpstreamTarget,
} from "../transport.ts";
import { Connection } from "./connection.ts";
import { Pool } from "./pool.ts";
import {
  encodeHead,
  findHeadEnd,
  latin1,
  MAX_HEAD_BYTES,
  parseResponseHead,
  requestHead,
  responseFraming,
  type ResponseHead,
  skipEmptyLines,
  UpstreamProtocolError,
} from "./head.ts";
import { reply, ResponseBody } from "./body.ts";

/** Bodies up to this size are written together with the head, in one write. */
const COALESCE_BYTES = 64 * 1024;

/** Methods safe to send again when a reused connection turns out to be closed (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Options of {@linkcode Http1Transport}. */
export interface Http1TransportOptions {
  /** Where `https:` targets go. */
  readonly secure: Transport;
  /** Keep connections for reuse. */
  readonly keepAlive: boolean;
  /** Idle connections kept per origin. */
  readonly maxIdlePerHost: number;
  /** Idle pooled connections close after this, ms. */
  readonly idleTimeoutMs: number;
}

/** The upstream closed a connection before any byte of a response. */
class ClosedBeforeResponse extends Error {
  override name = "ClosedBeforeResponse";
}

/** Plain-HTTP requests on pooled keep-alive connections. */
export class Http1Transport implements Transport {
  readonly kind = "http1";
  readonly #pool: Pool;
  readonly #secure: Transport;
  readonly #keepAlive: boolean;

  constructor(options: Http1TransportOptions) {
    this.#keepAlive = options.keepAlive && options.maxIdlePerHost > 0;
    this.#pool = new Pool({
      maxIdlePerHost: this.#keepAlive ? options.maxIdlePerHost : 0,
      idleTimeoutMs: options.idleTimeoutMs,
    });
    this.#secure = options.secure;
  }

  kindFor(protocol: UpstreamTarget["protocol"]): TransportKind {
    return protocol === "https:" ? this.#secure.kindFor(protocol) : "http1";
  }

  /** Idle pooled connections (for tests and diagnostics). */
  get idleConnections(): number {
    return this.#pool.size;
  }

  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    if (target.protocol === "https:") return this.#secure.send(target, init);
    if (init.signal.aborted) return Promise.reject(init.signal.reason);
    const body = init.body;
    const method = normalizeMethod(init.method);
    let head: Uint8Array<ArrayBuffer>;
    try {
      head = encodeHead(
        requestHead(
          method,
          target.path,
          target.host,
          init.headers,
          body ? body.byteLength : null,
          this.#keepAlive,
        ),
      );
    } catch (error) {
      // Nothing was written: whatever cannot be encoded is not the upstream's failure. The
      // pipeline hands over an ASCII path, so a head that fails here is the proxy's bug.
      return Promise.reject(
        new NotSentError("proxy", "the request head cannot be encoded", { cause: error }),
      );
    }
    let message: Uint8Array[];
    if (body === null || body.byteLength === 0) message = [head];
    else if (body.byteLength > COALESCE_BYTES) message = [head, body];
    else {
      const joined = new Uint8Array(head.byteLength + body.byteLength);
      joined.set(head);
      joined.set(body, head.byteLength);
      message = [joined];
    }
    return this.#exchange(target, method, init.signal, message, true);
  }

  async #exchange(
    target: UpstreamTarget,
    method: string,
    signal: AbortSignal,
    message: Uint8Array[],
    mayRetryStale: boolean,
  ): Promise<UpstreamReply> {
    const key = `${target.hostname}:${target.port}`;
    // The stale-connection retry takes a new connection: the others pooled with the stale one
    // may be just as stale (an upstream that restarted).
    let connection = mayRetryStale ? this.#pool.take(key) : undefined;
    const reused = connection !== undefined;
    // Closing the socket fails whatever read or write is pending with it.
    const onAbort = () => connection?.close();
    signal.addEventListener("abort", onAbort, { once: true });
    const release = (reuse: boolean) => {
      signal.removeEventListener("abort", onAbort);
      if (reuse && connection) this.#pool.put(key, connection);
      else connection?.close();
    };
    let written = false;
    try {
      connection ??= await Connection.open(target.hostname, target.port, signal);
      // Aborted while the connect finished: the listener found no connection to close.
      if (signal.aborted) throw signal.reason;
      for (const part of message) await connection.write(part);
      written = true;
      const head = await readHead(connection);
      const framing = responseFraming(method, head);
      return reply(head, framing, new ResponseBody(connection, framing, head, signal, release));
    } catch (error) {
      release(false);
      if (signal.aborted) throw signal.reason;
      // A pooled connection the upstream had just closed: nothing was processed, so the
      // request goes again on a new connection (a non-idempotent one only if it was not
      // written at all).
      const stale = error instanceof ClosedBeforeResponse || isConnectionReset(error);
      if (
        reused && mayRetryStale && stale && (!written || IDEMPOTENT.has(method))
      ) {
        return this.#exchange(target, method, signal, message, false);
      }
      throw error;
    }
  }

  close(): void {
    this.#pool.close();
    this.#secure.close();
  }
}

/** The methods whose case the Fetch standard normalises (the client may send `head`). */
const NORMALIZED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);

/** Upper-cases the standard methods; others are case-sensitive tokens and pass as they are. */
function normalizeMethod(method: string): string {
  if (NORMALIZED_METHODS.has(method)) return method;
  const upper = method.toUpperCase();
  return NORMALIZED_METHODS.has(upper) ? upper : method;
}

function isConnectionReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe;
}

/**
 * Interim (1xx) answers accepted before the final one, per request. Each costs a parse, so an
 * upstream streaming them without end would keep a core busy until the first-byte deadline;
 * past this it is a protocol error.
 */
export const MAX_INTERIM_RESPONSES = 32;

/** Reads the final response head, skipping interim (1xx) ones and empty lines before each. */
async function readHead(connection: Connection): Promise<ResponseHead> {
  let received = false;
  for (let interim = 0;;) {
    // Empty lines skipped before this status line: they count toward the head's size limit,
    // so an endless run of them is refused like an endless head.
    let skipped = 0;
    // Bytes of this head (from `connection.start`, which moves when the buffer is compacted)
    // already scanned for its end; 0 while the status line has not begun.
    let scanned = 0;
    let headEnd = -1;
    for (;;) {
      const { buffer, end } = connection;
      let start = connection.start;
      if (scanned === 0) {
        const headStart = skipEmptyLines(buffer, start, end);
        skipped += headStart - start;
        connection.start = start = headStart;
      }
      // Past the empty lines, the status line has begun unless a lone CR awaits its LF.
      if (start < end && buffer[start] !== 13) {
        headEnd = findHeadEnd(buffer, start, end, start + scanned);
        if (headEnd !== -1) break;
        scanned = end - start;
      }
      const buffered = end - start;
      if (buffered + skipped >= MAX_HEAD_BYTES) {
        throw new UpstreamProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`);
      }
      if (!(await connection.fill(MAX_HEAD_BYTES))) {
        throw received || buffered > 0 || skipped > 0
          ? new UpstreamProtocolError("upstream closed the connection mid-head")
          : new ClosedBeforeResponse("upstream closed the connection before responding");
      }
      received = true;
    }
    const text = latin1(connection.buffer.subarray(connection.start, headEnd));
    connection.start = headEnd;
    received = true;
    const head = parseResponseHead(text);
    if (head.status >= 200) return head;
    if (head.status === 101) throw new UpstreamProtocolError("unexpected 101 Switching Protocols");
    if (++interim > MAX_INTERIM_RESPONSES) {
      throw new UpstreamProtocolError(
        `more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`,
      );
    }
  }
}
