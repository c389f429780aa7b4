/**
 * A response body read off its connection as the consumer asks for it, so a slow client
 * never makes the proxy buffer a fast upstream. When the body ends as framed, the connection
 * goes back to the pool; anything else (a break, a cancel, stray bytes) closes it.
 *
 * @module
 */
import type { BodyReader, UpstreamReply } from "../transport.ts";
import { RawHeaders } from "./raw_headers.ts";
import type { Connection } from "./connection.ts";
import { type Framing, type ResponseHead, reusable } from "./head.ts";
import { CHUNKED_BUFFER_BYTES, ChunkedDecoder } from "./chunked.ts";
import { concatBytes } from "../../bytes.ts";

/** The error of a body cut short by the upstream. */
export class BodyCutError extends Error {
  override name = "BodyCutError";
}

const EMPTY = new Uint8Array(0);

/** One response body on its connection. */
export class ResponseBody {
  readonly #connection: Connection;
  readonly #framing: Framing;
  readonly #signal: AbortSignal;
  readonly #release: (reuse: boolean) => void;
  readonly #reusable: boolean;
  readonly #chunked: ChunkedDecoder | undefined;
  #remaining: number;
  #finished = false;

  constructor(
    connection: Connection,
    framing: Framing,
    head: ResponseHead,
    signal: AbortSignal,
    release: (reuse: boolean) => void,
  ) {
    this.#connection = connection;
    this.#framing = framing;
    this.#signal = signal;
    this.#release = release;
    this.#reusable = reusable(head, framing);
    this.#chunked = framing.kind === "chunked" ? new ChunkedDecoder() : undefined;
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    // A discarded body ends here too: the release closes its connection (never `reusable`).
    if (
      framing.kind === "none" || framing.kind === "discard" ||
      (framing.kind === "length" && framing.length === 0)
    ) {
      this.#finish();
    }
  }

  /** The next bytes of the body (a copy the caller owns), or null at its end. */
  async read(): Promise<Uint8Array<ArrayBuffer> | null> {
    try {
      return await this.#read();
    } catch (error) {
      this.#fail();
      throw this.#signal.aborted ? this.#signal.reason : error;
    }
  }

  /** The whole body. */
  bytes(): Promise<Uint8Array<ArrayBuffer>> {
    const connection = this.#connection;
    // The usual small JSON answer: already complete in the buffer that held the head, taken
    // at once (no read, no await).
    if (
      this.#framing.kind === "length" && !this.#finished &&
      connection.end - connection.start >= this.#remaining
    ) {
      return Promise.resolve(this.#take(this.#remaining));
    }
    return this.#readAll();
  }

  async #readAll(): Promise<Uint8Array<ArrayBuffer>> {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    for (let part = await this.read(); part !== null; part = await this.read()) parts.push(part);
    return parts.length === 1 ? parts[0]! : concatBytes(parts); // a lone part is ours already
  }

  /** Stops reading: the connection is closed (the rest of the body is never read). */
  cancel(): void {
    if (this.#finished) return;
    this.#fail();
  }

  async #read(): Promise<Uint8Array<ArrayBuffer> | null> {
    const connection = this.#connection;
    for (;;) {
      if (this.#finished) return null;
      const { buffer, start, end } = connection;
      switch (this.#framing.kind) {
        case "length": {
          if (start < end) return this.#take(Math.min(this.#remaining, end - start));
          break;
        }
        case "chunked": {
          const parts: Uint8Array[] = [];
          connection.start = this.#chunked!.decode(buffer, start, end, parts);
          const part = parts.length === 0 ? null : concatBytes(parts);
          if (this.#chunked!.done) this.#finish();
          if (part) return part;
          if (this.#finished) return null;
          break;
        }
        case "close": {
          if (start < end) {
            connection.start = end;
            return buffer.slice(start, end);
          }
          if (!(await connection.fill())) {
            this.#finish();
            return null;
          }
          continue;
        }
        default:
          return null;
      }
      // A chunk-size or trailer line cut by the buffer's end must fit once more bytes come.
      if (!(await connection.fill(CHUNKED_BUFFER_BYTES))) {
        throw new BodyCutError("upstream closed the connection mid-body");
      }
    }
  }

  /** `count` bytes of a length-delimited body from the read buffer (a copy). */
  #take(count: number): Uint8Array<ArrayBuffer> {
    const connection = this.#connection;
    const part = connection.buffer.slice(connection.start, connection.start + count);
    connection.start += count;
    this.#remaining -= count;
    if (this.#remaining === 0) this.#finish();
    return part;
  }

  /** The body ended as framed: the connection is reusable unless more bytes followed it. */
  #finish(): void {
    this.#finished = true;
    const connection = this.#connection;
    this.#release(this.#reusable && connection.start === connection.end);
  }

  #fail(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#release(false);
  }
}

/** The Response-shaped reply for a head and its body. */
export function reply(head: ResponseHead, framing: Framing, body: ResponseBody): UpstreamReply {
  let stream: ReadableStream<Uint8Array> | undefined;
  const hasBody = framing.kind !== "none" && framing.kind !== "discard";
  return {
    status: head.status,
    statusText: head.statusText,
    headers: new RawHeaders(head.fields),
    hasBody,
    // Built on first use: `bytes()` reads the socket without any web stream.
    get body() {
      if (!hasBody) return null;
      return stream ??= bodyStream(body);
    },
    reader: () => hasBody ? pullReader(body) : null,
    bytes: () => hasBody ? body.bytes() : Promise.resolve(EMPTY),
  };
}

const DONE: ReadableStreamReadResult<Uint8Array> = { done: true, value: undefined };

/** The body as a reader, without a stream in between. */
function pullReader(body: ResponseBody): BodyReader {
  return {
    read: async () => {
      const part = await body.read();
      return part === null ? DONE : { done: false, value: part };
    },
    cancel: () => {
      body.cancel();
      return Promise.resolve();
    },
  };
}

/** The body as a web stream, pulled: one read from the socket per chunk asked for. */
function bodyStream(body: ResponseBody): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const part = await body.read();
      if (part === null) controller.close();
      else controller.enqueue(part);
    },
    cancel() {
      body.cancel();
    },
  }, { highWaterMark: 1 });
}
