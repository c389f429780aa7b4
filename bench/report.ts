/**
 * The shape of a benchmark session's results (written as JSON) and its markdown summary.
 *
 * @module
 */
import type { LoadReport } from "./load.ts";
import { latencyMarkdown } from "./latency_report.ts";
import type { LatencyResults } from "./latency_scenarios.ts";
import type { ProbeResult } from "./sse_probe.ts";
import { median, type Spread, spread } from "./stats.ts";

/** One time-bounded run against one target. */
export interface RunResult extends LoadReport {
  /** Proxy CPU (utime + stime) per completed request, µs. */
  cpuUsPerRequest: number;
  /** Peak RSS of the proxy during the run, MiB. */
  rssPeakMiB: number;
}

/** The two compared targets. */
export type TargetName = "reference" | "project";

/** Everything a session measured. */
export interface Results {
  meta: {
    startedAt: string;
    mode: "smoke" | "normal";
    loadTool: string;
    pinned: boolean;
    runs: number;
    durationS: number;
    connections: number;
    clockTicks: number;
    deno: string;
    cpus: number;
    notes: string[];
  };
  /** Direct load on the mock, no proxy: the ceiling of generator + mock. */
  mockAlone: Record<string, LoadReport>;
  /** Scenarios a (JSON) and b (SSE, 20 chunks, no delay): runs per target, in run order. */
  throughput: Record<string, Record<TargetName, RunResult[]>>;
  /** Scenario c: chunk timing per target, including the direct mock and the control. */
  sse?: { chunks: number; delayMs: number; targets: Record<string, ProbeResult> };
  /** Scenario d. */
  memory?: {
    idleMiB: Record<TargetName, number>;
    /** Idle again, 1 s after the warm-up load. */
    idleAfterWarmUpMiB?: Record<TargetName, number>;
    /** Peak RSS over the scenario-a runs (undefined if a did not run). */
    underLoadMiB?: Record<TargetName, number>;
    streams: { count: number; chunks: number; delayMs: number };
    streamRuns: Record<TargetName, RunResult[]>;
  };
  /** Scenarios f–i: latency overhead against the mock directly (bench/latency_scenarios.ts). */
  latency?: LatencyResults;
  /** Scenario e (project only). */
  soak?: { durationS: number; samples: { s: number; rssMiB: number }[]; slopeMiBPerMin: number };
  /** Sanity checks on the harness itself. */
  checks: Record<string, string>;
}

const f = (n: number, digits = 0) => Number.isFinite(n) ? n.toFixed(digits) : "–";
const ratio = (p: number, r: number) => f(p / r, 2);

const SCENARIO_TITLES: Record<string, string> = {
  a: "a: JSON chat completion",
  b: "b: SSE, 20 chunks, no delay",
};

function spreadText(s: Spread, digits = 0): string {
  return `${f(s.min, digits)} / **${f(s.median, digits)}** / ${f(s.max, digits)}`;
}

/** The markdown summary of `r`. */
export function markdown(r: Results): string {
  const m = r.meta;
  const lines: string[] = [];
  lines.push(
    `### Benchmark ${m.startedAt} (${m.mode})`,
    "",
    `Load: ${m.loadTool}, ${m.connections} connections, ${m.runs} × ${m.durationS} s runs per ` +
      `target, interleaved; ${
        m.pinned ? "pinned (load + mock on CPU 0, proxy on CPU 1)" : "unpinned"
      }; ` +
      `Deno ${m.deno}, ${m.cpus} CPUs. Figures are min / **median** / max over runs; ` +
      `latency and CPU are medians. CPU = proxy utime+stime per request.`,
    "",
  );
  if (Object.keys(r.throughput).length > 0) {
    lines.push(
      "| Scenario | Target | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | errors |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const [key, byTarget] of Object.entries(r.throughput)) {
      const title = SCENARIO_TITLES[key] ?? key;
      const alone = r.mockAlone[key];
      if (alone) {
        lines.push(
          `| ${title} | mock alone (no proxy) | ${f(alone.rps)} | ${f(alone.p50Ms, 2)} | ${
            f(alone.p99Ms, 2)
          } | | | ${alone.errors + alone.non2xx} |`,
        );
      }
      const med = (t: TargetName, k: keyof RunResult) =>
        median(byTarget[t].map((x) => Number(x[k])));
      for (const t of ["reference", "project"] as const) {
        const runs = byTarget[t];
        const errs = runs.reduce((s, x) => s + x.errors + x.non2xx, 0);
        lines.push(
          `| ${title} | ${t} | ${spreadText(spread(runs.map((x) => x.rps)))} | ${
            f(med(t, "p50Ms"), 2)
          } | ${f(med(t, "p99Ms"), 2)} | ${f(med(t, "cpuUsPerRequest"))} | ${
            f(med(t, "rssPeakMiB"), 1)
          } | ${errs} |`,
        );
      }
      const q = (k: keyof RunResult) => ratio(med("project", k), med("reference", k));
      lines.push(
        `| ${title} | **project ÷ reference** | **${q("rps")}** | ${q("p50Ms")} | ${q("p99Ms")} | ${
          q("cpuUsPerRequest")
        } | ${q("rssPeakMiB")} | |`,
      );
    }
    lines.push("");
  }
  if (r.sse) {
    const s = r.sse;
    lines.push(
      `**c: SSE, ${s.chunks} chunks ${s.delayMs} ms apart** — incremental = the events' ` +
        `arrivals spread over ≥ 60 % of ${(s.chunks - 1) * s.delayMs} ms and the first ` +
        `before half of it. The buffering control must FAIL.`,
      "",
      "| Target | headers ms | first event ms | spread ms | reads with events | incremental |",
      "|---|---|---|---|---|---|",
    );
    for (const [name, p] of Object.entries(s.targets)) {
      lines.push(
        `| ${name} | ${f(p.headersMs, 1)} | ${f(p.ttfbMs, 1)} | ${f(p.spreadMs)} | ${
          f(p.reads)
        } | ${p.pass ? "PASS" : "FAIL"}${p.error ? ` (${p.error})` : ""} |`,
      );
    }
    lines.push("");
  }
  if (r.memory) {
    const mem = r.memory;
    const sr = mem.streamRuns;
    const peak = (t: TargetName) => median(sr[t].map((x) => x.rssPeakMiB));
    const cpu = (t: TargetName) => median(sr[t].map((x) => x.cpuUsPerRequest));
    const done = (t: TargetName) =>
      sr[t].map((x) => `${x.completed}/${mem.streams.count}`).join(", ");
    const row = (label: string, ref: number, proj: number, digits = 1) =>
      `| ${label} | ${f(ref, digits)} | ${f(proj, digits)} | ${ratio(proj, ref)} |`;
    lines.push(
      `**d: memory** (RSS = VmRSS of the proxy process)`,
      "",
      "| | reference | project | project ÷ reference |",
      "|---|---|---|---|",
      row("RSS idle after start, MiB", mem.idleMiB.reference, mem.idleMiB.project),
    );
    if (mem.idleAfterWarmUpMiB) {
      lines.push(
        row(
          "RSS idle 1 s after a 1 s warm-up load, MiB",
          mem.idleAfterWarmUpMiB.reference,
          mem.idleAfterWarmUpMiB.project,
        ),
      );
    }
    if (mem.underLoadMiB) {
      lines.push(
        row(
          "RSS under load (peak, scenario a), MiB",
          mem.underLoadMiB.reference,
          mem.underLoadMiB.project,
        ),
      );
    }
    lines.push(
      row(
        `RSS with ${mem.streams.count} slow streams (peak, median of runs), MiB`,
        peak("reference"),
        peak("project"),
      ),
      row("CPU µs per slow stream", cpu("reference"), cpu("project"), 0),
      `| slow streams completed (${mem.streams.chunks} chunks × ${mem.streams.delayMs} ms) | ${
        done("reference")
      } | ${done("project")} | |`,
      "",
    );
  }
  lines.push(...latencyMarkdown(r.latency));
  if (r.soak) {
    const s = r.soak;
    // Samples swing by several MiB (GC): the thirds' medians say more than the slope alone.
    const third = Math.max(1, Math.floor(s.samples.length / 3));
    const rss = s.samples.map((x) => x.rssMiB);
    const first = median(rss.slice(0, third));
    const last = median(rss.slice(-third));
    lines.push(
      `**e: soak** (project, ${s.durationS} s of scenario-a load): RSS trend ` +
        `${f(s.slopeMiBPerMin, 3)} MiB/min (least-squares slope); median RSS of the first third ` +
        `${f(first, 1)} MiB, of the last third ${f(last, 1)} MiB`,
      "",
      "| t s | " + s.samples.map((x) => f(x.s)).join(" | ") + " |",
      "|---|" + s.samples.map(() => "---").join("|") + "|",
      "| RSS MiB | " + s.samples.map((x) => f(x.rssMiB, 1)).join(" | ") + " |",
      "",
    );
  }
  const checks = Object.entries(r.checks).map(([k, v]) => `${k}: ${v}`);
  if (checks.length > 0) lines.push("Checks: " + checks.join("; ") + ".", "");
  for (const note of m.notes) lines.push(`Note: ${note}`, "");
  return lines.join("\n");
}
