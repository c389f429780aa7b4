/**
 * Process-level: the real `main.ts` in a child process, SIGTERM while a stream is live.
 * Fixed free ports here (the child is configured from a file), port 0 everywhere else.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import {
  chat,
  contentEvents,
  delay,
  freePort,
  readEvents,
  waitFor,
  waitForPort,
} from "../_helpers/raw_http.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

interface Child {
  readonly port: number;
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit status and everything the child wrote. */
  readonly output: Promise<{ code: number; stderr: string; stdout: string }>;
}

async function startChild(mock: MockUpstream, shutdownTimeout: string): Promise<Child> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-shutdown-" });
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    `httpServer:
  shutdownTimeout: "${shutdownTimeout}"
  forwards:
    - {name: main, port: ${port}, address: 127.0.0.1, defaultGroup: g}
upstreams:
  - {name: mock, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - name: g
    upstreams: [{name: mock}]
    httpClient: {retry: {attempts: 0}}
`,
  );
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", MAIN.pathname, "-c", config],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = process.output().then(async (out) => {
    await Deno.remove(dir, { recursive: true });
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  });
  try {
    await waitForPort(port);
  } catch (error) {
    process.kill("SIGKILL");
    const out = await output;
    throw new Error(`the proxy did not start: ${out.stderr}${out.stdout}`, { cause: error });
  }
  return { port, process, output };
}

/** Whether a new TCP connection to `port` is refused. */
async function refused(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused;
  }
}

function streamRequest(child: Child, headers: Record<string, string>) {
  return fetch(`http://127.0.0.1:${child.port}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: chat(true),
  });
}

Deno.test("e2e shutdown: SIGTERM drains a live stream to its end, then exits 0", async () => {
  const mock = await startMockUpstream();
  const child = await startChild(mock, "10s");
  try {
    const start = performance.now();
    const response = await streamRequest(child, {
      "x-mock-chunks": "10",
      "x-mock-delay-ms": "100",
    });
    assert.equal(response.status, 200);
    const reader = response.body!;
    const [first, rest] = reader.tee();
    // Wait for the first event, then signal mid-stream.
    const firstEvents = readEvents(first, start, 1);
    const allEvents = readEvents(rest, start);
    await firstEvents;
    child.process.kill("SIGTERM");
    await delay(150);
    assert.ok(await refused(child.port), "a new connection was accepted after SIGTERM");

    const events = await allEvents;
    assert.equal(contentEvents(events).length, 10);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    const out = await child.output;
    assert.equal(out.code, 0, out.stderr + out.stdout);
  } finally {
    await child.output.catch(() => {});
    await mock.close();
  }
});

Deno.test("e2e shutdown: after shutdownTimeout an endless stream ends with an error event", async () => {
  const mock = await startMockUpstream();
  const child = await startChild(mock, "300ms");
  try {
    const start = performance.now();
    const response = await streamRequest(child, { "x-mock-stall-after": "2" });
    assert.equal(response.status, 200);
    const [head, rest] = response.body!.tee();
    const firstTwo = readEvents(head, start, 2);
    const allEvents = readEvents(rest, start);
    await firstTwo;
    const signalled = performance.now() - start;
    child.process.kill("SIGTERM");

    const events = await allEvents;
    assert.equal(contentEvents(events).length, 2);
    const last = events.at(-1)!;
    assert.match(last.text, /^event: error\n/);
    assert.ok(!events.some((e) => e.text.includes("[DONE]")));
    const cutAfter = last.at - signalled;
    assert.ok(cutAfter >= 250 && cutAfter < 2000, `stream ended ${cutAfter} ms after SIGTERM`);

    const out = await child.output;
    const exitedAfter = performance.now() - start - signalled;
    assert.equal(out.code, 0, out.stderr + out.stdout);
    assert.ok(exitedAfter < 3000, `exited ${exitedAfter} ms after SIGTERM`);
    await waitFor(() => mock.requests[0]!.aborted, "the upstream stream was ended");
  } finally {
    await child.output.catch(() => {});
    await mock.close();
  }
});

Deno.test("e2e reload: SIGHUP reloads the config file in the running process", async () => {
  const mock = await startMockUpstream();
  const child = await startChild(mock, "2s");
  try {
    const before = await fetch(`http://127.0.0.1:${child.port}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
    });
    assert.equal(before.status, 200);
    await before.body?.cancel();
    child.process.kill("SIGHUP");
    // The process keeps serving through the reload.
    await delay(300);
    const after = await fetch(`http://127.0.0.1:${child.port}/v1/chat/completions`, {
      method: "POST",
      body: chat(),
    });
    assert.equal(after.status, 200);
    await after.body?.cancel();
  } finally {
    child.process.kill("SIGTERM");
    const out = await child.output;
    await mock.close();
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /config reloaded/);
  }
});
