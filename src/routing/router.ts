/**
 * Routing: a forward's rules, compiled and ordered once at load, map a request path to a
 * group; unmatched paths go to the forward's default group.
 *
 * @module
 */
import {
  compareSpecificity,
  matchPath,
  parsePathPattern,
  type PathPattern,
} from "./path_pattern.ts";

/** A compiled routing table resolving paths to targets of type `T` (groups). */
export class Router<T> {
  readonly #rules: readonly { pattern: PathPattern; target: T }[];
  readonly #fallback: T;

  /** `rules` in declared order; they are re-ordered by specificity (stable). */
  constructor(rules: readonly { path: string; target: T }[], fallback: T) {
    this.#rules = rules
      .map((rule) => ({ pattern: parsePathPattern(rule.path), target: rule.target }))
      .sort((a, b) => compareSpecificity(a.pattern, b.pattern));
    this.#fallback = fallback;
  }

  /** The target for `path`: the most specific matching rule's, else the fallback. */
  resolve(path: string): T {
    return this.match(path) ?? this.#fallback;
  }

  /** The most specific matching rule's target, or undefined when no rule matches. */
  match(path: string): T | undefined {
    for (const rule of this.#rules) {
      if (matchPath(rule.pattern, path)) return rule.target;
    }
    return undefined;
  }

  /** Where requests no rule matches go (a forward's `defaultGroup`). */
  get fallback(): T {
    return this.#fallback;
  }
}
