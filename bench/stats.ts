/**
 * Small statistics for the benchmark: a bounded latency histogram, min/median/max over runs,
 * and the slope of a least-squares line.
 *
 * @module
 */

/** Relative bucket width of {@linkcode LatencyHistogram}: values are kept within 1 %. */
const GROWTH = 1.01;
/** Buckets up to ~10 minutes in microseconds (log base 1.01 of 6e8 ≈ 2040). */
const BUCKETS = 2048;

/**
 * Latencies in log-spaced buckets (1 % resolution): fixed memory however long the run.
 * Values are microseconds.
 */
export class LatencyHistogram {
  #counts = new Float64Array(BUCKETS);
  #total = 0;

  /** Records one latency, in microseconds. */
  record(us: number): void {
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / Math.log(GROWTH)));
    this.#counts[i]! += 1;
    this.#total++;
  }

  get count(): number {
    return this.#total;
  }

  /** The latency at quantile `q` (0..1), in microseconds; NaN when empty. */
  quantile(q: number): number {
    if (this.#total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.#total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return GROWTH ** i;
    }
    return GROWTH ** (BUCKETS - 1);
  }
}

/** Min, median and max of a set of runs' values. */
export interface Spread {
  min: number;
  median: number;
  max: number;
}

/** {@linkcode Spread} of the finite values (NaN fields when none). */
export function spread(values: readonly number[]): Spread {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return { min: NaN, median: NaN, max: NaN };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { min: v[0]!, median, max: v[v.length - 1]! };
}

/** Median of the finite values (NaN when none). */
export function median(values: readonly number[]): number {
  return spread(values).median;
}

/** Slope of the least-squares line through the points (NaN with fewer than 2 distinct x). */
export function slope(points: readonly { x: number; y: number }[]): number {
  const p = points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y));
  const n = p.length;
  if (n < 2) return NaN;
  const mx = p.reduce((s, q) => s + q.x, 0) / n;
  const my = p.reduce((s, q) => s + q.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const q of p) {
    num += (q.x - mx) * (q.y - my);
    den += (q.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}
