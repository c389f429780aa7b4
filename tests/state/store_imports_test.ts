import assert from "node:assert/strict";

/**
 * The modules main.ts loads statically (type-only imports and `import()` left out): what every
 * proxy loads, whatever its config.
 */
function staticImports(entry: URL): Set<string> {
  const seen = new Set<string>();
  const external = new Set<string>();
  const visit = (file: URL) => {
    if (seen.has(file.href)) return;
    seen.add(file.href);
    const text = Deno.readTextFileSync(file);
    // `import x from "y"`, `import {a, type b} from "y"`, `export … from "y"`; not `import type`.
    const re = /^(?:import|export)\s+(?!type\s)[^;]*?from\s+"([^"]+)";/gms;
    for (const match of text.matchAll(re)) {
      const spec = match[1]!;
      if (spec.startsWith(".")) visit(new URL(spec, file));
      else external.add(spec);
    }
  };
  visit(entry);
  return external;
}

Deno.test("the proxy loads no node: module and no Redis client unless state.store is redis", () => {
  const external = staticImports(new URL("../../main.ts", import.meta.url));
  const offending = [...external].filter((s) => s.startsWith("node:") || s.includes("redis"));
  assert.deepEqual(offending, [], `statically imported: ${offending.join(", ")}`);
});
