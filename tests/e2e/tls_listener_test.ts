import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { fixturePath, pem } from "../_helpers/tls.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";
import { delay } from "../_helpers/raw_http.ts";

const TLS = `tls: {cert: "${fixturePath("server.pem")}", key: "${fixturePath("server.key")}"}`;

/** A client that trusts the private CA; `http2: false` pins HTTP/1.1, `http1: false` HTTP/2. */
function client(options: { http1?: boolean; http2?: boolean } = {}): Deno.HttpClient {
  return Deno.createHttpClient({ caCerts: [pem("ca.pem")], ...options });
}

async function curlAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test("tls listener: a forward with tls serves HTTPS over HTTP/1.1 and HTTP/2, X-Forwarded-Proto https", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/`], { forward: TLS }));
  const h1 = client({ http2: false });
  const h2 = client({ http1: false });
  try {
    const port = proxy.app.forwards.get("main")!.port;
    const base = `https://127.0.0.1:${port}`;
    for (const c of [h1, h2]) {
      const response = await fetch(`${base}/echo`, { client: c });
      assert.equal(response.status, 200);
      const echo = await response.json();
      assert.equal(echo.headers["x-forwarded-proto"], "https");
    }
    // HTTP/2 runs several requests on one connection at once: the guard counts each.
    const many = await Promise.all(
      Array.from({ length: 5 }, () => fetch(`${base}/v1/models`, { client: h2 })),
    );
    for (const r of many) {
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    // A client's absolute-form target never decides the scheme the upstream is told.
    const plain = await startTestProxy(simpleConfig([`${mock.url}/`]));
    try {
      const echo = await (await fetch(`${plain.url()}/echo`)).json();
      assert.equal(echo.headers["x-forwarded-proto"], "http");
    } finally {
      await plain.stop();
    }
    if (!(await curlAvailable())) {
      console.warn("SKIPPED the curl --http2 check of the TLS listener: curl is not installed");
      return;
    }
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--http2",
        "--cacert",
        fixturePath("ca.pem"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        `${base}/v1/models`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "2 200",
      new TextDecoder().decode(out.stderr),
    );
  } finally {
    h1.close();
    h2.close();
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("tls listener: the admin listener terminates TLS too", async () => {
  const mock = await startMockUpstream();
  const yaml = simpleConfig([`${mock.url}/`]).replace(
    "admin: {port: 0}",
    `admin: {port: 0, ${TLS}}`,
  );
  const proxy = await startTestProxy(yaml);
  const c = client();
  try {
    const response = await fetch(`https://127.0.0.1:${proxy.app.admin!.port}/health`, {
      client: c,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    // Plain HTTP on a TLS port gets no HTTP answer.
    await assert.rejects(fetch(`http://127.0.0.1:${proxy.app.admin!.port}/health`));
  } finally {
    c.close();
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("tls listener: a TLS handshake that never completes is ended by headerTimeout and frees its place", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(
    simpleConfig([`${mock.url}/`], {
      forward: TLS,
      server: "headerTimeout: 300ms\nmaxConnections: 1",
    }),
  );
  const c = client();
  try {
    const port = proxy.app.forwards.get("main")!.port;
    const silent = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      // Half a ClientHello, then silence.
      await silent.write(new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xff, 0x01]));
      const metric = async (name: string, labels: Record<string, string>) =>
        sampleValue(
          parsePrometheusText(await (await fetch(`${proxy.adminUrl()}/metrics`)).text()),
          name,
          labels,
        ) ?? 0;
      const started = performance.now();
      while (
        await metric("llmproxy_connections_closed_total", {
          listener: "main",
          reason: "header_timeout",
        }) < 1
      ) {
        assert.ok(performance.now() - started < 2_000, "the stalled handshake was not ended");
        await delay(50);
      }
      assert.equal(await metric("llmproxy_connections_open", { listener: "main" }), 0);
      // Its place is free (maxConnections: 1): a good client is served. (Deno keeps the stalled
      // socket itself open until its client sends or closes: see the README's TLS section.)
      const response = await fetch(`https://127.0.0.1:${port}/v1/models`, { client: c });
      assert.equal(response.status, 200);
      await response.body?.cancel();
    } finally {
      silent.close();
    }
  } finally {
    c.close();
    await proxy.stop();
    await mock.close();
  }
});

Deno.test("tls listener: a client that fails the handshake does not stop the accept loop", async () => {
  const mock = await startMockUpstream();
  const proxy = await startTestProxy(simpleConfig([`${mock.url}/`], { forward: TLS }), {
    captureLogs: true,
    logLevel: "warn",
  });
  const trusting = client();
  const distrusting = Deno.createHttpClient({});
  try {
    const base = `https://127.0.0.1:${proxy.app.forwards.get("main")!.port}`;
    for (let i = 0; i < 3; i++) {
      await assert.rejects(fetch(`${base}/v1/models`, { client: distrusting }));
      const garbage = await Deno.connect({
        hostname: "127.0.0.1",
        port: proxy.app.forwards.get("main")!.port,
      });
      await garbage.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      await garbage.read(new Uint8Array(64)).catch(() => null);
      garbage.close();
    }
    const started = performance.now();
    const response = await fetch(`${base}/v1/models`, { client: trusting });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.ok(performance.now() - started < 1_000);
    assert.equal(
      proxy.logs.filter((l) => /cannot accept/.test(l)).length,
      0,
      proxy.logs.join("\n"),
    );
  } finally {
    trusting.close();
    distrusting.close();
    await proxy.stop();
    await mock.close();
  }
});
