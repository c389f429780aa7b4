/**
 * Token usage read from responses as they pass, without holding the stream back:
 * - JSON bodies: a bounded copy (up to {@linkcode MAX_JSON_BYTES}) is parsed at the end;
 * - SSE: only chunks that contain `"usage":` are decoded, and only their `data:` lines with a
 *   usage object are parsed (OpenAI sends it in the final chunk with `include_usage`).
 * Field names of OpenAI (`prompt_tokens`/`completion_tokens`) and Anthropic
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

const USAGE_BYTES = new TextEncoder().encode('"usage":');

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
 * Usage from a whole JSON body. Only the `"usage"` object is parsed (found from the end, where
 * OpenAI puts it), not the whole document; falls back to a full parse when that fails.
 */
export function usageFromJsonBytes(bytes: Uint8Array): TokenUsage | undefined {
  if (bytes.byteLength === 0 || bytes.byteLength > MAX_JSON_BYTES) return undefined;
  const text = decoder.decode(bytes);
  const at = text.lastIndexOf('"usage":');
  if (at < 0) return undefined;
  const open = text.indexOf("{", at);
  let depth = 0;
  for (let i = open; open >= 0 && i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return readUsage({ usage: JSON.parse(text.slice(open, i + 1)) });
      } catch {
        break;
      }
    } else if (c === 0x22) {
      // Skip a string, escapes included, so braces inside it do not count.
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) {
        if (text.charCodeAt(i) === 0x5c) i++;
      }
    }
  }
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
      try {
        return readUsage(JSON.parse(new TextDecoder().decode(whole)));
      } catch {
        return undefined;
      }
    },
  };
}

function sseSniffer(): UsageSniffer {
  const decoder = new TextDecoder();
  let usage: Partial<TokenUsage> | undefined;
  // The unfinished last line of the previous chunk (usually empty: events end with "\n\n").
  let carry = "";
  return {
    chunk(bytes) {
      if (carry === "" && indexOf(bytes, USAGE_BYTES) < 0) {
        // Fast path: nothing to parse; remember only an unfinished tail.
        const newline = bytes.lastIndexOf(10);
        if (newline < bytes.length - 1) carry = decoder.decode(bytes.subarray(newline + 1));
        return;
      }
      const text = carry + decoder.decode(bytes);
      const newline = text.lastIndexOf("\n");
      carry = text.slice(newline + 1);
      if (carry.length > 64 * 1024) carry = ""; // bounded: no SSE line is this long
      for (const line of text.slice(0, Math.max(newline, 0)).split("\n")) {
        if (!line.startsWith("data:") || !line.includes('"usage":{')) continue;
        try {
          usage = merge(usage, readPartialUsage(JSON.parse(line.slice(5))));
        } catch { /* not JSON: ignore */ }
      }
    },
    result() {
      if (carry.startsWith("data:") && carry.includes('"usage":{')) {
        try {
          usage = merge(usage, readPartialUsage(JSON.parse(carry.slice(5))));
        } catch { /* not JSON: ignore */ }
      }
      return usage && { prompt: usage.prompt ?? 0, completion: usage.completion ?? 0 };
    },
  };
}

function readUsage(value: unknown): TokenUsage | undefined {
  const usage = readPartialUsage(value);
  return usage && { prompt: usage.prompt ?? 0, completion: usage.completion ?? 0 };
}

/**
 * The counts an event reports, each only when present. Anthropic streams report input tokens
 * in `message_start` (under `message.usage`) and the final output count in `message_delta`.
 */
function readPartialUsage(value: unknown): Partial<TokenUsage> | undefined {
  const v = value as { usage?: unknown; message?: { usage?: unknown } } | null;
  const usage = (v?.usage ?? v?.message?.usage) as Record<string, unknown> | null | undefined;
  if (!usage || typeof usage !== "object") return undefined;
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

/** Index of `needle` in `haystack`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  const first = needle[0]!;
  const last = haystack.length - needle.length;
  outer: for (
    let i = haystack.indexOf(first);
    i >= 0 && i <= last;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
