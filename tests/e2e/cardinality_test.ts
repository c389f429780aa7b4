/**
 * Label cardinality stays fixed: 10k requests with random paths and random (spoofed and, from a
 * trusted peer, believed) X-Forwarded-For add no series to /metrics.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startTestProxy } from "../_helpers/proxy_harness.ts";
import { parsePrometheusText, type PromFamily } from "../_helpers/prom_parser.ts";

const REQUESTS = 10_000;
const CONCURRENCY = 50;

function seriesOf(parsed: Map<string, PromFamily>): Set<string> {
  const series = new Set<string>();
  for (const family of parsed.values()) {
    for (const sample of family.samples) {
      const labels = Object.entries(sample.labels).sort(([a], [b]) => a.localeCompare(b));
      series.add(`${sample.name}${JSON.stringify(labels)}`);
    }
  }
  return series;
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function randomIp(): string {
  const [a, b, c, d] = crypto.getRandomValues(new Uint8Array(4));
  return `${a}.${b}.${c}.${d}`;
}

Deno.test("cardinality: 10k requests with random paths and X-Forwarded-For add no series", async () => {
  const mock = await startMockUpstream({ maxRecordedRequests: 100 });
  const proxy = await startTestProxy(`httpServer:
  trustedProxies: ["127.0.0.1"]
  forwards:
    - name: main
      port: 0
      address: 127.0.0.1
      defaultGroup: g
      ratelimit: {perSecond: 100000, burst: 100000}
      routing: [{path: "/emb/*", targetGroup: e}]
  admin: {port: 0}
upstreams:
  - {name: u1, url: "${mock.url}/v1/chat/completions"}
  - {name: u2, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - name: g
    upstreams: [{name: u1}, {name: u2}]
    balance: {strategy: iphash}
  - name: e
    upstreams: [{name: u1}]
`);
  const scrape = async () => {
    const response = await fetch(`${proxy.adminUrl()}/metrics`);
    return parsePrometheusText(await response.text());
  };
  const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });
  const send = async (path: string, xff: string, method = "POST") => {
    const response = await fetch(`${proxy.url()}${path}`, {
      method,
      body: method === "GET" || method === "HEAD" ? undefined : body,
      headers: { "x-forwarded-for": xff, "x-request-id": randomHex(8) },
    });
    await response.arrayBuffer();
    return response.status;
  };
  try {
    // Warm-up: every series the random traffic below can touch exists afterwards (both
    // upstreams of the iphash group, both routes, the methods used).
    for (let i = 0; i < 64; i++) assert.equal(await send(`/v1/${i}`, randomIp()), 200);
    assert.equal(await send("/emb/x", randomIp()), 200);
    const before = seriesOf(await scrape());

    const started = performance.now();
    let next = 0;
    const statuses = new Map<number, number>();
    const worker = async () => {
      while (next < REQUESTS) {
        const i = next++;
        const path = i % 10 === 0
          ? `/emb/${randomHex(6)}?q=${randomHex(4)}`
          : `/${randomHex(4)}/${randomHex(8)}/${"x".repeat(i % 7)}?id=${randomHex(4)}`;
        const xff = i % 3 === 0
          ? `${randomIp()}, ${randomIp()}`
          : i % 3 === 1
          ? randomIp()
          : `${randomHex(3)}:${randomHex(2)}::${randomHex(2)}`;
        const status = await send(path, xff);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const elapsed = performance.now() - started;
    assert.deepEqual([...statuses], [[200, REQUESTS]], JSON.stringify([...statuses]));

    const afterParsed = await scrape();
    const after = seriesOf(afterParsed);
    const added = [...after].filter((s) => !before.has(s));
    assert.deepEqual(added, [], `new series after ${REQUESTS} requests`);
    assert.equal(after.size, before.size);
    // No label value carries a path, an address or a request id.
    for (const s of after) {
      assert.ok(!/\/[0-9a-f]{4}\/|\d+\.\d+\.\d+\.\d+|::/.test(s), s);
    }
    console.log(`${REQUESTS} requests in ${Math.round(elapsed)} ms; ${after.size} series`);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("cardinality: 10k requests with random model names keep the model label to the config's patterns and other", async () => {
  const mock = await startMockUpstream({ maxRecordedRequests: 100 });
  const proxy = await startTestProxy(`httpServer:
  forwards: [{name: main, port: 0, address: 127.0.0.1, defaultGroup: rest}]
  admin: {port: 0}
upstreams:
  - {name: u1, url: "${mock.url}/v1/chat/completions"}
  - {name: u2, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - {name: chat, upstreams: [{name: u1}], models: ["gpt-4o", "gpt-*"]}
  - {name: rest, upstreams: [{name: u2}]}
`);
  const scrape = async () => {
    const response = await fetch(`${proxy.adminUrl()}/metrics`);
    return parsePrometheusText(await response.text());
  };
  const send = async (model: string, stream: boolean) => {
    const response = await fetch(`${proxy.url()}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model, stream, messages: [{ role: "user", content: "hi" }] }),
    });
    await response.arrayBuffer();
    return response.status;
  };
  try {
    // Warm-up: every label value the random traffic can reach, streamed and not.
    for (const model of ["gpt-4o", "gpt-x", "llama"]) {
      for (const stream of [false, true]) assert.equal(await send(model, stream), 200);
    }
    const before = seriesOf(await scrape());
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const i = next++;
        const model = i % 3 === 0 ? `gpt-${randomHex(6)}` : randomHex(4 + (i % 9));
        assert.equal(await send(model, i % 2 === 0), 200);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const after = await scrape();
    const added = [...seriesOf(after)].filter((s) => !before.has(s));
    assert.deepEqual(added, [], `new series after ${REQUESTS} requests`);
    const models = new Set(
      after.get("llmproxy_tokens_total")!.samples.map((s) => s.labels.model),
    );
    assert.deepEqual([...models].sort(), ["gpt-*", "gpt-4o", "other"]);
  } finally {
    await proxy.stop();
    await mock.close();
  }
});
