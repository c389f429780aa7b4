/**
 * Client connections are bounded in number and time: slowloris heads are cut off after
 * `headerTimeout`, idle keep-alive connections after `idleTimeout`, connections past
 * `maxConnections` are refused while the others keep working, and running out of file
 * descriptors never ends the process.
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy, type TestProxy } from "../_helpers/proxy_harness.ts";
import { withTempFile } from "../_helpers/temp_file.ts";
import { delay, freePort, waitForPort } from "../_helpers/raw_http.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAIN = new URL("../../main.ts", import.meta.url);
const CHAT = "/v1/chat/completions";
const REQUEST = `POST ${CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`;

/** Reads until the peer closes (or resets) the connection; resolves with what arrived. */
async function readUntilClosed(conn: Deno.Conn, timeoutMs: number): Promise<string> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const buffer = new Uint8Array(16 * 1024);
  let text = "";
  try {
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) return text;
      text += decoder.decode(buffer.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Sends one keep-alive request on `conn` and reads its (Content-Length framed) response. */
async function exchange(conn: Deno.Conn, request = REQUEST): Promise<string> {
  await conn.write(encoder.encode(request));
  const buffer = new Uint8Array(16 * 1024);
  let text = "";
  for (;;) {
    const n = await conn.read(buffer);
    assert.ok(n !== null, `connection closed mid-response: ${JSON.stringify(text)}`);
    text += decoder.decode(buffer.subarray(0, n));
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0) continue;
    const length = Number(/content-length: (\d+)/i.exec(text.slice(0, headEnd))?.[1] ?? 0);
    if (text.length >= headEnd + 4 + length) return text;
  }
}

async function metric(proxy: TestProxy, line: string): Promise<boolean> {
  const text = await (await fetch(`${proxy.adminUrl()}/metrics`)).text();
  return text.split("\n").includes(line);
}

function connect(proxy: TestProxy): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port: new URL(proxy.url()).port as never });
}

Deno.test("e2e connections: a client trickling its request head is cut off after headerTimeout", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], { server: `headerTimeout: "300ms"\nidleTimeout: 30` }),
  );
  const conn = await connect(proxy);
  try {
    const started = performance.now();
    // One byte every 50 ms: the head would be complete after about 2.5 s.
    const writing = (async () => {
      for (const byte of encoder.encode(REQUEST)) {
        if (await conn.write(new Uint8Array([byte])).then(() => false, () => true)) return;
        await delay(50);
      }
    })();
    const received = await readUntilClosed(conn, 3_000);
    const closedAfter = performance.now() - started;
    await writing;
    assert.equal(received, "", "no response to an incomplete head");
    assert.ok(closedAfter >= 250 && closedAfter < 1_500, `closed after ${closedAfter} ms`);
    assert.equal(mock.requests.length, 0);
    assert.ok(
      await metric(
        proxy,
        'llmproxy_connections_closed_total{listener="main",reason="header_timeout"} 1',
      ),
    );
  } finally {
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e connections: an idle keep-alive connection is closed after idleTimeout; a busy one is not", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], { server: `headerTimeout: 5\nidleTimeout: "400ms"` }),
  );
  const idle = await connect(proxy);
  const busy = await connect(proxy);
  try {
    assert.match(await exchange(idle), /^HTTP\/1\.1 200/);
    const idleFrom = performance.now();
    const closing = readUntilClosed(idle, 3_000);
    // The busy connection sends a request every 200 ms for 1.2 s: never idle for 400 ms.
    for (let i = 0; i < 6; i++) {
      assert.match(await exchange(busy), /^HTTP\/1\.1 200/);
      await delay(200);
    }
    assert.equal(await closing, "");
    const closedAfter = performance.now() - idleFrom;
    assert.ok(closedAfter >= 350 && closedAfter < 1_500, `closed after ${closedAfter} ms`);
    assert.match(await exchange(busy), /^HTTP\/1\.1 200/, "the busy connection still works");
  } finally {
    busy.close();
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("e2e connections: past maxConnections new connections are closed at once, open ones keep working", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}${CHAT}`], { server: `maxConnections: 3\nheaderTimeout: 10` }),
  );
  const held: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 3; i++) held.push(await connect(proxy));
    // Connected is not yet accepted: wait until the proxy counts all three.
    let open = false;
    for (let i = 0; i < 50 && !open; i++) {
      open = await metric(proxy, 'llmproxy_connections_open{listener="main"} 3');
      if (!open) await delay(20);
    }
    assert.ok(open, "the proxy counts three open connections");
    const refused = await connect(proxy);
    const started = performance.now();
    assert.equal(await readUntilClosed(refused, 3_000), "");
    assert.ok(performance.now() - started < 1_000, "refused at once, not after a timeout");
    assert.ok(
      await metric(proxy, 'llmproxy_connections_closed_total{listener="main",reason="limit"} 1'),
    );
    // The connections already open are served.
    for (const conn of held) assert.match(await exchange(conn), /^HTTP\/1\.1 200/);
    for (const conn of held.splice(0)) conn.close();
    let served = false;
    for (let i = 0; i < 50 && !served; i++) {
      served = await fetch(`${proxy.url()}${CHAT}`, { method: "POST", body: "{}" })
        .then(async (r) => (await r.body?.cancel(), r.status === 200), () => false);
      if (!served) await delay(20);
    }
    assert.ok(served, "a new connection is served once the others are gone");
  } finally {
    for (const conn of held) conn.close();
    await proxy.stop();
    await mock.close();
  }
});

/** Whether `prlimit` (util-linux) can run here. */
async function hasPrlimit(): Promise<boolean> {
  try {
    const out = await new Deno.Command("prlimit", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Starts the real proxy under an open-files limit of 128, floods it with 300 idle connections
 * and checks that it survives and serves again once they are gone.
 */
async function floodUnderLowLimit(
  permissions: readonly string[],
  serverSettings: string,
): Promise<string> {
  const mock = await startMockUpstream();
  const port = freePort();
  const yaml = `httpServer:
  headerTimeout: "500ms"
${serverSettings}
  forwards:
    - {name: main, port: ${port}, address: 127.0.0.1, defaultGroup: g}
upstreams:
  - {name: u, url: "${mock.url}${CHAT}"}
upstreamGroups:
  - {name: g, upstreams: [{name: u}]}
`;
  try {
    return await withTempFile(yaml, async (path) => {
      const child = new Deno.Command("prlimit", {
        args: [
          "--nofile=128:128",
          Deno.execPath(),
          "run",
          ...permissions,
          decodeURIComponent(MAIN.pathname),
          "-c",
          path,
        ],
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const stderr = (async () => {
        let text = "";
        for await (const chunk of child.stderr) text += decoder.decode(chunk);
        return text;
      })();
      const flood: Deno.TcpConn[] = [];
      try {
        await waitForPort(port);
        for (let i = 0; i < 300; i++) {
          flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        }
        await delay(1_500); // accept failures, refusals and header timeouts happen meanwhile
        for (const conn of flood.splice(0)) conn.close();
        let status = 0;
        for (let i = 0; i < 100 && status !== 200; i++) {
          status = await fetch(`http://127.0.0.1:${port}${CHAT}`, { method: "POST", body: "{}" })
            .then(async (r) => (await r.body?.cancel(), r.status), () => 0);
          if (status !== 200) await delay(50);
        }
        assert.equal(status, 200, "the proxy serves again once the flood is gone");
        child.kill("SIGTERM");
        const { code } = await child.status;
        const log = await stderr;
        assert.equal(code, 0, `the proxy exits cleanly when told to:\n${log}`);
        return log;
      } finally {
        for (const conn of flood) conn.close();
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.status;
      }
    });
  } finally {
    await mock.close();
  }
}

Deno.test("e2e connections: with the default maxConnections a flood is refused, the process survives", async () => {
  if (!(await hasPrlimit())) {
    console.warn(
      "SKIPPED: prlimit (util-linux) is not available: cannot lower the open-files limit",
    );
    return;
  }
  // Reading the limit from /proc/self needs every permission.
  const log = await floodUnderLowLimit(["--allow-all"], "");
  // (128 - 64) / 2 = 32 connections at once.
  assert.match(log, /open-files limit 128: up to 32 client connections/);
});

Deno.test("e2e connections: out of file descriptors (limit unknown, default above it), the process survives", async () => {
  if (!(await hasPrlimit())) {
    console.warn(
      "SKIPPED: prlimit (util-linux) is not available: cannot lower the open-files limit",
    );
    return;
  }
  const log = await floodUnderLowLimit(["--allow-net", "--allow-read", "--allow-env"], "");
  assert.match(log, /open-files limit unknown .*: up to 1000 client connections/);
  assert.match(log, /cannot accept connections; retrying/);
  assert.match(log, /out of file descriptors: accepting at most \d+ client connections/);
});
