/**
 * The shape of a benchmark session's results (written as JSON) and its markdown summary.
 *
 * @module
 */
import type { LoadReport } from "./load.ts";
import { latencyMarkdown } from "./latency_report.ts";
import type { LatencyResults } from "./latency_scenarios.ts";
import type { ProbeResult } from "./sse_probe.ts";
import { type RedisStoreResults, redisStoreTable } from "./redis_store.ts";
import { median, type Spread, spread } from "./stats.ts";

/** One time-bounded run against one target. */
export interface RunResult extends LoadReport {
  /** Proxy CPU (utime + stime) per completed request, µs. */
  cpuUsPerRequest: number;
  /** Peak RSS of the proxy during the run, MiB. */
  rssPeakMiB: number;
  /**
   * Share of the machine's CPU time (all cores) left idle during the run, %: near 0, the cores
   * were the limit, not the proxy.
   */
  idlePct?: number;
}

/** The two targets every scenario has (peers join the throughput scenarios). */
export type TargetName = "reference" | "project";

/** A target's median over runs divided by the reference's median. */
export interface Ratio {
  rps: number;
  cpuUsPerRequest: number;
}

/** The throughput scenarios against one kind of upstream. */
export interface UpstreamResults {
  /** What answers, e.g. `nginx/1.22.1 over TLS (canned OpenAI bodies)`. */
  description: string;
  /** Load generator → upstream, no proxy: the ceiling of generator + upstream. */
  alone: Record<string, LoadReport>;
  /** Scenarios a (JSON) and b (SSE): runs per target (reference, project, peers), run order. */
  throughput: Record<string, Record<string, RunResult[]>>;
  /** Per scenario, per target other than the reference: its median ÷ the reference's. */
  ratios: Record<string, Record<string, Ratio>>;
}

/** Everything a session measured. */
export interface Results {
  meta: {
    startedAt: string;
    mode: "smoke" | "normal";
    loadTool: string;
    pinned: boolean;
    /** `--workers`: above 1, scenarios a and b also ran the project with this many workers. */
    workers?: number;
    runs: number;
    durationS: number;
    connections: number;
    clockTicks: number;
    deno: string;
    cpus: number;
    /** Upstream kinds measured, in order (`mock`, `nginx`, `tls`). */
    upstreams: string[];
    /** Peers measured beside the project (`--peers`). */
    peers: string[];
    notes: string[];
  };
  /** Scenarios a and b per upstream kind. */
  upstreams: Record<string, UpstreamResults>;
  /** Scenario c: chunk timing per target, including the direct mock and the control. */
  sse?: { chunks: number; delayMs: number; targets: Record<string, ProbeResult> };
  /** Scenario r: the Redis store against memory. */
  redisStore?: RedisStoreResults;
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
  b: "b: SSE, 20 events, no delay",
};

function spreadText(s: Spread, digits = 0): string {
  return `${f(s.min, digits)} / **${f(s.median, digits)}** / ${f(s.max, digits)}`;
}

/** Each non-reference target's median req/s and CPU per request ÷ the reference's. */
export function ratios(byTarget: Record<string, RunResult[]>): Record<string, Ratio> {
  const med = (t: string, k: "rps" | "cpuUsPerRequest") =>
    median((byTarget[t] ?? []).map((x) => x[k]));
  const out: Record<string, Ratio> = {};
  for (const t of Object.keys(byTarget)) {
    if (t === "reference") continue;
    out[t] = {
      rps: med(t, "rps") / med("reference", "rps"),
      cpuUsPerRequest: med(t, "cpuUsPerRequest") / med("reference", "cpuUsPerRequest"),
    };
  }
  return out;
}

/** The summary table: per upstream and scenario, each target's ratios to the reference. */
function ratioTable(r: Results): string[] {
  const targets = [
    ...new Set(
      Object.values(r.upstreams).flatMap((u) =>
        Object.values(u.throughput).flatMap((byTarget) => Object.keys(byTarget))
      ),
    ),
  ].filter((t) => t !== "reference");
  if (targets.length === 0) return [];
  const lines = [
    "**Ratios to the reference** (median req/s ÷ the reference's, then CPU per request ÷ the " +
    "reference's; > 1 req/s and < 1 CPU are better):",
    "",
    `| Upstream | Scenario | reference req/s, CPU µs/req | ${targets.join(" | ")} |`,
    `|---|---|---|${targets.map(() => "---").join("|")}|`,
  ];
  for (const [kind, u] of Object.entries(r.upstreams)) {
    for (const [key, byTarget] of Object.entries(u.throughput)) {
      const ref = byTarget.reference ?? [];
      const refText = `${f(median(ref.map((x) => x.rps)))}, ${
        f(median(ref.map((x) => x.cpuUsPerRequest)))
      }`;
      const cells = targets.map((t) => {
        const q = u.ratios[key]?.[t];
        return q ? `**${f(q.rps, 2)}×**, ${f(q.cpuUsPerRequest, 2)}×` : "–";
      });
      lines.push(
        `| ${kind} | ${SCENARIO_TITLES[key] ?? key} | ${refText} | ${cells.join(" | ")} |`,
      );
    }
  }
  lines.push("");
  return lines;
}

/**
 * With `--workers N`: per upstream and scenario, the project with N workers against itself with
 * one, beside the same for N copies of the reference (the control: copies sharing nothing).
 * Each cell: median req/s, CPU µs per request, how idle the machine was.
 */
function scalingTable(r: Results): string[] {
  const n = r.meta.workers ?? 1;
  if (n <= 1) return [];
  const scaled = `project-w${n}`;
  const copies = `reference ×${n}`;
  const lines = [
    `**Scaling: ${n} workers against 1** (median req/s, CPU µs per request, machine idle % ` +
    `during the runs; the control is ${n} copies of the reference on one port, which share ` +
    `nothing: the most ${n} threads can gain while the load generator and the upstream use ` +
    `the same cores):`,
    "",
    `| Upstream | Scenario | project | project-w${n} | **w${n} ÷ w1** | reference | ` +
    `reference ×${n} | ×${n} ÷ ×1 |`,
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [kind, u] of Object.entries(r.upstreams)) {
    for (const [key, byTarget] of Object.entries(u.throughput)) {
      const med = (t: string, k: "rps" | "cpuUsPerRequest" | "idlePct") =>
        median((byTarget[t] ?? []).map((x) => x[k] ?? NaN));
      const cell = (t: string) =>
        `${f(med(t, "rps"))}, ${f(med(t, "cpuUsPerRequest"))} µs, ${f(med(t, "idlePct"))} %`;
      lines.push(
        `| ${kind} | ${SCENARIO_TITLES[key] ?? key} | ${cell("project")} | ${cell(scaled)} | ` +
          `**${ratio(med(scaled, "rps"), med("project", "rps"))}×** | ${cell("reference")} | ` +
          `${cell(copies)} | ${ratio(med(copies, "rps"), med("reference", "rps"))}× |`,
      );
    }
  }
  lines.push("");
  return lines;
}

/** The detailed table of one upstream kind: the upstream alone, each target, the ratios. */
function upstreamTable(kind: string, u: UpstreamResults): string[] {
  const lines = [
    `**Upstream \`${kind}\`**: ${u.description}`,
    "",
    "| Scenario | Target | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | errors |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [key, byTarget] of Object.entries(u.throughput)) {
    const title = SCENARIO_TITLES[key] ?? key;
    const alone = u.alone[key];
    if (alone) {
      lines.push(
        `| ${title} | ${kind} alone (no proxy) | ${f(alone.rps)} | ${f(alone.p50Ms, 2)} | ${
          f(alone.p99Ms, 2)
        } | | | ${alone.errors + alone.non2xx} |`,
      );
    }
    const med = (t: string, k: keyof RunResult) =>
      median((byTarget[t] ?? []).map((x) => Number(x[k])));
    for (const [t, runs] of Object.entries(byTarget)) {
      const errs = runs.reduce((s, x) => s + x.errors + x.non2xx, 0);
      lines.push(
        `| ${title} | ${t} | ${spreadText(spread(runs.map((x) => x.rps)))} | ${
          f(med(t, "p50Ms"), 2)
        } | ${f(med(t, "p99Ms"), 2)} | ${f(med(t, "cpuUsPerRequest"))} | ${
          f(med(t, "rssPeakMiB"), 1)
        } | ${errs} |`,
      );
    }
    for (const t of Object.keys(byTarget)) {
      if (t === "reference") continue;
      const q = (k: keyof RunResult) => ratio(med(t, k), med("reference", k));
      lines.push(
        `| ${title} | **${t} ÷ reference** | **${q("rps")}** | ${q("p50Ms")} | ${q("p99Ms")} | ${
          q("cpuUsPerRequest")
        } | ${q("rssPeakMiB")} | |`,
      );
    }
  }
  lines.push("");
  return lines;
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
      }; ${
        (m.workers ?? 1) > 1
          ? `project workers: 1 and ${m.workers} (scenarios a, b)`
          : "project workers: 1"
      }; ` +
      `Deno ${m.deno}, ${m.cpus} CPUs. Figures are min / **median** / max over runs; ` +
      `latency and CPU are medians. CPU = proxy utime+stime per request. The reference is a ` +
      `minimal Deno proxy (\`Deno.serve\` + \`fetch\`); the project runs a realistic config ` +
      `with default client settings.`,
    "",
  );
  lines.push(...ratioTable(r));
  lines.push(...scalingTable(r));
  for (const [kind, u] of Object.entries(r.upstreams)) lines.push(...upstreamTable(kind, u));
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
  if (r.redisStore) lines.push(...redisStoreTable(r.redisStore));
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
