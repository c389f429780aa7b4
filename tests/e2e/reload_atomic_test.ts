/**
 * A reload never kills the proxy and is all or nothing: a new config whose forward needs a
 * port that is taken is rejected whole (app.reload() as SIGHUP uses it, POST /reload, the file
 * watcher), and the old config keeps serving on every old listener. Reloads run one at a time
 * and a burst is coalesced into one more run.
 */
import assert from "node:assert/strict";
import { loadConfigFile, parseConfig } from "../../src/config/load.ts";
import { type RunningApp, startApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { chat, delay, freePort, waitFor } from "../_helpers/raw_http.ts";

const TOKEN = "atomic-admin-token-77";
const bearer = { authorization: `Bearer ${TOKEN}` };

/** Forwards `main` and `extra` (or `forwards`), group g of `members`. */
function yaml(m1: MockUpstream, m2: MockUpstream, o: { members?: string; forwards?: string } = {}) {
  return `httpServer:
  forwards:
${
    o.forwards ?? `    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g}
    - {name: extra, port: 0, address: 127.0.0.1, defaultGroup: g}`
  }
  admin: {port: 0, token: "${TOKEN}"}
upstreams:
  - {name: u1, url: "${m1.url}/v1/chat/completions"}
  - {name: u2, url: "${m2.url}/v1/chat/completions"}
upstreamGroups:
  - {name: g, upstreams: [${o.members ?? "{name: u1}"}]}
`;
}

/** The old forwards plus `fresh` (port 0) and `blocked` on `takenPort`; g served by u2. */
function blockedYaml(m1: MockUpstream, m2: MockUpstream, takenPort: number): string {
  return yaml(m1, m2, {
    members: "{name: u2}",
    forwards: `    - {name: main, port: 0, address: 127.0.0.1, defaultGroup: g}
    - {name: extra, port: 0, address: 127.0.0.1, defaultGroup: g}
    - {name: fresh, port: 0, address: 127.0.0.1, defaultGroup: g}
    - {name: blocked, port: ${takenPort}, address: 127.0.0.1, defaultGroup: g}`,
  });
}

interface Running {
  app: RunningApp;
  m1: MockUpstream;
  m2: MockUpstream;
  logs: string[];
  /** The text the next reload parses. */
  next: string;
  admin: string;
  /** Calls of the reload callback so far. */
  loads: number;
  /** Set to delay each load (ms). */
  loadDelayMs: number;
}

async function withApp(fn: (r: Running) => Promise<void>): Promise<void> {
  const m1 = await startMockUpstream({ name: "m1" });
  const m2 = await startMockUpstream({ name: "m2" });
  const logs: string[] = [];
  const text = yaml(m1, m2);
  const r = { next: text, loads: 0, loadDelayMs: 0, m1, m2, logs } as Running;
  r.app = await startApp(parseConfig(text, "test.yaml", () => undefined), {
    log: createLogger({ level: "debug", json: true, write: (line) => logs.push(line) }),
    handleSignals: false,
    env: () => undefined,
    reload: async () => {
      r.loads++;
      const text = r.next; // as read at the start of the load
      if (r.loadDelayMs > 0) await delay(r.loadDelayMs);
      return parseConfig(text, "test.yaml", () => undefined);
    },
  });
  r.admin = `http://127.0.0.1:${r.app.admin!.port}`;
  try {
    await fn(r);
  } finally {
    await r.app.stop();
    await m1.close();
    await m2.close();
  }
}

/** Which mock served one JSON completion through `port`. */
async function servedBy(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    body: chat(),
  });
  assert.equal(response.status, 200);
  await response.body?.cancel();
  return response.headers.get("x-mock-upstream") ?? "?";
}

async function reloads(admin: string, result: "success" | "failure"): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  return sampleValue(parsePrometheusText(text), "llmproxy_config_reloads_total", { result }) ?? 0;
}

/** The old config serves on both old listeners, and nothing of the new one is up. */
async function assertOldServing(r: Running, ports: { main: number; extra: number }) {
  assert.deepEqual([...r.app.forwards.keys()].sort(), ["extra", "main"]);
  assert.equal(r.app.forwards.get("main")!.port, ports.main);
  assert.equal(r.app.forwards.get("extra")!.port, ports.extra);
  assert.equal(await servedBy(ports.main), "m1");
  assert.equal(await servedBy(ports.extra), "m1");
}

function portsOf(app: RunningApp) {
  return { main: app.forwards.get("main")!.port, extra: app.forwards.get("extra")!.port };
}

Deno.test("reload atomic: app.reload() to a taken port is rejected whole; the old config serves on every old listener", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const takenPort = (taken.addr as Deno.NetAddr).port;
  try {
    await withApp(async (r) => {
      const ports = portsOf(r.app);
      r.next = blockedYaml(r.m1, r.m2, takenPort);
      const result = await r.app.reload();
      assert.equal(result.ok, false);
      assert.equal(result.errors.length, 1, result.errors.join("\n"));
      assert.match(result.errors[0]!, /forward "blocked" cannot listen on 127\.0\.0\.1:\d+/);
      assert.ok(result.errors[0]!.includes(`:${takenPort}`), result.errors[0]);
      await assertOldServing(r, ports);
      assert.equal(await reloads(r.admin, "failure"), 1);
      assert.equal(await reloads(r.admin, "success"), 0);
      const rejected = r.logs.filter((l) => l.includes("config reload rejected"));
      assert.equal(rejected.length, 1);
      assert.ok(rejected[0]!.includes('forward \\"blocked\\"'), rejected[0]);
      assert.ok(!r.logs.some((l) => l.includes("config reloaded")));

      // The proxy is whole: a valid reload afterwards applies.
      r.next = yaml(r.m1, r.m2, { members: "{name: u2}" });
      assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
      assert.equal(await servedBy(ports.main), "m2");
      assert.equal(await servedBy(ports.extra), "m2");
    });
  } finally {
    taken.close();
  }
});

Deno.test("reload atomic: POST /reload to a taken port answers 400 naming the forward; the old config serves", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const takenPort = (taken.addr as Deno.NetAddr).port;
  try {
    await withApp(async (r) => {
      const ports = portsOf(r.app);
      r.next = blockedYaml(r.m1, r.m2, takenPort);
      const response = await fetch(`${r.admin}/reload`, { method: "POST", headers: bearer });
      const body = await response.json();
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal(body.status, "rejected");
      assert.equal(body.errors.length, 1);
      assert.ok(
        body.errors[0].startsWith(`forward "blocked" cannot listen on 127.0.0.1:${takenPort}`),
        body.errors[0],
      );
      await assertOldServing(r, ports);
      assert.equal(await reloads(r.admin, "failure"), 1);
    });
  } finally {
    taken.close();
  }
});

Deno.test("reload atomic: a watched file naming a taken port is rejected; the process and the old config live on", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const takenPort = (taken.addr as Deno.NetAddr).port;
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
    const ports = portsOf(app);
    await delay(100); // the watcher is set up
    await Deno.writeTextFile(path, blockedYaml(m1, m2, takenPort));
    await waitFor(
      () => logs.some((l) => l.includes("config reload rejected")),
      "the reload was rejected",
      3000,
    );
    assert.deepEqual([...app.forwards.keys()].sort(), ["extra", "main"]);
    assert.equal(await servedBy(ports.main), "m1");
    assert.equal(await servedBy(ports.extra), "m1");
  } finally {
    await app.stop();
    await m1.close();
    await m2.close();
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload atomic: a burst runs one reload at a time and coalesces into one more run", async () => {
  await withApp(async (r) => {
    r.loadDelayMs = 50;
    r.next = yaml(r.m1, r.m2, { members: "{name: u2}" });
    const first = r.app.reload();
    await delay(10); // the first load has started with the valid config
    r.next = "httpServer: [unclosed"; // what every later request reads
    const burst = [r.app.reload(), r.app.reload(), r.app.reload(), r.app.reload()];
    assert.deepEqual(await first, { ok: true, errors: [] });
    const results = await Promise.all(burst);
    assert.equal(r.loads, 2, "one run for the whole burst");
    assert.equal(results[0]!.ok, false);
    for (const result of results) assert.equal(result, results[0], "all waiters share one result");
    assert.equal(await reloads(r.admin, "success"), 1);
    assert.equal(await reloads(r.admin, "failure"), 1);
    assert.equal(await servedBy(portsOf(r.app).main), "m2");

    // Once idle, a request runs again at once.
    r.next = yaml(r.m1, r.m2);
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    assert.equal(r.loads, 3);
  });
});

Deno.test("reload atomic: a renamed forward keeps its fixed port; two forwards can swap fixed ports", async () => {
  await withApp(async (r) => {
    const [a, b] = [freePort(), freePort()];
    const two = (x: string, px: number, y: string, py: number) =>
      yaml(r.m1, r.m2, {
        forwards: `    - {name: ${x}, port: ${px}, address: 127.0.0.1, defaultGroup: g}
    - {name: ${y}, port: ${py}, address: 127.0.0.1, defaultGroup: g}`,
      });
    r.next = two("main", a, "extra", b);
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    // Bound first, these would collide with the ports the old forwards still hold.
    r.next = two("public", a, "extra", b);
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    assert.equal(r.app.forwards.get("public")!.port, a);
    assert.equal(r.app.forwards.has("main"), false);
    r.next = two("public", b, "extra", a);
    assert.deepEqual(await r.app.reload(), { ok: true, errors: [] });
    assert.equal(r.app.forwards.get("public")!.port, b);
    assert.equal(r.app.forwards.get("extra")!.port, a);
    assert.equal(await servedBy(a), "m1");
    assert.equal(await servedBy(b), "m1");
  });
});
