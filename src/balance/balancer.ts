/**
 * The balancer contract and the strategy registry.
 *
 * A balancer only chooses: the caller has already filtered the group down to upstreams
 * that are available (breaker closed or probing, limiter has a token, no 429 back-off),
 * so `select()` never looks at health. Feedback flows back through `begin()`/`end()`.
 *
 * @module
 */

import type { Strategy } from "../config/schema.ts";
import { FailoverBalancer } from "./failover.ts";
import { IpHashBalancer } from "./ip_hash.ts";
import { RandomBalancer } from "./random.ts";
import { ResponseAwareBalancer } from "./response_aware.ts";
import { RoundRobinBalancer } from "./round_robin.ts";
import { WeightedRoundRobinBalancer } from "./weighted_round_robin.ts";

/**
 * What a balancer needs to know of an upstream.
 *
 * Balancers keep their per-member state in arrays indexed by `index`, so `index` must be
 * unique within the group and lie in `[0, members.length)` of the `members` the balancer
 * was built with. Candidates passed to `select()` may be different objects than those
 * members (e.g. wrappers) as long as `index` matches; `select()` always returns one of the
 * candidate objects it was given.
 */
export interface Member {
  /** Display name; `iphash` also hashes it to place the member on its ring. */
  readonly name: string;
  /** Relative share of traffic, ≥ 1. Ignored by `roundrobin`, `failover` and `response_aware`. */
  readonly weight: number;
  /** Declared position in the group, 0-based. */
  readonly index: number;
}

/** Per-request facts a balancer may use to choose. */
export interface SelectContext {
  /** The client IP as resolved by the forward (socket peer or trusted X-Forwarded-For). */
  readonly clientIp: string;
  /** Current time in milliseconds, from the injected clock. */
  readonly now: number;
}

/** How a finished request went, fed back through `Balancer.end()`. */
export interface Observation {
  /** False for connect errors, timeouts, 5xx, 429 and streams that broke mid-way. */
  readonly ok: boolean;
  /** Time to first byte (response headers) in milliseconds. */
  readonly latencyMs: number;
}

/** Chooses one upstream out of the available candidates of a group. */
export interface Balancer<M extends Member = Member> {
  /**
   * Picks one of `candidates` (non-empty, already filtered to available upstreams, in
   * declared order). Synchronous; never checks health.
   */
  select(candidates: readonly M[], ctx: SelectContext): M;
  /** A request to `member` started (counts in flight until `end`). Optional. */
  begin?(member: M): void;
  /** The request's response body ended (or it failed): in flight −1 and feedback. Optional. */
  end?(member: M, observation: Observation): void;
  /**
   * The request counted by `begin` was never sent (it could not be encoded): in flight −1,
   * nothing learned about the upstream. Optional.
   */
  cancel?(member: M): void;
  /** Per-member state for the admin API (EWMA latency, success rate, in-flight), where kept. */
  stats?(member: M): Record<string, number> | undefined;
}

/** The balancing strategies a group can declare: the config schema's enum is the source. */
export type { Strategy };

/** Process globals a balancer may need, injected so tests can seed them. */
export interface BalancerDeps {
  /** Uniform random numbers in [0, 1). */
  random: () => number;
}

/** Builds a balancer for one group's members. */
export type BalancerFactory = <M extends Member>(
  members: readonly M[],
  deps: BalancerDeps,
) => Balancer<M>;

// A Record over the union: adding a strategy name fails to type-check until a factory exists.
const FACTORIES: Readonly<Record<Strategy, BalancerFactory>> = {
  roundrobin: (members) => new RoundRobinBalancer(members),
  weighted_roundrobin: (members) => new WeightedRoundRobinBalancer(members),
  random: (_members, deps) => new RandomBalancer(deps.random),
  response_aware: (members) => new ResponseAwareBalancer(members),
  failover: () => new FailoverBalancer(),
  iphash: (members) => new IpHashBalancer(members),
};

/**
 * Creates the balancer for `strategy` over a group's `members` (all of them, in declared
 * order, not just the currently available ones).
 *
 * @example
 * ```ts
 * const balancer = createBalancer("roundrobin", upstreams, { random: Math.random });
 * const upstream = balancer.select(available, { clientIp, now: clock.now() });
 * ```
 */
export function createBalancer<M extends Member>(
  strategy: Strategy,
  members: readonly M[],
  deps: BalancerDeps,
): Balancer<M> {
  const factory = FACTORIES[strategy];
  // Only reachable with an unchecked string (e.g. a config that bypassed the schema).
  if (factory === undefined) throw new TypeError(`Unknown balancing strategy "${strategy}"`);
  return factory(members, deps);
}
