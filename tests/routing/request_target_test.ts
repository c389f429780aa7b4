import assert from "node:assert/strict";
import {
  canonicalQuery,
  InvalidPathError,
  normalizePath,
} from "../../src/routing/request_target.ts";

Deno.test("normalizePath() returns a plain path unchanged (the fast path)", () => {
  for (const path of ["/", "/v1/chat/completions", "/v1/models/", "/a;b=c/@x:y", "/a~b_c-d"]) {
    assert.equal(normalizePath(path), path);
  }
});

Deno.test("normalizePath() resolves dot segments, encoded dots and slashes, backslashes and //", () => {
  const cases: [string, string][] = [
    ["/a/./b", "/a/b"],
    ["/a/b/../c", "/a/c"],
    ["/a/%2e/b/%2E%2e/c", "/a/c"],
    ["/a/.%2E/b", "/b"],
    ["/a%2fb", "/a/b"],
    ["/a/..%2Fb", "/b"],
    ["/a\\b", "/a/b"],
    ["/a\\..\\b", "/b"],
    ["//a///b", "/a/b"],
    ["/a/b/..", "/a/"],
    ["/a/.", "/a/"],
    ["/a/..", "/"],
    ["/.", "/"],
    ["/a/b/", "/a/b/"],
    ["/gpt-4.1/x", "/gpt-4.1/x"],
    ["/a/.../b", "/a/.../b"],
    ["/a/.b/..c", "/a/.b/..c"],
  ];
  for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
});

Deno.test("normalizePath() decodes once: %252e stays, and other escapes are kept as sent", () => {
  assert.equal(normalizePath("/a/%252e%252e/b"), "/a/%252e%252e/b");
  assert.equal(normalizePath("/%2525"), "/%2525");
  assert.equal(normalizePath("/a%3Fb%23c"), "/a%3Fb%23c");
  assert.equal(normalizePath("/%c3%a9%5C"), "/%c3%a9%5C");
  assert.equal(normalizePath("/%zz"), "/%zz");
});

Deno.test("normalizePath() percent-encodes non-ASCII as UTF-8 and what a URL parser would encode", () => {
  assert.equal(normalizePath("/v1/é"), "/v1/%C3%A9");
  assert.equal(normalizePath("/v1/€"), "/v1/%E2%82%AC");
  assert.equal(normalizePath("/😀"), "/%F0%9F%98%80");
  assert.equal(normalizePath('/a"<>`{}b'), "/a%22%3C%3E%60%7B%7Db");
  assert.equal(normalizePath("/a|^'b"), "/a|^'b");
});

Deno.test("normalizePath() refuses a path that leaves the root, ..; segments, %00 and bad UTF-16", () => {
  for (
    const path of [
      "/..",
      "/../x",
      "/%2e%2e/secret",
      "/v1/../../admin",
      "/a/%2E%2E/%2e%2e/b",
      "/..%2fx",
      "/a\\..\\..\\b",
      "/a/..;/b",
      "/a/.%2e;x/b",
      "/a%00b",
      "/a\ud800",
      "relative",
      "",
    ]
  ) {
    assert.throws(() => normalizePath(path), InvalidPathError, JSON.stringify(path));
  }
});

Deno.test("normalizePath() output is what a WHATWG URL parser (fetch) keeps as it is", () => {
  const hostile = [
    "/a/./b//c/../d",
    "/x/%2e%2E/y",
    "/a\\b",
    "/a%2fb/%2e",
    "/é€/%252e",
    '/q"<>`{}|^',
    "/a;b/c;d/.;e",
    "/.../.x",
    "/a/%2E",
  ];
  for (const path of hostile) {
    const normalised = normalizePath(path);
    assert.equal(new URL(`http://h.test/base${normalised}`).pathname, `/base${normalised}`, path);
  }
});

Deno.test("canonicalQuery() encodes what a URL parser would and nothing else", () => {
  assert.equal(canonicalQuery(""), "");
  assert.equal(canonicalQuery("a=1&b=x%20y"), "a=1&b=x%20y");
  assert.equal(canonicalQuery("q=é€"), "q=%C3%A9%E2%82%AC");
  assert.equal(canonicalQuery(`a='"<>`), "a=%27%22%3C%3E");
  assert.equal(canonicalQuery("a=`{}|^/?.."), "a=`{}|^/?..");
  for (const query of ["q=é€&x='\"<>", "a=%2e%2e&b=/../"]) {
    const canonical = canonicalQuery(query);
    assert.equal(new URL(`http://h.test/?${canonical}`).search, `?${canonical}`);
  }
  assert.throws(() => canonicalQuery("a=\udc00"), InvalidPathError);
});
