/**
 * Direct traffic over the project's own HTTP/1.1 client: one write per request (head and body
 * together), the response head parsed from the read buffer, the body read as the client pulls
 * it. Measured here, a bare pass-through on this client costs about half the CPU per request of
 * one on `fetch`, and a quarter less than one on `node:http`.
 *
 * Bodies pass through byte-exact (nothing is decoded). `https:` targets go over TLS connections
 * of its own when `tls` is given (`./tls.ts`: Deno's TLS, verified as `fetch` verifies), else
 * to the `secure` transport; an upstream that speaks only HTTP/2 goes to `secure` too.
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
  UpstreamTlsError,
} from "../transport.ts";
import { Connection, type Dial, type OpenOptions } from "./connection.ts";
import { isNoApplicationProtocol, type TlsClientOptions, tlsDial } from "./tls.ts";
import { Deadlines } from "../../deadlines.ts";
import type { Clock } from "../../deps.ts";
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
  /**
   * Where `https:` targets go without `tls`, and those of an upstream that speaks only HTTP/2
   * (it refuses a handshake that offers only HTTP/1.1).
   */
  readonly secure: Transport;
  /** Send `https:` targets over TLS connections of this client, verified with these options. */
  readonly tls?: TlsClientOptions;
  /** Keep connections for reuse. */
  readonly keepAlive: boolean;
  /** Idle connections kept per origin. */
  readonly maxIdlePerHost: number;
  /** Idle pooled connections close after this, ms. */
  readonly idleTimeoutMs: number;
  /** A connect not finished after this fails as a connect error, ms; 0 = no bound. @default 0 */
  readonly connectTimeoutMs?: number;
  /** Idle ages of pooled connections and their sweep. @default systemClock */
  readonly clock?: Pick<Clock, "now" | "after">;
  /** Schedules connect timeouts. @default a `Deadlines` of its own */
  readonly deadlines?: Pick<Deadlines, "after">;
  /** How plain connections are opened (tests). @default tcpDial */
  readonly dial?: Dial;
}

/** The upstream closed a connection before any byte of a response. */
class ClosedBeforeResponse extends Error {
  override name = "ClosedBeforeResponse";
}

/** HTTP/1.1 requests on pooled keep-alive connections, plain or TLS. */
export class Http1Transport implements Transport {
  readonly kind = "http1";
  readonly #pool: Pool;
  readonly #secure: Transport;
  readonly #keepAlive: boolean;
  readonly #open: OpenOptions;
  /** How TLS connections open; undefined: `https:` goes to `#secure`. */
  readonly #openTls: OpenOptions | undefined;
  /**
   * Pool keys of `https:` origins that refused HTTP/1.1 by ALPN: sent through `#secure` from
   * then on. Bounded: targets come from the configured upstream URLs.
   */
  readonly #http2Only = new Set<string>();

  constructor(options: Http1TransportOptions) {
    this.#keepAlive = options.keepAlive && options.maxIdlePerHost > 0;
    this.#pool = new Pool({
      maxIdlePerHost: this.#keepAlive ? options.maxIdlePerHost : 0,
      idleTimeoutMs: options.idleTimeoutMs,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.#secure = options.secure;
    const timeoutMs = options.connectTimeoutMs ?? 0;
    this.#open = {
      timeoutMs,
      ...(timeoutMs > 0 ? { deadlines: options.deadlines ?? new Deadlines() } : {}),
      ...(options.dial ? { dial: options.dial } : {}),
    };
    // The connect timeout bounds the TCP connect and the TLS handshake together.
    this.#openTls = options.tls ? { ...this.#open, dial: tlsDial(options.tls) } : undefined;
  }

  kindFor(protocol: UpstreamTarget["protocol"]): TransportKind {
    return protocol === "http:" || this.#openTls ? "http1" : this.#secure.kindFor(protocol);
  }

  /** Idle pooled connections (for tests and diagnostics). */
  get idleConnections(): number {
    return this.#pool.size;
  }

  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    // Never shared between schemes: an http and an https upstream on one host:port differ.
    const key = `${target.protocol}//${target.hostname}:${target.port}`;
    if (target.protocol === "https:" && (!this.#openTls || this.#http2Only.has(key))) {
      return this.#secure.send(target, init);
    }
    if (init.signal.aborted) return Promise.reject(init.signal.reason);
    const body = init.body;
    const method = normalizeMethod(init.method);
    // A small body goes in the head's buffer (one write); a large one is written after it.
    const coalesce = body !== null && body.byteLength > 0 && body.byteLength <= COALESCE_BYTES;
    let message: Uint8Array[];
    try {
      const head = encodeHead(
        requestHead(method, target.path, {
          host: target.host,
          headers: init.headers,
          bodyLength: body ? body.byteLength : null,
          keepAlive: this.#keepAlive,
        }),
        coalesce ? body : undefined,
      );
      message = body === null || body.byteLength === 0 || coalesce ? [head] : [head, body];
    } catch (error) {
      // Nothing was written: whatever cannot be encoded is not the upstream's failure. The
      // pipeline hands over an ASCII path, so a head that fails here is the proxy's bug.
      return Promise.reject(
        new NotSentError("proxy", "the request head cannot be encoded", { cause: error }),
      );
    }
    return this.#exchange(target, key, method, init, message, true);
  }

  async #exchange(
    target: UpstreamTarget,
    key: string,
    method: string,
    init: SendInit,
    message: Uint8Array[],
    mayRetryStale: boolean,
  ): Promise<UpstreamReply> {
    const signal = init.signal;
    const secure = target.protocol === "https:";
    // The stale-connection retry takes a new connection: the others pooled with the stale one
    // may be just as stale (an upstream that restarted).
    let connection = mayRetryStale ? this.#pool.take(key) : undefined;
    const reused = connection !== undefined;
    // Closing the socket fails whatever read or write is pending with it.
    const onAbort = () => connection?.close();
    signal.addEventListener("abort", onAbort, { once: true });
    /** Whether the whole request went out: one an early answer cut short is never pooled. */
    let written = false;
    const release = (reuse: boolean) => {
      signal.removeEventListener("abort", onAbort);
      if (reuse && written && connection) this.#pool.put(key, connection);
      else connection?.close();
    };
    try {
      connection ??= await Connection.open(
        target.hostname,
        target.port,
        signal,
        secure ? this.#openTls : this.#open,
      );
      // Aborted while the connect finished: the listener found no connection to close.
      if (signal.aborted) throw signal.reason;
      let head: ResponseHead | undefined;
      if (message.length === 1) {
        // The usual request, up to 64 KiB: one write (the socket buffers take it whole), then
        // the read, with no promise more than that.
        try {
          await connection.write(message[0]!);
          written = true;
        } catch (error) {
          // The upstream may have answered and closed before taking the request (a 413 on
          // the head, a 503 on accept): that answer waits in the receive buffer.
          head = await answerDespite(readHead(connection), error);
        }
        head ??= await readHead(connection);
      } else {
        // A large body: the upstream may answer before reading it all (a 413, a 401) and then
        // stop reading or close. The head is read while the body is written; an answer that
        // comes first is the answer, and nothing more is written.
        const reading = readHead(connection);
        let answeredEarly = false;
        let writeFailed = false;
        let writeError: unknown;
        const writing = writeAll(connection, message).then((): undefined => {
          // Stopped by an early answer, the writes end without the whole request.
          if (!answeredEarly) written = true;
        }, (error): undefined => {
          writeFailed = true;
          writeError = error;
        });
        // `race` handles a rejection of `reading` (its own is thrown below).
        head = await Promise.race([reading, writing]);
        if (head !== undefined) {
          if (!written) {
            answeredEarly = true;
            connection.stopWriting();
          }
        } else if (writeFailed) head = await answerDespite(reading, writeError);
        else head = await reading;
      }
      const framing = responseFraming(method, head);
      return reply(head, framing, new ResponseBody(connection, framing, head, signal, release));
    } catch (error) {
      release(false);
      if (signal.aborted) throw signal.reason;
      // A pooled connection the upstream had just closed: nothing was processed, so the
      // request goes again on a new connection (a non-idempotent one only if it was not
      // written in full).
      if (reused && mayRetryStale && isNoAnswer(error) && (!written || IDEMPOTENT.has(method))) {
        return this.#exchange(target, key, method, init, message, false);
      }
      if (secure && !reused) {
        // Nothing was sent: an upstream that speaks only HTTP/2 is asked again through fetch.
        if (isNoApplicationProtocol(error)) {
          this.#http2Only.add(key);
          return this.#secure.send(target, init);
        }
        // Under TLS 1.3 a refused client certificate is an alert read after the handshake.
        if (error instanceof Deno.errors.InvalidData) throw new UpstreamTlsError(error);
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

/** The connection ended (closed or reset) before any byte of an answer. */
function isNoAnswer(error: unknown): boolean {
  return error instanceof ClosedBeforeResponse ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe;
}

/**
 * The answer read after writing the request failed: an upstream that answers and closes
 * before reading the whole request makes the write fail, and its answer is the one to pass
 * on. Without one (the connection ended with no byte of an answer) the write error stands.
 * The read ends quickly on a broken socket, or with the first-byte deadline.
 */
async function answerDespite(
  reading: Promise<ResponseHead>,
  writeError: unknown,
): Promise<ResponseHead> {
  try {
    return await reading;
  } catch (error) {
    throw isNoAnswer(error) ? writeError : error;
  }
}

/** Writes the parts of a request in order (up to {@linkcode Connection.stopWriting}). */
async function writeAll(connection: Connection, message: readonly Uint8Array[]): Promise<void> {
  for (const part of message) await connection.write(part);
}

/**
 * Interim (1xx) answers accepted before the final one, per request. Each costs a parse, so an
 * upstream streaming them without end would keep a core busy until the first-byte deadline;
 * past this it is a protocol error.
 */
export const MAX_INTERIM_RESPONSES = 32;

/**
 * Reads more of a response head: false at the end of the stream. A TLS connection closed without
 * `close_notify` (Deno: `UnexpectedEof`) ends here like a TCP close, so what was received decides
 * as for plain connections: nothing yet is a pooled connection the upstream had dropped (sent
 * again on a new one), part of a head a protocol error.
 */
async function fillHead(connection: Connection): Promise<boolean> {
  try {
    return await connection.fill(MAX_HEAD_BYTES);
  } catch (error) {
    if (error instanceof Deno.errors.UnexpectedEof) return false;
    throw error;
  }
}

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
      if (!(await fillHead(connection))) {
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
