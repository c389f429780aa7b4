/**
 * The measured scenarios. Each run is time-bounded; runs alternate between the targets
 * (reference, project, peers) so all see the same machine conditions.
 *
 * @module
 */
import { STREAM_CHUNKS } from "./canned_responses.ts";
import { headerArgs, type LoadTool, runCommand, runLoad } from "./loadgen.ts";
import type { LoadReport } from "./load.ts";
import { machineTicks, procInfo, rssSampler } from "./procs.ts";
import type { Results, RunResult, TargetName } from "./report.ts";
import { PROBE_CLIENT, type ProbeResult, probeSse } from "./sse_probe.ts";
import { slope } from "./stats.ts";
import { CHAT_PATH, type Target, type Upstream } from "./targets.ts";

/** What every scenario needs. */
export interface Session {
  tool: LoadTool;
  durationS: number;
  runs: number;
  connections: number;
  clockTicks: number;
  /** CPU core of the load generator (when pinned). */
  loadCpu?: number;
  log(line: string): void;
}

const MESSAGES = [{ role: "user", content: "Say hello" }];

/** Request bodies of the load scenarios (the mock reads `mock_*` fields). */
export const BODIES: Record<string, string> = {
  a: JSON.stringify({ model: "bench-model", messages: MESSAGES }),
  b: JSON.stringify({
    model: "bench-model",
    messages: MESSAGES,
    stream: true,
    mock_chunks: STREAM_CHUNKS,
    mock_delay_ms: 0,
  }),
};

/** One load run of scenario `key` on `target`, sent as the target asks. */
function loadOn(s: Session, target: Target, key: string, caFile?: string): Promise<LoadReport> {
  const request = target.request?.(key) ?? { path: CHAT_PATH };
  return runLoad({
    tool: s.tool,
    url: target.origin + request.path,
    body: BODIES[key]!,
    headers: request.headers,
    caFile,
    connections: s.connections,
    durationS: s.durationS,
    cpu: s.loadCpu,
  });
}

/**
 * Direct load on an upstream: shows whether the upstream (with the generator) is the
 * bottleneck.
 */
export async function upstreamAlone(s: Session, upstream: Upstream, key: string) {
  const report = await loadOn(s, upstream, key, upstream.caFile);
  s.log(`  ${upstream.name} alone, scenario ${key}: ${describe(report)}`);
  return report;
}

/**
 * One request of scenario `key` to `target`, checked: a 200 whose body looks like the
 * scenario's answer (for SSE, the whole stream). Returns what was wrong, or undefined. Catches a peer that answers every
 * request with an error before its runs would count only "non-2xx".
 */
export async function preflight(target: Target, key: string): Promise<string | undefined> {
  const request = target.request?.(key) ?? { path: CHAT_PATH };
  try {
    const res = await fetch(target.origin + request.path, {
      client: PROBE_CLIENT,
      method: "POST",
      headers: { "content-type": "application/json", ...request.headers },
      body: BODIES[key]!,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    const expected = key === "b" ? "data: [DONE]" : '"chat.completion"';
    if (res.status !== 200 || !text.includes(expected)) {
      return `HTTP ${res.status}: ${text.slice(0, 200)}`;
    }
    // Every upstream sends STREAM_CHUNKS events and [DONE]: a target that lost the mock's
    // length control would be measured on shorter streams.
    const events = text.match(/^data: /gm)?.length ?? 0;
    if (key === "b" && events !== STREAM_CHUNKS + 1) {
      return `${events} SSE events instead of ${STREAM_CHUNKS + 1}`;
    }
    return undefined;
  } catch (error) {
    return String(error);
  }
}

/**
 * One load run against `target`, with the proxy's CPU (summed over its processes) and peak RSS
 * (the sum of each process's peak), and how idle the machine was.
 */
async function measured(
  s: Session,
  target: Target,
  load: () => Promise<LoadReport>,
): Promise<RunResult> {
  const pids = (target.procs ?? [target.proc]).map((p) => p.pid);
  const ticks = async () => {
    const infos = await Promise.all(pids.map(procInfo));
    return infos.reduce((sum, info) => sum + info.ticks, 0);
  };
  const ticks0 = await ticks();
  const machine0 = await machineTicks();
  const samplers = pids.map((pid) => rssSampler(pid));
  let report: LoadReport;
  let rssPeakMiB: number;
  try {
    report = await load();
  } finally {
    const peaks = await Promise.all(samplers.map((sampler) => sampler.stop()));
    rssPeakMiB = peaks.reduce((a, b) => a + b, 0);
  }
  const machine1 = await machineTicks();
  const cpuS = ((await ticks()) - ticks0) / s.clockTicks;
  return {
    ...report,
    cpuUsPerRequest: (cpuS * 1e6) / report.completed,
    rssPeakMiB,
    idlePct: (100 * (machine1.idle - machine0.idle)) / (machine1.total - machine0.total),
  };
}

/** Scenarios a and b: `runs` runs per target, interleaved in the order of `targets`. */
export async function throughput(
  s: Session,
  targets: Record<string, Target>,
  key: string,
): Promise<Record<string, RunResult[]>> {
  const out: Record<string, RunResult[]> = {};
  for (let i = 0; i < s.runs; i++) {
    for (const [name, target] of Object.entries(targets)) {
      const run = await measured(s, target, () => loadOn(s, target, key));
      s.log(`  ${key} run ${i + 1} ${name}: ${describe(run)}`);
      (out[name] ??= []).push(run);
    }
  }
  return out;
}

/** Scenario c: the chunk-by-chunk check on each target. */
export async function sseCheck(
  s: Session,
  targets: Record<string, Target>,
  chunks: number,
  delayMs: number,
): Promise<Record<string, ProbeResult>> {
  const out: Record<string, ProbeResult> = {};
  for (const [name, target] of Object.entries(targets)) {
    const r = await probeSse({
      url: target.origin + CHAT_PATH,
      chunks,
      delayMs,
      samples: 3,
      headers: target.request?.("b").headers,
    });
    s.log(
      `  c ${name}: first event ${r.ttfbMs.toFixed(1)} ms, spread ${
        r.spreadMs.toFixed(0)
      }/${r.expectedSpreadMs} ms over ${r.reads} reads → ${r.pass ? "PASS" : "FAIL"}${
        r.error ? ` (${r.error})` : ""
      }`,
    );
    out[name] = r;
  }
  return out;
}

const LOAD_TS = new URL("./load.ts", import.meta.url).pathname;

/** Scenario d: `count` concurrent slow SSE streams, one per connection; all must complete. */
export async function slowStreams(
  s: Session,
  targets: Record<TargetName, Target>,
  o: { count: number; chunks: number; delayMs: number },
): Promise<Record<TargetName, RunResult[]>> {
  const body = JSON.stringify({
    model: "bench-model",
    messages: MESSAGES,
    stream: true,
    mock_chunks: o.chunks,
    mock_delay_ms: o.delayMs,
  });
  const limitS = Math.ceil((o.chunks * o.delayMs) / 1000) + 20;
  const pin = s.loadCpu === undefined ? [] : ["taskset", "-c", String(s.loadCpu)];
  const out: Record<TargetName, RunResult[]> = { reference: [], project: [] };
  for (let i = 0; i < s.runs; i++) {
    for (const name of ["reference", "project"] as const) {
      const target = targets[name];
      const run = await measured(s, target, async () => {
        const text = await runCommand([
          ...pin,
          Deno.execPath(),
          "run",
          "--allow-net",
          LOAD_TS,
          ...["--url", target.origin + CHAT_PATH, "--connections", String(o.count)],
          ...["--duration", String(limitS), "--timeout", String(limitS), "--body", body],
          ...headerArgs(target.request?.("b").headers),
          "--once",
          "--expect-done",
        ], limitS + 10);
        return JSON.parse(text.trim().split("\n").pop()!) as LoadReport;
      });
      s.log(
        `  d run ${i + 1} ${name}: ${run.completed}/${o.count} streams completed, peak RSS ${
          run.rssPeakMiB.toFixed(1)
        } MiB${run.firstError ? ` (first error: ${run.firstError})` : ""}`,
      );
      out[name].push(run);
    }
  }
  return out;
}

/** Scenario e: steady scenario-a load on the project; RSS sampled at `samples` intervals. */
export async function soak(
  s: Session,
  project: Target,
  durationS: number,
): Promise<NonNullable<Results["soak"]>> {
  const intervalS = Math.max(1, Math.round(durationS / 20));
  const samples: { s: number; rssMiB: number }[] = [];
  const t0 = performance.now();
  const sample = async () => {
    const rss = (await procInfo(project.proc.pid)).rssMiB;
    const at = (performance.now() - t0) / 1000;
    samples.push({ s: at, rssMiB: rss });
    s.log(`  soak t=${at.toFixed(0)} s: RSS ${rss.toFixed(1)} MiB`);
  };
  await sample();
  const timer = setInterval(() => void sample(), intervalS * 1000);
  try {
    const report = await runLoad({
      tool: s.tool,
      url: project.origin + CHAT_PATH,
      body: BODIES.a!,
      headers: project.request?.("a").headers,
      connections: s.connections,
      durationS,
      cpu: s.loadCpu,
    });
    s.log(`  soak load: ${describe(report)}`);
  } finally {
    clearInterval(timer);
  }
  await sample();
  const perMin = slope(samples.map((p) => ({ x: p.s / 60, y: p.rssMiB })));
  return { durationS, samples, slopeMiBPerMin: perMin };
}

function describe(r: LoadReport): string {
  const errs = r.errors + r.non2xx;
  return `${r.rps.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms` +
    `${
      "cpuUsPerRequest" in r ? `, ${(r as RunResult).cpuUsPerRequest.toFixed(0)} µs CPU/req` : ""
    }` +
    `${"idlePct" in r ? `, machine ${(r as RunResult).idlePct?.toFixed(0)} % idle` : ""}` +
    `${errs > 0 ? `, ${errs} errors (${r.firstError ?? "non-2xx"})` : ""}`;
}
