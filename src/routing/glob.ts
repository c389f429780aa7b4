/**
 * Model globs (client keys' `models`, groups' `models`, upstreams' `modelMap`): `*` matches any
 * run of characters (also none); everything else is literal. Compiled once at load.
 *
 * @module
 */

/** Whether `pattern` has a `*` (else it names one model exactly). */
export function isGlob(pattern: string): boolean {
  return pattern.includes("*");
}

/** The anchored regex source of one glob, without the anchors. */
function globSource(pattern: string): string {
  return pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*");
}

/** One anchored regex matching any of `patterns`. */
export function globRegExp(...patterns: string[]): RegExp {
  // `s`: a model name with a line break still has to match the whole pattern.
  return new RegExp(`^(?:${patterns.map(globSource).join("|")})$`, "s");
}

/** A predicate for `patterns`: true when a model matches any of them. */
export function globMatcher(patterns: readonly string[]): (model: string) => boolean {
  if (patterns.length === 0) return () => false;
  const re = globRegExp(...patterns);
  return (model) => re.test(model);
}
