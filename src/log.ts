/**
 * A small structured logger: JSON lines (`--json`) or readable text, four levels, and
 * `child(fields)` for context. Every line passes through a redactor that replaces known
 * secrets (credentials from config, `${VAR}` values), so a secret cannot reach a log line
 * even by mistake.
 *
 * @module
 */
import { type Clock, systemClock, type Timer } from "./deps.ts";

/** Log levels, in increasing severity. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** Structured fields attached to a line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** The logger interface every module receives. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Whether a level is on, to skip building expensive fields. */
  enabled(level: LogLevel): boolean;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default "info" */
  level?: LogLevel;
  /** JSON lines instead of text. @default false */
  json?: boolean;
  /** Where lines go (each ends with "\n"). @default stderr */
  write?: (line: string) => void;
  /**
   * Strings that must never appear in output; replaced by `[REDACTED]`. A `Set` is read live,
   * so secrets added later (a config reload) are redacted from then on; any other iterable is
   * read once.
   */
  secrets?: Iterable<string>;
  /**
   * Wall-clock time for timestamps, epoch ms. Not the monotonic `Clock.now`: a log line's time
   * is a calendar date, read next to other systems' logs. @default Date.now
   */
  now?: () => number;
}

const encoder = new TextEncoder();

/** A line sink that batches writes; `flush()` writes what is pending at once. */
export interface BatchedWriter {
  write(line: string): void;
  /** Writes everything pending now, synchronously (exit paths). */
  flush(): void;
  /** Waits for the write in flight, then writes everything pending (a graceful stop). */
  drain(): Promise<void>;
  /** From now on lines are batched; until then each is written at once. */
  startBatching(): void;
}

/** Options of {@linkcode batchedStderr}. */
export interface BatchedStderrOptions {
  /** Longest a line waits, ms. @default 20 */
  flushMs?: number;
  /** Writes bytes, returning how many it wrote. @default Deno.stderr.writeSync */
  writeSync?: (bytes: Uint8Array) => number;
  /**
   * Writes a batch without blocking the event loop. @default Deno.stderr.write, unless only
   * `writeSync` is given: then batches are written with it.
   */
  write?: (bytes: Uint8Array) => Promise<number>;
  /**
   * Most characters held while a write is in flight (a slow log reader); past it lines are
   * dropped and counted rather than held without bound. @default 8 Mi
   */
  maxPendingChars?: number;
  /** Told how many lines were dropped, once the writes caught up again. */
  onDropped?: (count: number) => void;
  /** Schedules the flush timer. @default systemClock */
  clock?: Pick<Clock, "after">;
}

/** The batch buffer: a batch is flushed at 64 Ki characters, at most 3 bytes each. */
const REUSED_BUFFER_BYTES = 3 * 65_536 + 3 * 4_096;

/**
 * Batches lines to stderr: one write per `flushMs` (or per 64 KiB) instead of one per line,
 * so an access log at info level does not cost a system call per request. Batches are written
 * asynchronously, one at a time, so a slow reader of stderr (a full pipe, a busy journal) never
 * stalls the proxy's event loop: a synchronous write of a batch was measured at 37 µs typically
 * but 0.8–3.4 ms at times, in every request's path. Lines that come meanwhile wait for the
 * next batch, in order; past `maxPendingChars` they are dropped and counted. The timer is
 * unref'd; call `drain()` (or `flush()` where nothing can be awaited) before exiting. Lines
 * written before `startBatching()` (start-up) go out at once, synchronously, and arm no timer: a
 * proxy that has served nothing holds none (the runtime's first timer costs about 3 MiB of
 * resident memory).
 */
export function batchedStderr(options: BatchedStderrOptions = {}): BatchedWriter {
  const {
    flushMs = 20,
    writeSync = (bytes: Uint8Array) => Deno.stderr.writeSync(bytes),
    maxPendingChars = 8 * 1024 * 1024,
    onDropped,
    clock = systemClock,
  } = options;
  const write = options.write ??
    (options.writeSync ? undefined : (bytes: Uint8Array) => Deno.stderr.write(bytes));
  let pending: string[] = [];
  let size = 0;
  let batching = false;
  let timer: Timer | undefined;
  /** An asynchronous write is in flight (it reads from `buffer`). */
  let writing: Promise<void> | undefined;
  let dropped = 0;
  // Batches are encoded into one reused buffer (UTF-8 takes at most 3 bytes per UTF-16 unit):
  // no new buffer per flush for the collector to reclaim. A larger batch gets its own, and so
  // does one written while the buffer is still being written from.
  let buffer: Uint8Array | undefined;
  const takeBatch = (): Uint8Array | undefined => {
    timer?.cancel();
    timer = undefined;
    if (pending.length === 0) return undefined;
    const text = pending.join("");
    pending = [];
    size = 0;
    if (writing || text.length * 3 > REUSED_BUFFER_BYTES) return encoder.encode(text);
    buffer ??= new Uint8Array(REUSED_BUFFER_BYTES);
    return buffer.subarray(0, encoder.encodeInto(text, buffer).written);
  };
  const flush = () => {
    let bytes = takeBatch();
    while (bytes && bytes.byteLength > 0) bytes = bytes.subarray(writeSync(bytes));
  };
  const flushAsync = () => {
    if (!write) return flush();
    if (writing) {
      // The write in flight starts the next batch when it ends.
      timer?.cancel();
      timer = undefined;
      return;
    }
    let bytes = takeBatch();
    if (!bytes) return;
    writing = (async () => {
      try {
        while (bytes.byteLength > 0) bytes = bytes.subarray(await write(bytes));
      } catch {
        // stderr is gone: there is nowhere to say so.
      }
    })().finally(() => {
      writing = undefined;
      if (dropped > 0) {
        const count = dropped;
        dropped = 0;
        onDropped?.(count);
      }
      if (pending.length > 0) flushAsync();
    });
  };
  return {
    write(line) {
      if (writing && size + line.length > maxPendingChars) {
        dropped++;
        return;
      }
      pending.push(line);
      size += line.length;
      if (!batching) flush();
      else if (size >= 65_536) flushAsync();
      else if (timer === undefined) timer = clock.after(flushMs, flushAsync, { unref: true });
    },
    flush,
    async drain() {
      while (writing) await writing;
      flush();
    },
    startBatching() {
      batching = true;
    },
  };
}

const writeStderr = (line: string) => {
  let bytes = encoder.encode(line);
  while (bytes.byteLength > 0) bytes = bytes.subarray(Deno.stderr.writeSync(bytes));
};

/** Creates a logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const minLevel = RANK[options.level ?? "info"];
  const write = options.write ?? writeStderr;
  const now = options.now ?? Date.now;
  const json = options.json ?? false;
  // Short secrets would redact ordinary words; a credential is never this short.
  // In JSON lines a secret with `"` or `\` appears escaped: look for that form too.
  const usable = (all: Iterable<string>) =>
    [...all].filter((s) => s.length >= 4).flatMap((s) => {
      const escaped = JSON.stringify(s).slice(1, -1);
      return escaped === s ? [s] : [s, escaped];
    });
  const source = options.secrets ?? [];
  let secrets = usable(source);
  let seen = source instanceof Set ? source.size : 0;
  const redact = (line: string) => {
    // A live set only grows (a reload adds secrets): re-read it when its size changed.
    if (source instanceof Set && source.size !== seen) {
      seen = source.size;
      secrets = usable(source);
    }
    for (const secret of secrets) {
      if (line.includes(secret)) line = line.replaceAll(secret, "[REDACTED]");
    }
    return line;
  };

  // An access log formats a timestamp per request: format each millisecond once.
  let stampedAt = NaN;
  let stamp = "";
  const timestamp = () => {
    const t = now();
    if (t !== stampedAt) [stampedAt, stamp] = [t, new Date(t).toISOString()];
    return stamp;
  };

  const make = (context: LogFields): Logger => {
    const emit = (level: LogLevel, message: string, fields?: LogFields) => {
      if (RANK[level] < minLevel) return;
      const time = timestamp();
      const line = json
        ? JSON.stringify({ time, level, msg: message, ...context, ...fields }, jsonSafe)
        : formatText(`${time} ${LABEL[level]} ${message}`, context, fields);
      write(redact(line) + "\n");
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      enabled: (level) => RANK[level] >= minLevel,
      child: (fields) => make({ ...context, ...fields }),
    };
  };
  return make({});
}

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };
const LABEL: Readonly<Record<LogLevel, string>> = {
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
};

/** A text line: `head` (time, level, message), then the context's fields and the line's own. */
function formatText(head: string, context: LogFields, fields: LogFields | undefined): string {
  let line = head;
  for (const key in context) {
    if (fields === undefined || !(key in fields)) line += formatField(key, context[key]);
  }
  for (const key in fields) line += formatField(key, fields[key]);
  return line;
}

function formatField(key: string, value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "number") return ` ${key}=${value}`;
  const text = typeof value === "string"
    ? value
    : value instanceof Error
    ? `${value.name}: ${value.message}`
    : flatNumbers(value) ?? JSON.stringify(value, jsonSafe);
  return ` ${key}=${NEEDS_QUOTES.test(text) ? JSON.stringify(text) : text}`;
}

const NEEDS_QUOTES = /[\s"]/;

/**
 * `{"a":1,"b":2}` for an object of numbers only (token counts, on every access-log line),
 * built directly: `JSON.stringify` with a replacer costs several times as much. Undefined for
 * anything else.
 */
function flatNumbers(value: unknown): string | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  let text = "{";
  for (const key in value) {
    const n = (value as Record<string, unknown>)[key];
    if (typeof n !== "number" || !Number.isFinite(n) || !PLAIN_KEY.test(key)) return undefined;
    text += `${text.length > 1 ? "," : ""}"${key}":${n}`;
  }
  return text + "}";
}

const PLAIN_KEY = /^[A-Za-z0-9_]+$/;

/** Errors become their message; bigints their decimal form. */
function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** A logger that writes nothing, for tests and benchmarks. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
  child: () => silentLogger,
};

/** Whether `value` names a log level. */
export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}
