/**
 * Client-IP affinity through consistent hashing.
 *
 * @module
 */

import type { Balancer, Member, SelectContext } from "./balancer.ts";

/** Options for {@linkcode IpHashBalancer}. */
export interface IpHashOptions {
  /**
   * Points on the ring per unit of weight. More points even out the shares (about
   * ±1/√points) at the cost of memory: 8 bytes per point.
   * @default 160
   */
  readonly pointsPerWeight?: number;
}

/**
 * Sends each client IP to the same upstream for as long as that upstream is available.
 *
 * A hash ring is built once from *all* members, `pointsPerWeight × weight` points each,
 * placed by hashing `"<name>#<n>"` (so a member keeps its points when others are added,
 * removed or reordered). `select()` hashes the client IP and walks clockwise to the first
 * point whose member is a candidate. When a member is unavailable only the IPs that
 * landed on its points move, spread over the others; everyone else stays put, and the
 * IPs return when it does. The ring is fixed after construction.
 */
export class IpHashBalancer<M extends Member = Member> implements Balancer<M> {
  /** Sorted point positions on the 32-bit ring. */
  readonly #hashes: Uint32Array;
  /** Declared index of the member owning the point at the same position in `#hashes`. */
  readonly #owners: Uint32Array;
  readonly #memberCount: number;

  /** @param members all members of the group, in declared order. */
  constructor(members: readonly M[], options: IpHashOptions = {}) {
    const perWeight = options.pointsPerWeight ?? 160;
    if (!(perWeight >= 1)) throw new RangeError(`pointsPerWeight must be ≥ 1, got ${perWeight}`);
    const points: { hash: number; owner: number }[] = [];
    for (const member of members) {
      const count = Math.max(1, Math.round(perWeight * member.weight));
      for (let n = 0; n < count; n++) {
        points.push({ hash: hash32(`${member.name}#${n}`), owner: member.index });
      }
    }
    // Equal hashes (same name twice, or a rare collision) resolve by declared index so the
    // ring does not depend on the members' order.
    points.sort((a, b) => a.hash - b.hash || a.owner - b.owner);
    this.#hashes = Uint32Array.from(points, (p) => p.hash);
    this.#owners = Uint32Array.from(points, (p) => p.owner);
    this.#memberCount = members.length;
  }

  /** Picks the candidate owning the first ring point at or after the client IP's hash. */
  select(candidates: readonly M[], ctx: SelectContext): M {
    // Candidates by declared index, so each ring step is one array read.
    const byIndex: (M | undefined)[] = new Array(this.#memberCount);
    for (const candidate of candidates) {
      const i = candidate.index;
      if (!(i >= 0 && i < this.#memberCount) || !Number.isInteger(i)) {
        throw new RangeError(
          `Cannot select upstream "${candidate.name}": index ${i} is outside the ${this.#memberCount} members this balancer was built for`,
        );
      }
      byIndex[i] = candidate;
    }
    const hashes = this.#hashes;
    const size = hashes.length;
    const start = lowerBound(hashes, hash32(ctx.clientIp));
    // At most one lap: every member owns at least one point, so a candidate is found.
    for (let step = 0; step < size; step++) {
      const owner = this.#owners[(start + step) % size]!;
      const candidate = byIndex[owner];
      if (candidate !== undefined) return candidate;
    }
    throw new RangeError("Cannot select from an empty candidate list");
  }
}

/** First position whose hash is ≥ `target`; `hashes.length` wraps to 0 in the caller. */
function lowerBound(hashes: Uint32Array, target: number): number {
  let lo = 0;
  let hi = hashes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (hashes[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * 32-bit FNV-1a over UTF-16 code units, then murmur3's finaliser. FNV-1a alone leaves
 * keys that differ only in their last characters (`a#1`, `a#2`, `10.0.0.7`) clustered on
 * the ring; the finaliser spreads them so the shares come out even.
 */
function hash32(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
