/**
 * Model globs of client keys: `*` matches any run of characters (also none); everything else
 * is literal. Compiled once at load into one anchored regex per list.
 *
 * @module
 */

/** A predicate for `patterns`: true when a model matches any of them. */
export function globMatcher(patterns: readonly string[]): (model: string) => boolean {
  if (patterns.length === 0) return () => false;
  const source = patterns
    .map((p) => p.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*"))
    .join("|");
  // `s`: a model name with a line break still has to match the whole pattern.
  const re = new RegExp(`^(?:${source})$`, "s");
  return (model) => re.test(model);
}
