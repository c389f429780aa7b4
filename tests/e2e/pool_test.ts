/**
 * The upstream connection pool with default settings keeps what the load needs: rounds of 50
 * concurrent requests reuse the connections of the first round instead of closing and
 * dialling them again (with the seed's default of 10 idle per host, each round re-dialled
 * about 40). Runs on either transport (see .ci/run).
 */
import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { simpleConfig, startTestProxy } from "../_helpers/proxy_harness.ts";
import { countingRelay } from "../_helpers/tls.ts";
import { chat } from "../_helpers/raw_http.ts";

const CONCURRENCY = 50;
const ROUNDS = 4;

Deno.test("pool: rounds of 50 concurrent requests reuse connections with default settings", async () => {
  const mock = await startMockUpstream();
  const relay = countingRelay(mock.port);
  const proxy = await startTestProxy(simpleConfig([`http://127.0.0.1:${relay.port}`]));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const statuses = await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          const res = await fetch(`${proxy.url()}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: chat(),
          });
          await res.arrayBuffer();
          return res.status;
        }),
      );
      assert.deepEqual(new Set(statuses), new Set([200]));
    }
    // Every request of the first round may have needed its own connection; the later rounds
    // find them idle. (10 idle per host: about 50 + 3 × 40 = 170 connections.)
    assert.ok(
      relay.connections <= CONCURRENCY,
      `${relay.connections} upstream connections for ${ROUNDS} rounds of ${CONCURRENCY}`,
    );
  } finally {
    await proxy.stop();
    await relay.close();
    await mock.close();
  }
});
