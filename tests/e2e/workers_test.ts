/**
 * End-to-end with `workers: 2`: real listeners sharing one port (SO_REUSEPORT), limits exact
 * across workers, the admin API summing them, reload, stop and a dead worker replaced.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import type { RunningWorkers } from "../../src/workers/supervisor.ts";
import type { LoadedConfig } from "../../src/config/errors.ts";
import { redisAvailable, redisCommand, startRedisServer } from "../_helpers/redis_server.ts";

const CHAT = "/v1/chat/completions";

interface Setup {
  app: RunningWorkers;
  mock: MockUpstream;
  logs: string[];
  url: string;
  admin: string;
  /** A client that opens a new connection per request, so the kernel spreads them. */
  client: Deno.HttpClient;
  /** The config the next reload loads. */
  next(yaml: string): void;
}

function yaml(mock: MockUpstream, extra: { forward?: string; keys?: string } = {}): string {
  return `workers: 2
httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g${
    extra.forward ? `, ${extra.forward}` : ""
  }}
  admin: {port: 0, address: 127.0.0.1}
upstreams:
  - {name: mock, url: "${mock.url}${CHAT}"}
upstreamGroups:
  - name: g
    upstreams: [{name: mock}]
    httpClient: {retry: {attempts: 0}}
${extra.keys ?? ""}`;
}

async function withWorkers(
  config: (mock: MockUpstream) => string,
  fn: (setup: Setup) => Promise<void>,
): Promise<void> {
  const mock = await startMockUpstream();
  const logs: string[] = [];
  const log = createLogger({ level: "debug", write: (line) => logs.push(line) });
  let next: LoadedConfig | undefined;
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const transport = Deno.env.get("LLMPROXY_TRANSPORT");
  const app = await startApp(parseConfig(config(mock), "test.yaml", () => undefined), {
    log,
    handleSignals: false,
    allowWorkerCrash: true,
    reload: () => Promise.resolve(next!),
    ...(transport === "fetch" || transport === "http1" ? { transport } : {}),
  }) as RunningWorkers;
  try {
    await fn({
      app,
      mock,
      logs,
      url: `http://127.0.0.1:${app.forwards.get("main")!.port}`,
      admin: `http://127.0.0.1:${app.admin!.port}`,
      client,
      next: (text) => next = parseConfig(text, "test.yaml", () => undefined),
    });
  } finally {
    await app.stop();
    client.close();
    await mock.close();
  }
}

async function chat(
  setup: Setup,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${setup.url}${CHAT}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "m" }),
    client: setup.client,
  });
  return { status: response.status, text: await response.text() };
}

/** Statuses of `n` requests sent one after another, each on a new connection. */
async function statuses(setup: Setup, n: number, headers: Record<string, string> = {}) {
  const counts: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const { status } = await chat(setup, headers);
    counts[status] = (counts[status] ?? 0) + 1;
  }
  return counts;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Workers that wrote an access-log line. */
function servingWorkers(logs: readonly string[]): Set<string> {
  return new Set(
    logs.filter((l) => l.includes("log=access")).map((l) => /worker=(\d+)/.exec(l)?.[1] ?? "?"),
  );
}

async function metric(setup: Setup, series: string): Promise<number> {
  const text = await (await fetch(`${setup.admin}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

Deno.test("e2e workers: both serve one port, and a per-IP limit of 10 admits 10 in all", async () => {
  await withWorkers(
    (mock) => yaml(mock, { forward: "ratelimit: {perSecond: 0.001, burst: 10}" }),
    async (setup) => {
      assert.deepEqual(await statuses(setup, 30), { 200: 10, 429: 20 });
      await waitFor("both workers' access logs", () => servingWorkers(setup.logs).size === 2);
      assert.deepEqual(servingWorkers(setup.logs), new Set(["1", "2"]));
      assert.equal(setup.mock.requests.length, 10);
      // The admin port sums the workers.
      assert.equal(
        await metric(
          setup,
          'llmproxy_http_requests_total{forward="main",method="POST",status="200"}',
        ),
        10,
      );
      assert.equal(
        await metric(setup, 'llmproxy_ratelimit_rejections_total{scope="forward",name="main"}'),
        20,
      );
      const upstreams = await (await fetch(`${setup.admin}/upstreams`)).json();
      assert.equal(upstreams.workers, 2);
      assert.equal(upstreams.groups[0].upstreams[0].requests, 10);
      assert.deepEqual(upstreams.groups[0].upstreams[0].breakers, ["closed", "closed"]);
      assert.equal((await fetch(`${setup.admin}/ready`)).status, 200);
    },
  );
});

Deno.test("e2e workers: a client key's limit of 5 admits 5 across workers; /keys sums", async () => {
  const keys = `clientKeys:
  - {name: team, key: "sk-team-0123456789", ratelimit: {perSecond: 0.001, burst: 5}}
`;
  await withWorkers((mock) => yaml(mock, { keys }), async (setup) => {
    const auth = { authorization: "Bearer sk-team-0123456789" };
    assert.deepEqual(await statuses(setup, 16, auth), { 200: 5, 429: 11 });
    await waitFor("both workers' access logs", () => servingWorkers(setup.logs).size === 2);
    const body = await (await fetch(`${setup.admin}/keys`)).json();
    assert.equal(body.keys.length, 1);
    assert.equal(body.keys[0].name, "team");
    assert.equal(body.keys[0].requests, 16);
    assert.equal(
      await metric(setup, 'llmproxy_key_requests_total{key="team",status="429"}'),
      11,
    );
  });
});

Deno.test("e2e workers: a reload reaches every worker; a dead worker is replaced and logged", async () => {
  await withWorkers(
    (mock) => yaml(mock, { forward: "ratelimit: {perSecond: 0.001, burst: 2}" }),
    async (setup) => {
      assert.deepEqual(await statuses(setup, 4), { 200: 2, 429: 2 });
      // New settings: a new bucket, in every worker.
      setup.next(yaml(setup.mock, { forward: "ratelimit: {perSecond: 0.001, burst: 6}" }));
      assert.deepEqual(await setup.app.reload(), { ok: true, errors: [] });
      await waitFor(
        "both workers' reload lines",
        () =>
          setup.logs.filter((l) => l.includes("config reloaded") && l.includes("worker="))
            .length ===
            2,
      );
      assert.equal(await metric(setup, 'llmproxy_config_reloads_total{result="success"}'), 1);
      assert.deepEqual(await statuses(setup, 10), { 200: 6, 429: 4 });

      setup.app.pool.crash(1);
      await waitFor(
        "worker 1 replaced",
        () => setup.logs.some((l) => l.includes("worker 1 replaced")),
      );
      assert.ok(setup.logs.some((l) => /worker 1 died: .*crash requested by a test/.test(l)));
      // The replacement serves the reloaded config, and the shared limits held meanwhile.
      assert.deepEqual(await statuses(setup, 20), { 429: 20 });
    },
  );
});

Deno.test("e2e workers: stop drains a stream on every worker before it ends", async () => {
  await withWorkers((mock) => yaml(mock), async (setup) => {
    // A slow answer on each worker (new connections spread; enough of them to reach both).
    const pending = Array.from({ length: 6 }, () => chat(setup, { "x-mock-delay-ms": "400" }));
    await waitFor("requests upstream", () => setup.mock.requests.length === 6);
    const stopped = setup.app.stop();
    const answers = await Promise.all(pending);
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200]);
    await stopped;
    assert.equal(await setup.app.finished, 0);
    await waitFor(
      "both workers stopped",
      () =>
        setup.logs.filter((l) => l.includes("INFO  stopped") && l.includes("worker=")).length === 2,
    );
  });
});

Deno.test({
  name:
    "e2e workers with state.store: redis: each worker checks in Redis (a key's 5 admit 5 in all); Redis stopped → the process's shared memory decides (5 more in all), /ready degraded; back → ready",
  ignore: !redisAvailable(),
  fn: async () => {
    const redis = await startRedisServer();
    const extra = `clientKeys:
  - {name: team, key: "sk-team-0123456789", ratelimit: {perSecond: 0.001, burst: 5}}
state:
  store: redis
  redis: {url: "${redis.url}", prefix: "w:", timeout: 200}
`;
    try {
      await withWorkers((mock) => yaml(mock, { keys: extra }), async (setup) => {
        const auth = { authorization: "Bearer sk-team-0123456789" };
        assert.deepEqual(await statuses(setup, 12, auth), { 200: 5, 429: 7 });
        await waitFor("both workers' access logs", () => servingWorkers(setup.logs).size === 2);
        const bucket = await redisCommand(redis.port, "GET w:key:team:req:0.001:5");
        assert.ok(
          Number(bucket.split(" ")[0]) < 1,
          `Redis holds the key's bucket, spent: ${bucket}`,
        );
        assert.ok(
          await metric(setup, 'llmproxy_store_latency_seconds_count{op="key_admit"}') >= 12,
          "the admissions went to Redis, counted by the workers' summed metrics",
        );
        const ready = async () => {
          const response = await fetch(`${setup.admin}/ready`);
          return { status: response.status, body: await response.json() };
        };
        assert.deepEqual(await ready(), { status: 200, body: { status: "ready" } });

        await redis.stop();
        // The fallback is the process's shared memory: the key's 5 hold for both workers.
        assert.deepEqual(await statuses(setup, 12, auth), { 200: 5, 429: 7 });
        const degraded = await ready();
        assert.equal(degraded.status, 200);
        assert.equal(degraded.body.status, "degraded");
        assert.equal(degraded.body.store.status, "down");

        await redis.restart();
        await waitFor("ready again", async () => (await ready()).body.status === "ready");
      });
    } finally {
      await redis.stop();
    }
  },
});

Deno.test({
  name:
    "e2e workers with redis: a worker started after a reload (a replacement) keeps the state settings of start-up (one prefix for all); a 429 cool-down holds for every worker while Redis is down",
  ignore: !redisAvailable(),
  fn: async () => {
    const redis = await startRedisServer();
    const keys = (prefix: string) =>
      `clientKeys:
  - {name: team, key: "sk-team-0123456789", ratelimit: {perSecond: 0.001, burst: 4}}
state:
  store: redis
  redis: {url: "${redis.url}", prefix: "${prefix}", timeout: 200}
`;
    try {
      await withWorkers((mock) => yaml(mock, { keys: keys("a:") }), async (setup) => {
        const auth = { authorization: "Bearer sk-team-0123456789" };
        setup.next(yaml(setup.mock, { keys: keys("b:") }));
        assert.deepEqual(await setup.app.reload(), { ok: true, errors: [] });
        setup.app.pool.crash(2);
        await waitFor(
          "worker 2 replaced",
          () => setup.logs.some((l) => l.includes("worker 2 replaced")),
        );
        assert.deepEqual(await statuses(setup, 8, auth), { 200: 4, 429: 4 });
        await waitFor("both workers' access logs", () => servingWorkers(setup.logs).size === 2);
        assert.equal(await redisCommand(redis.port, "EXISTS b:key:team:req:0.001:4"), "0");
        assert.equal(await redisCommand(redis.port, "EXISTS a:key:team:req:0.001:4"), "1");

        // Redis down: the mock answers 429 with Retry-After: 30 to one worker's attempt; the
        // cool-down is in the process's shared memory, so no worker sends there meanwhile.
        await redis.stop();
        const sent = setup.mock.requests.length;
        const first = await chat(setup, {
          ...auth,
          "x-mock-status": "429",
          "x-mock-retry-after": "30",
        });
        assert.equal(first.status, 429);
        // The key's limit now comes from shared memory too (3 of its 4 left): 3 reach the
        // upstream's cool-down (503, nothing sent), 3 are refused by the key (429).
        const after = await statuses(setup, 6, auth);
        assert.deepEqual(after, { 429: 3, 503: 3 });
        assert.equal(setup.mock.requests.length, sent + 1, "nothing sent during the cool-down");
      });
    } finally {
      await redis.stop();
    }
  },
});
