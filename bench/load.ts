/**
 * The built-in load generator, used when wrk is absent and for the slow-streams scenario:
 * N concurrent keep-alive `fetch` loops, bounded in time. Prints one JSON line
 * ({@linkcode LoadReport}) on stdout.
 *
 * `deno run --allow-net bench/load.ts --url URL [--connections 50] [--duration 10]
 *   [--body JSON] [--header "Name: value"]… [--once] [--expect-done] [--timeout 30]`
 *
 * - loop mode (default): each connection sends requests back to back until `--duration`
 *   seconds have passed; requests in flight then finish (each bounded by `--timeout`).
 * - `--once`: each connection sends exactly one request; all are aborted at `--duration`.
 * - `--expect-done`: a response counts as completed only if its body ends with `[DONE]`.
 *
 * @module
 */
import { LatencyHistogram } from "./stats.ts";

/** What the generator prints. Latencies are for completed requests only. */
export interface LoadReport {
  requests: number;
  completed: number;
  errors: number;
  non2xx: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  firstError?: string;
}

interface Options {
  url: string;
  connections: number;
  durationS: number;
  body: string;
  headers: Record<string, string>;
  once: boolean;
  expectDone: boolean;
  timeoutS: number;
}

const decoder = new TextDecoder();

/** Runs the load described by `o` and returns its report. */
export async function runLoad(o: Options): Promise<LoadReport> {
  const histogram = new LatencyHistogram();
  let requests = 0;
  let completed = 0;
  let errors = 0;
  let non2xx = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + o.durationS * 1000;
  const stopAll = new AbortController();
  const stopTimer = o.once ? setTimeout(() => stopAll.abort(), o.durationS * 1000) : undefined;

  async function one(): Promise<void> {
    const t0 = performance.now();
    requests++;
    try {
      const signal = AbortSignal.any([stopAll.signal, AbortSignal.timeout(o.timeoutS * 1000)]);
      const res = await fetch(o.url, {
        method: "POST",
        headers: { "content-type": "application/json", ...o.headers },
        body: o.body,
        signal,
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (res.status < 200 || res.status > 299) {
        non2xx++;
        return;
      }
      if (o.expectDone && !decoder.decode(bytes.subarray(-32)).includes("[DONE]")) {
        errors++;
        firstError ??= "stream ended without [DONE]";
        return;
      }
      completed++;
      histogram.record((performance.now() - t0) * 1000);
    } catch (error) {
      errors++;
      firstError ??= String(error);
    }
  }

  async function loop(): Promise<void> {
    if (o.once) return await one();
    while (performance.now() < deadline) await one();
  }

  await Promise.all(Array.from({ length: o.connections }, loop));
  clearTimeout(stopTimer);
  const durationS = (performance.now() - start) / 1000;
  return {
    requests,
    completed,
    errors,
    non2xx,
    durationS,
    rps: completed / durationS,
    p50Ms: histogram.quantile(0.5) / 1000,
    p99Ms: histogram.quantile(0.99) / 1000,
    firstError,
  };
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = {
    url: "",
    connections: 50,
    durationS: 10,
    body: "{}",
    headers: {},
    once: false,
    expectDone: false,
    timeoutS: 30,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--url") o.url = value();
    else if (flag === "--connections") o.connections = Number(value());
    else if (flag === "--duration") o.durationS = Number(value());
    else if (flag === "--body") o.body = value();
    else if (flag === "--header") {
      const [name, ...rest] = value().split(":");
      o.headers[name!.trim()] = rest.join(":").trim();
    } else if (flag === "--timeout") o.timeoutS = Number(value());
    else if (flag === "--once") o.once = true;
    else if (flag === "--expect-done") o.expectDone = true;
    else throw new Error(`Unknown argument "${flag}"`);
  }
  if (!o.url) throw new Error("--url is required");
  if (!(o.connections >= 1 && o.durationS > 0 && o.timeoutS > 0)) {
    throw new Error("--connections, --duration and --timeout must be positive");
  }
  return o;
}

if (import.meta.main) {
  console.log(JSON.stringify(await runLoad(parseArgs(Deno.args))));
}
