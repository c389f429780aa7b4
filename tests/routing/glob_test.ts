import assert from "node:assert/strict";
import { globMatcher } from "../../src/routing/glob.ts";

Deno.test("globMatcher: exact names, * globs, everything else literal", () => {
  const match = globMatcher(["gpt-4o*", "llama-3.1", "*-mini"]);
  assert.ok(match("gpt-4o"));
  assert.ok(match("gpt-4o-2024-08-06"));
  assert.ok(match("llama-3.1"));
  assert.ok(!match("llama-3x1"), "a dot is a dot");
  assert.ok(match("o4-mini"));
  assert.ok(!match("gpt-4"));
  assert.ok(!match("xgpt-4o"), "anchored at the start");
  assert.ok(match("gpt-4o\nother"), "a line break is just a character under *");
  assert.ok(!globMatcher([])("anything"));
  assert.ok(globMatcher(["a(b)+"])("a(b)+"));
});
