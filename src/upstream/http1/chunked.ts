/**
 * The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: bytes arrive in reads
 * of any size, cut anywhere, and each call decodes as far as the bytes at hand allow.
 *
 * @module
 */
import { UpstreamProtocolError } from "./head.ts";

/** Longest chunk-size line (size plus extensions) accepted, bytes. */
const MAX_LINE = 4096;
/**
 * Largest trailer section accepted, bytes. A line must fit in the reader's buffer, which may
 * grow to {@linkcode CHUNKED_BUFFER_BYTES}; a line that cannot is refused here first.
 */
const MAX_TRAILERS = 32 * 1024;
/** How large the reader lets its buffer grow for a chunked body. */
export const CHUNKED_BUFFER_BYTES = 64 * 1024;
/** 12 hex digits: 256 TiB, far past any body, and well inside a safe integer. */
const MAX_SIZE_DIGITS = 12;

// Decoder states.
const SIZE = 0;
const DATA = 1;
const DATA_END = 2;
const TRAILERS = 3;
const DONE = 4;

/** Decodes one chunked body. */
export class ChunkedDecoder {
  #state = SIZE;
  #remaining = 0;
  #trailerBytes = 0;

  /** Whether the last chunk and the trailer section have been read. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /**
   * Decodes from `buf[start, end)`, pushing the payload it finds onto `out` (views into
   * `buf`: copy them before `buf` is reused), and returns where it stopped. Stops early at a
   * line cut by the end of the bytes, and at the end of the body.
   */
  decode(buf: Uint8Array, start: number, end: number, out: Uint8Array[]): number {
    let at = start;
    while (at < end) {
      switch (this.#state) {
        case SIZE: {
          const lf = buf.indexOf(10, at);
          const complete = lf !== -1 && lf < end;
          // The same limit whether the line arrived whole or in pieces.
          if ((complete ? lf : end) - at > MAX_LINE) {
            throw new UpstreamProtocolError("chunk-size line too long");
          }
          if (!complete) return at;
          this.#remaining = chunkSize(buf, at, lf);
          at = lf + 1;
          this.#state = this.#remaining === 0 ? TRAILERS : DATA;
          break;
        }
        case DATA: {
          const take = Math.min(this.#remaining, end - at);
          out.push(buf.subarray(at, at + take));
          at += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = DATA_END;
          break;
        }
        case DATA_END: {
          if (buf[at] === 10) at += 1;
          else if (buf[at] === 13) {
            if (at + 1 >= end) return at;
            if (buf[at + 1] !== 10) throw new UpstreamProtocolError("chunk not followed by CRLF");
            at += 2;
          } else throw new UpstreamProtocolError("chunk not followed by CRLF");
          this.#state = SIZE;
          break;
        }
        case TRAILERS: {
          // Trailer fields are read and dropped: nothing downstream can use them.
          const lf = buf.indexOf(10, at);
          const complete = lf !== -1 && lf < end;
          if (this.#trailerBytes + (complete ? lf + 1 : end) - at > MAX_TRAILERS) {
            throw new UpstreamProtocolError("trailer section too large");
          }
          if (!complete) return at;
          const blank = lf === at || (lf === at + 1 && buf[at] === 13);
          this.#trailerBytes += lf + 1 - at;
          at = lf + 1;
          if (blank) {
            this.#state = DONE;
            return at;
          }
          break;
        }
        case DONE:
          return at;
      }
    }
    return at;
  }
}

/** The hex size at the start of the line `buf[start, lf)`; extensions after `;` are ignored. */
function chunkSize(buf: Uint8Array, start: number, lf: number): number {
  let size = 0;
  let digits = 0;
  let significant = 0; // digits from the first non-zero one: leading zeros are allowed
  let at = start;
  for (; at < lf; at++) {
    const value = hexValue(buf[at]!);
    if (value === -1) break;
    size = size * 16 + value;
    digits++;
    if (size > 0 && ++significant > MAX_SIZE_DIGITS) {
      throw new UpstreamProtocolError("chunk size too large");
    }
  }
  if (digits === 0) throw new UpstreamProtocolError("malformed chunk size");
  // What may follow the digits: whitespace, then `;` extensions, then CR.
  for (; at < lf; at++) {
    const byte = buf[at]!;
    if (byte === 59) break; // ;
    if (byte === 13 && at === lf - 1) break;
    if (byte !== 32 && byte !== 9) throw new UpstreamProtocolError("malformed chunk size");
  }
  return size;
}

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  if (byte >= 97 && byte <= 102) return byte - 87;
  if (byte >= 65 && byte <= 70) return byte - 55;
  return -1;
}
