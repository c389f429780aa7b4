/**
 * A mock OpenAI-compatible LLM upstream for e2e tests and benchmarks.
 *
 * Endpoints (matched on the path suffix, so `/openai/v1/chat/completions` works too):
 * - `POST …/chat/completions`: JSON `chat.completion`, or SSE `chat.completion.chunk`
 *   events when the body has `stream: true` (plus a usage chunk when
 *   `stream_options.include_usage` is true, then `data: [DONE]`).
 * - `POST …/embeddings`: one small vector per input, plus usage.
 * - `GET …/models`: a model list.
 * - any method on `/echo…`: `{method, path, search, headers, body}` as received.
 * - anything else: 404 OpenAI-style error; an unparseable JSON body: 400.
 *
 * Per-request control headers (they travel through the proxy): `x-mock-status`,
 * `x-mock-retry-after`, `x-mock-retry-after-ms`, `x-mock-chunks`, `x-mock-delay-ms`,
 * `x-mock-first-delay-ms`, `x-mock-hang-ms`, `x-mock-hang`, `x-mock-stall-after`, `x-mock-cut-after`,
 * `x-mock-body-size`, `x-mock-gzip`. See {@linkcode startMockUpstream}.
 *
 * Runnable: `deno run --allow-net tests/_helpers/mock_upstream.ts [--port N] [--hostname H]
 * [--name NAME]`.
 *
 * @module
 */

/** One request as the mock received it. */
export interface RecordedRequest {
  method: string;
  /** Full URL as received, e.g. `http://127.0.0.1:4000/v1/models?x=1`. */
  url: string;
  path: string;
  /** Query string including the leading `?`, or `""`. */
  search: string;
  headers: Headers;
  /** Request body read as text (`""` when absent). */
  body: string;
  /** True if the client disconnected before the response finished. */
  aborted: boolean;
}

/** A canned answer; see {@linkcode MockUpstream.script} and {@linkcode MockUpstream.always}. */
export interface ScriptedResponse {
  /**
   * Response status. With no `body`, a status >= 400 gets an OpenAI-style error body and a
   * status < 400 keeps the endpoint's normal body.
   */
  status?: number;
  /** Extra response headers (override the defaults, e.g. `content-type`). */
  headers?: Record<string, string>;
  /** Literal response body; replaces the endpoint's normal behaviour. */
  body?: string;
  /** Value of the `retry-after` response header. */
  retryAfter?: string;
  /** Delay before sending headers, in ms; `Infinity` = never answer (until abort or close). */
  hangMs?: number;
}

/** Options for {@linkcode startMockUpstream}. */
export interface MockUpstreamOptions {
  /** @default {0} (a free port) */
  port?: number;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /**
   * Sent as the `x-mock-upstream` header on every response and appended to the `model`
   * field of completions (`"<requested model>@<name>"`).
   * @default {"mock"}
   */
  name?: string;
  /**
   * Keep only the newest this many entries in `requests` (oldest dropped), so a long
   * benchmark does not grow the mock's memory. `waitForRequests()` still counts every
   * request. The CLI keeps none: it has no way to show them, and the benchmark's ~400 KB
   * request bodies (scenario h) would otherwise hold hundreds of MiB whose GC pauses show up
   * in every latency figure taken through the mock.
   * @default {Infinity}
   */
  maxRecordedRequests?: number;
  /** Serve HTTPS with this certificate and key (PEM text); `url` is then `https://…`. */
  tls?: { cert: string; key: string };
  /**
   * The model's context, in characters of the body: a chat request with a longer body is
   * answered as OpenAI answers a prompt too long for the model (400
   * `context_length_exceeded`).
   * @default {Infinity}
   */
  contextChars?: number;
}

/** A running mock upstream. */
export interface MockUpstream {
  /** `http://HOST:PORT`, no trailing slash. */
  readonly url: string;
  readonly port: number;
  /**
   * Requests received, in arrival order (recorded once the body was read); only the newest
   * `maxRecordedRequests` are kept.
   */
  readonly requests: RecordedRequest[];
  /** Responses returned to the next requests, in order, before normal behaviour resumes. */
  script(...responses: ScriptedResponse[]): void;
  /** Every request gets this until cleared (undefined). Scripted responses go first. */
  always(response: ScriptedResponse | undefined): void;
  /** Resolves when `n` requests have been received; rejects after `timeoutMs` (default 5000). */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Ends hung and stalled handlers (stalled streams error), then stops the server. Idempotent. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const CREATED = Math.floor(Date.now() / 1000);
const DEFAULT_CHUNKS = 5;
const PROMPT_TOKENS = 10;
const EMBEDDING_DIMENSIONS = 8;
/** Bound for the per-(model, chunks) JSON completion cache. */
const COMPLETION_CACHE_MAX = 256;

/** Per-request behaviour after merging script/always with the control headers. */
interface Plan {
  status?: number;
  headers: Record<string, string>;
  body?: string;
  hangMs: number;
}

/**
 * Starts the mock on `options.port` (0 = any free port). Async: resolves once listening.
 *
 * @example
 * ```ts
 * const mock = await startMockUpstream();
 * const res = await fetch(`${mock.url}/v1/models`);
 * await res.body?.cancel();
 * await mock.close();
 * ```
 */
export function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const name = options.name ?? "mock";
  const hostname = options.hostname ?? "127.0.0.1";
  const requests: RecordedRequest[] = [];
  const maxRecorded = options.maxRecordedRequests ?? Infinity;
  let received = 0;
  const queue: ScriptedResponse[] = [];
  let fallback: ScriptedResponse | undefined;
  const waiters = new Set<{ n: number; resolve: () => void }>();
  /** Fired by close(): ends hangs and stalled/ongoing streams. */
  const closing = new AbortController();
  const completionCache = new Map<string, Uint8Array<ArrayBuffer>>();

  function baseHeaders(contentType: string): Headers {
    return new Headers({ "content-type": contentType, "x-mock-upstream": name });
  }

  function jsonResponse(status: number, payload: unknown): Response {
    return new Response(JSON.stringify(payload), {
      status,
      headers: baseHeaders("application/json"),
    });
  }

  function errorResponse(status: number, message: string, type = errorType(status)): Response {
    return jsonResponse(status, { error: { message, type, param: null, code: null } });
  }

  function completionBytes(model: string, chunks: number): Uint8Array<ArrayBuffer> {
    const key = `${chunks}\u0000${model}`;
    let bytes = completionCache.get(key);
    if (bytes === undefined) {
      bytes = encoder.encode(JSON.stringify({
        id: "chatcmpl-mock",
        object: "chat.completion",
        created: CREATED,
        model,
        choices: [{
          index: 0,
          message: { role: "assistant", content: tokens(chunks) },
          finish_reason: "stop",
        }],
        usage: usage(chunks),
      }));
      if (completionCache.size >= COMPLETION_CACHE_MAX) completionCache.clear();
      completionCache.set(key, bytes);
    }
    return bytes;
  }

  function chatCompletions(
    req: Request,
    json: Record<string, unknown>,
    onEnd: (aborted: boolean) => void,
  ): Response {
    const model = `${typeof json.model === "string" ? json.model : "mock-model"}@${name}`;
    const chunks = intControl(req, "x-mock-chunks", json.mock_chunks) ?? DEFAULT_CHUNKS;
    if (json.stream !== true) {
      return new Response(completionBytes(model, chunks), {
        headers: baseHeaders("application/json"),
      });
    }
    const includeUsage = (json.stream_options as { include_usage?: unknown } | undefined)
      ?.include_usage === true;
    const stream = sseStream({
      model,
      chunks,
      includeUsage,
      delayMs: intControl(req, "x-mock-delay-ms", json.mock_delay_ms) ?? 0,
      firstDelayMs: intControl(req, "x-mock-first-delay-ms") ?? 0,
      stallAfter: intControl(req, "x-mock-stall-after"),
      cutAfter: intControl(req, "x-mock-cut-after"),
      closing: closing.signal,
      onEnd,
    });
    const headers = baseHeaders("text/event-stream");
    headers.set("cache-control", "no-cache");
    return new Response(stream, { headers });
  }

  function embeddings(json: Record<string, unknown>): Response {
    const inputs = Array.isArray(json.input) ? json.input : [json.input ?? ""];
    const data = inputs.map((input, index) => ({
      object: "embedding",
      index,
      embedding: Array.from(
        { length: EMBEDDING_DIMENSIONS },
        (_, d) => Math.round(Math.sin(index + d + String(input).length) * 1e4) / 1e4,
      ),
    }));
    const model = `${typeof json.model === "string" ? json.model : "mock-embedding"}@${name}`;
    const tokens = inputs.length * 4;
    return jsonResponse(200, {
      object: "list",
      data,
      model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  function models(): Response {
    return jsonResponse(200, {
      object: "list",
      data: ["mock-model", "mock-embedding"].map((id) => ({
        id,
        object: "model",
        created: CREATED,
        owned_by: name,
      })),
    });
  }

  /** The endpoint's normal behaviour. */
  function route(
    req: Request,
    record: RecordedRequest,
    onEnd: (aborted: boolean) => void,
  ): Response {
    const { path } = record;
    if (path.startsWith("/echo")) {
      return jsonResponse(200, {
        method: record.method,
        path,
        search: record.search,
        headers: Object.fromEntries(req.headers),
        body: record.body,
      });
    }
    if (req.method === "GET" && path.endsWith("/models")) return models();
    const isChat = path.endsWith("/chat/completions");
    const isEmbeddings = path.endsWith("/embeddings");
    if (req.method !== "POST" || (!isChat && !isEmbeddings)) {
      return errorResponse(404, `Unknown route: ${req.method} ${path}`, "not_found_error");
    }
    let json: Record<string, unknown>;
    try {
      const parsed = JSON.parse(record.body);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new TypeError("body is not a JSON object");
      }
      json = parsed;
    } catch (error) {
      return errorResponse(400, `Invalid JSON body: ${(error as Error).message}`);
    }
    if (isChat && record.body.length > (options.contextChars ?? Infinity)) {
      return jsonResponse(400, {
        error: {
          message:
            `This model's maximum context length is ${options.contextChars} characters. However, your messages resulted in ${record.body.length} characters. Please reduce the length of the messages.`,
          type: "invalid_request_error",
          param: "messages",
          code: "context_length_exceeded",
        },
      });
    }
    return isChat ? chatCompletions(req, json, onEnd) : embeddings(json);
  }

  function plan(req: Request): Plan {
    const scripted = queue.shift() ?? fallback;
    const p: Plan = {
      status: scripted?.status,
      headers: { ...scripted?.headers },
      body: scripted?.body,
      hangMs: scripted?.hangMs ?? 0,
    };
    if (scripted?.retryAfter !== undefined) p.headers["retry-after"] = scripted.retryAfter;
    // Control headers apply on top of the script.
    const h = req.headers;
    const status = intControl(req, "x-mock-status");
    if (status !== undefined) {
      p.status = status;
      p.body = undefined;
    }
    const retryAfter = h.get("x-mock-retry-after");
    if (retryAfter !== null) p.headers["retry-after"] = retryAfter;
    const retryAfterMs = h.get("x-mock-retry-after-ms");
    if (retryAfterMs !== null) p.headers["retry-after-ms"] = retryAfterMs;
    const hangMs = intControl(req, "x-mock-hang-ms");
    if (hangMs !== undefined) p.hangMs = hangMs;
    if (h.get("x-mock-hang") === "1") p.hangMs = Infinity;
    return p;
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const record: RecordedRequest = {
      method: req.method,
      url: req.url,
      path: url.pathname,
      search: url.search,
      headers: req.headers,
      body: "",
      aborted: false,
    };
    // Set once a non-streaming response is handed over or a stream ends; a disconnect
    // after that is not an abort.
    let settled = false;
    const onEnd = (aborted: boolean) => {
      settled = true;
      if (aborted) record.aborted = true;
    };
    req.signal.addEventListener("abort", () => {
      if (!settled) record.aborted = true;
    }, { once: true });
    record.body = await req.text();
    requests.push(record);
    if (requests.length > maxRecorded) requests.shift();
    received++;
    for (const w of waiters) if (received >= w.n) w.resolve();

    const p = plan(req);
    if (p.hangMs > 0) {
      await sleep(p.hangMs, [req.signal, closing.signal]);
      if (closing.signal.aborted) return errorResponse(503, "Mock upstream is closing");
      if (req.signal.aborted) return errorResponse(499, "Client disconnected");
    }

    let res: Response;
    if (p.body !== undefined) {
      res = new Response(p.body, {
        status: p.status ?? 200,
        headers: baseHeaders("application/json"),
      });
    } else if (p.status !== undefined && p.status >= 400) {
      res = errorResponse(p.status, `Mock upstream error ${p.status}`);
    } else {
      res = route(req, record, onEnd);
      if (p.status !== undefined) {
        res = new Response(res.body, { status: p.status, headers: res.headers });
      }
    }
    for (const [k, v] of Object.entries(p.headers)) res.headers.set(k, v);

    const bodySize = intControl(req, "x-mock-body-size");
    if (bodySize !== undefined && res.body !== null && !isEventStream(res)) {
      res = await padJson(res, bodySize);
    }
    if (req.headers.get("x-mock-gzip") === "1" && res.body !== null) {
      const headers = new Headers(res.headers);
      headers.set("content-encoding", "gzip");
      headers.delete("content-length");
      res = new Response(res.body.pipeThrough(new CompressionStream("gzip")), {
        status: res.status,
        headers,
      });
    }
    if (!isEventStream(res)) settled = true;
    return res;
  }

  const server = Deno.serve({
    port: options.port ?? 0,
    hostname,
    onListen() {},
    ...(options.tls ?? {}),
  }, handle);
  const port = server.addr.port;
  let closed: Promise<void> | undefined;

  const mock: MockUpstream = {
    url: `${options.tls ? "https" : "http"}://${
      hostname.includes(":") ? `[${hostname}]` : hostname
    }:${port}`,
    port,
    requests,
    script(...responses) {
      queue.push(...responses);
    },
    always(response) {
      fallback = response;
    },
    waitForRequests(n, timeoutMs = 5000) {
      if (received >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          n,
          resolve() {
            clearTimeout(timer);
            waiters.delete(waiter);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `Mock upstream "${name}" received ${received} of ${n} expected requests within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close() {
      closed ??= (async () => {
        closing.abort();
        await server.shutdown();
      })();
      return closed;
    },
  };
  return Promise.resolve(mock);
}

interface SseOptions {
  model: string;
  chunks: number;
  includeUsage: boolean;
  /** Pause before each chunk after the first, in ms. */
  delayMs: number;
  /** Pause before the first chunk (after the response head), in ms. */
  firstDelayMs: number;
  /** Send this many chunks, then go silent until cancel or close. */
  stallAfter?: number;
  /** Send this many chunks, then error the stream (broken body for the client). */
  cutAfter?: number;
  closing: AbortSignal;
  /** Called exactly once; `aborted` is true when the client cancelled before the end. */
  onEnd(aborted: boolean): void;
}

/** SSE body: each event is its own enqueued chunk; one pull per event. */
function sseStream(o: SseOptions): ReadableStream<Uint8Array> {
  const head =
    `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":${CREATED},` +
    `"model":${JSON.stringify(o.model)},"choices":[{"index":0,"delta":{`;
  let sent = 0; // content chunks sent
  let phase: "content" | "usage" | "done" = "content";
  let ended = false;
  const cancelWait = new AbortController();

  function end(aborted: boolean) {
    if (ended) return;
    ended = true;
    o.closing.removeEventListener("abort", onClosing);
    o.onEnd(aborted);
  }
  let ctrl: ReadableStreamDefaultController<Uint8Array> | undefined;
  function onClosing() {
    cancelWait.abort();
    if (!ended && ctrl) {
      end(false);
      ctrl.error(quietError("mock upstream: close() ended a stream still in progress"));
    }
  }
  o.closing.addEventListener("abort", onClosing);

  return new ReadableStream<Uint8Array>({
    start(controller) {
      ctrl = controller;
    },
    async pull(controller) {
      if (ended) return;
      const limit = o.stallAfter ?? o.cutAfter;
      if (phase === "content" && limit !== undefined && sent >= limit) {
        if (o.cutAfter !== undefined) {
          end(false);
          controller.error(
            quietError(`mock upstream: cut the stream after ${sent} chunks (x-mock-cut-after)`),
          );
          return;
        }
        // Stall: never resolves on its own; cancel() or close() end it.
        await sleep(Infinity, [cancelWait.signal]);
        return;
      }
      const pause = sent > 0 ? o.delayMs : o.firstDelayMs;
      if (pause > 0 && phase === "content") {
        await sleep(pause, [cancelWait.signal]);
        if (ended) return;
      }
      if (phase === "content" && sent >= o.chunks) phase = o.includeUsage ? "usage" : "done";
      if (phase === "content") {
        const i = sent++;
        const last = sent >= o.chunks;
        const delta = i === 0 ? `"role":"assistant","content":"tok${i} "` : `"content":"tok${i} "`;
        controller.enqueue(encoder.encode(
          `${head}${delta}},"finish_reason":${last ? '"stop"' : "null"}}]}\n\n`,
        ));
        if (last) phase = o.includeUsage ? "usage" : "done";
        return;
      }
      if (phase === "usage") {
        controller.enqueue(encoder.encode(
          `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":${CREATED},` +
            `"model":${JSON.stringify(o.model)},"choices":[],"usage":${
              JSON.stringify(usage(o.chunks))
            }}\n\n`,
        ));
        phase = "done";
        return;
      }
      controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      end(false);
      controller.close();
    },
    cancel() {
      cancelWait.abort();
      end(true);
    },
  });
}

/**
 * An Error whose stack is just its message: Deno.serve prints the error of a failed
 * response stream to stderr, and an intended cut should read as one line, not a crash.
 */
function quietError(message: string): Error {
  const error = new Error(message);
  error.stack = message;
  return error;
}

function tokens(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += `tok${i} `;
  return s;
}

function usage(completionTokens: number) {
  return {
    prompt_tokens: PROMPT_TOKENS,
    completion_tokens: completionTokens,
    total_tokens: PROMPT_TOKENS + completionTokens,
  };
}

function errorType(status: number): string {
  if (status === 429) return "rate_limit_error";
  if (status === 401) return "authentication_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

function isEventStream(res: Response): boolean {
  return res.headers.get("content-type")?.startsWith("text/event-stream") ?? false;
}

/** Reads an integer from a control header, else from a JSON body field. */
function intControl(req: Request, header: string, fallback?: unknown): number | undefined {
  const raw = req.headers.get(header);
  if (raw !== null) {
    const n = Number.parseInt(raw, 10);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  if (typeof fallback === "number" && Number.isFinite(fallback) && fallback >= 0) {
    return Math.floor(fallback);
  }
  return undefined;
}

/** Re-serialises a JSON body with a `mock_padding` field so it is about `size` bytes. */
async function padJson(res: Response, size: number): Promise<Response> {
  const text = await res.text();
  const headers = new Headers(res.headers);
  headers.delete("content-length");
  let body = text;
  const missing = size - text.length - `,"mock_padding":""`.length;
  if (missing > 0 && text.endsWith("}")) {
    const pad = `"mock_padding":"${"x".repeat(missing)}"`;
    body = text === "{}" ? `{${pad}}` : `${text.slice(0, -1)},${pad}}`;
  }
  return new Response(body, { status: res.status, headers });
}

/** Resolves after `ms` (Infinity = never) or as soon as any signal aborts; always clears its timer. */
function sleep(ms: number, signals: AbortSignal[]): Promise<void> {
  if (signals.some((s) => s.aborted)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", done);
      resolve();
    };
    if (Number.isFinite(ms)) timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener("abort", done, { once: true });
  });
}

function parseArgs(args: string[]): MockUpstreamOptions {
  const options: MockUpstreamOptions = { maxRecordedRequests: 0 };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const [flag, inline] = arg.includes("=") ? arg.split("=", 2) : [arg, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--port") options.port = Number(value());
    else if (flag === "--hostname") options.hostname = value();
    else if (flag === "--name") options.name = value();
    else throw new Error(`Unknown argument "${arg}"; expected --port N, --hostname H, --name NAME`);
  }
  if (options.port !== undefined && !Number.isInteger(options.port)) {
    throw new Error(`Invalid --port: expected an integer, got ${options.port}`);
  }
  return options;
}

if (import.meta.main) {
  const mock = await startMockUpstream(parseArgs(Deno.args));
  console.log(`mock upstream listening on ${mock.url}`);
  const stop = async () => {
    await mock.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
}
