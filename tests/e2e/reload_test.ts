/**
 * Live reload: app.reload(), POST /reload and a watched config file. A valid change takes
 * effect without dropping in-flight streams; unchanged upstreams keep their breaker state; an
 * invalid config keeps the old one serving.
 */
import assert from "node:assert/strict";
import { loadConfigFile, parseConfig } from "../../src/config/load.ts";
import { type RunningApp, startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { chat, delay, freePort, readEvents } from "../_helpers/raw_http.ts";

const TOKEN = "reload-admin-token-123";

interface Options {
  /** Upstreams of group g as YAML flow items. */
  members?: string;
  /** Extra forwards (YAML list items, indented 4). */
  forwards?: string;
  adminToken?: string;
  /** Breaker settings of upstream `frag` (flow map body). */
  fragBreaker?: string;
  /** Leave upstream `u2` out of the config. */
  withoutU2?: boolean;
}

function yaml(m1: MockUpstream, m2: MockUpstream, o: Options = {}): string {
  return `httpServer:
  forwards:
    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g,
       routing: [{path: "/frag/*", targetGroup: fg}]}
${o.forwards ?? ""}
  admin: {port: 0, token: "${o.adminToken ?? TOKEN}"}
upstreams:
  - {name: u1, url: "${m1.url}/v1/chat/completions"}
${o.withoutU2 ? "" : `  - {name: u2, url: "${m2.url}/v1/chat/completions"}`}
  - name: frag
    url: "${m1.url}/v1/chat/completions"
    breaker: {${o.fragBreaker ?? "minRequests: 1, threshold: 0.5, cooldown: 60"}}
upstreamGroups:
  - name: g
    upstreams: [${o.members ?? "{name: u1}"}]
    balance: {strategy: weighted_roundrobin}
  - name: fg
    upstreams: [{name: frag}]
    httpClient: {retry: {attempts: 0}}
`;
}

interface Running {
  app: RunningApp;
  m1: MockUpstream;
  m2: MockUpstream;
  logs: string[];
  /** The text the next reload parses. */
  next: string;
  url(forward?: string): string;
  admin: string;
}

async function withApp(
  fn: (r: Running) => Promise<void>,
  initial?: Options,
  transport?: "http1" | "fetch",
): Promise<void> {
  const m1 = await startMockUpstream({ name: "m1" });
  const m2 = await startMockUpstream({ name: "m2" });
  const logs: string[] = [];
  const text = yaml(m1, m2, initial);
  const running = { next: text } as Running;
  const app = await startApp(parseConfig(text, "test.yaml", () => undefined), {
    log: createLogger({ level: "debug", json: true, write: (line) => logs.push(line) }),
    handleSignals: false,
    env: () => undefined,
    ...(transport ? { transport } : {}),
    reload: () => Promise.resolve(parseConfig(running.next, "test.yaml", () => undefined)),
  });
  Object.assign(running, {
    app,
    m1,
    m2,
    logs,
    url: (forward = "main") => `http://127.0.0.1:${app.forwards.get(forward)!.port}`,
    admin: `http://127.0.0.1:${app.admin!.port}`,
  });
  try {
    await fn(running);
  } finally {
    await app.stop();
    await m1.close();
    await m2.close();
  }
}

/** Which mock served each of `n` sequential JSON completions. */
async function servedBy(url: string, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: chat() });
    assert.equal(response.status, 200);
    names.push(response.headers.get("x-mock-upstream") ?? "?");
    await response.body?.cancel();
  }
  return names;
}

async function reloads(r: Running, result: "success" | "failure"): Promise<number> {
  const text = await (await fetch(`${r.admin}/metrics`)).text();
  return sampleValue(parsePrometheusText(text), "llmproxy_config_reloads_total", { result }) ?? 0;
}

/**
 * Starts a slow SSE stream (10 chunks, 100 ms apart) and waits for its response headers. The
 * events come wrapped: an async function returning a bare promise would be flattened by
 * `await`, which would wait for the whole stream.
 */
async function slowStream(url: string): Promise<{ events: Promise<string[]> }> {
  const start = performance.now();
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: chat(true),
    headers: { "x-mock-chunks": "10", "x-mock-delay-ms": "100" },
  });
  assert.equal(response.status, 200);
  const reader = response.body!;
  return { events: readEvents(reader, start).then((events) => events.map((e) => e.text)) };
}

const bearer = { authorization: `Bearer ${TOKEN}` };

Deno.test("reload: app.reload() adds an upstream, changes weights and opens a new forward without dropping a stream", async () => {
  await withApp(async (r) => {
    assert.deepEqual(await servedBy(r.url(), 4), ["m1", "m1", "m1", "m1"]);
    const mainPort = r.app.forwards.get("main")!.port;

    const stream = await slowStream(r.url());
    r.next = yaml(r.m1, r.m2, {
      members: "{name: u1, weight: 1}, {name: u2, weight: 3}",
      forwards: "    - {name: second, port: 0, address: 127.0.0.1, defaultGroup: g}",
    });
    const result = await r.app.reload();
    assert.deepEqual(result, { ok: true, errors: [] });

    // New weights: smooth weighted round robin gives u2 three of every four.
    const after = await servedBy(r.url(), 8);
    assert.equal(after.filter((n) => n === "m2").length, 6, after.join());
    assert.equal(after.filter((n) => n === "m1").length, 2, after.join());
    // The existing forward keeps its port; the new one listens and serves.
    assert.equal(r.app.forwards.get("main")!.port, mainPort);
    const second = r.app.forwards.get("second");
    assert.ok(second && second.port > 0);
    assert.equal((await servedBy(r.url("second"), 4)).length, 4);

    // The stream started before the reload ends cleanly with all its chunks.
    const events = await stream.events;
    assert.equal(events.filter((e) => e.includes("chat.completion.chunk")).length, 10);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.equal(await reloads(r, "success"), 1);
    assert.ok(r.logs.some((l) => l.includes("config reloaded")));
  });
});

Deno.test("reload: POST /reload with the token swaps the config; without it 401 and nothing changes", async () => {
  await withApp(async (r) => {
    r.next = yaml(r.m1, r.m2, { members: "{name: u2}" });
    const denied = await fetch(`${r.admin}/reload`, { method: "POST" });
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    assert.deepEqual(await servedBy(r.url(), 2), ["m1", "m1"]);
    assert.equal(await reloads(r, "success"), 0);

    const stream = await slowStream(r.url());
    const response = await fetch(`${r.admin}/reload`, { method: "POST", headers: bearer });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: "reloaded" });
    assert.deepEqual(await servedBy(r.url(), 3), ["m2", "m2", "m2"]);
    const events = await stream.events;
    assert.equal(events.filter((e) => e.includes("chat.completion.chunk")).length, 10);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.equal(await reloads(r, "success"), 1);
  });
});

Deno.test("reload: a new admin token applies at once", async () => {
  await withApp(async (r) => {
    r.next = yaml(r.m1, r.m2, { adminToken: "the-new-admin-token" });
    assert.equal((await r.app.reload()).ok, true);
    const old = await fetch(`${r.admin}/upstreams`, { headers: bearer });
    assert.equal(old.status, 401);
    await old.body?.cancel();
    const fresh = await fetch(`${r.admin}/upstreams`, {
      headers: { authorization: "Bearer the-new-admin-token" },
    });
    assert.equal(fresh.status, 200);
    await fresh.body?.cancel();
  });
});

Deno.test("reload: the breaker of an unchanged upstream carries over; a changed upstream starts closed", async () => {
  await withApp(async (r) => {
    const tripped = await fetch(`${r.url()}/frag/x`, {
      method: "POST",
      body: chat(),
      headers: { "x-mock-status": "500" },
    });
    assert.equal(tripped.status, 500);
    await tripped.body?.cancel();
    const state = async () => {
      const body = await (await fetch(`${r.admin}/upstreams`, { headers: bearer })).json();
      // deno-lint-ignore no-explicit-any
      const fg = body.groups.find((g: any) => g.name === "fg");
      return fg.upstreams[0];
    };
    assert.equal((await state()).breaker, "open");

    // Unrelated change: another group's members and a new forward.
    r.next = yaml(r.m1, r.m2, {
      members: "{name: u1}, {name: u2}",
      forwards: "    - {name: other, port: 0, address: 127.0.0.1, defaultGroup: g}",
    });
    assert.equal((await r.app.reload()).ok, true);
    const kept = await state();
    assert.equal(kept.breaker, "open");
    assert.ok(kept.breakerCooldownMs > 50_000, String(kept.breakerCooldownMs));
    assert.equal(kept.requests, 1);
    const rejected = await fetch(`${r.url()}/frag/x`, { method: "POST", body: chat() });
    assert.equal(rejected.status, 503);
    await rejected.body?.cancel();
    const metrics = parsePrometheusText(await (await fetch(`${r.admin}/metrics`)).text());
    assert.equal(
      sampleValue(metrics, "llmproxy_circuit_breaker_state", { upstream: "frag" }),
      1,
    );
    const ready = await fetch(`${r.admin}/ready`);
    assert.equal(ready.status, 503);
    await ready.body?.cancel();

    // Changing the upstream itself builds a new breaker.
    r.next = yaml(r.m1, r.m2, { fragBreaker: "minRequests: 2, threshold: 0.5, cooldown: 60" });
    assert.equal((await r.app.reload()).ok, true);
    assert.equal((await state()).breaker, "closed");
    const ok = await fetch(`${r.url()}/frag/x`, { method: "POST", body: chat() });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    const after = parsePrometheusText(await (await fetch(`${r.admin}/metrics`)).text());
    assert.equal(
      sampleValue(after, "llmproxy_circuit_breaker_state", { upstream: "frag" }),
      0,
    );
  });
});

Deno.test("reload: series of a removed upstream, group member and forward leave /metrics; the others stay", async () => {
  await withApp(async (r) => {
    assert.deepEqual((await servedBy(r.url(), 4)).sort(), ["m1", "m1", "m2", "m2"]);
    assert.deepEqual(await servedBy(r.url("other"), 1), ["m1"]);
    const scrape = async () =>
      parsePrometheusText(await (await fetch(`${r.admin}/metrics`)).text());
    /** Every sample with a label naming `value`, as `family{labels}`. */
    const naming = (m: Awaited<ReturnType<typeof scrape>>, label: string, value: string) =>
      [...m.values()].flatMap((f) => f.samples)
        .filter((s) => s.labels[label] === value)
        .map((s) => `${s.name}${JSON.stringify(s.labels)}`);
    const before = await scrape();
    const u1Requests = { group: "g", upstream: "u1", status: "200" };
    assert.equal(sampleValue(before, "llmproxy_upstream_requests_total", u1Requests), 3);
    assert.ok(naming(before, "upstream", "u2").length > 0);
    assert.ok(naming(before, "forward", "other").length > 0);
    assert.equal(sampleValue(before, "llmproxy_circuit_breaker_state", { upstream: "u2" }), 0);

    r.next = yaml(r.m1, r.m2, { withoutU2: true });
    assert.equal((await r.app.reload()).ok, true);
    const after = await scrape();
    assert.deepEqual(naming(after, "upstream", "u2"), []);
    assert.deepEqual(naming(after, "forward", "other"), []);
    assert.deepEqual(naming(after, "listener", "other"), []);
    // What the new config still names keeps its series and values.
    assert.equal(sampleValue(after, "llmproxy_upstream_requests_total", u1Requests), 3);
    assert.equal(sampleValue(after, "llmproxy_circuit_breaker_state", { upstream: "u1" }), 0);
    assert.equal(sampleValue(after, "llmproxy_circuit_breaker_state", { upstream: "frag" }), 0);
    assert.equal(
      sampleValue(after, "llmproxy_http_requests_total", {
        forward: "main",
        method: "POST",
        status: "200",
      }),
      4,
    );
    assert.equal(await reloads(r, "success"), 1);
  }, {
    members: "{name: u1}, {name: u2}",
    forwards: "    - {name: other, port: 0, address: 127.0.0.1, defaultGroup: g}",
  });
});

Deno.test("reload: a forward's per-IP limiter carries over an unchanged reload; changed settings start afresh", async () => {
  // One token, refilled once in 1000 s: nothing refills during the test.
  const limited = (burst: number) =>
    `    - {name: limited, port: 0, address: 127.0.0.1, defaultGroup: g,
       ratelimit: {perSecond: 0.001, burst: ${burst}}}`;
  await withApp(async (r) => {
    const status = async () => {
      const response = await fetch(`${r.url("limited")}/v1/chat/completions`, {
        method: "POST",
        body: chat(),
      });
      await response.body?.cancel();
      return response.status;
    };
    assert.equal(await status(), 200);
    assert.equal(await status(), 429);

    // Another part of the config changes; the limited forward does not.
    r.next = yaml(r.m1, r.m2, { members: "{name: u1}, {name: u2}", forwards: limited(1) });
    assert.equal((await r.app.reload()).ok, true);
    assert.equal(await status(), 429, "the exhausted limiter was carried over");

    r.next = yaml(r.m1, r.m2, { members: "{name: u1}, {name: u2}", forwards: limited(2) });
    assert.equal((await r.app.reload()).ok, true);
    assert.equal(await status(), 200, "new settings, new limiter");
  }, { forwards: limited(1) });
});

Deno.test("reload: an invalid config is rejected, the old one keeps serving, failure is counted", async () => {
  await withApp(async (r) => {
    const stream = await slowStream(r.url());
    // Unknown key and a forward naming a group that does not exist.
    r.next = yaml(r.m1, r.m2).replace("defaultGroup: g,", "defaultGroup: nope, bogus: 1,");
    const result = await r.app.reload();
    assert.equal(result.ok, false);
    assert.ok(result.errors.length >= 2, result.errors.join("\n"));
    assert.ok(result.errors.every((e) => e.startsWith("test.yaml:")), result.errors.join("\n"));
    assert.ok(result.errors.some((e) => e.includes("bogus")));

    // Through the admin endpoint: 400 with the errors.
    const response = await fetch(`${r.admin}/reload`, { method: "POST", headers: bearer });
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(body.status, "rejected");
    assert.ok(body.errors.length >= 2);

    // YAML that does not parse at all.
    r.next = "httpServer: [unclosed";
    assert.equal((await r.app.reload()).ok, false);

    assert.equal(await reloads(r, "failure"), 3);
    assert.equal(await reloads(r, "success"), 0);
    assert.deepEqual(await servedBy(r.url(), 2), ["m1", "m1"]);
    const events = await stream.events;
    assert.equal(events.at(-1), "data: [DONE]");
    assert.ok(r.logs.some((l) => l.includes("config reload rejected")));

    // A valid config afterwards is taken.
    r.next = yaml(r.m1, r.m2, { members: "{name: u2}" });
    assert.equal((await r.app.reload()).ok, true);
    assert.deepEqual(await servedBy(r.url(), 2), ["m2", "m2"]);
    assert.equal(await reloads(r, "success"), 1);
  });
});

Deno.test("reload: a removed forward stops listening; a moved one listens on its new port", async () => {
  await withApp(async (r) => {
    r.next = yaml(r.m1, r.m2, {
      forwards: "    - {name: extra, port: 0, address: 127.0.0.1, defaultGroup: g}",
    });
    assert.equal((await r.app.reload()).ok, true);
    const firstPort = r.app.forwards.get("extra")!.port;
    assert.equal((await servedBy(`http://127.0.0.1:${firstPort}`, 1)).length, 1);

    // Move `extra` to a fixed port: the listener is rebound there.
    const fixed = freePort();
    r.next = yaml(r.m1, r.m2, {
      forwards: `    - {name: extra, port: ${fixed}, address: 127.0.0.1, defaultGroup: g}`,
    });
    assert.equal((await r.app.reload()).ok, true);
    assert.equal(r.app.forwards.get("extra")!.port, fixed);
    assert.equal((await servedBy(`http://127.0.0.1:${fixed}`, 1)).length, 1);

    r.next = yaml(r.m1, r.m2);
    assert.equal((await r.app.reload()).ok, true);
    assert.equal(r.app.forwards.has("extra"), false);
    const extraPort = fixed;
    // Give the old listener a moment to close.
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await fetch(`http://127.0.0.1:${extraPort}/v1/models`)
        .then(async (res) => {
          await res.body?.cancel();
          return false;
        })
        .catch(() => true);
      if (!refused) await delay(20);
    }
    assert.ok(refused, "the removed forward's port no longer accepts requests");
    assert.deepEqual(await servedBy(r.url(), 1), ["m1"]);
  });
});

Deno.test("reload: a changed config file is picked up by the watcher", async () => {
  const m1 = await startMockUpstream({ name: "m1" });
  const m2 = await startMockUpstream({ name: "m2" });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, yaml(m1, m2));
  const logs: string[] = [];
  const env = () => undefined;
  const app = await startApp(await loadConfigFile(path, env), {
    log: createLogger({ level: "debug", json: true, write: (line) => logs.push(line) }),
    handleSignals: false,
    env,
    watchPath: path,
    reload: () => loadConfigFile(path, env),
  });
  try {
    assert.equal(app.forwards.has("watched"), false);
    // Give the watcher a moment to be set up before the change.
    await delay(100);
    await Deno.writeTextFile(
      path,
      yaml(m1, m2, {
        forwards: "    - {name: watched, port: 0, address: 127.0.0.1, defaultGroup: g}",
        members: "{name: u2}",
      }),
    );
    const deadline = performance.now() + 3000;
    while (!app.forwards.has("watched") && performance.now() < deadline) await delay(50);
    assert.ok(app.forwards.has("watched"), `reloaded within 3 s: ${logs.join("")}`);
    const port = app.forwards.get("watched")!.port;
    assert.deepEqual(await servedBy(`http://127.0.0.1:${port}`, 2), ["m2", "m2"]);

    // An invalid file is logged and ignored.
    await Deno.writeTextFile(path, "upstreams: [oops");
    const deadline2 = performance.now() + 3000;
    while (
      !logs.some((l) => l.includes("config reload rejected")) && performance.now() < deadline2
    ) {
      await delay(50);
    }
    assert.ok(logs.some((l) => l.includes("config reload rejected")), logs.join(""));
    assert.ok(app.forwards.has("watched"));
    assert.deepEqual(await servedBy(`http://127.0.0.1:${port}`, 1), ["m2"]);
  } finally {
    await app.stop();
    await m1.close();
    await m2.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload: secrets of the new config never reach the logs (live secret set)", async () => {
  // As main.ts does it: the logger reads a live set that each reload extends.
  const { configSecrets } = await import("../../src/config/secrets.ts");
  const m1 = await startMockUpstream({ name: "m1" });
  const m2 = await startMockUpstream({ name: "m2" });
  const logs: string[] = [];
  let text = yaml(m1, m2);
  const loaded = parseConfig(text, "test.yaml", () => undefined);
  const secrets = configSecrets(loaded);
  const app = await startApp(loaded, {
    log: createLogger({ level: "debug", json: true, write: (l) => logs.push(l), secrets }),
    handleSignals: false,
    env: () => undefined,
    reload: () => {
      const next = parseConfig(text, "test.yaml", () => undefined);
      for (const s of configSecrets(next)) secrets.add(s);
      return Promise.resolve(next);
    },
  });
  try {
    const fresh = "fresh-admin-token-after-reload";
    text = yaml(m1, m2, { adminToken: fresh });
    assert.equal((await app.reload()).ok, true);
    const config = await fetch(`http://127.0.0.1:${app.admin!.port}/config`, {
      headers: { authorization: `Bearer ${fresh}` },
    });
    const body = await config.text();
    assert.equal(config.status, 200);
    assert.ok(!body.includes(fresh));
    for (const line of logs) assert.ok(!line.includes(fresh), line);
    // Prove the logger would catch it: a line mentioning it is redacted.
    const before = logs.length;
    createLogger({ write: (l) => logs.push(l), secrets }).info(`token ${fresh}`);
    assert.ok(!logs[before]!.includes(fresh));
  } finally {
    await app.stop();
    await m1.close();
    await m2.close();
  }
});

Deno.test("reload: a stream survives two reloads when the graph between them shared its group", async () => {
  await withApp(async (r) => {
    const stream = await slowStream(r.url());
    // First reload: group g unchanged, so the new graph shares its transport with the old one.
    r.next = yaml(r.m1, r.m2, {
      forwards: "    - {name: second, port: 0, address: 127.0.0.1, defaultGroup: g}",
    });
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    // Second reload: g changes. The middle graph has nothing in flight and retires at once;
    // it must not close g's transport, which the first graph's stream still uses.
    r.next = yaml(r.m1, r.m2, { members: "{name: u1}, {name: u2}" });
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    const events = await stream.events;
    assert.equal(events.filter((e) => e.includes("chat.completion.chunk")).length, 10);
    assert.equal(events.at(-1), "data: [DONE]");
  });
});

Deno.test("reload: stop closes a client shared by two retiring graphs once, after their streams", async () => {
  // fetch: closing a Deno.HttpClient twice throws, which would reject stop().
  await withApp(
    async (r) => {
      const first = await slowStream(r.url());
      r.next = yaml(r.m1, r.m2, {
        forwards: "    - {name: second, port: 0, address: 127.0.0.1, defaultGroup: g}",
      });
      assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
      const second = await slowStream(r.url());
      r.next = yaml(r.m1, r.m2, { members: "{name: u1}, {name: u2}" });
      assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
      await r.app.stop(); // drains both streams, then closes the retiring graphs
      for (const stream of [first, second]) {
        const events = await stream.events;
        assert.equal(events.filter((e) => e.includes("chat.completion.chunk")).length, 10);
        assert.equal(events.at(-1), "data: [DONE]");
      }
      assert.equal(await r.app.finished, 0);
    },
    undefined,
    "fetch",
  );
});

Deno.test("reload: stop drains a stream on a listener that a reload moved away", async () => {
  await withApp(async (r) => {
    const stream = await slowStream(r.url());
    // `main` moves to another port: its old listener drains on its own.
    r.next = yaml(r.m1, r.m2).replace(
      "{name: main, port: 0,",
      `{name: main, port: ${freePort()},`,
    );
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    await r.app.stop(); // must wait for the old listener's stream too
    const events = await stream.events;
    assert.equal(events.filter((e) => e.includes("chat.completion.chunk")).length, 10);
    assert.equal(events.at(-1), "data: [DONE]");
  });
});
