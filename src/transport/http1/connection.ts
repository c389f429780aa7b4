/**
 * One connection to an upstream (TCP, or TLS over TCP) with its read buffer. While it waits in the pool, a read
 * stays pending on it: an upstream that closes an idle connection is noticed at once (and the
 * connection dropped), instead of failing the next request sent on it. That same read then
 * receives the next response, so watching costs no extra operation.
 *
 * @module
 */

import type { Deadlines } from "../../deadlines.ts";

/** Initial read buffer size; it grows for a head that does not fit (up to the head limit). */
const BUFFER_BYTES = 16 * 1024;

/**
 * Opens a connection: `Deno.connect` ({@linkcode tcpDial}), a TLS dial (`./tls.ts`), or a
 * stand-in for tests. Must honour `signal`.
 */
export type Dial = (options: Deno.ConnectOptions) => Promise<Deno.Conn>;

/** A plain TCP connection, set up for requests and long streams. */
export const tcpDial: Dial = async (options) => {
  const conn = await Deno.connect(options);
  conn.setNoDelay(true); // a request is one write: send it now, never wait for an ACK
  conn.setKeepAlive(true); // long silent streams: let the OS notice a dead peer
  return conn;
};

/** Options of {@linkcode Connection.open}. */
export interface OpenOptions {
  /** The connect gives up after this, ms (a {@linkcode ConnectTimeoutError}); 0 = no bound. */
  readonly timeoutMs?: number;
  /** Schedules the connect timeout (required with `timeoutMs`). */
  readonly deadlines?: Pick<Deadlines, "after">;
  /** How to connect. @default tcpDial */
  readonly dial?: Dial;
}

/** A connect that did not finish within the connect timeout: a connect failure. */
export class ConnectTimeoutError extends Error {
  override name = "ConnectTimeoutError";
}

/** A buffered client connection. */
export class Connection {
  readonly #conn: Deno.Conn;
  /** Unconsumed bytes are `buffer[start, end)`. */
  buffer = new Uint8Array(BUFFER_BYTES);
  start = 0;
  end = 0;
  /** The read started while idle, handed to the next `fill()`. */
  #pending: Promise<number | null> | null = null;
  #idle = false;
  #closed = false;
  /** Set once an answer came before the request was fully written: nothing more is sent. */
  #writeStopped = false;
  /** When it last went idle (pool clock, ms). */
  idleSince = 0;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /**
   * Opens a connection; `signal` aborts the connect, and so does `options.timeoutMs` (then it
   * rejects with a {@linkcode ConnectTimeoutError}).
   */
  static async open(
    hostname: string,
    port: number,
    signal: AbortSignal,
    options: OpenOptions = {},
  ): Promise<Connection> {
    const dial = options.dial ?? tcpDial;
    const { timeoutMs = 0, deadlines } = options;
    if (timeoutMs <= 0 || !deadlines) return new Connection(await dial({ hostname, port, signal }));
    // A connect of its own to abort: the attempt's signal also covers the response.
    const timeout = new AbortController();
    const deadline = deadlines.after(timeoutMs, () => timeout.abort());
    try {
      return new Connection(
        await dial({ hostname, port, signal: AbortSignal.any([signal, timeout.signal]) }),
      );
    } catch (error) {
      if (timeout.signal.aborted && !signal.aborted) {
        throw new ConnectTimeoutError(`connect timeout after ${timeoutMs}ms`, { cause: error });
      }
      throw error;
    } finally {
      deadline.cancel();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes all of `bytes`, or what of them goes out before {@linkcode stopWriting}. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.byteLength && !this.#writeStopped) {
      offset += await this.#conn.write(offset === 0 ? bytes : bytes.subarray(offset));
    }
  }

  /**
   * Sends nothing more after the socket write in progress (each takes what the socket buffers
   * have room for): the upstream answered before reading the whole request.
   */
  stopWriting(): void {
    this.#writeStopped = true;
  }

  /**
   * Reads more bytes into the buffer after `end`, compacting or growing it when full (never
   * past `maxBytes` of unconsumed data). Resolves false at end of stream.
   */
  async fill(maxBytes = BUFFER_BYTES): Promise<boolean> {
    if (this.start === this.end) this.start = this.end = 0;
    else if (this.end === this.buffer.length) this.#makeRoom(maxBytes);
    const read = this.#pending ?? this.#conn.read(this.buffer.subarray(this.end));
    this.#pending = null;
    const n = await read;
    if (n === null) return false;
    this.end += n;
    return true;
  }

  #makeRoom(maxBytes: number): void {
    const unconsumed = this.end - this.start;
    if (this.start > 0) {
      this.buffer.copyWithin(0, this.start, this.end);
    } else {
      if (unconsumed >= maxBytes) throw new RangeError("read buffer limit reached");
      const grown = new Uint8Array(Math.min(this.buffer.length * 2, maxBytes));
      grown.set(this.buffer.subarray(0, unconsumed));
      this.buffer = grown;
    }
    this.start = 0;
    this.end = unconsumed;
  }

  /**
   * Parks the connection: starts the read that watches it. When the upstream closes it, sends
   * anything, or the read fails while it is still parked, the connection is closed and `gone`
   * called.
   */
  park(now: number, gone: () => void): void {
    this.#idle = true;
    this.idleSince = now;
    this.start = this.end = 0;
    if (this.buffer.length > BUFFER_BYTES) this.buffer = new Uint8Array(BUFFER_BYTES);
    const read = this.#conn.read(this.buffer);
    this.#pending = read;
    const onIdleEvent = () => {
      if (!this.#idle) return; // taken meanwhile: the next response reader owns the result
      this.close();
      gone();
    };
    read.then(onIdleEvent, onIdleEvent);
    this.#conn.unref(); // a parked connection never keeps the process alive
  }

  /** Takes the connection out of the pool for a request. */
  unpark(): void {
    this.#idle = false;
    this.#conn.ref();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#idle = false;
    try {
      this.#conn.close();
    } catch {
      // already closed by the runtime
    }
  }
}
