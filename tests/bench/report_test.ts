import { redisStoreTable } from "../../bench/redis_store.ts";
import assert from "node:assert/strict";
import { markdown, type Results, type RunResult } from "../../bench/report.ts";
import { parseProcStat } from "../../bench/procs.ts";

function run(rps: number, cpuUsPerRequest: number, idlePct: number): RunResult {
  return {
    rps,
    cpuUsPerRequest,
    idlePct,
    completed: rps * 5,
    errors: 0,
    non2xx: 0,
    p50Ms: 1,
    p99Ms: 2,
    rssPeakMiB: 100,
  } as RunResult;
}

function results(workers: number): Results {
  return {
    meta: {
      startedAt: "2026-01-01T00:00:00.000Z",
      mode: "normal",
      loadTool: "wrk",
      pinned: false,
      workers,
      runs: 3,
      durationS: 5,
      connections: 50,
      clockTicks: 100,
      deno: "2.9.6",
      cpus: 2,
      upstreams: ["nginx"],
      peers: [],
      notes: [],
    },
    upstreams: {
      nginx: {
        description: "nginx",
        alone: {},
        throughput: {
          a: {
            reference: [run(9000, 110, 60), run(8000, 120, 60), run(10000, 100, 60)],
            project: [run(7000, 140, 55), run(6000, 150, 50), run(8000, 130, 60)],
            "reference ×2": [run(11000, 120, 8), run(12000, 115, 6), run(10000, 125, 9)],
            "project-w2": [run(10500, 135, 5), run(9000, 150, 7), run(9500, 140, 6)],
          },
        },
        ratios: {},
      },
    },
    checks: {},
  };
}

Deno.test("markdown() with workers 2 divides each target's median by its one-thread run's", () => {
  const text = markdown(results(2));
  const table = text.slice(text.indexOf("**Scaling: 2 workers against 1**"));
  const row = table.split("\n").find((line) => line.startsWith("| nginx | a: JSON"));
  assert.equal(
    row,
    "| nginx | a: JSON chat completion | 7000, 140 µs, 55 % | 9500, 140 µs, 6 % | **1.36×** | " +
      "9000, 110 µs, 60 % | 11000, 120 µs, 8 % | 1.22× |",
  );
});

Deno.test("markdown() with one worker has no scaling table", () => {
  assert.doesNotMatch(markdown(results(1)), /Scaling:/);
});

Deno.test("parseProcStat() counts iowait as idle and leaves guest time out", () => {
  const text = "cpu  100 5 50 800 20 1 9 3 7 0\ncpu0 50 2 25 400 10 0 4 1 3 0\n";
  assert.deepEqual(parseProcStat(text), { total: 988, idle: 820 });
});

Deno.test("parseProcStat() is NaN without a cpu line", () => {
  const ticks = parseProcStat("intr 1 2 3\n");
  assert.ok(Number.isNaN(ticks.total) && Number.isNaN(ticks.idle));
});

Deno.test("redisStoreTable: one row per run and store, the pairs' ratios and their median", () => {
  const row = (run: number, store: "memory" | "redis", rps: number) => ({
    run,
    store,
    rps,
    proxyCpuUsPerReq: 150,
    redisCpuUsPerReq: store === "redis" ? 45 : 0,
    p50Ms: 4,
    p99Ms: 20,
    checksPerReq: store === "redis" ? 4 : 0,
    roundTripsPerReq: store === "redis" ? 0.25 : 0,
    storeErrors: 0,
    failed: 0,
  });
  const lines = redisStoreTable({
    connections: 32,
    durationS: 5,
    upstreamLimit: true,
    runs: [
      row(1, "memory", 6000),
      row(1, "redis", 4200),
      row(2, "memory", 5000),
      row(2, "redis", 4000),
    ],
    ratios: [0.7, 0.8],
  });
  const text = lines.join("\n");
  assert.match(text, /per pair: 0\.70, 0\.80 \(median \*\*0\.70×\*\*\)/);
  assert.match(
    text,
    /\| 1 \| redis \| 4200 \| 150 \| 45 \| 4\.00 \| 20\.00 \| 4\.00 \| 0\.25 \| 0 \| 0 \|/,
  );
  assert.match(text, /\| 2 \| memory \| 5000 \| 150 \| — \|/);
  assert.equal(lines.filter((l) => /^\| \d/.test(l)).length, 4);
});
