/**
 * The overhead client: `connections` keep-alive connections, each sending the same POST back
 * to back (closed loop), first for a warm-up whose requests are not recorded, then for the
 * measured period. Prints one JSON line ({@linkcode LatencyReport}): per-request latency, time
 * to the first SSE `data:` event and the gaps between events, as µs quantiles. Latencies
 * count for requests started in the measured period; gaps for those whose first event came in
 * it (a long stream begun in the warm-up still yields gaps).
 *
 * Raw HTTP/1.1 over TCP rather than `fetch`: the clock is read as each socket read returns, and
 * a request costs the client a few µs of CPU instead of `fetch`'s tens, so on a small machine
 * the client takes less from the proxy it measures. Run the same load against the mock
 * directly and through a proxy; the difference of the quantiles is the proxy's overhead.
 *
 * `deno run --allow-net --allow-read bench/overhead.ts --url URL [--connections 16]
 *   [--duration 10] [--warmup 1] [--body JSON | --body-file PATH] [--timeout 30]
 *   [--header "Name: value" ...]`
 *
 * @module
 */
import { ResponseReader } from "./http1_response.ts";
import { LatencyHistogram } from "./stats.ts";

/** Quantiles of one measure, µs (NaN when `count` is 0). */
export interface Quantiles {
  count: number;
  p50Us: number;
  p99Us: number;
}

/** What the client prints. Quantiles cover measured 2xx responses only. */
export interface LatencyReport {
  connections: number;
  /** The measured period (after the warm-up), s. */
  durationS: number;
  /** Requests started in the measured period. */
  requests: number;
  errors: number;
  non2xx: number;
  rps: number;
  /** Request write started → last byte of the response. */
  latency: Quantiles;
  /** Request write started → first complete `data:` event (SSE responses). */
  firstEvent: Quantiles;
  /** Between consecutive `data:` events of one response, as the client reads them. */
  eventGap: Quantiles;
  /** `data:` events received in measured responses (the `[DONE]` sentinel counts). */
  events: number;
  firstError?: string;
}

interface Options {
  url: URL;
  connections: number;
  durationS: number;
  warmupS: number;
  body: Uint8Array;
  timeoutS: number;
  /** Extra header lines (`Name: value`), e.g. a client key. */
  headers: string[];
}

class Recorder {
  latency = new LatencyHistogram();
  firstEvent = new LatencyHistogram();
  eventGap = new LatencyHistogram();
  requests = 0;
  errors = 0;
  non2xx = 0;
  events = 0;
  firstError?: string;

  error(e: unknown): void {
    this.errors++;
    this.firstError ??= e instanceof Error ? e.message : String(e);
  }
}

const quantiles = (h: LatencyHistogram): Quantiles => ({
  count: h.count,
  p50Us: h.quantile(0.5),
  p99Us: h.quantile(0.99),
});

/** Runs the load described by `o` and returns its report. */
export async function measure(o: Options): Promise<LatencyReport> {
  const request = requestBytes(o.url, o.body, o.headers);
  const rec = new Recorder();
  const open = new Set<Deno.Conn>();
  const connect = async () => {
    const conn = await Deno.connect({ hostname: o.url.hostname, port: Number(o.url.port) });
    conn.setNoDelay(true); // the request goes out in one write; don't let Nagle hold a tail
    open.add(conn);
    return conn;
  };
  const first = await Promise.all(Array.from({ length: o.connections }, connect));
  const start = performance.now();
  const measureFrom = start + o.warmupS * 1000;
  const deadline = measureFrom + o.durationS * 1000;
  // Requests in flight at the deadline may finish; past the timeout their sockets are closed.
  const hardStop = setTimeout(() => {
    for (const c of open) c.close();
    open.clear();
  }, (o.warmupS + o.durationS + o.timeoutS) * 1000);

  async function loop(initial: Deno.Conn): Promise<void> {
    let conn: Deno.Conn | undefined = initial;
    let reader = new ResponseReader(initial);
    const drop = () => {
      if (conn && open.delete(conn)) conn.close();
      conn = undefined;
    };
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const measured = t0 >= measureFrom;
      try {
        if (!conn) {
          conn = await connect();
          reader = new ResponseReader(conn);
        }
        await writeAll(conn, request);
        const r = await reader.read();
        if (!r.keepAlive) drop();
        const ok = r.status >= 200 && r.status <= 299;
        const at = r.eventsAt;
        // A gap counts once its first event is past the warm-up, even in a stream that began
        // during it: a stream may outlast a short measured period.
        for (let i = 1; ok && i < at.length; i++) {
          if (at[i - 1]! >= measureFrom) rec.eventGap.record((at[i]! - at[i - 1]!) * 1000);
        }
        if (!measured) continue;
        rec.requests++;
        if (!ok) {
          rec.non2xx++;
          continue;
        }
        rec.latency.record((r.endAt - t0) * 1000);
        rec.events += at.length;
        if (at.length > 0) rec.firstEvent.record((at[0]! - t0) * 1000);
      } catch (e) {
        drop();
        if (measured) {
          rec.requests++;
          rec.error(e);
        }
        await new Promise((r) => setTimeout(r, 10)); // a refused connect must not spin
      }
    }
    drop();
  }

  await Promise.all(first.map(loop));
  clearTimeout(hardStop);
  const durationS = (performance.now() - measureFrom) / 1000;
  return {
    connections: o.connections,
    durationS,
    requests: rec.requests,
    errors: rec.errors,
    non2xx: rec.non2xx,
    rps: rec.latency.count / durationS,
    latency: quantiles(rec.latency),
    firstEvent: quantiles(rec.firstEvent),
    eventGap: quantiles(rec.eventGap),
    events: rec.events,
    firstError: rec.firstError,
  };
}

/** The whole request, head and body, encoded once: each send is one write of the same bytes. */
export function requestBytes(url: URL, body: Uint8Array, headers: readonly string[]): Uint8Array {
  const head = new TextEncoder().encode(
    `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      headers.map((line) => `${line}\r\n`).join("") +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
  );
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return bytes;
}

export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

function parseArgs(args: readonly string[]): Options {
  let url: URL | undefined;
  let body: Uint8Array = new TextEncoder().encode("{}");
  const headers: string[] = [];
  const o = { connections: 16, durationS: 10, warmupS: 1, timeoutS: 30 };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--url") url = new URL(value());
    else if (flag === "--connections") o.connections = Number(value());
    else if (flag === "--duration") o.durationS = Number(value());
    else if (flag === "--warmup") o.warmupS = Number(value());
    else if (flag === "--timeout") o.timeoutS = Number(value());
    else if (flag === "--body") body = new TextEncoder().encode(value());
    else if (flag === "--body-file") body = Deno.readFileSync(value());
    else if (flag === "--header") {
      const line = value();
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n]*$/.test(line)) {
        throw new Error(`--header "Name: value" expected, got ${JSON.stringify(line)}`);
      }
      headers.push(line);
    } else throw new Error(`Unknown argument "${flag}"`);
  }
  if (url?.protocol !== "http:" || !url.port) throw new Error("--url http://HOST:PORT/… needed");
  if (!(Number.isInteger(o.connections) && o.connections >= 1 && o.durationS > 0)) {
    throw new Error("--connections must be a positive integer and --duration positive");
  }
  if (!(o.warmupS >= 0 && o.timeoutS > 0)) throw new Error("--warmup ≥ 0, --timeout > 0");
  return { url, body, headers, ...o };
}

if (import.meta.main) {
  console.log(JSON.stringify(await measure(parseArgs(Deno.args))));
}
