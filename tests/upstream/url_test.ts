import assert from "node:assert/strict";
import { splitRequestUrl, UpstreamUrl } from "../../src/upstream/url.ts";
import { InvalidPathError } from "../../src/routing/request_target.ts";

const replace = (url: string) => new UpstreamUrl(url, { mode: "replace" });
const append = (url: string, rewrite?: { match: string; replace: string }[]) =>
  new UpstreamUrl(url, { mode: "append", ...(rewrite ? { rewrite } : {}) });

Deno.test("UpstreamUrl replace: the outgoing path is the upstream URL's (seed defect 1)", () => {
  const url = replace("https://api.openai.com/v1/chat/completions");
  assert.equal(
    url.build("/api/v3/chat/completions", ""),
    "https://api.openai.com/v1/chat/completions",
  );
  assert.equal(url.build("/", ""), "https://api.openai.com/v1/chat/completions");
  assert.equal(url.origin, "https://api.openai.com");
});

Deno.test("UpstreamUrl replace keeps the upstream path as written, trailing slash included", () => {
  assert.equal(replace("http://h.test/v1/").build("/x", ""), "http://h.test/v1/");
  assert.equal(replace("http://h.test").build("/x", ""), "http://h.test/");
});

Deno.test("UpstreamUrl append: upstream path + client path with one slash (seed defect 2)", () => {
  assert.equal(
    append("https://api.openai.com/v1").build("/chat/completions", ""),
    "https://api.openai.com/v1/chat/completions",
  );
  assert.equal(append("https://h.test/v1/").build("/chat", ""), "https://h.test/v1/chat");
  assert.equal(append("https://h.test/v1//").build("/chat", ""), "https://h.test/v1/chat");
  assert.equal(append("https://h.test").build("/v1/models", ""), "https://h.test/v1/models");
  assert.equal(append("https://h.test/").build("/v1/models", ""), "https://h.test/v1/models");
  assert.equal(append("https://h.test/base").build("/", ""), "https://h.test/base/");
});

Deno.test("UpstreamUrl keeps scheme, host and port from the upstream URL", () => {
  const url = append("http://127.0.0.1:8080/openai");
  assert.equal(url.origin, "http://127.0.0.1:8080");
  assert.equal(url.build("/v1/models", ""), "http://127.0.0.1:8080/openai/v1/models");
  assert.equal(append("http://[::1]:9000").build("/x", ""), "http://[::1]:9000/x");
});

Deno.test("UpstreamUrl append applies the first matching rewrite rule to the client path", () => {
  const url = append("https://h.test/v1", [
    { match: "^/api/v3/(.*)$", replace: "/$1" },
    { match: "^/api/(.*)$", replace: "/never/$1" },
  ]);
  assert.equal(url.build("/api/v3/chat/completions", ""), "https://h.test/v1/chat/completions");
  assert.equal(url.build("/api/models", ""), "https://h.test/v1/never/models");
  assert.equal(url.build("/other", ""), "https://h.test/v1/other");
});

Deno.test("UpstreamUrl append: rules after the first match never see its output", () => {
  // The second rule matches what the first produces: first match wins, so it must not run.
  const url = append("https://h.test/v1", [
    { match: "^/a/(.*)$", replace: "/b/$1" },
    { match: "^/b/(.*)$", replace: "/c/$1" },
  ]);
  assert.equal(url.build("/a/x", ""), "https://h.test/v1/b/x");
  assert.equal(url.build("/b/x", ""), "https://h.test/v1/c/x");
});

Deno.test("UpstreamUrl append: a rewrite without a leading slash still joins with one", () => {
  const url = append("https://h.test/v1", [{ match: "^/proxy/(.*)$", replace: "$1" }]);
  assert.equal(url.build("/proxy/embeddings", ""), "https://h.test/v1/embeddings");
});

Deno.test("UpstreamUrl replace ignores rewrite rules", () => {
  const url = new UpstreamUrl("https://h.test/v1/chat", {
    mode: "replace",
    rewrite: [{ match: ".*", replace: "/x" }],
  });
  assert.equal(url.build("/anything", ""), "https://h.test/v1/chat");
});

Deno.test("UpstreamUrl merges the client's query with the upstream URL's own", () => {
  const withQuery = replace("https://h.test/v1/chat?api-version=2024&x=1");
  assert.equal(withQuery.build("/c", "a=1"), "https://h.test/v1/chat?a=1&api-version=2024&x=1");
  assert.equal(withQuery.build("/c", ""), "https://h.test/v1/chat?api-version=2024&x=1");
  const plain = append("https://h.test/v1");
  assert.equal(plain.build("/c", "a=1&b=%20"), "https://h.test/v1/c?a=1&b=%20");
  assert.equal(plain.build("/c", ""), "https://h.test/v1/c");
  // A bare "?" in the upstream URL adds nothing.
  assert.equal(replace("https://h.test/v1?").build("/c", "a=1"), "https://h.test/v1?a=1");
});

Deno.test("splitRequestUrl() splits path and query", () => {
  assert.deepEqual(splitRequestUrl("http://h.test/v1/chat?x=1&y=2"), {
    path: "/v1/chat",
    query: "x=1&y=2",
  });
  assert.deepEqual(splitRequestUrl("http://h.test:8080/a/b"), { path: "/a/b", query: "" });
  assert.deepEqual(splitRequestUrl("http://[::1]:8080/a?b"), { path: "/a", query: "b" });
});

Deno.test("splitRequestUrl() edge cases: no path, bare ?, fragments", () => {
  assert.deepEqual(splitRequestUrl("http://h.test"), { path: "/", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test/"), { path: "/", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test/?"), { path: "/", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test/p?"), { path: "/p", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test?x=1"), { path: "/", query: "x=1" });
  assert.deepEqual(splitRequestUrl("http://h.test?x=/y"), { path: "/", query: "x=/y" });
  assert.deepEqual(splitRequestUrl("http://h.test/p#frag"), { path: "/p", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test/p?q=1#frag"), { path: "/p", query: "q=1" });
  assert.deepEqual(splitRequestUrl("http://h.test/p#frag?x=1"), { path: "/p", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test#f/x"), { path: "/", query: "" });
  assert.deepEqual(splitRequestUrl("http://h.test/a?b?c"), { path: "/a", query: "b?c" });
});

Deno.test("splitRequestUrl() agrees with URL on what Request.url produces", () => {
  for (
    const raw of [
      "http://h.test/v1/chat/completions?stream=true",
      "http://h.test",
      "http://h.test/a%20b/c?x=%2F#y",
      "http://h.test:1/?",
    ]
  ) {
    const requestUrl = new Request(raw).url;
    const parsed = new URL(requestUrl);
    assert.deepEqual(splitRequestUrl(requestUrl), {
      path: parsed.pathname,
      query: parsed.search.slice(1),
    }, requestUrl);
  }
});

Deno.test("UpstreamUrl: the URL's query parameters win over the client's same-named ones", () => {
  const url = append("http://h.test/v1?key=secret&api-version=1");
  assert.equal(url.build("/x", ""), "http://h.test/v1/x?key=secret&api-version=1");
  assert.equal(
    url.build("/x", "key=x&a=1&k%65y=y&b=2&api-version=2&key&a=3"),
    "http://h.test/v1/x?a=1&b=2&a=3&key=secret&api-version=1",
  );
  // Only the name counts, decoded as a form (+ is a space); values and order are kept.
  const spaced = append("http://h.test/?a+b=1");
  assert.equal(spaced.build("/x", "a%20b=2&a=key&ab=3"), "http://h.test/x?a=key&ab=3&a+b=1");
  assert.equal(append("http://h.test/?k=v").build("/x", "k=1&k=2"), "http://h.test/x?k=v");
  // No configured query: the client's passes as it is.
  assert.equal(
    append("http://h.test/v1").build("/x", "key=x&key=y"),
    "http://h.test/v1/x?key=x&key=y",
  );
});

Deno.test("UpstreamUrl append: a rewritten path is normalised and may not leave the base path", () => {
  const url = append("https://h.test/v1", [
    { match: "^/up/(.*)$", replace: "/../$1" },
    { match: "^/in/(.*)$", replace: "/a//b/../$1" },
    { match: "^/enc/(.*)$", replace: "/%2e%2e/$1" },
  ]);
  assert.throws(() => url.build("/up/admin", ""), InvalidPathError);
  assert.throws(() => url.build("/enc/admin", ""), InvalidPathError);
  assert.equal(url.build("/in/x", ""), "https://h.test/v1/a/x");
  // A rule that matched nothing leaves the (already normalised) client path alone.
  assert.equal(url.build("/other/x", ""), "https://h.test/v1/other/x");
});
