/**
 * Scenarios f–i, the figures LLM gateway users compare: the latency a proxy adds, measured as
 * public gateway benchmarks do: the same closed-loop load (`overhead.ts`) sent to the mock
 * directly and through each proxy, overhead = latency through the proxy − latency direct.
 *
 * - f: JSON chat completion at 1, 16 and 64 connections: request → last byte.
 * - g: SSE (20 events 1 ms apart) at 1 and 16 connections: request → first `data:` event.
 * - h: a large-context request (~400 KB of JSON, a 100k-token prompt) at 16 connections.
 * - i: 64 concurrent streams of 200 events 5 ms apart: the gap between consecutive events.
 *
 * Runs are interleaved (direct, reference, project, then again) so drift hits all alike.
 *
 * @module
 */
import { headerArgs, runCommand } from "./loadgen.ts";
import { otherLoad } from "./other_load.ts";
import type { LatencyReport } from "./overhead.ts";
import type { Session } from "./scenarios.ts";
import { median } from "./stats.ts";
import type { Target } from "./targets.ts";

/** What is measured: the mock alone and the two proxies in front of it. */
export type LatencyTarget = "direct" | "reference" | "project";
const TARGETS: readonly LatencyTarget[] = ["direct", "reference", "project"];

/** Which of the client's measures a case reports. */
export type Metric = "latency" | "firstEvent" | "eventGap";

/** The medians over runs for one target; overheads are medians of per-run differences. */
export interface LatencySummary {
  p50Us: number;
  p99Us: number;
  /** Target − direct (absent for direct). */
  overheadP50Us?: number;
  overheadP99Us?: number;
}

/** One run of the client against one target. */
export interface LatencyRun extends LatencyReport {
  /** CPU used meanwhile by processes outside the benchmark, cores (see `other_load.ts`). */
  otherCores: number;
}

/** One case (a scenario at one concurrency). */
export interface LatencyCaseResult {
  scenario: string;
  title: string;
  metric: Metric;
  connections: number;
  /** The issue's bar: the project's overhead p99 must not exceed this, µs. */
  barP99Us?: number;
  runs: Record<LatencyTarget, LatencyRun[]>;
  summary: Record<LatencyTarget, LatencySummary>;
}

/** Scenarios f–i: case key (e.g. `f-c16`) → result. */
export type LatencyResults = Record<string, LatencyCaseResult>;

/** The scenario letters this module runs. */
export const LATENCY_SCENARIOS: readonly string[] = ["f", "g", "h", "i"];

/** Per-run timing (`--smoke` passes short ones) and the session's scratch directory. */
export interface LatencyOptions {
  durationS: number;
  /** Seconds of load before the measured period on every run (the JIT, the pools). */
  warmupS: number;
  /** Where the large request body is written (it is too long for a command-line argument). */
  dir: string;
}

interface Case {
  scenario: string;
  title: string;
  connections: number;
  metric: Metric;
  /** Request body, or a file holding it. */
  body: { text: string } | { file: string };
  barP99Us?: number;
}

const PATH = "/v1/chat/completions";
const MESSAGES = [{ role: "user", content: "Say hello" }];
const JSON_BODY = JSON.stringify({ model: "bench-model", messages: MESSAGES });
const sseBody = (chunks: number, delayMs: number) =>
  JSON.stringify({
    model: "bench-model",
    messages: MESSAGES,
    stream: true,
    mock_chunks: chunks,
    mock_delay_ms: delayMs,
  });

function cases(keys: ReadonlySet<string>, largeFile: string): [string, Case][] {
  const out: [string, Case][] = [];
  const json = { text: JSON_BODY };
  if (keys.has("f")) {
    for (const c of [1, 16, 64]) {
      out.push([`f-c${c}`, {
        scenario: "f",
        title: `f: JSON, ${c} connection${c > 1 ? "s" : ""}, request → last byte`,
        connections: c,
        metric: "latency",
        body: json,
        barP99Us: c === 16 ? 1000 : undefined,
      }]);
    }
  }
  if (keys.has("g")) {
    for (const c of [1, 16]) {
      out.push([`g-c${c}`, {
        scenario: "g",
        title: `g: SSE 20 × 1 ms, ${c} connection${c > 1 ? "s" : ""}, request → first event`,
        connections: c,
        metric: "firstEvent",
        body: { text: sseBody(20, 1) },
        barP99Us: 1000,
      }]);
    }
  }
  if (keys.has("h")) {
    out.push(["h-c16", {
      scenario: "h",
      title: "h: ~400 KB request (100k-token prompt), 16 connections, request → last byte",
      connections: 16,
      metric: "latency",
      body: { file: largeFile },
    }]);
  }
  if (keys.has("i")) {
    out.push(["i-c64", {
      scenario: "i",
      title: "i: 64 streams of 200 events 5 ms apart, gap between events",
      connections: 64,
      metric: "eventGap",
      body: { text: sseBody(200, 5) },
      barP99Us: 2000,
    }]);
  }
  return out;
}

const OVERHEAD_TS = new URL("./overhead.ts", import.meta.url).pathname;
/** Request timeout of the client, and the slack before a stuck client is killed, s. */
const TIMEOUT_S = 10;

async function runClient(s: Session, t: LatencyOptions, target: Target, c: Case) {
  const pin = s.loadCpu === undefined ? [] : ["taskset", "-c", String(s.loadCpu)];
  const body = "text" in c.body ? ["--body", c.body.text] : ["--body-file", c.body.file];
  // What the target asks every request to carry (the project: its client key).
  const headers = headerArgs(target.request?.("a").headers);
  const text = await runCommand([
    ...pin,
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    OVERHEAD_TS,
    ...["--url", target.origin + PATH, "--connections", String(c.connections)],
    ...["--duration", String(t.durationS), "--warmup", String(t.warmupS)],
    ...["--timeout", String(TIMEOUT_S), ...body, ...headers],
  ], t.warmupS + t.durationS + 2 * TIMEOUT_S);
  return JSON.parse(text.trim().split("\n").pop()!) as LatencyReport;
}

/** Runs the selected scenarios (`keys` ⊇ some of f, g, h, i), `s.runs` interleaved runs each. */
export async function latencyScenarios(
  s: Session,
  targets: Record<LatencyTarget, Target>,
  keys: ReadonlySet<string>,
  t: LatencyOptions,
): Promise<LatencyResults> {
  const largeFile = `${t.dir}/large_context.json`;
  if (keys.has("h")) await Deno.writeTextFile(largeFile, largeContextBody(400_000));
  const out: LatencyResults = {};
  for (const [key, c] of cases(keys, largeFile)) {
    const runs: Record<LatencyTarget, LatencyRun[]> = { direct: [], reference: [], project: [] };
    const pids = TARGETS.map((name) => targets[name].proc.pid);
    for (let i = 0; i < s.runs; i++) {
      for (const name of TARGETS) {
        const others = await otherLoad(pids, s.clockTicks);
        const r = { ...await runClient(s, t, targets[name], c), otherCores: await others.stop() };
        runs[name].push(r);
        const q = r[c.metric];
        const errors = r.errors + r.non2xx;
        s.log(
          `  ${key} run ${i + 1} ${name}: p50 ${ms(q.p50Us)} ms, p99 ${ms(q.p99Us)} ms ` +
            `(${q.count} samples, ${r.rps.toFixed(0)} responses/s)` +
            `${errors > 0 ? `, ${errors} errors (${r.firstError ?? "non-2xx"})` : ""}` +
            `${
              r.otherCores >= 0.1 ? `; other processes used ${r.otherCores.toFixed(2)} CPUs` : ""
            }`,
        );
      }
    }
    const summary = summarise(runs, c.metric);
    s.log(
      `  ${key} overhead p50 / p99: reference ${ms(summary.reference.overheadP50Us!)} / ${
        ms(summary.reference.overheadP99Us!)
      } ms, project ${ms(summary.project.overheadP50Us!)} / ${
        ms(summary.project.overheadP99Us!)
      } ms`,
    );
    const { body: _, ...described } = c;
    out[key] = { ...described, runs, summary };
  }
  return out;
}

function summarise(
  runs: Record<LatencyTarget, LatencyRun[]>,
  metric: Metric,
): Record<LatencyTarget, LatencySummary> {
  const values = (t: LatencyTarget, q: "p50Us" | "p99Us") => runs[t].map((r) => r[metric][q]);
  // Per-run differences: run i of a proxy ran next to run i of direct, under the same drift.
  const overhead = (t: LatencyTarget, q: "p50Us" | "p99Us") => {
    const direct = values("direct", q);
    return median(values(t, q).map((v, i) => v - direct[i]!));
  };
  const one = (t: LatencyTarget): LatencySummary => ({
    p50Us: median(values(t, "p50Us")),
    p99Us: median(values(t, "p99Us")),
    ...(t === "direct" ? {} : {
      overheadP50Us: overhead(t, "p50Us"),
      overheadP99Us: overhead(t, "p99Us"),
    }),
  });
  return { direct: one("direct"), reference: one("reference"), project: one("project") };
}

/** µs → "1.234" ms; "–" when there was no sample (the client's JSON turns NaN into null). */
const ms = (
  us: number | null,
) => (us === null || !Number.isFinite(us) ? "–" : (us / 1000).toFixed(3));

/** Words of varied length, so the prompt looks like text rather than one repeated token. */
const WORDS = ("the proxy forwards each request to an upstream model and streams the answer " +
  "back while counting tokens latency budgets retries circuit breakers and rate limits " +
  "shape what a gateway adds between a client and its language model provider").split(" ");

/**
 * A chat completion request of about `bytes` bytes: a system prompt and alternating turns of
 * long content, as an agent with a large context sends (~4 bytes per token: 400 KB ≈ 100k).
 */
export function largeContextBody(bytes: number): string {
  const turn = 8_000;
  const messages: { role: string; content: string }[] = [];
  let size = 0;
  for (let i = 0; size < bytes - 200; i++) {
    let content = "";
    for (let w = i; content.length < Math.min(turn, bytes - 200 - size); w += 7) {
      content += WORDS[w % WORDS.length] + (w % 13 === 0 ? ".\n" : " ");
    }
    const role = i === 0 ? "system" : i % 2 === 1 ? "user" : "assistant";
    messages.push({ role, content });
    size += content.length + 40;
  }
  return JSON.stringify({ model: "bench-model", messages, max_tokens: 256 });
}
