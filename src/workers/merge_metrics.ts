/**
 * The admin port's `/metrics` with workers: every worker renders its own registry, and the
 * main thread merges the texts series by series. Counters and histograms (their buckets, sums
 * and counts) add up; so do gauges of things each worker holds (in-flight requests, open
 * connections). The exceptions:
 * - `llmproxy_circuit_breaker_state`: breakers are per worker; the merged value is the worst
 *   state any worker's breaker is in (open, then half-open, then closed).
 * - `process_resident_memory_bytes` and `llmproxy_config_reloads_total`: one process, one
 *   reload: the main thread's own value (the first text).
 *
 * @module
 */
import { formatNumber } from "../metrics/registry.ts";

type Rule = "sum" | "worst" | "first";

const RULES: Readonly<Record<string, Rule>> = {
  llmproxy_circuit_breaker_state: "worst",
  process_resident_memory_bytes: "first",
  llmproxy_config_reloads_total: "first",
};

/** Breaker gauge values (0 closed, 1 open, 2 half-open) by how bad they are. */
const BREAKER_RANK: Readonly<Record<number, number>> = { 0: 0, 2: 1, 1: 2 };

interface Family {
  readonly head: string[];
  readonly series: Map<string, number>;
}

/**
 * Merges Prometheus texts (format 0.0.4, as `Registry.render` writes them); `texts[0]` is the
 * main thread's. Families and series keep the order they first appear in.
 */
export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  texts.forEach((text, index) => {
    let family: Family | undefined;
    let rule: Rule = "sum";
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (line.startsWith("# ")) {
        const name = line.split(" ", 3)[2]!;
        rule = RULES[name] ?? "sum";
        family = families.get(name);
        if (!family) {
          family = { head: [], series: new Map() };
          families.set(name, family);
        }
        // HELP and TYPE once, from the first text that has them.
        if (family.head.length < 2 && !family.head.includes(line)) family.head.push(line);
        continue;
      }
      if (!family) continue;
      const space = line.lastIndexOf(" ");
      const key = line.slice(0, space);
      const value = parseValue(line.slice(space + 1));
      const seen = family.series.get(key);
      if (seen === undefined) {
        if (rule !== "first" || index === 0) family.series.set(key, value);
      } else if (rule === "sum") family.series.set(key, seen + value);
      else if (rule === "worst" && (BREAKER_RANK[value] ?? 0) > (BREAKER_RANK[seen] ?? 0)) {
        family.series.set(key, value);
      }
    }
  });
  const out: string[] = [];
  for (const family of families.values()) {
    out.push(...family.head);
    for (const [key, value] of family.series) out.push(`${key} ${formatNumber(value)}`);
  }
  return out.join("\n") + "\n";
}

function parseValue(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}
