/**
 * Round robin over the declared order.
 *
 * @module
 */

import type { Balancer, Member, SelectContext } from "./balancer.ts";

/** Options for {@linkcode RoundRobinBalancer}. */
export interface RoundRobinOptions {
  /**
   * Declared index of the member to try first, in `[0, members.length)`. Useful to spread
   * several proxies' first requests, and for tests.
   * @default 0
   */
  readonly start?: number;
}

/**
 * Hands out requests in declared order, one each, skipping members that are not candidates.
 *
 * The state is a cursor over *declared* indexes, not a count of requests: the next pick is
 * the candidate with the smallest index ≥ the cursor, wrapping to the smallest index.
 * So when `b` of `a b c` is unavailable the rotation is `a c a c`, and when `b` returns
 * it rejoins in its place instead of shifting everyone else. The cursor never exceeds
 * `members.length`, so a process that runs for months cannot overflow it.
 */
export class RoundRobinBalancer<M extends Member = Member> implements Balancer<M> {
  #cursor: number;

  /** @param members all members of the group, in declared order. */
  constructor(members: readonly M[], options: RoundRobinOptions = {}) {
    const start = options.start ?? 0;
    if (!Number.isInteger(start) || start < 0 || start >= Math.max(members.length, 1)) {
      throw new RangeError(
        `Cannot start round robin at index ${start}: the group has ${members.length} members`,
      );
    }
    this.#cursor = start;
  }

  /** Picks the next candidate in declared order after the previous pick. */
  select(candidates: readonly M[], _ctx?: SelectContext): M {
    let next: M | undefined; // smallest index ≥ cursor
    let first: M | undefined; // smallest index overall, for the wrap-around
    // One pass without relying on candidates being sorted; groups are small.
    for (const candidate of candidates) {
      if (first === undefined || candidate.index < first.index) first = candidate;
      if (candidate.index >= this.#cursor && (next === undefined || candidate.index < next.index)) {
        next = candidate;
      }
    }
    const picked = next ?? first;
    if (picked === undefined) throw new RangeError("Cannot select from an empty candidate list");
    this.#cursor = picked.index + 1;
    return picked;
  }
}
