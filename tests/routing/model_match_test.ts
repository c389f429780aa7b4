import assert from "node:assert/strict";
import { ModelMatcher } from "../../src/routing/model_match.ts";

const matcher = (...entries: [string, string][]) =>
  new ModelMatcher(entries.map(([pattern, target]) => ({ pattern, target })));

Deno.test("ModelMatcher: an exact name beats any glob", () => {
  const m = matcher(["gpt-*", "globs"], ["gpt-4o", "exact"]);
  assert.deepEqual(m.match("gpt-4o"), { target: "exact", pattern: "gpt-4o" });
  assert.equal(m.match("gpt-4o-mini")?.target, "globs");
});

Deno.test("ModelMatcher: the longest glob wins, then declared order", () => {
  const m = matcher(["*", "any"], ["gpt-4o*", "four"], ["gpt-*", "gpt"], ["gpt-4o-*", "dash"]);
  assert.equal(m.match("gpt-4o-mini")?.target, "dash");
  assert.equal(m.match("gpt-4o")?.target, "four");
  assert.equal(m.match("gpt-3.5")?.target, "gpt");
  assert.equal(m.match("llama")?.pattern, "*");
  const tie = matcher(["a*", "first"], ["*a", "second"]);
  assert.equal(tie.match("aa")?.target, "first");
  const dup = matcher(["m", "first"], ["m", "second"]);
  assert.equal(dup.match("m")?.target, "first", "the same exact name twice: the first");
});

Deno.test("ModelMatcher: no match, empty, and literal characters", () => {
  assert.equal(matcher(["gpt-4o", "x"]).match("gpt-4"), undefined);
  assert.ok(matcher().empty);
  assert.ok(!matcher(["a", "b"]).empty);
  assert.equal(matcher(["o3.*", "x"]).match("o3x"), undefined, "a dot is a dot");
  assert.equal(matcher(["o3.*", "x"]).match("o3.mini")?.target, "x");
});
