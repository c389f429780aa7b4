/**
 * Smooth weighted round robin, as in nginx's upstream module.
 *
 * @module
 */

import type { Balancer, Member, SelectContext } from "./balancer.ts";

/**
 * Interleaves members in proportion to their weights without long runs: weights 5:1:1
 * give `a a b a c a a`, weights 8:2 give 8 and 2 of every 10 with the light one spread out.
 *
 * Each pick adds every candidate's weight to its "current" value, takes the largest
 * (first in declared order on ties) and subtracts the candidates' total weight from it.
 * Only candidates take part, so an unavailable member is skipped and its value stays put
 * until it returns. The values sum to zero over all members after every pick and stay
 * within a few multiples of the total weight, so nothing grows with traffic. State lives
 * in one slot per declared index.
 */
export class WeightedRoundRobinBalancer<M extends Member = Member> implements Balancer<M> {
  readonly #current: Float64Array;

  /** @param members all members of the group, in declared order. */
  constructor(members: readonly M[]) {
    this.#current = new Float64Array(members.length);
  }

  /** Picks the candidate whose smooth-weighted "current" value is highest. */
  select(candidates: readonly M[], _ctx?: SelectContext): M {
    const current = this.#current;
    let total = 0;
    let best: M | undefined;
    let bestValue = -Infinity;
    for (const candidate of candidates) {
      const i = candidate.index;
      if (!(i >= 0 && i < current.length) || !Number.isInteger(i)) {
        throw new RangeError(
          `Cannot select upstream "${candidate.name}": index ${i} is outside the ${current.length} members this balancer was built for`,
        );
      }
      const value = current[i]! + candidate.weight;
      current[i] = value;
      total += candidate.weight;
      if (value > bestValue) {
        best = candidate;
        bestValue = value;
      }
    }
    if (best === undefined) throw new RangeError("Cannot select from an empty candidate list");
    current[best.index] = bestValue - total;
    return best;
  }
}
