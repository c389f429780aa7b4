/**
 * Model names resolved against patterns from the config (groups' `models`, an upstream's
 * `modelMap`): an exact name first, then the longest glob, then declared order. Built once at
 * load; a lookup is one map read, and only a model no exact name covers runs the globs.
 *
 * @module
 */
import { globRegExp, isGlob } from "./glob.ts";

/** What a model resolved to: the target and the pattern (exact name or glob) that matched. */
export interface ModelMatch<T> {
  readonly target: T;
  readonly pattern: string;
}

/** Patterns (in declared order) and what each leads to. */
export class ModelMatcher<T> {
  readonly #exact = new Map<string, ModelMatch<T>>();
  readonly #globs: readonly (ModelMatch<T> & { readonly re: RegExp })[];

  constructor(entries: Iterable<{ readonly pattern: string; readonly target: T }>) {
    const globs: (ModelMatch<T> & { re: RegExp; order: number })[] = [];
    let order = 0;
    for (const { pattern, target } of entries) {
      if (!isGlob(pattern)) {
        // Ties go to the first declared.
        if (!this.#exact.has(pattern)) this.#exact.set(pattern, { target, pattern });
      } else globs.push({ target, pattern, re: globRegExp(pattern), order: order++ });
    }
    // Longest first (its literal characters: the more it names, the more specific it is),
    // declared order among equals.
    const literal = (pattern: string) => pattern.replaceAll("*", "").length;
    this.#globs = globs.sort((a, b) =>
      literal(b.pattern) - literal(a.pattern) || a.order - b.order
    );
  }

  /** Whether no pattern was given. */
  get empty(): boolean {
    return this.#exact.size === 0 && this.#globs.length === 0;
  }

  /** The match for `model`, or undefined. */
  match(model: string): ModelMatch<T> | undefined {
    const exact = this.#exact.get(model);
    if (exact) return exact;
    for (const glob of this.#globs) if (glob.re.test(model)) return glob;
    return undefined;
  }
}
