import assert from "node:assert/strict";
import { FORWARD_PROXY_VIA, startForwardProxy } from "./forward_proxy.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A one-shot origin: answers every request with its own head echoed in the body. */
function startOrigin(): { port: number; close(): Promise<void> } {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const headers = [...request.headers].map(([name, value]) => `${name}: ${value}`).join("\n");
    return new Response(`${request.method} ${new URL(request.url).pathname}\n${headers}`);
  });
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** Sends raw bytes to the proxy and reads until it closes (bounded by its answers). */
async function exchange(proxyUrl: string, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(proxyUrl).port) });
  try {
    await conn.write(encoder.encode(text));
    let received = "";
    const buffer = new Uint8Array(16 * 1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      received += decoder.decode(buffer.subarray(0, n));
    }
    return received;
  } finally {
    conn.close();
  }
}

Deno.test("forward proxy: relays an absolute-form request with Via both ways and counts it", async () => {
  const origin = startOrigin();
  const proxy = startForwardProxy();
  try {
    const answer = await exchange(
      proxy.url,
      `GET http://127.0.0.1:${origin.port}/a?b=1 HTTP/1.1\r\nhost: 127.0.0.1:${origin.port}\r\n` +
        "proxy-connection: keep-alive\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.ok(answer.toLowerCase().includes(`\r\nvia: ${FORWARD_PROXY_VIA}\r\n`), answer);
    assert.match(answer, /\r\n\r\nGET \/a\n/);
    const seen = answer.slice(answer.indexOf("\r\n\r\n")); // the head the origin received
    assert.ok(seen.includes(`via: ${FORWARD_PROXY_VIA}`), "no Via on the relayed request");
    assert.ok(!seen.includes("proxy-connection"), "a proxy header reached the origin");
    assert.deepEqual({ ...proxy.counts }, { relayed: 1, tunnels: 0, rejected: 0 });
  } finally {
    await proxy.stop();
    await origin.close();
  }
});

Deno.test("forward proxy: wrong or missing credentials → 407 with Proxy-Authenticate", async () => {
  const origin = startOrigin();
  const proxy = startForwardProxy({ basicAuth: { user: "u", password: "p" } });
  const request = (auth: string) =>
    exchange(
      proxy.url,
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nhost: x\r\n${auth}\r\n`,
    );
  try {
    for (const auth of ["", `proxy-authorization: Basic ${btoa("u:wrong")}\r\n`]) {
      const answer = await request(auth);
      assert.match(answer, /^HTTP\/1\.1 407 /);
      assert.match(answer, /\r\nproxy-authenticate: Basic realm="forward-proxy"\r\n/);
    }
    const passed = await request(`proxy-authorization: Basic ${btoa("u:p")}\r\n`);
    assert.match(passed, /^HTTP\/1\.1 200 /);
    assert.ok(!passed.includes("proxy-authorization"), "the credentials reached the origin");
    assert.deepEqual({ ...proxy.counts }, { relayed: 1, tunnels: 0, rejected: 2 });
  } finally {
    await proxy.stop();
    await origin.close();
  }
});

Deno.test("forward proxy: CONNECT opens a tunnel to the origin", async () => {
  const origin = startOrigin();
  const proxy = startForwardProxy();
  try {
    const answer = await exchange(
      proxy.url,
      `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nhost: 127.0.0.1:${origin.port}\r\n\r\n` +
        "GET /tunnelled HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 Connection established\r\n\r\nHTTP\/1\.1 200 /);
    assert.match(answer, /\r\n\r\nGET \/tunnelled\n/);
    assert.deepEqual({ ...proxy.counts }, { relayed: 0, tunnels: 1, rejected: 0 });
  } finally {
    await proxy.stop();
    await origin.close();
  }
});

Deno.test("forward proxy: only loopback targets; stop() ends open tunnels", async () => {
  const origin = startOrigin();
  const proxy = startForwardProxy();
  try {
    const refused = await exchange(
      proxy.url,
      "GET http://example.com/ HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    assert.match(refused, /^HTTP\/1\.1 403 /);
    // A tunnel the client keeps open: stop() must close it (the sanitizers check the rest).
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(proxy.url).port),
    });
    await conn.write(
      encoder.encode(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nhost: x\r\n\r\n`),
    );
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer);
    assert.match(decoder.decode(buffer.subarray(0, n ?? 0)), /^HTTP\/1\.1 200 /);
    await proxy.stop();
    assert.equal(await conn.read(buffer), null);
    conn.close();
  } finally {
    await proxy.stop();
    await origin.close();
  }
});
