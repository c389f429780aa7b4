/**
 * HTTP/1.1 message heads (RFC 9112): the request head we write and the response head we read,
 * and how the response body is framed. Pure functions over strings and bytes, so every rule
 * here is tested without a socket.
 *
 * @module
 */

/** A protocol violation by the upstream: the connection is unusable afterwards. */
export class UpstreamProtocolError extends Error {
  override name = "UpstreamProtocolError";
}

/** Largest response head accepted, bytes (status line and headers). */
export const MAX_HEAD_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Serialises a request head. Names are lower-case and values are byte strings (validated
 * where they came from: the client's headers by the server, config values at load), so they
 * are written as they are; Host goes first, Content-Length is the replayed body's (header ops
 * may not set framing headers, see the config schema).
 */
export function requestHead(
  method: string,
  path: string,
  options: {
    /** The URL's authority, unless a header op set `host`. */
    host: string;
    headers: Record<string, string>;
    /** The body's length; null for none. */
    bodyLength: number | null;
    /** False adds `Connection: close`. */
    keepAlive: boolean;
  },
): string {
  const { host, headers, bodyLength, keepAlive } = options;
  // A configured Host (a header op) replaces the URL's authority rather than adding a second.
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${headers["host"] ?? host}\r\n`;
  for (const name in headers) if (name !== "host") head += `${name}: ${headers[name]}\r\n`;
  if (bodyLength !== null) head += `content-length: ${bodyLength}\r\n`;
  else if (method === "POST" || method === "PUT" || method === "PATCH") {
    head += "content-length: 0\r\n";
  }
  if (!keepAlive) head += "connection: close\r\n";
  return head + "\r\n";
}

/**
 * Encodes a head as Latin-1, one byte per character (header values are byte strings, and a
 * UTF-8 encoding would change any byte above 0x7f), followed by `body` when given: one buffer,
 * so head and body go out in one write. Plain ASCII, the usual case, takes the native
 * encoder, writing straight into that buffer; its counts tell when a character needs the
 * Latin-1 path.
 */
export function encodeHead(head: string, body?: Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(head.length + (body?.byteLength ?? 0));
  const { read, written } = encoder.encodeInto(head, bytes.subarray(0, head.length));
  if (read !== head.length || written !== head.length) {
    for (let i = 0; i < head.length; i++) {
      const code = head.charCodeAt(i);
      if (code > 0xff) throw new TypeError("a request header is not a byte string");
      bytes[i] = code;
    }
  }
  if (body) bytes.set(body, head.length);
  return bytes;
}

/**
 * Where the head that starts at `buf[start]` ends within `buf[start, end)`: the index just past
 * its blank line, or -1 when it is not complete yet. `from` is where scanning resumes: bytes
 * before it were scanned by an earlier call (each LF is checked against the byte before it,
 * so nothing needs a second look).
 *
 * Strict, as llhttp is: every line ends with CRLF. A bare LF is refused (RFC 9112 §2.2 lets a
 * recipient accept one, but a parser that does not reads a different message: a bare LF can
 * hide a Content-Length inside what it takes for one field line). A CR not followed by LF
 * stays inside its line, where {@linkcode parseResponseHead} refuses it. The check costs one
 * comparison per LF, in a loop that already visits every byte.
 *
 * `buf[start]` must not be an LF: empty lines before the status line are the caller's (see
 * {@linkcode skipEmptyLines}).
 */
export function findHeadEnd(buf: Uint8Array, start: number, end: number, from = start): number {
  for (let i = from; i < end; i++) {
    if (buf[i] !== 10) continue;
    if (i === start || buf[i - 1] !== 13) {
      throw new UpstreamProtocolError("bare LF in the response head");
    }
    // CRLF CRLF: the LF two bytes back was itself checked to follow a CR.
    if (i - 2 > start && buf[i - 2] === 10) return i + 1;
  }
  return -1;
}

/**
 * Skips the empty lines (CRLF) before a status line, as llhttp does: some servers send one
 * after an interim answer (aiohttp after `100 Continue`). Returns the index of the first byte
 * past them: the status line's first byte, `end`, or a CR at `end - 1` whose LF has not
 * arrived. A bare LF or a CR followed by anything but LF is refused. The caller bounds how
 * many bytes it skips.
 */
export function skipEmptyLines(buf: Uint8Array, start: number, end: number): number {
  let at = start;
  while (at < end) {
    const byte = buf[at];
    if (byte !== 13) {
      if (byte === 10) throw new UpstreamProtocolError("bare LF before the status line");
      return at;
    }
    if (at + 1 === end) return at;
    if (buf[at + 1] !== 10) throw new UpstreamProtocolError("bare CR before the status line");
    at += 2;
  }
  return at;
}

/** A parsed response head. */
export interface ResponseHead {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minorVersion: number;
  readonly status: number;
  readonly statusText: string;
  /** Field lines in order: lower-case name, value, name, value, … */
  readonly fields: string[];
}

/**
 * Decodes head bytes one byte per character (Latin-1), as header values are byte strings. An
 * all-ASCII head (the usual case) takes the native decoder, three times as fast.
 */
export function latin1(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return decoder.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return text;
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: (.*))?$/;
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses a response head, its final blank line included or not; throws on anything malformed.
 * Lines end with CRLF only: a bare LF or CR is left inside a line, where the status line,
 * field name and field value checks refuse it.
 */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split("\r\n");
  const statusLine = lines[0]!;
  const match = STATUS_LINE.exec(statusLine);
  if (!match) {
    throw new UpstreamProtocolError(
      `malformed status line ${JSON.stringify(statusLine.slice(0, 64))}`,
    );
  }
  const statusText = match[3] ?? "";
  // What would make the client's response invalid must fail here, as a protocol error of the
  // upstream (retried, counted), not later while the response is built.
  if (hasControlCharacter(statusText)) {
    throw new UpstreamProtocolError("control character in the reason phrase");
  }
  const fields: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === "") continue; // the blank line that ends the head
    // Obsolete line folding (a line starting with whitespace) is refused, as §5.2 allows.
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!FIELD_NAME.test(name)) {
      throw new UpstreamProtocolError(
        `malformed header line ${JSON.stringify(line.slice(0, 64))}`,
      );
    }
    const value = trimOws(line, colon + 1);
    if (hasControlCharacter(value)) {
      throw new UpstreamProtocolError(`control character in the value of header "${name}"`);
    }
    fields.push(name.toLowerCase(), value);
  }
  return { minorVersion: Number(match[1]), status: Number(match[2]), statusText, fields };
}

/** A character other than tab below 0x20, or DEL: not allowed in a field value (§5.5). */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 32 && code !== 9) || code === 127) return true;
  }
  return false;
}

/**
 * `line` from `start`, without the spaces and tabs around the value (RFC 9112 §5.1). Not
 * `trim()`: that also strips U+00A0, which is the byte 0xA0 of a value decoded as Latin-1.
 */
function trimOws(line: string, start: number): string {
  let end = line.length;
  while (start < end && isOws(line.charCodeAt(start))) start++;
  while (end > start && isOws(line.charCodeAt(end - 1))) end--;
  return line.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * How a response body is delimited (RFC 9112 §6.3). `discard`: the status has no content, but
 * the upstream declared some (or left its end to the close): nothing is read, and the
 * connection closes after the head, so an unbounded body costs nothing and no byte of it can
 * be taken for the next response.
 */
export type Framing =
  | { readonly kind: "none" }
  | { readonly kind: "discard" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" }
  | { readonly kind: "close" };

const NO_BODY: Framing = { kind: "none" };
const DISCARD: Framing = { kind: "discard" };
const CHUNKED: Framing = { kind: "chunked" };
const UNTIL_CLOSE: Framing = { kind: "close" };
const DIGITS = /^\d+$/;

/**
 * The framing of a final (non-1xx) response to `method`. Throws on an invalid length.
 *
 * A 205 has no content (RFC 9110 §15.3.6) and a 204 no Content-Length (§8.6): unless framed
 * empty, what such an answer declares is a misbehaving upstream's body, discarded unread.
 * HEAD and 304 answers may declare the length of a representation they do not carry, so
 * theirs is ignored.
 */
export function responseFraming(method: string, head: ResponseHead): Framing {
  const { status } = head;
  if (method === "HEAD" || status === 304 || status < 200) return NO_BODY;
  const framing = declaredFraming(head);
  if (status === 204) {
    // No framing headers at all is the usual 204 (it ends with its head, unlike a 205).
    const unframed = framing.kind === "close" && !hasField(head, "transfer-encoding");
    return unframed || isEmpty(framing) ? NO_BODY : DISCARD;
  }
  if (status === 205) return isEmpty(framing) ? NO_BODY : DISCARD;
  return framing;
}

function hasField(head: ResponseHead, name: string): boolean {
  for (let i = 0; i < head.fields.length; i += 2) if (head.fields[i] === name) return true;
  return false;
}

function isEmpty(framing: Framing): boolean {
  return framing.kind === "length" && framing.length === 0;
}

/** The framing the head's Transfer-Encoding and Content-Length declare. */
function declaredFraming(head: ResponseHead): Framing {
  const { fields } = head;
  let transferEncoding: string | undefined;
  let contentLength: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name === "transfer-encoding") {
      transferEncoding = transferEncoding === undefined
        ? fields[i + 1]!
        : `${transferEncoding}, ${fields[i + 1]}`;
    } else if (name === "content-length") {
      const value = fields[i + 1]!;
      // Repeated or listed values must all agree (§6.3 item 5).
      for (const part of value.split(",")) {
        const length = part.trim();
        if (!DIGITS.test(length) || (contentLength !== undefined && contentLength !== length)) {
          throw new UpstreamProtocolError(`invalid content-length ${JSON.stringify(value)}`);
        }
        contentLength = length;
      }
    }
  }
  if (transferEncoding !== undefined && contentLength !== undefined) {
    // Either may be a lie, and passing the message on would hand the client a Content-Length
    // that does not match the body: refused, as Node's parser does (§6.1 allows it).
    throw new UpstreamProtocolError("response has both Transfer-Encoding and Content-Length");
  }
  if (transferEncoding !== undefined) {
    // A body whose last coding is not chunked runs to the connection's close.
    const codings = transferEncoding.toLowerCase().split(",");
    return codings[codings.length - 1]!.trim() === "chunked" ? CHUNKED : UNTIL_CLOSE;
  }
  if (contentLength !== undefined) {
    const length = Number(contentLength);
    if (!Number.isSafeInteger(length)) {
      throw new UpstreamProtocolError(`invalid content-length ${contentLength}`);
    }
    return { kind: "length", length };
  }
  return UNTIL_CLOSE;
}

/**
 * Whether the connection may carry another request after this response: HTTP/1.1 without
 * `Connection: close`, and a body not delimited by the close.
 */
export function reusable(head: ResponseHead, framing: Framing): boolean {
  if (head.minorVersion === 0 || framing.kind === "close" || framing.kind === "discard") {
    return false;
  }
  const { fields } = head;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === "connection" && /(?:^|,)\s*close\s*(?:,|$)/i.test(fields[i + 1]!)) {
      return false;
    }
  }
  return true;
}
