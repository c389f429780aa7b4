/**
 * Outbound traffic through a real HTTP forward proxy. Every test runs against the helper proxy
 * in `tests/_helpers/forward_proxy.ts` (always available), and again against Debian's tinyproxy
 * when it is installed (CI installs it): two independent proxies, one of them not ours. Without
 * tinyproxy its variant is reported as skipped, loudly, and the suite still passes.
 */
import assert from "node:assert/strict";
import { type MockUpstream, startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { type ForwardProxy, startForwardProxy } from "../_helpers/forward_proxy.ts";
import {
  assertErrorBody,
  chat,
  contentEvents,
  freePort,
  readEvents,
  waitForPort,
} from "../_helpers/raw_http.ts";

/** A forward proxy under test, whichever implementation. */
interface OutboundProxy {
  readonly url: string;
  /** How this proxy shows in `Via` headers. */
  readonly via: RegExp;
  /** Requests it relayed to the upstream, when it can tell (tinyproxy cannot). */
  relayed(): number | undefined;
  /** Requests it refused for their credentials, when it can tell. */
  rejected(): number | undefined;
  stop(): Promise<unknown>;
}

type Credentials = { user: string; password: string };

/** Where the tinyproxy binary is, if installed (Debian puts it in /usr/bin or /usr/sbin). */
function findTinyproxy(): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/bin", "/usr/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      if (Deno.statSync(`${dir}/tinyproxy`).isFile) return `${dir}/tinyproxy`;
    } catch { /* not here */ }
  }
  return undefined;
}

const TINYPROXY = findTinyproxy();
if (!TINYPROXY) {
  console.warn(
    "!!! SKIPPED: tinyproxy is not installed, so the tinyproxy variant of the outbound proxy " +
      "e2e tests does not run (the helper-proxy variant does; Debian: apt-get install tinyproxy) !!!",
  );
}

function startHelper(basicAuth?: Credentials): OutboundProxy {
  const proxy: ForwardProxy = startForwardProxy({ basicAuth });
  return {
    url: proxy.url,
    via: /llmproxy-test-forward-proxy/,
    relayed: () => proxy.counts.relayed,
    rejected: () => proxy.counts.rejected,
    stop: () => proxy.stop(),
  };
}

async function startTinyproxy(basicAuth?: Credentials): Promise<OutboundProxy> {
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
  const process = new Deno.Command(TINYPROXY!, {
    args: ["-d", "-c", conf],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
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
  return {
    url: `http://127.0.0.1:${port}`,
    via: /tinyproxy/,
    relayed: () => undefined,
    rejected: () => undefined,
    stop,
  };
}

const VARIANTS = [
  { name: "helper proxy", start: (auth?: Credentials) => Promise.resolve(startHelper(auth)) },
  { name: "tinyproxy", start: startTinyproxy, ignore: TINYPROXY === undefined },
];

async function withOutboundProxy(
  outbound: OutboundProxy,
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
    await outbound.stop();
  }
}

for (const variant of VARIANTS) {
  const name = (what: string) => `e2e outbound proxy (${variant.name}): ${what}`;
  const ignore = variant.ignore ?? false;

  Deno.test({
    name: name("requests and streams go through the configured HTTP proxy"),
    ignore,
    fn: async () => {
      const outbound = await variant.start();
      await withOutboundProxy(outbound, outbound.url, async (proxy, mock) => {
        const echoed = await fetch(`${proxy}/echo/x?q=1`);
        assert.equal(echoed.status, 200);
        const body = await echoed.json();
        assert.equal(body.path, "/echo/x");
        assert.equal(body.search, "?q=1");
        assert.match(body.headers.via ?? "", outbound.via, "no Via header: not through the proxy");

        const streamed = await fetch(`${proxy}/v1/chat/completions`, {
          method: "POST",
          headers: { "x-mock-chunks": "3" },
          body: chat(true),
        });
        assert.equal(streamed.status, 200);
        const events = await readEvents(streamed.body!, performance.now());
        assert.equal(contentEvents(events).length, 3);
        assert.equal(events.at(-1)!.text, "data: [DONE]");
        assert.match(mock.requests[1]!.headers.get("via") ?? "", outbound.via);
        assert.equal(mock.requests.length, 2);
        assert.notEqual(outbound.relayed(), 0, "the proxy relayed nothing");
        if (outbound.relayed() !== undefined) assert.equal(outbound.relayed(), 2);
      });
    },
  });

  Deno.test({
    name: name("proxy BasicAuth — right credentials pass"),
    ignore,
    fn: async () => {
      const outbound = await variant.start({ user: "proxyuser", password: "proxypass" });
      const withCredentials = outbound.url.replace("http://", "http://proxyuser:proxypass@");
      await withOutboundProxy(outbound, withCredentials, async (proxy, mock) => {
        const response = await fetch(`${proxy}/echo`);
        assert.equal(response.status, 200);
        const body = await response.json();
        assert.match(body.headers.via ?? "", outbound.via);
        // Proxy credentials are for the proxy only.
        assert.equal(body.headers["proxy-authorization"], undefined);

        // The upstream's own 401 challenge, relayed by the proxy, is not taken for the proxy's.
        mock.script({ status: 401, headers: { "www-authenticate": 'Bearer realm="api"' } });
        const denied = await fetch(`${proxy}/v1/chat/completions`, {
          method: "POST",
          body: chat(),
        });
        assert.equal(denied.status, 401);
        assert.equal((await denied.json()).error.type, "authentication_error");
      });
    },
  });

  Deno.test({
    name: name("proxy BasicAuth — wrong credentials → 502 outbound_proxy_error"),
    ignore,
    fn: async () => {
      const outbound = await variant.start({ user: "proxyuser", password: "proxypass" });
      const wrong = outbound.url.replace("http://", "http://proxyuser:WRONG-pass@");
      await withOutboundProxy(outbound, wrong, async (proxy, mock) => {
        const response = await fetch(`${proxy}/v1/chat/completions`, {
          method: "POST",
          body: chat(),
        });
        const text = await response.clone().text();
        const error = await assertErrorBody(response, 502, "outbound_proxy_error");
        assert.match(error.message, /proxy/i);
        assert.ok(!text.includes("WRONG-pass"), "the error body leaks the proxy password");
        assert.equal(mock.requests.length, 0);
        assert.notEqual(outbound.rejected(), 0, "the proxy did not refuse the credentials");
      });
    },
  });

  Deno.test({
    name: name("proxy BasicAuth — no credentials → 502 outbound_proxy_error"),
    ignore,
    fn: async () => {
      const outbound = await variant.start({ user: "proxyuser", password: "proxypass" });
      await withOutboundProxy(outbound, outbound.url, async (proxy, mock) => {
        const response = await fetch(`${proxy}/echo`);
        await assertErrorBody(response, 502, "outbound_proxy_error");
        assert.equal(mock.requests.length, 0);
        assert.notEqual(outbound.rejected(), 0, "the proxy did not refuse the credentials");
      });
    },
  });
}
