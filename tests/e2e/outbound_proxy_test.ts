/**
 * Outbound traffic through a real HTTP proxy: tinyproxy (Debian package `tinyproxy`; CI
 * installs it). Missing tinyproxy fails these tests: the outbound proxy must not go untested.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../_helpers/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { assertErrorBody, chat, contentEvents, freePort, readEvents, waitForPort } from "./_e2e.ts";

interface Tinyproxy {
  readonly url: string;
  /** Stops the proxy (by its PID) and resolves with what it logged. */
  stop(): Promise<string>;
}

async function startTinyproxy(basicAuth?: { user: string; password: string }): Promise<Tinyproxy> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-tinyproxy-" });
  const conf = `${dir}/tinyproxy.conf`;
  await Deno.writeTextFile(
    conf,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Allow 127.0.0.1",
      "Timeout 10",
      "MaxClients 20",
      "LogLevel Info",
      ...(basicAuth ? [`BasicAuth ${basicAuth.user} ${basicAuth.password}`] : []),
    ].join("\n") + "\n",
  );
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command("tinyproxy", {
      args: ["-d", "-c", conf],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "tinyproxy is not installed: the outbound proxy tests need it " +
          "(Debian/Ubuntu: `apt-get install -y tinyproxy`)",
      );
    }
    throw error;
  }
  const output = process.output().then(async (out) => {
    await Deno.remove(dir, { recursive: true });
    const decoder = new TextDecoder();
    return decoder.decode(out.stdout) + decoder.decode(out.stderr);
  });
  const stop = async () => {
    try {
      process.kill("SIGTERM");
    } catch { /* already exited */ }
    return await output;
  };
  try {
    await waitForPort(port, 5000);
  } catch (error) {
    throw new Error(`tinyproxy did not start:\n${await stop()}`, { cause: error });
  }
  return { url: `http://127.0.0.1:${port}`, stop };
}

async function withOutboundProxy(
  tinyproxy: Tinyproxy,
  proxyUrl: string,
  fn: (proxy: string, mock: MockUpstream) => Promise<void>,
): Promise<void> {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([mock.url], {
    group: `httpClient: {proxy: {url: "${proxyUrl}"}, retry: {attempts: 0}}`,
  }));
  try {
    await fn(proxy.url(), mock);
  } finally {
    await proxy.stop();
    await mock.close();
    await tinyproxy.stop();
  }
}

Deno.test("e2e outbound proxy: requests and streams go through the configured HTTP proxy", async () => {
  const tinyproxy = await startTinyproxy();
  await withOutboundProxy(tinyproxy, tinyproxy.url, async (proxy, mock) => {
    const echoed = await fetch(`${proxy}/echo/x?q=1`);
    assert.equal(echoed.status, 200);
    const body = await echoed.json();
    assert.equal(body.path, "/echo/x");
    assert.equal(body.search, "?q=1");
    assert.match(body.headers.via ?? "", /tinyproxy/, "no Via header: not through the proxy");

    const streamed = await fetch(`${proxy}/v1/chat/completions`, {
      method: "POST",
      headers: { "x-mock-chunks": "3" },
      body: chat(true),
    });
    assert.equal(streamed.status, 200);
    const events = await readEvents(streamed.body!, performance.now());
    assert.equal(contentEvents(events).length, 3);
    assert.equal(events.at(-1)!.text, "data: [DONE]");
    assert.match(mock.requests[1]!.headers.get("via") ?? "", /tinyproxy/);
  });
});

Deno.test("e2e outbound proxy: proxy BasicAuth — right credentials pass", async () => {
  const tinyproxy = await startTinyproxy({ user: "proxyuser", password: "proxypass" });
  const withCredentials = tinyproxy.url.replace("http://", "http://proxyuser:proxypass@");
  await withOutboundProxy(tinyproxy, withCredentials, async (proxy, mock) => {
    const response = await fetch(`${proxy}/echo`);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.match(body.headers.via ?? "", /tinyproxy/);
    // Proxy credentials are for the proxy only.
    assert.equal(body.headers["proxy-authorization"], undefined);

    // The upstream's own 401 challenge, relayed by the proxy, is not taken for the proxy's.
    mock.script({ status: 401, headers: { "www-authenticate": 'Bearer realm="api"' } });
    const denied = await fetch(`${proxy}/v1/chat/completions`, { method: "POST", body: chat() });
    assert.equal(denied.status, 401);
    assert.equal((await denied.json()).error.type, "authentication_error");
  });
});

Deno.test("e2e outbound proxy: proxy BasicAuth — wrong credentials → 502 outbound_proxy_error", async () => {
  const tinyproxy = await startTinyproxy({ user: "proxyuser", password: "proxypass" });
  const wrong = tinyproxy.url.replace("http://", "http://proxyuser:WRONG-pass@");
  await withOutboundProxy(tinyproxy, wrong, async (proxy, mock) => {
    const response = await fetch(`${proxy}/v1/chat/completions`, { method: "POST", body: chat() });
    const text = await response.clone().text();
    const error = await assertErrorBody(response, 502, "outbound_proxy_error");
    assert.match(error.message, /proxy/i);
    assert.ok(!text.includes("WRONG-pass"), "the error body leaks the proxy password");
    assert.equal(mock.requests.length, 0);
  });
});

Deno.test("e2e outbound proxy: proxy BasicAuth — no credentials → 502 outbound_proxy_error", async () => {
  const tinyproxy = await startTinyproxy({ user: "proxyuser", password: "proxypass" });
  await withOutboundProxy(tinyproxy, tinyproxy.url, async (proxy, mock) => {
    const response = await fetch(`${proxy}/echo`);
    await assertErrorBody(response, 502, "outbound_proxy_error");
    assert.equal(mock.requests.length, 0);
  });
});
