/**
 * Starts the processes under test: the mock upstream, the reference and buffering proxies,
 * and the project with a realistic config (two upstreams in a roundrobin group, breaker and
 * per-upstream limit, per-IP limit, a client key with request and token limits, model routing
 * with a model map, admin metrics, access log at info to a file) and no
 * tuning: every pool and client setting at its default, as a user gets it.
 *
 * @module
 */
import { STREAM_CHUNKS } from "./canned_responses.ts";
import { freePort, type Proc, sleep, spawn, waitForPort } from "./procs.ts";
import { formatDigest } from "../src/keys/digest.ts";

/** The client path of the load scenarios. */
export const CHAT_PATH = "/v1/chat/completions";

/** What a load generator sends to a target for one scenario. */
export interface LoadRequest {
  /** Request path, e.g. {@linkcode CHAT_PATH}. */
  path: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

/** A started server. */
export interface Target {
  readonly name: string;
  readonly proc: Proc;
  /**
   * Every process serving it, when more than `proc` (copies sharing one port): CPU is summed
   * over them. @default [proc]
   */
  readonly procs?: readonly Proc[];
  /** Serving threads or processes: each warms up on its share of the load. @default 1 */
  readonly workers?: number;
  /** `http://127.0.0.1:PORT` (or `https://` for an HTTPS upstream). */
  readonly origin: string;
  /** The admin listener (metrics), when the target has one. */
  readonly adminOrigin?: string;
  /** The request for scenario `key`; when absent, a POST to {@linkcode CHAT_PATH}. */
  request?(key: string): LoadRequest;
}

/** A server the proxies forward to. Pass-through proxies send its `request(key)` unchanged. */
export interface Upstream extends Target {
  request(key: string): LoadRequest;
  /** The CA certificate (PEM file) a client must trust to reach an `https` origin. */
  readonly caFile?: string;
}

/** Where the processes run and log. */
export interface StartOptions {
  /** Directory for logs and the generated config. */
  dir: string;
  /** CPU core for `taskset -c`; undefined = unpinned. */
  cpu?: number;
  /** Appended to log and config file names, so one kind of target can run per upstream. */
  tag?: string;
  /** The project routes by model (see {@linkcode projectConfig}). @default true */
  modelRouting?: boolean;
  /** The project's `workers`. @default 1 */
  workers?: number;
}

const ROOT = new URL("../", import.meta.url).pathname;
const deno = Deno.execPath();

/** `${dir}/${name}[-tag]${ext}`: where a target's log or config goes. */
export function fileOf(o: StartOptions, name: string, ext: string): string {
  return `${o.dir}/${name}${o.tag ? `-${o.tag}` : ""}${ext}`;
}

async function start(
  name: string,
  args: string[],
  port: number,
  o: StartOptions & { env?: Record<string, string> },
): Promise<Target> {
  const proc = spawn(name, [deno, "run", ...args], {
    logFile: fileOf(o, name, ".log"),
    cpu: o.cpu,
    cwd: ROOT,
    env: o.env,
  });
  await waitForPort(port, proc);
  return { name, proc, origin: `http://127.0.0.1:${port}` };
}

/**
 * The project's mock upstream (`tools/mock_upstream.ts`). Its SSE length also travels as
 * the `x-mock-chunks` header: a gateway that rebuilds the JSON body (Portkey) drops the
 * body's `mock_chunks`.
 */
export async function startMock(o: StartOptions): Promise<Upstream> {
  const port = freePort();
  const args = ["--allow-net", "tools/mock_upstream.ts", "--port", String(port)];
  const target = await start("mock", args, port, o);
  return {
    ...target,
    request: (key) => ({
      path: CHAT_PATH,
      headers: key === "b" ? { "x-mock-chunks": String(STREAM_CHUNKS) } : undefined,
    }),
  };
}

/** `DENO_CERT` for a proxy in front of `upstream`, so Deno trusts the upstream's CA. */
function trustEnv(upstream: Upstream): Record<string, string> | undefined {
  return upstream.caFile ? { DENO_CERT: upstream.caFile } : undefined;
}

/** `bench/reference_proxy.ts` or `bench/buffering_proxy.ts` in front of `upstream`. */
export async function startMinimalProxy(
  kind: "reference" | "buffering",
  upstream: Upstream,
  o: StartOptions,
): Promise<Target> {
  const port = freePort();
  const file = `bench/${kind}_proxy.ts`;
  const args = ["--allow-net", file, "--port", String(port), "--upstream", upstream.origin];
  const target = await start(kind, args, port, { ...o, env: trustEnv(upstream) });
  return { ...target, request: upstream.request };
}

/**
 * `copies` reference proxies on one port (`SO_REUSEPORT`; the kernel spreads the connections):
 * the control for the project's `workers`, a proxy that shares nothing between its copies.
 */
export async function startReferenceCopies(
  copies: number,
  upstream: Upstream,
  o: StartOptions,
): Promise<Target> {
  const port = freePort();
  const procs: Proc[] = [];
  for (let i = 1; i <= copies; i++) {
    const name = `reference-${i}of${copies}`;
    const args = [
      "--allow-net",
      "bench/reference_proxy.ts",
      ...["--port", String(port), "--upstream", upstream.origin, "--reuse-port"],
    ];
    const started = await start(name, args, port, { ...o, env: trustEnv(upstream) });
    // The port answers as soon as the first copy listens: each says so itself.
    await waitForLog(started.proc, "Listening on");
    procs.push(started.proc);
  }
  return {
    name: `reference ×${copies}`,
    proc: procs[0]!,
    procs,
    workers: copies,
    origin: `http://127.0.0.1:${port}`,
    request: upstream.request,
  };
}

/** Resolves once `proc`'s log contains `text`; throws after `timeoutMs`. */
async function waitForLog(proc: Proc, text: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = await Deno.readTextFile(proc.logFile).catch(() => "");
    if (log.includes(text)) return;
    await sleep(50);
  }
  throw new Error(`${proc.name} (pid ${proc.pid}) did not log "${text}" within ${timeoutMs} ms`);
}

/** Generous token buckets: configured and consulted on every request, never exhausted. */
const HIGH_LIMIT = "{ perSecond: 1000000, burst: 1000000 }";

/**
 * The client key the load presents to the project: keys are on in the realistic config (the
 * default config requires one), so each request is identified, limited and charged.
 */
export const BENCH_CLIENT_KEY = "sk-bench-client-key-0123456789abcdef";

/**
 * The project's config for the benchmark; both upstreams are the same server under two names.
 * The group's `httpClient` (pool size, keep-alive, TLS) is left at its defaults on purpose:
 * the figures are what a user gets without tuning. With `modelRouting` (the default) groups
 * are chosen by the body's model, as LLM gateways are configured: the load's `bench-model`
 * goes to `pool` by its exact name past a second group of globs, and `up_a` renames it
 * (`modelMap`), so half the requests have their body rewritten.
 */
export function projectConfig(
  port: number,
  adminPort: number,
  upstream: string,
  /** The client key's `sha256:` digest (the key is {@linkcode BENCH_CLIENT_KEY}). */
  keyDigest = formatDigest(BENCH_CLIENT_KEY),
  modelRouting = true,
  /** `workers` (serving threads). */
  workers = 1,
): string {
  const upstreamBlock = (name: string, extra = "") => `
  - name: ${name}
    url: "${upstream}"
    breaker: { threshold: 0.5, cooldown: 30, maxRequests: 3, interval: 10, minRequests: 10 }
    ratelimit: ${HIGH_LIMIT}${extra}`;
  const modelMap = modelRouting ? `\n    modelMap: { "bench-model": "bench-model-a" }` : "";
  const routing = modelRouting
    ? `
    models: ["gpt-4o", "gpt-4o-mini", "bench-model", "bench-*"]
  - name: others
    upstreams: [{ name: up_b }]
    models: ["claude-*", "llama-*", "mistral-*"]`
    : "";
  return `# Generated by bench/targets.ts
workers: ${workers}
httpServer:
  forwards:
    - name: bench
      port: ${port}
      address: "127.0.0.1"
      defaultGroup: pool
      ratelimit: ${HIGH_LIMIT}
  admin:
    port: ${adminPort}
    address: "127.0.0.1"
upstreams:${upstreamBlock("up_a", modelMap)}${upstreamBlock("up_b")}
upstreamGroups:
  - name: pool
    upstreams: [{ name: up_a }, { name: up_b }]
    balance: { strategy: roundrobin }${routing}
clientKeys:
  - name: bench
    key: "${keyDigest}"
    ratelimit: ${HIGH_LIMIT}
    tokens: { perMinute: 1000000000000 }
`;
}

/** The project (`main.ts`) with {@linkcode projectConfig}; its access log goes to its log file. */
export async function startProject(upstream: Upstream, o: StartOptions): Promise<Target> {
  const port = freePort();
  const adminPort = freePort();
  const configFile = fileOf(o, (o.workers ?? 1) > 1 ? `project-w${o.workers}` : "project", ".yaml");
  await Deno.writeTextFile(
    configFile,
    projectConfig(
      port,
      adminPort,
      upstream.origin,
      undefined,
      o.modelRouting ?? true,
      o.workers ?? 1,
    ),
  );
  const args = [
    "--allow-net",
    "--allow-read",
    "--allow-env",
    "--allow-run", // the config is loaded in a child process, as `deno task start` does
    "main.ts",
    "-c",
    configFile,
    "--log-level",
    "info",
  ];
  const workers = o.workers ?? 1;
  const name = workers > 1 ? `project-w${workers}` : "project";
  const target = await start(name, args, port, { ...o, env: trustEnv(upstream) });
  return {
    ...target,
    workers,
    adminOrigin: `http://127.0.0.1:${adminPort}`,
    request: (key) => {
      const request = upstream.request(key);
      const authorization = `Bearer ${BENCH_CLIENT_KEY}`;
      return { ...request, headers: { ...request.headers, authorization } };
    },
  };
}
