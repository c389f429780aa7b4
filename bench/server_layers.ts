/**
 * Which HTTP server layer the listeners are built on, measured: the same tiny JSON answer from
 * each candidate, wrk with 50 keep-alive connections, runs interleaved, req/s and CPU per
 * request of the server process. The README's "Connections" section quotes a run.
 *
 * `deno run -A bench/server_layers.ts [--duration S] [--runs N]` (needs wrk)
 *
 * - `deno-serve`: `Deno.serve` (no connection bounds possible).
 * - `per-connection`: the project's listener — own accept loop, Deno's per-connection server,
 *   the connection guard (header/idle timeouts, maxConnections).
 * - `serve-http`: own accept loop with the older `Deno.serveHttp`.
 * - `node-http`: `node:http` (has header and keep-alive timeouts, maxConnections).
 *
 * @module
 */
import http from "node:http";
import { listen } from "../src/server/listener.ts";
import { ConnectionGuard } from "../src/server/connections.ts";
import { silentLogger } from "../src/log.ts";
import { clockTicks, freePort, procInfo, sleep, spawn, stopAll, waitForPort } from "./procs.ts";
import { median } from "./stats.ts";

const VARIANTS = ["deno-serve", "per-connection", "serve-http", "node-http"] as const;
type Variant = typeof VARIANTS[number];

const BODY = '{"id":"x","object":"chat.completion","choices":[]}';
const answer = () => new Response(BODY, { headers: { "content-type": "application/json" } });

/** Child mode: serve `variant` on `port` until killed. */
function serve(variant: Variant, port: number): void {
  const hostname = "127.0.0.1";
  if (variant === "deno-serve") Deno.serve({ hostname, port, onListen() {} }, answer);
  else if (variant === "per-connection") {
    const guard = new ConnectionGuard(() => ({
      headerTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
      maxConnections: 10_000,
    }));
    listen("bench", { hostname, port, guard }, answer, silentLogger);
  } else if (variant === "serve-http") {
    (async () => {
      for await (const conn of Deno.listen({ hostname, port })) {
        (async () => {
          // deno-lint-ignore no-explicit-any
          for await (const event of (Deno as any).serveHttp(conn)) {
            event.respondWith(answer()).catch(() => {});
          }
        })().catch(() => {});
      }
    })();
  } else {
    http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(BODY);
    }).listen(port, hostname);
  }
}

async function wrk(port: number, durationS: number): Promise<number> {
  const out = await new Deno.Command("wrk", {
    args: ["-t1", "-c50", `-d${durationS}s`, `http://127.0.0.1:${port}/`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
}

async function main(args: string[]): Promise<void> {
  if (args[0] === "--serve") {
    serve(args[1] as Variant, Number(args[2]));
    return;
  }
  const flag = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  const durationS = flag("--duration", 5);
  const runs = flag("--runs", 3);
  const ticksPerS = await clockTicks();
  const results = new Map<Variant, { rps: number[]; cpuUs: number[] }>();
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-layers-" });
  try {
    const servers = new Map<Variant, { port: number; pid: number }>();
    for (const variant of VARIANTS) {
      const port = freePort();
      const proc = spawn(variant, [
        Deno.execPath(),
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--serve",
        variant,
        String(port),
      ], { logFile: `${dir}/${variant}.log` });
      await waitForPort(port, proc);
      servers.set(variant, { port, pid: proc.pid });
      results.set(variant, { rps: [], cpuUs: [] });
    }
    await sleep(500);
    for (let run = 0; run < runs; run++) {
      for (const variant of VARIANTS) {
        const { port, pid } = servers.get(variant)!;
        const before = await procInfo(pid);
        const rps = await wrk(port, durationS);
        const after = await procInfo(pid);
        const cpuUs = ((after.ticks - before.ticks) / ticksPerS) * 1e6 / (rps * durationS);
        results.get(variant)!.rps.push(rps);
        results.get(variant)!.cpuUs.push(cpuUs);
      }
    }
    const base = median(results.get("deno-serve")!.rps);
    console.log(`| server layer | req/s (median of ${runs}) | vs Deno.serve | CPU µs/request |`);
    console.log("|---|---|---|---|");
    for (const variant of VARIANTS) {
      const r = results.get(variant)!;
      const rps = median(r.rps);
      console.log(
        `| ${variant} | ${Math.round(rps)} | ${(rps / base).toFixed(2)} | ${
          median(r.cpuUs).toFixed(1)
        } |`,
      );
    }
  } finally {
    await stopAll();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
