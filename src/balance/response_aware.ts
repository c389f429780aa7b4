/**
 * Response-aware balancing: latency, load and errors combined into one score.
 *
 * @module
 */

import type { Balancer, Member, Observation, SelectContext } from "./balancer.ts";

/** Options for {@linkcode ResponseAwareBalancer}. */
export interface ResponseAwareOptions {
  /**
   * Weight of a new latency sample in the EWMA, in (0, 1]. 0.3 absorbs a step change to
   * 83% within 5 samples while one outlier moves the average by only 30%.
   * @default 0.3
   */
  readonly latencyAlpha?: number;
  /**
   * Weight of a new outcome (1 ok, 0 failed) in the success-rate EWMA, in (0, 1].
   * At 0.2, ten straight failures take a member from 1 to 0.11.
   * @default 0.2
   */
  readonly successAlpha?: number;
  /**
   * Half-life in milliseconds with which a lowered success rate drifts back to 1 while
   * time passes. Without it a member that failed would never be chosen again, so it could
   * never show it recovered — not even to a half-open breaker's probes.
   * @default 10_000
   */
  readonly recoveryHalfLifeMs?: number;
}

// The success rate divides the score: floored so a member that only failed scores 20×
// worse rather than infinitely worse (and never divides by zero).
const MIN_SUCCESS_RATE = 0.05;
// A 0 ms EWMA (e.g. a local mock) would zero the score and hide the in-flight factor.
const MIN_LATENCY_MS = 1;

/**
 * Picks the candidate with the lowest `EWMA latency × (in-flight + 1) / success rate`.
 *
 * - A member with no observation yet and nothing in flight is chosen first, in declared
 *   order, so every member gets measured. One that has requests in flight but no latency
 *   yet is scored with the best latency known among the candidates (optimistic prior).
 * - Latency EWMA is fed only by successes: a failure's time (a 1 ms refused connection, a
 *   30 s timeout) says nothing about how fast the member serves. Failures lower the
 *   success-rate EWMA instead.
 * - In flight counts from `begin()` to `end()` (the response body ended) and never drops
 *   below zero, even if `end()` is called without a matching `begin()`.
 * - Between selects, lowered success rates decay back towards 1 (see
 *   {@linkcode ResponseAwareOptions.recoveryHalfLifeMs}), using `ctx.now` as the clock.
 *
 * State is a few numbers per declared index, so it does not grow with traffic.
 */
export class ResponseAwareBalancer<M extends Member = Member> implements Balancer<M> {
  readonly #latencyAlpha: number;
  readonly #successAlpha: number;
  readonly #halfLifeMs: number;
  /** EWMA of time to first byte in ms; NaN until the first success. */
  readonly #latencyMs: Float64Array;
  readonly #successRate: Float64Array;
  readonly #inFlight: Float64Array;
  /** 1 once any outcome (ok or not) was observed. */
  readonly #observed: Uint8Array;
  /** Latest `ctx.now` seen, for the success-rate decay; undefined before the first select. */
  #lastNow: number | undefined;

  /** @param members all members of the group, in declared order. */
  constructor(members: readonly M[], options: ResponseAwareOptions = {}) {
    this.#latencyAlpha = checkAlpha("latencyAlpha", options.latencyAlpha ?? 0.3);
    this.#successAlpha = checkAlpha("successAlpha", options.successAlpha ?? 0.2);
    this.#halfLifeMs = options.recoveryHalfLifeMs ?? 10_000;
    if (!(this.#halfLifeMs > 0)) {
      throw new RangeError(`recoveryHalfLifeMs must be > 0, got ${this.#halfLifeMs}`);
    }
    const n = members.length;
    this.#latencyMs = new Float64Array(n).fill(NaN);
    this.#successRate = new Float64Array(n).fill(1);
    this.#inFlight = new Float64Array(n);
    this.#observed = new Uint8Array(n);
  }

  /** Picks the candidate with the lowest score (unmeasured idle members first). */
  select(candidates: readonly M[], ctx: SelectContext): M {
    this.#decay(ctx.now);
    let bestKnownLatency = Infinity;
    for (const candidate of candidates) {
      const i = this.#slot(candidate);
      if (this.#observed[i] === 0 && this.#inFlight[i] === 0) return candidate; // explore
      const latency = this.#latencyMs[i]!;
      if (latency < bestKnownLatency) bestKnownLatency = latency; // NaN compares false
    }
    const prior = Number.isFinite(bestKnownLatency) ? bestKnownLatency : MIN_LATENCY_MS;

    let best: M | undefined;
    let bestScore = Infinity;
    let bestInFlight = Infinity;
    for (const candidate of candidates) {
      const i = candidate.index;
      const measured = this.#latencyMs[i]!;
      const latency = Math.max(Number.isNaN(measured) ? prior : measured, MIN_LATENCY_MS);
      const inFlight = this.#inFlight[i]!;
      const score = latency * (inFlight + 1) / Math.max(this.#successRate[i]!, MIN_SUCCESS_RATE);
      // Ties go to the less loaded member, then to declared order.
      if (score < bestScore || (score === bestScore && inFlight < bestInFlight)) {
        best = candidate;
        bestScore = score;
        bestInFlight = inFlight;
      }
    }
    if (best === undefined) throw new RangeError("Cannot select from an empty candidate list");
    return best;
  }

  /** Counts a request to `member` as in flight. */
  begin(member: M): void {
    this.#inFlight[this.#slot(member)]! += 1;
  }

  /** Ends an in-flight request that was never sent: no latency or success sample. */
  cancel(member: M): void {
    const i = this.#slot(member);
    this.#inFlight[i] = Math.max(0, this.#inFlight[i]! - 1);
  }

  /** Ends an in-flight request to `member` and folds its outcome into the EWMAs. */
  end(member: M, observation: Observation): void {
    const i = this.#slot(member);
    this.#inFlight[i] = Math.max(0, this.#inFlight[i]! - 1);
    this.#observed[i] = 1;
    const rate = this.#successRate[i]!;
    this.#successRate[i] = rate + this.#successAlpha * ((observation.ok ? 1 : 0) - rate);
    const sample = observation.latencyMs;
    if (!observation.ok || !(sample >= 0) || !Number.isFinite(sample)) return;
    const latency = this.#latencyMs[i]!;
    // The first sample seeds the average instead of being pulled towards an arbitrary 0.
    this.#latencyMs[i] = Number.isNaN(latency)
      ? sample
      : latency + this.#latencyAlpha * (sample - latency);
  }

  /**
   * `{ inFlight, successRate, latencyMs }` for the admin API; `latencyMs` is absent until
   * the first success. The success rate includes recovery decay up to the last select.
   */
  stats(member: M): Record<string, number> {
    const i = this.#slot(member);
    const stats: Record<string, number> = {
      inFlight: this.#inFlight[i]!,
      successRate: this.#successRate[i]!,
    };
    const latency = this.#latencyMs[i]!;
    if (!Number.isNaN(latency)) stats.latencyMs = latency;
    return stats;
  }

  /** Moves every success rate towards 1 by the time elapsed since the previous select. */
  #decay(now: number): void {
    const last = this.#lastNow;
    // A clock that steps backwards (or a NaN) must not undo decay or poison the state.
    if (last !== undefined && !(now > last)) return;
    this.#lastNow = now;
    if (last === undefined) return;
    const keep = 2 ** (-(now - last) / this.#halfLifeMs);
    const rates = this.#successRate;
    for (let i = 0; i < rates.length; i++) rates[i] = 1 - (1 - rates[i]!) * keep;
  }

  #slot(member: M): number {
    const i = member.index;
    if (!(i >= 0 && i < this.#inFlight.length) || !Number.isInteger(i)) {
      throw new RangeError(
        `Unknown upstream "${member.name}": index ${i} is outside the ${this.#inFlight.length} members this balancer was built for`,
      );
    }
    return i;
  }
}

function checkAlpha(name: string, alpha: number): number {
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`${name} must be in (0, 1], got ${alpha}`);
  return alpha;
}
