/**
 * The chunk-by-chunk check: one SSE request whose events the mock sends `delayMs` apart;
 * the arrival time of every event is recorded as the reader sees it. A pass-through proxy
 * delivers them spread over ≈ (chunks − 1) × delayMs; a buffering one delivers them at once.
 *
 * @module
 */
import { median } from "./stats.ts";

/**
 * The harness's own requests (checks, the SSE probe) keep no connection open: an idle one
 * held by this process would count against the proxy's `maxConnections` while scenario d
 * opens its streams.
 */
export const PROBE_CLIENT: Deno.HttpClient = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });

/** Options of {@linkcode probeSse}. */
export interface ProbeOptions {
  url: string;
  chunks: number;
  delayMs: number;
  /** Sequential requests; the verdict uses the medians. */
  samples: number;
  /** Extra request headers (the project's client key). */
  headers?: Record<string, string>;
}

/** The check's result for one target. */
export interface ProbeResult {
  /** Median time to response headers, ms. */
  headersMs: number;
  /** Median time to the first event (time to first byte of the body), ms. */
  ttfbMs: number;
  /** Median time from the first to the last content event, ms. */
  spreadMs: number;
  /** The expected spread, (chunks − 1) × delayMs. */
  expectedSpreadMs: number;
  /** Median number of distinct reads that carried events (1 = fully bunched). */
  reads: number;
  /** Arrival times (ms since request) of the last sample's events. */
  arrivalsMs: number[];
  /** Incremental: spread ≥ 60 % of expected, and the first event before half of it. */
  pass: boolean;
  error?: string;
}

const decoder = new TextDecoder();

/** Runs the check against `o.url`, each request bounded to 10 s plus the stream's length. */
export async function probeSse(o: ProbeOptions): Promise<ProbeResult> {
  const expectedSpreadMs = (o.chunks - 1) * o.delayMs;
  const samples: { headersMs: number; arrivals: number[]; reads: number }[] = [];
  let error: string | undefined;
  for (let i = 0; i < o.samples; i++) {
    try {
      samples.push(await one(o, 10_000 + expectedSpreadMs * 2));
    } catch (e) {
      error ??= String(e);
    }
  }
  const arrivals = samples.map((s) => s.arrivals);
  const ttfbMs = median(arrivals.map((a) => a[0] ?? NaN));
  const spreadMs = median(arrivals.map((a) => (a[o.chunks - 1] ?? NaN) - (a[0] ?? NaN)));
  const pass = error === undefined && spreadMs >= 0.6 * expectedSpreadMs &&
    ttfbMs < median(samples.map((s) => s.headersMs)) + 0.5 * expectedSpreadMs;
  return {
    headersMs: median(samples.map((s) => s.headersMs)),
    ttfbMs,
    spreadMs,
    expectedSpreadMs,
    reads: median(samples.map((s) => s.reads)),
    arrivalsMs: (arrivals.at(-1) ?? []).map((t) => Math.round(t * 10) / 10),
    pass,
    error,
  };
}

async function one(o: ProbeOptions, limitMs: number) {
  const t0 = performance.now();
  const res = await fetch(o.url, {
    client: PROBE_CLIENT,
    method: "POST",
    headers: { "content-type": "application/json", ...o.headers },
    body: JSON.stringify({
      model: "bench-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      mock_chunks: o.chunks,
      mock_delay_ms: o.delayMs,
    }),
    signal: AbortSignal.timeout(limitMs),
  });
  const headersMs = performance.now() - t0;
  if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
  const arrivals: number[] = [];
  let reads = 0;
  let pending = "";
  for await (const chunk of res.body) {
    const at = performance.now() - t0;
    pending += decoder.decode(chunk, { stream: true });
    const events = pending.split("\n\n");
    pending = events.pop() ?? "";
    const before = arrivals.length;
    for (const e of events) if (e.startsWith("data:")) arrivals.push(at);
    if (arrivals.length > before) reads++;
  }
  if (arrivals.length < o.chunks) {
    throw new Error(`received ${arrivals.length} events, expected at least ${o.chunks}`);
  }
  return { headersMs, arrivals, reads };
}
