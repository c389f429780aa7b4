/**
 * The markdown section of scenarios f–i: per case, the direct latency and what each proxy adds
 * to it, and the bar where there is one.
 *
 * @module
 */
import type { LatencyResults, LatencySummary } from "./latency_scenarios.ts";

const ms = (us: number | undefined) =>
  us !== undefined && Number.isFinite(us) ? (us / 1000).toFixed(2) : "–";
const signed = (us: number | undefined) =>
  us !== undefined && Number.isFinite(us) ? `${us < 0 ? "−" : "+"}${ms(Math.abs(us))}` : "–";
const pair = (s: LatencySummary) => `${ms(s.p50Us)} / ${ms(s.p99Us)}`;
const overhead = (s: LatencySummary) => `${signed(s.overheadP50Us)} / ${signed(s.overheadP99Us)}`;

/** Lines of the section (empty when no latency scenario ran). */
export function latencyMarkdown(results: LatencyResults | undefined): string[] {
  const entries = Object.values(results ?? {});
  if (entries.length === 0) return [];
  const lines = [
    "**f–i: latency overhead** — the same closed-loop load (bench/overhead.ts: keep-alive " +
    "connections, requests back to back, raw HTTP/1.1) sent to the mock directly and through " +
    "each proxy; overhead = through the proxy − direct, median over runs of the per-run " +
    "difference. p50 / p99 in ms. Bar: the issue's limit on the project's overhead p99. " +
    "Others' CPU: the most that processes outside the benchmark used during a run of the row, " +
    "in CPUs; above ~0.1 the row was measured on a busy machine.",
    "",
    "| Scenario | direct | reference | reference overhead | project | project overhead " +
    "| bar (project) | errors | others' CPU |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const c of entries) {
    const s = c.summary;
    const bar = c.barP99Us === undefined
      ? ""
      : `≤ ${ms(c.barP99Us)}: ${
        (s.project.overheadP99Us ?? NaN) <= c.barP99Us ? "met" : "**missed**"
      }`;
    const runs = Object.values(c.runs).flat();
    const errors = runs.reduce((n, r) => n + r.errors + r.non2xx, 0);
    const others = Math.max(...runs.map((r) => r.otherCores ?? NaN));
    lines.push(
      `| ${c.title} | ${pair(s.direct)} | ${pair(s.reference)} | ${overhead(s.reference)} | ` +
        `${pair(s.project)} | ${overhead(s.project)} | ${bar} | ${errors} | ` +
        `${Number.isFinite(others) ? others.toFixed(2) : "–"} |`,
    );
  }
  lines.push("");
  return lines;
}
