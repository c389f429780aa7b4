import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy } from "../_helpers/proxy_harness.ts";

/** Group names; each group has one mock upstream of the same name. */
const GROUPS = ["static", "regex", "param", "wildcard", "rest", "fallback", "tie1", "tie2"];

Deno.test("e2e routing: every pattern kind routes by priority, ties by declared order", async () => {
  const mocks = new Map<string, MockUpstream>();
  for (const name of GROUPS) mocks.set(name, await startMockUpstream({ name }));
  const proxy = await startTestProxy(yamlConfig(mocks));
  try {
    const via = async (forward: string, path: string) => {
      const response = await fetch(`${proxy.url(forward)}${path}`);
      await response.body?.cancel();
      return response.headers.get("x-mock-upstream");
    };
    // static > regex > param > wildcard > rest
    assert.equal(await via("a", "/v1/chat/completions"), "static");
    assert.equal(await via("a", "/v1/m-42/completions"), "regex");
    assert.equal(await via("a", "/v1/gpt-4o/completions"), "param");
    assert.equal(await via("a", "/w/anything/x"), "wildcard");
    assert.equal(await via("a", "/v1/embeddings"), "rest");
    assert.equal(await via("a", "/v1/a/b/c"), "rest");
    assert.equal(await via("a", "/w/anything/y"), "rest");
    // Unmatched paths go to the default group.
    assert.equal(await via("a", "/v2/chat/completions"), "fallback");
    assert.equal(await via("a", "/"), "fallback");
    // Equal specificity: the rule declared first wins.
    assert.equal(await via("a", "/t/abc"), "tie1");
    assert.equal(await via("b", "/t/abc"), "tie2");
    // Only one rule matches: declared order does not matter.
    assert.equal(await via("b", "/t/xyz"), "tie1");
    // The path went through unchanged (origin URLs: append mode).
    assert.equal(mocks.get("regex")!.requests[0]!.path, "/v1/m-42/completions");
  } finally {
    await proxy.stop();
    for (const mock of mocks.values()) await mock.close();
  }
});

/**
 * Two forwards with the same rules, declared from least to most specific, so only the priority
 * order (not declaration order) can make the specific ones win. Forward "b" declares the tie
 * (two regex rules of equal rank) in the other order.
 */
function yamlConfig(mocks: ReadonlyMap<string, MockUpstream>): string {
  const rules = (tie: [string, string][]) =>
    [
      ["/v1/*", "rest"],
      ["/v1/*/completions", "wildcard"],
      ["/v1/:model/completions", "param"],
      ["/v1/{model:m-[0-9]+}/completions", "regex"],
      ["/v1/chat/completions", "static"],
      ["/w/*/x", "wildcard"],
      ["/w/*", "rest"],
      ...tie,
    ].map(([path, group]) => `        - {path: "${path}", targetGroup: ${group}}`).join("\n");
  const tie: [string, string][] = [["/t/{a:[a-z]+}", "tie1"], ["/t/{b:[a-c]+}", "tie2"]];
  const forward = (name: string, t: [string, string][]) =>
    `    - name: ${name}
      port: 0
      address: 127.0.0.1
      defaultGroup: fallback
      routing:
${rules(t)}`;
  return `httpServer:
  forwards:
${forward("a", tie)}
${forward("b", [...tie].reverse())}
upstreams:
${[...mocks].map(([name, m]) => `  - {name: ${name}, url: "${m.url}"}`).join("\n")}
upstreamGroups:
${GROUPS.map((g) => `  - {name: ${g}, upstreams: [{name: ${g}}]}`).join("\n")}
`;
}
