import assert from "node:assert/strict";
import { listen, serveOnConnection } from "../../src/server/listener.ts";
import { ConnectionGuard } from "../../src/server/connections.ts";
import { silentLogger } from "../../src/log.ts";

const encoder = new TextEncoder();

Deno.test("listener: this Deno release has the per-connection HTTP server the listeners need", () => {
  // Without it, listeners fall back to Deno.serve and connections are unbounded: an upgrade of
  // Deno that removes it must fail here, not in production.
  assert.equal(typeof serveOnConnection, "function");
});

Deno.test("listener: shutdown() ends at once with a half-sent head and an idle keep-alive connection", async () => {
  const guard = new ConnectionGuard(() => ({
    headerTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    maxConnections: 10,
  }));
  const listener = listen(
    "test",
    { hostname: "127.0.0.1", port: 0, guard },
    () => new Response("ok"),
    silentLogger,
  );
  const half = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  try {
    await half.write(encoder.encode("POST /v1/chat HTTP/1.1\r\nHost: x\r\n"));
    await idle.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.ok((await idle.read(new Uint8Array(4096))) !== null);
    const started = performance.now();
    await listener.shutdown();
    assert.ok(performance.now() - started < 1_000, "shutdown waited for idle connections");
    assert.equal(guard.open, 0, "every connection released");
  } finally {
    half.close();
    idle.close();
    guard.close();
  }
});
