/**
 * What one batch of store checks costs, apart from the proxy: the client's CPU per round trip
 * (ioredis on Deno's Node layer, one batch out at a time) and Redis's own time per run of the
 * batch script (`INFO commandstats`), for the checks of 1, 4 and 16 requests of the benchmark's
 * config (per-IP take, key admission, upstream acquire, key charge); the least of three rounds.
 * Starts its own `redis-server` (Debian) on a free port.
 *
 *   deno run -A bench/redis_batch.ts [--batches N]
 *
 * @module
 */
import { Redis } from "ioredis";
import {
  BATCH,
  batchArguments,
  BUCKET_TAKE,
  KEY_ADMIT,
  KEY_CHARGE,
  UPSTREAM_ACQUIRE,
} from "../src/state/redis_scripts.ts";
import type { ScriptCall } from "../src/state/script_batch.ts";
import { ownCpuMicros } from "./procs.ts";
import { redisServerPath, startRedisServer } from "../tests/_helpers/redis_server.ts";

/** The four checks of one request, as `remote_limits.ts` makes them for the benchmark config. */
function requestChecks(): ScriptCall[] {
  const key = "b:key:bench:";
  const budget = `${key}budget:86400000:1764633600000`;
  return [
    { script: BUCKET_TAKE, keys: ["b:ip:main:1000000:1000000:127.0.0.1"], args: [1000, 1000000] },
    {
      script: KEY_ADMIT,
      keys: [`${key}req:1000000:1000000`, `${key}tpm:1000000000`, budget],
      args: [1000, 1000000, 1000000000 / 60000, 1000000000, 1000000000000],
    },
    {
      script: UPSTREAM_ACQUIRE,
      keys: ["b:upstream:mock:", "b:upstream:mock:cool"],
      args: [1000, 1000000],
    },
    {
      script: KEY_CHARGE,
      keys: [`${key}tpm:1000000000`, budget],
      args: [46, 1000000000 / 60000, 1000000000, 1764720000000],
    },
  ];
}

if (import.meta.main) {
  if (!redisServerPath()) {
    console.error("redis-server is not installed (apt-get install -y redis-server)");
    Deno.exit(2);
  }
  const at = Deno.args.indexOf("--batches");
  const batches = at >= 0 ? Number(Deno.args[at + 1]) : 3000;
  const server = await startRedisServer();
  const client = new Redis(server.url, {
    lazyConnect: true,
    enableAutoPipelining: false,
    enableOfflineQueue: false,
  });
  try {
    await client.connect();
    client.defineCommand(BATCH.name, { lua: BATCH.lua });
    const run = (client as unknown as Record<string, (...a: string[]) => Promise<unknown>>)[
      BATCH.name
    ]!.bind(client);
    for (const requests of [1, 4, 16]) {
      const calls = Array.from({ length: requests }, requestChecks).flat();
      for (let i = 0; i < 500; i++) await run(...batchArguments(calls)); // warm-up
      // The least of three rounds: other processes on the machine only ever add.
      let clientUs = Infinity;
      let redisUs = Infinity;
      for (let round = 0; round < 3; round++) {
        await client.config("RESETSTAT");
        const before = ownCpuMicros();
        for (let i = 0; i < batches; i++) await run(...batchArguments(calls));
        clientUs = Math.min(clientUs, (ownCpuMicros() - before) / batches);
        const stats = await client.info("commandstats");
        const m = /cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(stats);
        redisUs = Math.min(redisUs, Number(m?.[1]));
      }
      console.log(
        `${requests} request(s), ${calls.length} checks per batch: client ${
          clientUs.toFixed(0)
        } µs of CPU per round trip, Redis ${redisUs.toFixed(0)} µs per batch`,
      );
    }
  } finally {
    client.disconnect();
    await server.stop();
  }
}
