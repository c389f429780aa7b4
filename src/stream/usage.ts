/**
 * Token usage read from responses as they pass, without holding the stream back:
 * - JSON bodies: a bounded copy (up to {@linkcode MAX_JSON_BYTES}) is parsed at the end;
 * - SSE: only events with a `"usage"` key whose value is an object are parsed, and of those only
 *   the usage object. Usage is in the final chunk with OpenAI's `include_usage` (`"usage":null`
 *   on the others), under `response.usage` in the Responses API's `response.completed`, and in
 *   Anthropic's `message_start` (`message.usage`) and `message_delta` (`usage`).
 * The key is found with any whitespace JSON allows around its colon (compact, Python's
 * `json.dumps` spacing, pretty-printed across several `data:` lines). Field names of OpenAI
 * (`prompt_tokens`/`completion_tokens`) and Anthropic and the Responses API
 * (`input_tokens`/`output_tokens`) are understood.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";

/** Tokens reported by an upstream. */
export interface TokenUsage {
  prompt: number;
  completion: number;
}

/** Bodies larger than this are not parsed for usage (bounded sniffing). */
export const MAX_JSON_BYTES = 1 << 20;

/** Longest SSE event (in characters) kept while it arrives in pieces; a longer one is skipped. */
export const MAX_EVENT_CHARS = MAX_JSON_BYTES;

/** Collects usage from one response body; feed every chunk, then call `result()`. */
export interface UsageSniffer {
  chunk(bytes: Uint8Array): void;
  result(): TokenUsage | undefined;
}

/** A sniffer for a response of `contentType`, or undefined when it carries no usage. */
export function usageSniffer(contentType: string): UsageSniffer | undefined {
  if (contentType.startsWith("text/event-stream")) return sseSniffer();
  if (contentType.startsWith("application/json")) return jsonSniffer();
  return undefined;
}

const decoder = new TextDecoder();

/**
 * Usage from a whole JSON body. Only the last `"usage"` object is parsed (OpenAI, Anthropic and
 * the Responses API put it after the content), not the whole document; falls back to a full
 * parse when there is none.
 */
export function usageFromJsonBytes(bytes: Uint8Array): TokenUsage | undefined {
  if (bytes.byteLength === 0 || bytes.byteLength > MAX_JSON_BYTES) return undefined;
  const text = decoder.decode(bytes);
  if (!text.includes(KEY)) return undefined;
  const usage = usageIn(text);
  if (usage) return complete(usage);
  try {
    return readUsage(JSON.parse(text));
  } catch {
    return undefined;
  }
}

function jsonSniffer(): UsageSniffer {
  let chunks: Uint8Array[] | undefined = [];
  let size = 0;
  return {
    chunk(bytes) {
      if (!chunks) return;
      size += bytes.byteLength;
      if (size > MAX_JSON_BYTES) chunks = undefined;
      else chunks.push(bytes);
    },
    result() {
      if (!chunks || size === 0) return undefined;
      const whole = concatBytes(chunks);
      chunks = undefined;
      return usageFromJsonBytes(whole);
    },
  };
}

/** Options of the SSE decoder: a character split across chunks is decoded whole. */
const STREAM: TextDecodeOptions = { stream: true };

/**
 * The SSE sniffer. Fast path (nearly every chunk): nothing of an earlier event is pending, the
 * chunk ends on an event boundary, and no `"usage"` key in it can hold an object (none at all, or
 * `"usage":null`): one decode and one `indexOf`, nothing kept. Otherwise the chunk's complete
 * events are read and an unfinished one is kept until its end arrives, so a key or a usage
 * object split across network chunks is still found.
 */
function sseSniffer(): UsageSniffer {
  const decoder = new TextDecoder();
  let usage: Partial<TokenUsage> | undefined;
  /** The unfinished event: text after the last blank line, line ends turned into LF. */
  let pending = "";
  /** A CR ended the last chunk: it may be the first half of a CRLF. */
  let heldCr = false;
  /** The rest of an event longer than {@linkcode MAX_EVENT_CHARS} is being skipped. */
  let skipping = false;
  /** With `skipping`: the skipped text ended with LF (half of a blank line). */
  let skippedLf = false;

  const events = (text: string) => {
    if (heldCr) {
      text = "\r" + text;
      heldCr = false;
    }
    if (text.endsWith("\r") && !text.endsWith("\r\r")) {
      heldCr = true;
      text = text.slice(0, -1);
    }
    if (text.includes("\r")) text = text.replace(CR_LINE_END, "\n");
    if (skipping) {
      const lead = skippedLf ? 1 : 0;
      const boundary = (lead ? "\n" + text : text).indexOf("\n\n");
      if (boundary < 0) {
        if (text !== "") skippedLf = text.endsWith("\n");
        return;
      }
      skipping = false;
      text = text.slice(boundary + 2 - lead);
    }
    // Only the new text is searched for the last boundary (plus the LF pending may end with).
    const lead = pending.endsWith("\n") ? 1 : 0;
    const boundary = (lead ? "\n" + text : text).lastIndexOf("\n\n");
    if (boundary < 0) {
      pending += text;
    } else {
      const end = boundary + 2 - lead;
      const done = pending + text.slice(0, end);
      pending = text.slice(end);
      if (done.includes(KEY)) {
        for (const event of done.split("\n\n")) usage = merge(usage, usageInEvent(event));
      }
    }
    if (pending.length > MAX_EVENT_CHARS) {
      // Bounded: an event this long is dropped whole, up to its end.
      skipping = true;
      skippedLf = pending.endsWith("\n");
      pending = "";
    }
  };

  return {
    chunk(bytes) {
      const text = decoder.decode(bytes, STREAM);
      if (
        pending === "" && !heldCr && !skipping && endsEvent(text) && !mayHoldUsage(text)
      ) return;
      events(text);
    },
    result() {
      if (!skipping) usage = merge(usage, usageInEvent(pending));
      pending = "";
      return usage && complete(usage);
    },
  };
}

const KEY = '"usage"';
const CR_LINE_END = /\r\n?/g;

/** Whether `text` ends on an SSE event boundary (a blank line, in any line-end style). */
function endsEvent(text: string): boolean {
  return text.endsWith("\n\n") || text.endsWith("\r\n\r\n") || text.endsWith("\r\r");
}

/**
 * Whether a `"usage"` in `text` may be followed by an object: false only when every one is
 * followed by something else (`null`, or not a colon: a string value). Whitespace (line ends
 * too: JSON spread over `data:` lines) may come around the colon; the text's end counts as
 * maybe. One regular expression: its search for the literal is several times faster than a loop
 * of `indexOf` over a chunk of a few kB, and nearly every SSE chunk passes through here.
 */
function mayHoldUsage(text: string): boolean {
  return MAY_HOLD_USAGE.test(text);
}
const MAY_HOLD_USAGE = /"usage"[ \t\r\n]*(?:$|:[ \t\r\n]*(?:\{|$))/;

/** The usage reported by one SSE event (line ends already LF): its `data:` lines, joined. */
function usageInEvent(event: string): Partial<TokenUsage> | undefined {
  if (!event.includes(KEY)) return undefined;
  let data: string | undefined;
  for (const line of event.split("\n")) {
    if (!line.startsWith("data")) continue;
    let value: string;
    if (line.length === 4) value = "";
    else if (line.charCodeAt(4) !== COLON) continue; // another field, e.g. `datax:`
    else value = line.charCodeAt(5) === SPACE ? line.slice(6) : line.slice(5);
    data = data === undefined ? value : data + "\n" + value;
  }
  return data === undefined ? undefined : usageIn(data);
}

/**
 * The counts of the last `"usage"` key in a JSON text whose value is an object with counts.
 * Only that object is parsed. The key must be one: after `{` or `,` (whitespace aside) and
 * before `:` — inside a JSON string a quote is always escaped (`\"usage\"`), so content text
 * can never pass for the key.
 */
function usageIn(json: string): Partial<TokenUsage> | undefined {
  for (let at = json.lastIndexOf(KEY); at >= 0; at = at > 0 ? json.lastIndexOf(KEY, at - 1) : -1) {
    const before = json.charCodeAt(skipSpaceBack(json, at - 1));
    if (before !== OPEN && before !== COMMA) continue;
    let i = skipSpace(json, at + KEY.length);
    if (json.charCodeAt(i) !== COLON) continue;
    i = skipSpace(json, i + 1);
    if (json.charCodeAt(i) !== OPEN) continue;
    const end = objectEnd(json, i);
    if (end < 0) continue;
    try {
      const counts = countsOf(JSON.parse(json.slice(i, end)));
      if (counts) return counts;
    } catch { /* not JSON: look further */ }
  }
  return undefined;
}

const SPACE = 0x20, TAB = 0x09, LF = 0x0a, CR = 0x0d;
const COLON = 0x3a, COMMA = 0x2c, OPEN = 0x7b, CLOSE = 0x7d, QUOTE = 0x22, BACKSLASH = 0x5c;

/** The index of the first non-whitespace (JSON's SP, HTAB, LF, CR) at or after `i`. */
function skipSpace(text: string, i: number): number {
  for (let c = text.charCodeAt(i); c === SPACE || c === LF || c === CR || c === TAB;) {
    c = text.charCodeAt(++i);
  }
  return i;
}

/** The index of the last non-whitespace at or before `i` (-1 when none). */
function skipSpaceBack(text: string, i: number): number {
  for (let c = text.charCodeAt(i); c === SPACE || c === LF || c === CR || c === TAB;) {
    c = text.charCodeAt(--i);
  }
  return i;
}

/** The index just after the object that opens at `open` (strings skipped), or -1 if cut. */
function objectEnd(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === OPEN) depth++;
    else if (c === CLOSE) {
      if (--depth === 0) return i + 1;
    } else if (c === QUOTE) {
      // Skip a string, escapes included, so braces inside it do not count.
      for (i++; i < text.length && text.charCodeAt(i) !== QUOTE; i++) {
        if (text.charCodeAt(i) === BACKSLASH) i++;
      }
    }
  }
  return -1;
}

function readUsage(value: unknown): TokenUsage | undefined {
  const v = value as { usage?: unknown } | null;
  const counts = countsOf(v?.usage);
  return counts && complete(counts);
}

function complete(usage: Partial<TokenUsage>): TokenUsage {
  return { prompt: usage.prompt ?? 0, completion: usage.completion ?? 0 };
}

/** The counts a usage object reports, each only when present. */
function countsOf(value: unknown): Partial<TokenUsage> | undefined {
  if (!value || typeof value !== "object") return undefined;
  const usage = value as Record<string, unknown>;
  const prompt = usage.prompt_tokens ?? usage.input_tokens;
  const completion = usage.completion_tokens ?? usage.output_tokens;
  if (typeof prompt !== "number" && typeof completion !== "number") return undefined;
  return {
    ...(typeof prompt === "number" ? { prompt } : {}),
    ...(typeof completion === "number" ? { completion } : {}),
  };
}

/** Later events win field by field (streamed counts are cumulative). */
function merge(
  before: Partial<TokenUsage> | undefined,
  next: Partial<TokenUsage> | undefined,
): Partial<TokenUsage> | undefined {
  return next ? { ...before, ...next } : before;
}
