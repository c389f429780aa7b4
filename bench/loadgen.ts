/**
 * Runs one time-bounded load against a URL with wrk (when installed) or the built-in
 * generator (`bench/load.ts` in its own Deno process), and returns a common report.
 *
 * @module
 */
import type { LoadReport } from "./load.ts";
import { shutdown } from "./procs.ts";

/** Which generator drives the load. */
export type LoadTool = "wrk" | "builtin";

/** Options of {@linkcode runLoad}. */
export interface LoadOptions {
  tool: LoadTool;
  url: string;
  /** JSON request body (POST). */
  body: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** CA certificate (PEM file) to trust for an `https` URL (the built-in generator verifies). */
  caFile?: string;
  connections: number;
  durationS: number;
  /** CPU core for `taskset -c`; undefined = unpinned. */
  cpu?: number;
}

const LOAD_TS = new URL("./load.ts", import.meta.url).pathname;
const POST_LUA = new URL("./wrk/post.lua", import.meta.url).pathname;
/** Extra seconds a generator may take beyond its duration before it is killed. */
const GRACE_S = 20;

/** Runs the load and parses the generator's report. Throws if the generator fails. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const pin = o.cpu === undefined ? [] : ["taskset", "-c", String(o.cpu)];
  const cmd = o.tool === "wrk"
    ? [
      "wrk",
      "-t1",
      `-c${o.connections}`,
      `-d${o.durationS}s`,
      "--timeout",
      "10s",
      "--latency",
      "-s",
      POST_LUA,
      o.url,
    ]
    : [
      Deno.execPath(),
      "run",
      "--allow-net",
      LOAD_TS,
      "--url",
      o.url,
      "--connections",
      String(o.connections),
      "--duration",
      String(o.durationS),
      "--body",
      o.body,
      "--timeout",
      "10",
      ...headerArgs(o.headers),
    ];
  const env: Record<string, string> = {
    BENCH_BODY: o.body,
    BENCH_HEADERS: Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n"),
  };
  if (o.caFile) env.DENO_CERT = o.caFile; // wrk does not verify certificates
  const text = await runCommand([...pin, ...cmd], o.durationS + GRACE_S, env);
  return o.tool === "wrk" ? parseWrk(text) : JSON.parse(text.trim().split("\n").pop()!);
}

/** `--header "Name: value"` arguments for the built-in generators (load.ts, overhead.ts). */
export function headerArgs(headers: Record<string, string> | undefined): string[] {
  return Object.entries(headers ?? {}).flatMap((
    [name, value],
  ) => ["--header", `${name}: ${value}`]);
}

/** Runs `cmd` to completion (killed after `limitS` seconds or on shutdown); returns stdout. */
export async function runCommand(
  cmd: string[],
  limitS: number,
  env: Record<string, string> = {},
): Promise<string> {
  const [program, ...args] = cmd;
  const out = await new Deno.Command(program!, {
    args,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.any([shutdown.signal, AbortSignal.timeout(limitS * 1000)]),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr);
    throw new Error(`${cmd.join(" ")} failed (${out.code}): ${stderr.slice(-1000)}`);
  }
  return stdout;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function durationMs(text: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text ?? "");
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
}

/** Parses wrk's `--latency` output. */
export function parseWrk(text: string): LoadReport {
  const requests = Number(/(\d+) requests in ([\d.]+)(\w+)/.exec(text)?.[1] ?? NaN);
  const timeMatch = /\d+ requests in ([\d.]+\w+),/.exec(text);
  const durationS = durationMs(timeMatch?.[1]) / 1000;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0;
  const completed = requests - non2xx;
  return {
    requests,
    completed,
    errors,
    non2xx,
    durationS,
    rps: completed / durationS,
    p50Ms: durationMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1]),
    p99Ms: durationMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1]),
    firstError: errors > 0 ? sock?.[0] : undefined,
  };
}
