/**
 * Reads HTTP/1.1 responses off a keep-alive connection, one at a time, and timestamps what
 * arrives: the end of the response and every complete SSE `data:` event. Used by the overhead
 * client (`overhead.ts`), where `fetch` would add its own buffering and CPU between the socket
 * and the clock; here a timestamp is taken as each socket read completes.
 *
 * Supports `Content-Length`, `Transfer-Encoding: chunked` and read-to-close bodies.
 *
 * @module
 */

/** What one response was, and when its parts arrived (`performance.now()` ms). */
export interface TimedResponse {
  status: number;
  /** When the read that completed the response returned. */
  endAt: number;
  /** When each complete `data:` event arrived, in order (empty unless `text/event-stream`). */
  eventsAt: number[];
  /** False when the server closes the connection after this response. */
  keepAlive: boolean;
}

const CR = 13;
const LF = 10;
const D = 0x64; // "d"
const latin1 = new TextDecoder("latin1");
/** The header lines the reader needs, in a lower-cased head. */
const HEADERS = {
  contentType: /\r\ncontent-type: *([^\r]*)/,
  contentLength: /\r\ncontent-length: *([^\r]*)/,
  transferEncoding: /\r\ntransfer-encoding: *([^\r]*)/,
  connection: /\r\nconnection: *([^\r]*)/,
};

/** One connection's reader. Not reentrant: read a response only after writing its request. */
export class ResponseReader {
  #conn: Pick<Deno.Conn, "read">;
  #buf = new Uint8Array(16 * 1024);
  /** First unconsumed byte. */
  #start = 0;
  /** End of the bytes read. */
  #end = 0;
  /** When the last read returned. */
  #at = 0;

  constructor(conn: Pick<Deno.Conn, "read">) {
    this.#conn = conn;
  }

  /** Reads one whole response. Throws on EOF before its end or on a malformed head. */
  async read(): Promise<TimedResponse> {
    let headEnd: number;
    while ((headEnd = this.#find(CR, LF, CR, LF)) < 0) await this.#fill();
    const head = latin1.decode(this.#buf.subarray(this.#start, headEnd)).toLowerCase();
    this.#start = headEnd + 4;
    const status = Number(/^http\/1\.[01] (\d{3})/.exec(head)?.[1]);
    if (!Number.isInteger(status)) throw new Error(`malformed response head: ${head.slice(0, 80)}`);
    const header = (name: keyof typeof HEADERS) => HEADERS[name].exec(head)?.[1];
    const events = new EventScanner(header("contentType")?.startsWith("text/event-stream"));
    let keepAlive = header("connection") !== "close";
    const length = header("contentLength");
    if (header("transferEncoding")?.includes("chunked")) {
      await this.#readChunked(events);
    } else if (length !== undefined) {
      await this.#readBytes(Number(length), events);
    } else {
      keepAlive = false; // the body ends when the connection does
      while (await this.#fill(true)) await this.#readBytes(this.#end - this.#start, events);
    }
    return { status, endAt: this.#at, eventsAt: events.times, keepAlive };
  }

  async #readChunked(events: EventScanner): Promise<void> {
    for (;;) {
      let lineEnd: number;
      while ((lineEnd = this.#find(CR, LF)) < 0) await this.#fill();
      const size = parseInt(latin1.decode(this.#buf.subarray(this.#start, lineEnd)), 16);
      if (!Number.isInteger(size)) throw new Error("malformed chunk size");
      this.#start = lineEnd + 2;
      if (size === 0) break;
      await this.#readBytes(size, events);
      while (this.#end - this.#start < 2) await this.#fill();
      this.#start += 2; // the CRLF after the chunk's data
    }
    // Trailer lines, if any, then the empty line.
    for (;;) {
      let lineEnd: number;
      while ((lineEnd = this.#find(CR, LF)) < 0) await this.#fill();
      const empty = lineEnd === this.#start;
      this.#start = lineEnd + 2;
      if (empty) return;
    }
  }

  async #readBytes(count: number, events: EventScanner): Promise<void> {
    let remaining = count;
    while (remaining > 0) {
      if (this.#start === this.#end) await this.#fill();
      const take = Math.min(remaining, this.#end - this.#start);
      events.feed(this.#buf, this.#start, this.#start + take, this.#at);
      this.#start += take;
      remaining -= take;
    }
  }

  /** Index of the first byte of `seq` in the unconsumed bytes, or -1. */
  #find(...seq: number[]): number {
    const last = this.#end - seq.length;
    outer: for (let i = this.#start; i <= last; i++) {
      for (let j = 0; j < seq.length; j++) if (this.#buf[i + j] !== seq[j]) continue outer;
      return i;
    }
    return -1;
  }

  /** Reads more bytes into the buffer (compacting or growing it); false on EOF if allowed. */
  async #fill(eofAllowed = false): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const grown = new Uint8Array(this.#buf.length * 2);
        grown.set(this.#buf);
        this.#buf = grown;
      }
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    this.#at = performance.now();
    if (n === null) {
      if (eofAllowed) return false;
      throw new Error("connection closed before the response ended");
    }
    this.#end += n;
    return true;
  }
}

/**
 * Finds the ends of SSE events (a blank line) in body bytes and records when each one with a
 * `data` line arrived. A line starting with "d" is a data line: the other fields are `event`,
 * `id`, `retry` and comments (":").
 */
class EventScanner {
  readonly times: number[] = [];
  #on: boolean;
  #atLineStart = true;
  #hasData = false;

  constructor(on = false) {
    this.#on = on;
  }

  feed(bytes: Uint8Array, from: number, to: number, at: number): void {
    if (!this.#on) return;
    for (let i = from; i < to; i++) {
      const b = bytes[i]!;
      if (b === CR) continue; // CRLF line ends read as LF
      if (b !== LF) {
        if (this.#atLineStart && b === D) this.#hasData = true;
        this.#atLineStart = false;
      } else if (this.#atLineStart) { // an empty line: the event ends
        if (this.#hasData) this.times.push(at);
        this.#hasData = false;
      } else {
        this.#atLineStart = true;
      }
    }
  }
}
