/**
 * The request body as the proxy reads it: the bytes (read once, bounded); the top-level members
 * something needs (the model for routing, a client key's model list or a model rewrite;
 * `stream` and `stream_options` for a chat stream's usage), each found in the bytes and parsed
 * alone, once; and rewrites of one member that touch no other byte.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** What {@linkcode RequestBody.member} gives for a member the body does not have. */
export const ABSENT: unique symbol = Symbol("absent");
/** What {@linkcode RequestBody.member} gives for a member whose value is not standard JSON. */
export const UNREADABLE: unique symbol = Symbol("unreadable");

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/**
 * A request body read whole, with what the proxy learns from it computed once. Only the top
 * level of a JSON object body is read, member by member as asked for: nested values (a
 * 100k-token prompt's messages) are skipped by their brackets and quotes, never decoded or
 * parsed, so they are not validated either; a body broken inside them is the upstream's to
 * refuse, as it would be without the proxy.
 */
export class RequestBody {
  #bytes: Uint8Array<ArrayBuffer> | null;
  /** The value of each top-level member read so far ({@linkcode ABSENT} for none), by name. */
  #members: Map<string, unknown> | undefined;
  /** Where the members of {@linkcode READ} are in the bytes; null: not a JSON object. */
  #layout: Layout | null | undefined;
  /** Members of {@linkcode READ} also written in another spelling (see `topLevelMembers`). */
  #ambiguous = new Set<string>();
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
   * for): the members read stay valid, the byte positions do not.
   */
  replace(bytes: Uint8Array<ArrayBuffer>): void {
    this.#bytes = bytes;
    this.#layout = undefined;
    this.#ambiguous = new Set();
    this.#variants = undefined;
  }

  /** Whether there is a body with at least one byte. */
  get present(): boolean {
    return this.#bytes !== null && this.#bytes.byteLength > 0;
  }

  /** The `model` the body names: a string member of a JSON object body, else undefined. */
  model(): string | undefined {
    const model = this.member("model");
    return typeof model === "string" ? model : undefined;
  }

  /** The model, when it has been read already (never reads: for the access log). */
  parsedModel(): string | undefined {
    const model = this.#members?.get("model");
    return typeof model === "string" ? model : undefined;
  }

  /**
   * The value of the top-level member `name` of a JSON object body: {@linkcode ABSENT} when
   * there is none, or when the body is not an object whose top level reads as JSON (not JSON,
   * cut short, an array); {@linkcode UNREADABLE} when its value is not standard JSON. Only
   * that member's bytes are parsed, so a body that `JSON.parse` would refuse for a value
   * elsewhere (a `NaN`, which Python's reader takes) is still read as the upstream reads it.
   * Duplicates: the last one, as JSON readers keep. Read once per name.
   */
  member(name: string): unknown {
    const members = this.#members ??= new Map();
    if (members.has(name)) return members.get(name);
    const value = this.#read(name);
    members.set(name, value);
    return value;
  }

  #read(name: string): unknown {
    const bytes = this.#bytes;
    const last = this.#spansOf(name)?.at(-1);
    if (!bytes || !last) return ABSENT;
    try {
      return JSON.parse(decoder.decode(bytes.subarray(last[0], last[1])));
    } catch {
      return UNREADABLE;
    }
  }

  /**
   * A member the proxy reads (`model`, `stream`, `stream_options`) that the body also writes in
   * another spelling that some upstreams take for it (`"Model"`; Go's JSON reader, Ollama's,
   * matches member names without regard to case), else undefined. Such a body could name one
   * model to the proxy and another to the upstream.
   */
  ambiguousMember(): string | undefined {
    this.#spansOf(READ[0]!);
    return this.#ambiguous.values().next().value;
  }

  /**
   * The bytes with every top-level `name` member's value replaced by `json` (a JSON text), or
   * the member added first when there is none; every other byte is the client's. A body that
   * is not a JSON object is returned as it is.
   */
  withMember(name: string, json: string): Uint8Array<ArrayBuffer> | null {
    const bytes = this.#bytes;
    const spans = this.#spansOf(name);
    return bytes && spans ? withMemberValue(bytes, spans, name, json) : bytes;
  }

  /**
   * The spans of the member `name` (empty when absent), or null when the body is not a JSON
   * object. The members the proxy reads are found together, in one walk of the top level.
   */
  #spansOf(name: string): readonly Span[] | null {
    const bytes = this.#bytes;
    if (!bytes) return null;
    let layout: Layout | null;
    if (READ.includes(name)) {
      if (this.#layout === undefined) {
        this.#layout = topLevelMembers(bytes, READ, this.#ambiguous);
      }
      layout = this.#layout;
    } else layout = topLevelMembers(bytes, [name]);
    return layout && (layout.get(name) ?? []);
  }

  /**
   * The bytes with `model` as the body's model: every top-level `model` string value replaced
   * (JSON keeps the last of duplicate members; every one is replaced, so no reader sees
   * another), or a `model` member added first when there is none. Every other byte is the
   * client's. A body that is not a JSON object is returned as it is.
   */
  withModel(model: string): Uint8Array<ArrayBuffer> | null {
    const bytes = this.#bytes;
    if (!bytes || this.model() === model) return bytes;
    const cached = this.#variants?.get(model);
    if (cached) return cached;
    const spans = this.#spansOf("model")?.filter(([start]) => bytes[start] === QUOTE);
    if (!spans) return bytes; // not a JSON object
    const rewritten = withMemberValue(bytes, spans, "model", JSON.stringify(model));
    // Bounded: a request tries few models (its group's upstreams, its fallbacks).
    (this.#variants ??= new Map()).set(model, rewritten);
    return rewritten;
  }
}

/** A byte range [start, end) of a JSON value, quotes included. */
export type Span = readonly [start: number, end: number];

/** The members {@linkcode RequestBody} reads, found together in one walk of a body. */
const READ: readonly string[] = ["model", "stream", "stream_options"];

/** Where members are: the byte ranges of each one's values, in order (duplicates kept). */
export type Layout = Map<string, Span[]>;

/**
 * The byte ranges of the values of the members of the top-level object of `bytes` whose names
 * are among `names` (written raw, or with characters escaped); null when `bytes` is not an
 * object whose top level reads as JSON to its closing brace (a trailing comma, garbage between
 * members, a body cut short, an array). Nested values are skipped by their brackets, and
 * strings with a native search for the next quote, so a large prompt costs a few calls, not
 * a loop over its bytes. Names that fold to one of `names` the way Go's reader folds them (case,
 * and `ſ` for `s`, `K` for `k`) without being it go to `ambiguous`.
 */
export function topLevelMembers(
  bytes: Uint8Array,
  names: readonly string[],
  ambiguous?: Set<string>,
): Layout | null {
  const brace = objectStart(bytes);
  if (brace < 0) return null;
  const quotes = quoteFinder(bytes);
  const layout: Layout = new Map();
  let i = skipBlanks(bytes, brace + 1);
  if (bytes[i] !== CLOSE_BRACE) {
    for (;;) {
      if (bytes[i] !== QUOTE) return null;
      const keyEnd = stringEnd(bytes, i, quotes);
      const match = wantedName(bytes, i, keyEnd, names);
      const name = match?.exact ? match.name : undefined;
      if (match && !match.exact) ambiguous?.add(match.name);
      let j = skipBlanks(bytes, keyEnd);
      if (bytes[j] !== COLON) return null;
      j = skipBlanks(bytes, j + 1);
      const end = valueEnd(bytes, j, quotes);
      if (end === j) return null;
      if (name !== undefined) {
        const spans = layout.get(name);
        if (spans) spans.push([j, end]);
        else layout.set(name, [[j, end]]);
      }
      i = skipBlanks(bytes, end);
      if (bytes[i] !== COMMA) break;
      i = skipBlanks(bytes, i + 1);
    }
  }
  if (bytes[i] !== CLOSE_BRACE || skipBlanks(bytes, i + 1) !== bytes.byteLength) return null;
  return layout;
}

/** Which of the names asked for a key is: exactly, or only when folded. */
interface NameMatch {
  readonly name: string;
  readonly exact: boolean;
}

/**
 * The one of `names` (lower-case ASCII without quotes or backslashes) that the key token
 * bytes[start, end) is, written raw or with escapes; or the one it folds to.
 */
function wantedName(
  bytes: Uint8Array,
  start: number,
  end: number,
  names: readonly string[],
): NameMatch | undefined {
  const from = start + 1;
  const length = end - 1 - from;
  let plain = true; // ASCII without escapes: compared as bytes, never decoded
  for (let k = from; k < end - 1 && plain; k++) plain = bytes[k]! < 0x80 && bytes[k] !== BACKSLASH;
  if (plain) {
    let folded: string | undefined;
    for (const name of names) {
      if (name.length !== length) continue;
      let same = true;
      let sameFolded = true;
      for (let k = 0; k < length && sameFolded; k++) {
        const b = bytes[from + k]!;
        const c = name.charCodeAt(k);
        same &&= b === c;
        sameFolded = (b >= 0x41 && b <= 0x5a ? b + 0x20 : b) === c;
      }
      if (same) return { name, exact: true };
      if (sameFolded) folded = name;
    }
    return folded === undefined ? undefined : { name: folded, exact: false };
  }
  let decoded: unknown;
  try {
    decoded = JSON.parse(decoder.decode(bytes.subarray(start, end)));
  } catch {
    return undefined;
  }
  if (typeof decoded !== "string") return undefined;
  // `"mod\u0065l"` is `model` to every JSON reader.
  const exact = names.find((name) => name === decoded);
  if (exact) return { name: exact, exact: true };
  const folded = decoded.toLowerCase().replaceAll("\u017f", "s");
  const name = names.find((name) => name === folded);
  return name ? { name, exact: false } : undefined;
}

/** The index after the JSON value starting at `start` (`start` itself when none starts there). */
function valueEnd(bytes: Uint8Array, start: number, quotes: QuoteFinder): number {
  const first = bytes[start];
  if (first === QUOTE) return stringEnd(bytes, start, quotes);
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    let depth = 0;
    let i = start;
    while (i < bytes.byteLength) {
      const c = bytes[i]!;
      if (c === QUOTE) {
        i = stringEnd(bytes, i, quotes);
        continue;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) return i + 1;
      i++;
    }
    return i;
  }
  // A number or a literal (true, false, null; NaN and the like where a reader allows them).
  let i = start;
  while (i < bytes.byteLength && !ENDS_SCALAR.has(bytes[i]!)) i++;
  return i;
}

/** The bytes that end a number or a literal: a separator, a closing bracket, a blank. */
const ENDS_SCALAR: ReadonlySet<number> = new Set([
  COMMA,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  0x20,
  0x0a,
  0x0d,
  0x09,
]);

/**
 * `bytes` with the values at `spans` (a member `name`'s) replaced by `json`, or with the member
 * added first when `spans` is empty. Every other byte is kept.
 */
function withMemberValue(
  bytes: Uint8Array,
  spans: readonly Span[],
  name: string,
  json: string,
): Uint8Array<ArrayBuffer> {
  const value = encoder.encode(json);
  const parts: Uint8Array[] = [];
  if (spans.length === 0) {
    const brace = objectStart(bytes);
    const empty = bytes[skipBlanks(bytes, brace + 1)] === CLOSE_BRACE;
    parts.push(
      bytes.subarray(0, brace + 1),
      encoder.encode(`${JSON.stringify(name)}:`),
      value,
      ...(empty ? [] : [encoder.encode(",")]),
      bytes.subarray(brace + 1),
    );
  } else {
    let at = 0;
    for (const [start, end] of spans) {
      parts.push(bytes.subarray(at, start), value);
      at = end;
    }
    parts.push(bytes.subarray(at));
  }
  return concatBytes(parts);
}

/**
 * The index of the `{` that opens a JSON object body, after an optional UTF-8 byte order mark
 * (which JSON readers such as Python's skip) and blanks; -1 when the body is not an object.
 */
function objectStart(bytes: Uint8Array): number {
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const brace = skipBlanks(bytes, bom);
  return bytes[brace] === OPEN_BRACE ? brace : -1;
}

/** The index after the closing quote of the string starting at `start` (its opening quote). */
function stringEnd(bytes: Uint8Array, start: number, quotes: QuoteFinder): number {
  let from = start + 1;
  for (;;) {
    const quote = quotes(from);
    if (quote < 0) return bytes.byteLength;
    let k = quote - 1;
    while (bytes[k] === BACKSLASH) k--;
    // An even number of backslashes before it: the quote is not escaped.
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index of the first `"` at or after a position in the body, or -1. */
type QuoteFinder = (from: number) => number;

/** Bodies shorter than this are searched with `indexOf`: a word view would cost more. */
const WORD_SEARCH_MIN_BYTES = 1024;

/**
 * The quote search over `bytes`. A long body is searched four bytes at a time: each aligned
 * word is XORed with four quotes, and a word holding a zero byte — a quote — is found by the
 * exact bit test `(v - 0x01010101) & ~v & 0x80808080`. `Uint8Array.prototype.indexOf` looks
 * at one byte at a time (about 3 ns a byte here): a 400 KB prompt took 126 µs to search that
 * way and takes 53 µs this way. The test does not depend on the byte order.
 */
function quoteFinder(bytes: Uint8Array): QuoteFinder {
  const length = bytes.byteLength;
  if (length < WORD_SEARCH_MIN_BYTES) return (from) => bytes.indexOf(QUOTE, from);
  // words[w] holds bytes[skew + 4w .. skew + 4w + 3].
  const skew = (4 - (bytes.byteOffset & 3)) & 3;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset + skew, (length - skew) >> 2);
  const wordsEnd = skew + words.length * 4;
  return (from) => {
    let i = from;
    // Up to the first whole word at or after `from`, byte by byte.
    while (i < length && (i < skew || (i - skew) & 3)) {
      if (bytes[i] === QUOTE) return i;
      i++;
    }
    for (let w = (i - skew) >> 2; w < words.length; w++) {
      const v = words[w]! ^ 0x22222222;
      if (((v - 0x01010101) & ~v & 0x80808080) !== 0) {
        const at = skew + w * 4;
        return bytes.indexOf(QUOTE, at);
      }
    }
    return bytes.indexOf(QUOTE, Math.max(i, wordsEnd));
  };
}

/** The index of the first byte at or after `i` that is not JSON whitespace. */
function skipBlanks(bytes: Uint8Array, i: number): number {
  while (
    i < bytes.byteLength &&
    (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)
  ) i++;
  return i;
}
