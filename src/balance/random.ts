/**
 * Weighted random selection.
 *
 * @module
 */

import type { Balancer, Member, SelectContext } from "./balancer.ts";

/**
 * Picks a candidate at random with probability proportional to its `weight`.
 *
 * Stateless apart from the injected random source, so it needs no feedback and holds
 * nothing that grows. Each draw costs one call to `random`.
 */
export class RandomBalancer<M extends Member = Member> implements Balancer<M> {
  readonly #random: () => number;

  /** @param random uniform numbers in [0, 1), e.g. `Math.random` or a seeded PRNG in tests. */
  constructor(random: () => number) {
    this.#random = random;
  }

  /** Picks a candidate with probability weight / (sum of the candidates' weights). */
  select(candidates: readonly M[], _ctx?: SelectContext): M {
    const last = candidates[candidates.length - 1];
    if (last === undefined) throw new RangeError("Cannot select from an empty candidate list");
    let total = 0;
    for (const candidate of candidates) total += candidate.weight;
    let point = this.#random() * total;
    for (const candidate of candidates) {
      point -= candidate.weight;
      if (point < 0) return candidate;
    }
    // Reached only through floating-point rounding at the very top of the range.
    return last;
  }
}
