/**
 * The request body as the proxy reads it: the bytes (read once, bounded), decoded and parsed at
 * most once and only when something needs it (model routing, a client key's model list, usage
 * for a chat stream, a model rewrite), and rewritten to name another model without touching
 * any other byte.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** A request body read whole, with what the proxy learns from it computed once. */
export class RequestBody {
  #bytes: Uint8Array<ArrayBuffer> | null;
  #text: string | undefined;
  /** undefined: not parsed yet; null: not a JSON object. */
  #json: Record<string, unknown> | null | undefined;
  /** Byte ranges of the top-level `model` string values (computed for a rewrite). */
  #spans: readonly Span[] | undefined;
  /** The body with another model, per model asked for (retries reuse them). */
  #variants: Map<string, Uint8Array<ArrayBuffer>> | undefined;

  constructor(bytes: Uint8Array<ArrayBuffer> | null) {
    this.#bytes = bytes;
  }

  /** The bytes to send (the client's, unless {@linkcode replace}d). */
  get bytes(): Uint8Array<ArrayBuffer> | null {
    return this.#bytes;
  }

  /**
   * Replaces the bytes with an equivalent JSON document that has members added (usage asked
   * for): what was parsed stays valid, the byte positions do not.
   */
  replace(bytes: Uint8Array<ArrayBuffer>): void {
    this.#bytes = bytes;
    this.#text = undefined;
    this.#spans = undefined;
    this.#variants = undefined;
  }

  /** Whether there is a body with at least one byte. */
  get present(): boolean {
    return this.#bytes !== null && this.#bytes.byteLength > 0;
  }

  /** The body as text (UTF-8; invalid bytes become U+FFFD). */
  text(): string {
    return this.#text ??= this.#bytes ? decoder.decode(this.#bytes) : "";
  }

  /**
   * The body as a JSON object, or null: no body, not JSON, or JSON that is not an object.
   * Only a body whose first non-blank byte is `{` is decoded and parsed (uploads, forms and
   * other bodies are not), and only once.
   */
  json(): Record<string, unknown> | null {
    if (this.#json !== undefined) return this.#json;
    this.#json = null;
    const bytes = this.#bytes;
    if (!bytes || bytes[skipBlanks(bytes, 0)] !== OPEN_BRACE) return null;
    try {
      const parsed: unknown = JSON.parse(this.text());
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
        this.#json = parsed as Record<string, unknown>;
      }
    } catch { /* not JSON: passed on as it is */ }
    return this.#json;
  }

  /** The `model` the body names: a string member of a JSON object body, else undefined. */
  model(): string | undefined {
    const model = this.json()?.model;
    return typeof model === "string" ? model : undefined;
  }

  /** The model, when the body has been parsed already (never parses: for the access log). */
  parsedModel(): string | undefined {
    return this.#json === undefined ? undefined : this.model();
  }

  /**
   * The bytes with `model` as the body's model: every top-level `model` string value replaced
   * (JSON keeps the last of duplicate members; every one is replaced, so no reader sees
   * another), or a `model` member added first when there is none. Every other byte is the
   * client's. A body that is not a JSON object is returned as it is.
   */
  withModel(model: string): Uint8Array<ArrayBuffer> | null {
    const bytes = this.#bytes;
    if (!bytes || this.json() === null || this.model() === model) return bytes;
    const cached = this.#variants?.get(model);
    if (cached) return cached;
    this.#spans ??= topLevelStringMembers(bytes, "model");
    const value = encoder.encode(JSON.stringify(model));
    const parts: Uint8Array[] = [];
    if (this.#spans.length === 0) {
      const brace = skipBlanks(bytes, 0);
      const empty = bytes[skipBlanks(bytes, brace + 1)] === CLOSE_BRACE;
      parts.push(
        bytes.subarray(0, brace + 1),
        encoder.encode('"model":'),
        value,
        ...(empty ? [] : [encoder.encode(",")]),
        bytes.subarray(brace + 1),
      );
    } else {
      let at = 0;
      for (const [start, end] of this.#spans) {
        parts.push(bytes.subarray(at, start), value);
        at = end;
      }
      parts.push(bytes.subarray(at));
    }
    const rewritten = concatBytes(parts);
    // Bounded: a request tries few models (its group's upstreams, its fallbacks).
    (this.#variants ??= new Map()).set(model, rewritten);
    return rewritten;
  }
}

/** A byte range [start, end) of a JSON value, quotes included. */
export type Span = readonly [start: number, end: number];

/**
 * The byte ranges of the string values of the members named `name` of the top-level object of
 * `bytes`, a valid JSON document (it has been parsed). Strings are skipped with a native
 * search for the next quote, so a large prompt costs a few calls, not a loop over its bytes.
 */
export function topLevelStringMembers(bytes: Uint8Array, name: string): Span[] {
  const spans: Span[] = [];
  const wanted = encoder.encode(JSON.stringify(name));
  let depth = 0;
  let expectKey = false;
  let i = 0;
  const n = bytes.byteLength;
  while (i < n) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      const end = stringEnd(bytes, i);
      if (depth === 1 && expectKey) {
        expectKey = false;
        const isName = sameKey(bytes, i, end, wanted, name);
        let j = skipBlanks(bytes, end);
        if (bytes[j] === COLON) j = skipBlanks(bytes, j + 1);
        if (isName && bytes[j] === QUOTE) {
          const valueEnd = stringEnd(bytes, j);
          spans.push([j, valueEnd]);
          i = valueEnd;
        } else i = j;
        continue;
      }
      i = end;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
      if (depth === 1) expectKey = c === OPEN_BRACE;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
    else if (c === COMMA && depth === 1) expectKey = true;
    i++;
  }
  return spans;
}

/** Whether the key token bytes[start, end) is `name` (raw, or written with escapes). */
function sameKey(
  bytes: Uint8Array,
  start: number,
  end: number,
  wanted: Uint8Array,
  name: string,
): boolean {
  if (end - start === wanted.byteLength) {
    let same = true;
    for (let k = 0; k < wanted.byteLength && same; k++) same = bytes[start + k] === wanted[k];
    if (same) return true;
  }
  // `"mod\u0065l"` is `model` to every JSON reader: compare what it decodes to.
  if (bytes.subarray(start, end).indexOf(BACKSLASH) < 0) return false;
  try {
    return JSON.parse(decoder.decode(bytes.subarray(start, end))) === name;
  } catch {
    return false;
  }
}

/** The index after the closing quote of the string starting at `start` (its opening quote). */
function stringEnd(bytes: Uint8Array, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, from);
    if (quote < 0) return bytes.byteLength;
    let k = quote - 1;
    while (bytes[k] === BACKSLASH) k--;
    // An even number of backslashes before it: the quote is not escaped.
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index of the first byte at or after `i` that is not JSON whitespace. */
function skipBlanks(bytes: Uint8Array, i: number): number {
  while (
    i < bytes.byteLength &&
    (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)
  ) i++;
  return i;
}
