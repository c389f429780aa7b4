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

/** 1 for the bytes of a token (RFC 9110 §5.6.2), by byte value. */
const TOKEN = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~0123456789") TOKEN[char.charCodeAt(0)] = 1;
for (let code = 65; code <= 90; code++) TOKEN[code] = TOKEN[code + 32] = 1;

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
          if (buf[at] !== 13) throw new UpstreamProtocolError("chunk not followed by CRLF");
          if (at + 1 >= end) return at;
          if (buf[at + 1] !== 10) throw new UpstreamProtocolError("chunk not followed by CRLF");
          at += 2;
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
          // A trailer line is a field line ended by CRLF, as in the head.
          if (lf === at || buf[lf - 1] !== 13) {
            throw new UpstreamProtocolError("bare LF in the trailer section");
          }
          const blank = lf === at + 1;
          if (!blank) checkTrailerField(buf, at, lf - 1);
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

/**
 * The size on the chunk-size line `buf[start, lf)`, validated close to llhttp's strict mode:
 * `chunk-size *( BWS ";" ext-name [ "=" ext-value ] ) CRLF`, a value being a token or a
 * quoted string. Whitespace may only come before a `;`: RFC 9112 §7.1.1 also allows it after
 * `;` and around `=`, llhttp allows it nowhere. `5 \r\n`, `5;\r\n`, `5; a`, `5;a = b`, a bare
 * LF and any control character are errors. Extensions are then ignored.
 */
function chunkSize(buf: Uint8Array, start: number, lf: number): number {
  if (lf === start || buf[lf - 1] !== 13) {
    throw new UpstreamProtocolError("chunk-size line not ended by CRLF");
  }
  const cr = lf - 1;
  let size = 0;
  let digits = 0;
  let significant = 0; // digits from the first non-zero one: leading zeros are allowed
  let at = start;
  for (; at < cr; at++) {
    const value = hexValue(buf[at]!);
    if (value === -1) break;
    size = size * 16 + value;
    digits++;
    if (size > 0 && ++significant > MAX_SIZE_DIGITS) {
      throw new UpstreamProtocolError("chunk size too large");
    }
  }
  if (digits === 0) throw new UpstreamProtocolError("malformed chunk size");
  // The usual line is the size alone: nothing more to check.
  if (at < cr) checkExtensions(buf, at, cr);
  return size;
}

/** Validates the chunk extensions in `buf[at, cr)`, right after the size digits. */
function checkExtensions(buf: Uint8Array, at: number, cr: number): void {
  while (at < cr) {
    while (at < cr && (buf[at] === 32 || buf[at] === 9)) at++;
    if (at === cr) throw new UpstreamProtocolError("whitespace at the end of a chunk-size line");
    if (buf[at] !== 59) throw new UpstreamProtocolError("malformed chunk size or extension"); // ;
    at = skipToken(buf, at + 1, cr);
    if (at < cr && buf[at] === 61) { // =
      at = buf[at + 1] === 34 ? skipQuoted(buf, at + 2, cr) : skipToken(buf, at + 1, cr);
    }
  }
}

/** The index past the token that starts at `buf[at]`; throws if there is none. */
function skipToken(buf: Uint8Array, at: number, cr: number): number {
  const start = at;
  while (at < cr && TOKEN[buf[at]!] === 1) at++;
  if (at === start) throw new UpstreamProtocolError("empty or malformed chunk extension");
  return at;
}

/**
 * The index past the closing quote of a quoted string whose content starts at `buf[at]`
 * (RFC 9110 §5.6.4: qdtext and quoted pairs; no control character but HTAB).
 */
function skipQuoted(buf: Uint8Array, at: number, cr: number): number {
  for (; at < cr; at++) {
    const byte = buf[at]!;
    if (byte === 34) return at + 1; // "
    if (byte === 92 && ++at === cr) break; // a backslash quotes the next byte, a quote too
    if (!isFieldByte(buf[at]!)) {
      throw new UpstreamProtocolError("control character in a chunk extension");
    }
  }
  throw new UpstreamProtocolError("unbalanced quote in a chunk extension");
}

/** A trailer field line `buf[start, cr)`: a token name, a colon, a value without controls. */
function checkTrailerField(buf: Uint8Array, start: number, cr: number): void {
  let at = start;
  while (at < cr && TOKEN[buf[at]!] === 1) at++;
  if (at === start || at === cr || buf[at] !== 58) { // :
    throw new UpstreamProtocolError("malformed trailer field");
  }
  for (at++; at < cr; at++) {
    if (!isFieldByte(buf[at]!)) throw new UpstreamProtocolError("control character in a trailer");
  }
}

/** HTAB, SP, visible ASCII and obs-text (0x80–0xff): what a field value or quoted string holds. */
function isFieldByte(byte: number): boolean {
  return byte === 9 || (byte >= 32 && byte !== 127);
}

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  if (byte >= 97 && byte <= 102) return byte - 87;
  if (byte >= 65 && byte <= 70) return byte - 55;
  return -1;
}
