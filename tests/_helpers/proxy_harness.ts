/**
 * Starts the real proxy (listeners on port 0) on a YAML config for e2e tests.
 *
 * @module
 */
import { parseConfig } from "../../src/config/load.ts";
import { type RunningApp, startApp } from "../../src/app.ts";
import { createLogger, type Logger, silentLogger } from "../../src/log.ts";
import type { Clock } from "../../src/deps.ts";

/** A running proxy for a test. */
export interface TestProxy {
  readonly app: RunningApp;
  /** Base URL of a forward (`http://127.0.0.1:PORT`), by name; the first one by default. */
  url(forward?: string): string;
  /** Base URL of the admin listener. */
  adminUrl(): string;
  /** Log lines written (when `captureLogs` was set). */
  readonly logs: string[];
  stop(): Promise<void>;
}

/** Options of {@linkcode startTestProxy}. */
export interface TestProxyOptions {
  env?: Record<string, string>;
  /** Capture log lines (at `logLevel`) into `logs`. */
  captureLogs?: boolean;
  logLevel?: "debug" | "info" | "warn" | "error";
  json?: boolean;
  clock?: Clock;
  random?: () => number;
  /** The `fetch` the fetch transport calls (with `transport: "fetch"`, or through a proxy). */
  fetch?: typeof fetch;
  /** Forces a transport for every group. @default `LLMPROXY_TRANSPORT` from the environment */
  transport?: "fetch" | "http1";
}

/**
 * Starts the proxy on `yaml`. Use port 0 for every listener. The config source is named
 * `test.yaml` in errors.
 */
export async function startTestProxy(
  yaml: string,
  options: TestProxyOptions = {},
): Promise<TestProxy> {
  const env = options.env ?? {};
  const loaded = parseConfig(yaml, "test.yaml", (name) => env[name]);
  const logs: string[] = [];
  const log: Logger = options.captureLogs
    ? createLogger({
      level: options.logLevel ?? "debug",
      json: options.json ?? false,
      write: (line) => logs.push(line),
    })
    : silentLogger;
  // LLMPROXY_TRANSPORT=fetch runs the suite against the fetch transport (see .ci/run).
  const transport = options.transport ?? Deno.env.get("LLMPROXY_TRANSPORT");
  const app = await startApp(loaded, {
    log,
    ...(transport === "fetch" || transport === "http1" ? { transport } : {}),
    handleSignals: false,
    env: (name) => env[name],
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  return {
    app,
    logs,
    url(forward) {
      const listener = forward ? app.forwards.get(forward) : app.forwards.values().next().value;
      if (!listener) throw new Error(`no forward ${forward}`);
      return `http://127.0.0.1:${listener.port}`;
    },
    adminUrl() {
      if (!app.admin) throw new Error("no admin listener configured");
      return `http://127.0.0.1:${app.admin.port}`;
    },
    stop: () => app.stop(),
  };
}

/** A minimal config: one forward (port 0) → group `g` → the given upstream URLs. */
export function simpleConfig(
  upstreamUrls: readonly string[],
  extra: { upstream?: string; group?: string; forward?: string; server?: string } = {},
): string {
  const upstreams = upstreamUrls.map((url, i) =>
    `  - name: u${i}\n    url: "${url}"\n${indent(extra.upstream ?? "", 4)}`
  ).join("\n");
  const refs = upstreamUrls.map((_, i) => `{name: u${i}}`).join(", ");
  return `httpServer:
${indent(extra.server ?? "", 2)}
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
${indent(extra.forward ?? "", 6)}
  admin: {port: 0}
upstreams:
${upstreams}
upstreamGroups:
  - name: g
    upstreams: [${refs}]
${indent(extra.group ?? "", 4)}
`;
}

function indent(text: string, spaces: number): string {
  if (!text.trim()) return "";
  const pad = " ".repeat(spaces);
  return text.split("\n").filter((l) => l.trim()).map((l) => pad + l).join("\n");
}
