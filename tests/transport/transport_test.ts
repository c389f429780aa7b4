import assert from "node:assert/strict";
import { FetchTransport } from "../../src/transport/fetch.ts";
import {
  NotSentError,
  type SendInit,
  type Transport,
  type UpstreamReply,
  type UpstreamTarget,
} from "../../src/transport/transport.ts";
import { createGroupTransport } from "../../src/transport/select.ts";
import { Http1Transport } from "../../src/transport/http1/transport.ts";
import { parseConfig } from "../../src/config/load.ts";

/** A transport that records what it was asked to send. */
function recorder(): Transport & { sent: UpstreamTarget[]; closed: boolean } {
  const self = {
    kind: "fetch" as const,
    kindFor: () => "fetch" as const,
    sent: [] as UpstreamTarget[],
    closed: false,
    send(target: UpstreamTarget, _init: SendInit): Promise<UpstreamReply> {
      self.sent.push(target);
      return Promise.reject(new Error("recorded"));
    },
    close() {
      self.closed = true;
    },
  };
  return self;
}

const HTTPS: UpstreamTarget = {
  url: "https://api.example.com/v1/models",
  protocol: "https:",
  hostname: "api.example.com",
  port: 443,
  host: "api.example.com",
  path: "/v1/models",
};

Deno.test("Http1Transport hands https targets to its secure transport", async () => {
  const secure = recorder();
  const transport = new Http1Transport({
    secure,
    keepAlive: true,
    maxIdlePerHost: 1,
    idleTimeoutMs: 0,
  });
  const init: SendInit = {
    method: "GET",
    headers: {},
    body: null,
    signal: new AbortController().signal,
  };
  await assert.rejects(transport.send(HTTPS, init), /recorded/);
  assert.deepEqual(secure.sent, [HTTPS]);
  transport.close();
  assert.equal(secure.closed, true);
});

Deno.test("createGroupTransport(): http1 for direct traffic, fetch through a proxy or env proxy", () => {
  const config = (proxy: string) =>
    parseConfig(
      `httpServer:
  forwards: [{name: f, port: 0, defaultGroup: g}]
upstreams: [{name: u, url: "http://127.0.0.1:1"}]
upstreamGroups:
  - {name: g, upstreams: [{name: u}]${proxy}}
`,
      "t.yaml",
      () => undefined,
    ).config.upstreamGroups[0]!.httpClient;
  const none = () => undefined;
  const direct = createGroupTransport(config(""), { env: none });
  assert.equal(direct.kind, "http1");
  direct.close();
  const proxied = createGroupTransport(
    config(`, httpClient: {proxy: {url: "http://127.0.0.1:9"}}`),
    {
      env: none,
    },
  );
  assert.equal(proxied.kind, "fetch");
  proxied.close();
  const fromEnv = createGroupTransport(config(""), {
    env: (name) => name === "HTTPS_PROXY" ? "http://127.0.0.1:9" : undefined,
  });
  assert.equal(fromEnv.kind, "fetch");
  fromEnv.close();
  const forced = createGroupTransport(config(""), { env: none, choice: "fetch" });
  assert.equal(forced.kind, "fetch");
  forced.close();
});

Deno.test("FetchTransport refuses the methods fetch forbids as not sent, without calling fetch", async () => {
  let calls = 0;
  const transport = new FetchTransport(
    () => {
      throw new Error("no client needed");
    },
    (() => {
      calls++;
      return Promise.reject(new TypeError("network"));
    }) as typeof fetch,
  );
  for (const method of ["TRACE", "track", "Connect"]) {
    await assert.rejects(
      transport.send(HTTPS, {
        method,
        headers: {},
        body: null,
        signal: new AbortController().signal,
      }),
      (error) => error instanceof NotSentError && error.fault === "client",
      method,
    );
  }
  assert.equal(calls, 0);
  transport.close();
});
