import assert from "node:assert/strict";
import {
  compareSpecificity,
  matchPath,
  parsePathPattern,
  PatternError,
} from "../../src/routing/path_pattern.ts";

function matches(pattern: string, path: string): boolean {
  return matchPath(parsePathPattern(pattern), path);
}

function assertMatches(pattern: string, yes: readonly string[], no: readonly string[]): void {
  for (const path of yes) {
    assert.equal(matches(pattern, path), true, `${pattern} should match ${path}`);
  }
  for (const path of no) {
    assert.equal(matches(pattern, path), false, `${pattern} should not match ${path}`);
  }
}

/** Sorts the patterns by specificity and returns their sources. */
function order(...patterns: string[]): string[] {
  return patterns.map(parsePathPattern).sort(compareSpecificity).map((p) => p.source);
}

/** The first of `patterns` (in specificity order) that matches `path`. */
function route(patterns: readonly string[], path: string): string | undefined {
  return order(...patterns).find((p) => matches(p, path));
}

Deno.test("static pattern matches exactly", () => {
  assertMatches(
    "/v1/chat/completions",
    ["/v1/chat/completions"],
    [
      "/v1/chat",
      "/v1/chat/completions/",
      "/v1/chat/completions/x",
      "/v1/chat/Completions",
      "/v2/chat/completions",
      "/v1/chat/completionsx",
      "/",
    ],
  );
});

Deno.test("the root pattern matches only /", () => {
  assertMatches("/", ["/"], ["/v1", "//", "/x/"]);
});

Deno.test("a trailing slash is a segment of its own", () => {
  assertMatches("/v1/", ["/v1/"], ["/v1", "/v1/x"]);
});

Deno.test(":name matches one non-empty segment", () => {
  assertMatches(
    "/v1/:model/chat",
    ["/v1/gpt-4/chat", "/v1/a/chat", "/v1/%20/chat", "/v1/a.b:c/chat"],
    ["/v1//chat", "/v1/chat", "/v1/a/b/chat", "/v1/a/chat/", "/v2/a/chat"],
  );
  // An empty last segment is rejected too.
  assertMatches("/v1/:id", ["/v1/x"], ["/v1/", "/v1", "/v1/x/"]);
});

Deno.test("{name:regex} matches one segment that the regex matches entirely", () => {
  assertMatches(
    "/v1/{model:gpt-[0-9]+}/chat",
    ["/v1/gpt-4/chat", "/v1/gpt-35/chat"],
    ["/v1/gpt-/chat", "/v1/xgpt-4/chat", "/v1/gpt-4x/chat", "/v1/gpt-4", "/v1//chat"],
  );
  // Alternation is anchored as a whole.
  assertMatches("/{kind:a|b}", ["/a", "/b"], ["/ab", "/ba", "/", "/c"]);
  // A regex may contain braces and colons.
  assertMatches("/x/{n:[0-9]{2}}", ["/x/12"], ["/x/1", "/x/123"]);
  assertMatches("/x/{t:a:b}", ["/x/a:b"], ["/x/a", "/x/b"]);
  // A regex that accepts the empty string can match an empty segment.
  assertMatches("/x/{opt:[a-z]*}/y", ["/x//y", "/x/abc/y"], ["/x/1/y"]);
});

Deno.test("* in the middle matches exactly one non-empty segment", () => {
  assertMatches(
    "/v1/*/chat",
    ["/v1/x/chat", "/v1/anything-here/chat"],
    ["/v1/chat", "/v1//chat", "/v1/a/b/chat", "/v1/x/chat/more"],
  );
  assertMatches("/*/b", ["/a/b"], ["/b", "//b", "/a/b/c"]);
});

Deno.test("trailing /* matches the rest, including zero segments", () => {
  assertMatches(
    "/v1/*",
    ["/v1", "/v1/", "/v1/chat", "/v1/chat/completions", "/v1/a/b/c/d", "/v1//x"],
    ["/v2", "/v1x", "/v1x/chat", "/", "/x/v1/chat"],
  );
  assertMatches("/*", ["/", "/a", "/a/b/c"], []);
  assertMatches("/v1/:m/*", ["/v1/x", "/v1/x/", "/v1/x/y/z"], ["/v1", "/v1/", "/v1//y"]);
});

Deno.test("keys erase parameter names", () => {
  assert.equal(parsePathPattern("/v1/:a").key, parsePathPattern("/v1/:b").key);
  assert.equal(parsePathPattern("/v1/{a:[0-9]+}").key, parsePathPattern("/v1/{b:[0-9]+}").key);
  assert.notEqual(parsePathPattern("/v1/{a:[0-9]+}").key, parsePathPattern("/v1/{a:[a-z]+}").key);
  assert.notEqual(parsePathPattern("/v1/:a").key, parsePathPattern("/v1/*").key);
  assert.notEqual(parsePathPattern("/v1/*/x").key, parsePathPattern("/v1/*").key);
  assert.notEqual(parsePathPattern("/v1/*").key, parsePathPattern("/v1/:a/*").key);
  assert.notEqual(parsePathPattern("/v1").key, parsePathPattern("/v1/").key);
  assert.equal(parsePathPattern("/v1/:a/*").key, "/v1/:/**");
  assert.equal(parsePathPattern("/v1/*/x").key, "/v1/*/x");
  assert.equal(parsePathPattern("/v1/{m:[a-z]+}").key, "/v1/{[a-z]+}");
  assert.equal(parsePathPattern("/v1/chat").source, "/v1/chat");
});

Deno.test("specificity: static > regex > param > wildcard > rest", () => {
  const patterns = ["/v1/*", "/v1/*/x", "/v1/:id", "/v1/{id:[0-9]+}", "/v1/models"];
  assert.deepEqual(order(...patterns), [
    "/v1/models",
    "/v1/{id:[0-9]+}",
    "/v1/:id",
    "/v1/*/x",
    "/v1/*",
  ]);
  // Declared order does not matter.
  assert.deepEqual(order(...[...patterns].reverse()), order(...patterns));
  // The first segment decides before later ones.
  assert.deepEqual(order("/:a/models", "/v1/:b", "/*"), ["/v1/:b", "/:a/models", "/*"]);
});

Deno.test("routing by specificity picks the most specific match", () => {
  const patterns = ["/v1/*", "/v1/:id", "/v1/{id:[0-9]+}", "/v1/models", "/*"];
  assert.equal(route(patterns, "/v1/models"), "/v1/models");
  assert.equal(route(patterns, "/v1/42"), "/v1/{id:[0-9]+}");
  assert.equal(route(patterns, "/v1/abc"), "/v1/:id");
  assert.equal(route(patterns, "/v1/abc/def"), "/v1/*");
  assert.equal(route(patterns, "/v1"), "/v1/*");
  assert.equal(route(patterns, "/v2/x"), "/*");
  assert.equal(route(["/v1/*"], "/v2"), undefined);
});

Deno.test("/v1 beats /v1/* for /v1; /v1/* still takes the rest", () => {
  assert.deepEqual(order("/v1/*", "/v1"), ["/v1", "/v1/*"]);
  assert.deepEqual(order("/v1", "/v1/*"), ["/v1", "/v1/*"]);
  assert.equal(route(["/v1/*", "/v1"], "/v1"), "/v1");
  assert.equal(route(["/v1/*", "/v1"], "/v1/chat"), "/v1/*");
  // An ended pattern ranks below a one-segment wildcard and a param.
  assert.deepEqual(order("/v1", "/v1/:x", "/v1/*/y"), ["/v1/:x", "/v1/*/y", "/v1"]);
});

Deno.test("equally specific patterns keep their declared order (stable)", () => {
  assert.deepEqual(order("/v1/:a", "/v1/:b"), ["/v1/:a", "/v1/:b"]);
  assert.deepEqual(order("/v1/:b", "/v1/:a"), ["/v1/:b", "/v1/:a"]);
  assert.deepEqual(order("/a/*", "/b/*", "/c/*"), ["/a/*", "/b/*", "/c/*"]);
  assert.deepEqual(order("/c/*", "/a/*", "/b/*"), ["/c/*", "/a/*", "/b/*"]);
  assert.deepEqual(
    order("/x/{a:[0-9]+}", "/x/{b:[a-z]+}", "/x/{c:.+}"),
    ["/x/{a:[0-9]+}", "/x/{b:[a-z]+}", "/x/{c:.+}"],
  );
  assert.equal(compareSpecificity(parsePathPattern("/v1/:a"), parsePathPattern("/v1/:b")), 0);
});

Deno.test("compareSpecificity is antisymmetric", () => {
  const a = parsePathPattern("/v1/models");
  const b = parsePathPattern("/v1/*");
  assert.ok(compareSpecificity(a, b) < 0);
  assert.ok(compareSpecificity(b, a) > 0);
});

Deno.test("parse errors", () => {
  const cases: [string, string][] = [
    ["", 'pattern must start with "/"'],
    ["v1/chat", 'pattern must start with "/"'],
    ["*", 'pattern must start with "/"'],
    ["/v1//chat", 'invalid segment ""'],
    ["//", 'invalid segment ""'],
    ["/v1/a*", 'invalid segment "a*"'],
    ["/v1/**", 'invalid segment "**"'],
    ["/v1/a{b}", 'invalid segment "a{b}"'],
    ["/v1/a}", 'invalid segment "a}"'],
    ["/v1/:", 'invalid parameter name ":"'],
    ["/v1/:1a", 'invalid parameter name ":1a"'],
    ["/v1/:a-b", 'invalid parameter name ":a-b"'],
    ["/v1/{model}", 'invalid segment "{model}": expected {name:regex}'],
    ["/v1/{model:[a-z]+", 'invalid segment "{model:[a-z]+": expected {name:regex}'],
    ["/v1/{:[a-z]+}", 'invalid parameter name in "{:[a-z]+}"'],
    ["/v1/{1m:[a-z]+}", 'invalid parameter name in "{1m:[a-z]+}"'],
    ["/v1/{m:}", 'empty regex in "{m:}"'],
  ];
  for (const [pattern, message] of cases) {
    assert.throws(
      () => parsePathPattern(pattern),
      (error: unknown) => {
        assert.ok(error instanceof PatternError, `${pattern}: ${error}`);
        assert.equal(error.name, "PatternError");
        assert.equal(error.message, message, pattern);
        return true;
      },
    );
  }
});

Deno.test("parse error: an invalid regex names the segment and the regex error", () => {
  assert.throws(
    () => parsePathPattern("/v1/{m:(abc}"),
    (error: unknown) => {
      assert.ok(error instanceof PatternError);
      assert.match(error.message, /^invalid regex in "\{m:\(abc\}": Invalid regular expression: /);
      return true;
    },
  );
});

Deno.test("valid patterns parse", () => {
  for (
    const pattern of [
      "/",
      "/*",
      "/v1",
      "/v1/",
      "/v1/*",
      "/v1/*/x",
      "/v1/:a",
      "/v1/:_a1",
      "/v1/{m:[a-z0-9-]+}/chat/*",
      "/a:b",
      "/v1.0/chat-completions_x",
    ]
  ) {
    assert.equal(parsePathPattern(pattern).source, pattern);
  }
});
