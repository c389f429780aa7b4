/**
 * Failover: always the first available upstream in declared order.
 *
 * @module
 */

import type { Balancer, Member, SelectContext } from "./balancer.ts";

/**
 * Sends everything to the lowest-indexed candidate: the primary while it is available,
 * then the next declared one. Stateless — availability (breaker, limiter, 429 back-off)
 * decides when traffic moves back, not this class.
 */
export class FailoverBalancer<M extends Member = Member> implements Balancer<M> {
  /** Picks the candidate with the lowest declared index. */
  select(candidates: readonly M[], _ctx?: SelectContext): M {
    let best = candidates[0];
    if (best === undefined) throw new RangeError("Cannot select from an empty candidate list");
    // Candidates arrive in declared order, so this normally stops at the first; the scan
    // keeps the result right even if a caller reorders them.
    for (const candidate of candidates) if (candidate.index < best.index) best = candidate;
    return best;
  }
}
