/**
 * The benchmark harness: `deno task bench [options]`. Compares the project (realistic config,
 * default client settings) with a minimal pass-through Deno proxy (`reference_proxy.ts`) in
 * the same session, runs interleaved, and writes `bench/results/<timestamp>.json` and
 * `bench/results/latest.md`.
 *
 * The throughput scenarios (a JSON, b SSE) run against each kind of upstream (see
 * `upstreams.ts`): the project's mock, nginx with canned OpenAI answers, and that nginx over
 * TLS. Each reports the project's (and each peer's) req/s and CPU per request as ratios to the
 * reference in front of the same upstream. Scenarios c, d and e use the mock.
 *
 * Options:
 * - `--smoke`: ~2 s runs, 1 repetition, 100 slow streams at 100 ms, no soak, no peers, 0.5 s
 *   latency runs (CI; about a minute). Results go to `<timestamp>-smoke.json` and
 *   `latest-smoke.md`.
 * - `--duration S`: seconds per run (default 10).
 * - `--runs N`: runs per target and scenario (default 3).
 * - `--scenarios a,b,c,d,f,g,h,i,r`: a JSON, b SSE, c chunk timing, d memory; f–i latency
 *   overhead against the mock directly: f JSON at 1/16/64 connections, g SSE time to first
 *   event, h a ~400 KB request, i event gaps of 64 streams (see `latency_scenarios.ts`); r the
 *   Redis store's cost against memory (`redis_store.ts`; needs `redis-server`, skipped with a
 *   note without it). Default all.
 * - `--upstreams mock,nginx,tls`: upstream kinds for a and b (default all; `nginx` and `tls`
 *   need nginx, `apt-get install -y nginx-light`, and `tls` openssl; missing ones are skipped
 *   with a note).
 * - `--peers`: also measure nginx as a reverse proxy and the Portkey gateway (Node; installed
 *   with npm into `bench/.peers/`) in front of the mock and nginx upstreams.
 * - `--soak S`: also soak the project for S seconds (scenario e; e.g. `--soak 600`).
 * - `--pin`: `taskset` the load generator and upstreams to CPU 0 and the proxies to CPU 1.
 * - `--load wrk|builtin`: the load generator (default wrk when installed).
 * - `--streams N`: slow streams in scenario d (default 1000).
 * - `--no-model-routing`: the project's config without model routing (groups' `models`, the
 *   `modelMap`), to measure what routing by model costs.
 * - `--workers N` (N > 1): scenarios a and b also measure the project with `workers: N` (serving
 *   threads on one port) beside the project with `workers: 1`, interleaved in the same session,
 *   and, as the control, N copies of the reference on one port (`SO_REUSEPORT`; copies that
 *   share nothing, the best N cores can give any proxy here); the report's scaling table
 *   divides each by its one-thread run and shows how idle the machine was. Each target warms
 *   up for `workers` times as long (every thread compiles its own code). Scenarios c–i use
 *   `workers: 1`. With `--pin` every worker shares the proxies' one CPU.
 *
 * Exits 0 unless the harness itself breaks (including a chunk check that cannot fail).
 *
 * @module
 */
import type { LoadTool } from "./loadgen.ts";
import { peerNames, type Peers, preparePeers, startPeers } from "./peers.ts";
import { clockTicks, hasCommand, procInfo, sleep, stopAll } from "./procs.ts";
import { LATENCY_SCENARIOS, latencyScenarios } from "./latency_scenarios.ts";
import { markdown, ratios, type Results, type UpstreamResults } from "./report.ts";
import { measureRedisStore } from "./redis_store.ts";
import * as sc from "./scenarios.ts";
import {
  startMinimalProxy,
  startMock,
  startProject,
  startReferenceCopies,
  type Target,
  type Upstream,
} from "./targets.ts";
import {
  describeUpstream,
  prepareUpstreams,
  startUpstream,
  UPSTREAM_KINDS,
  type UpstreamKind,
  type UpstreamSetup,
} from "./upstreams.ts";

interface Cli {
  smoke: boolean;
  durationS: number;
  runs: number;
  scenarios: Set<string>;
  upstreams: UpstreamKind[];
  peers: boolean;
  soakS: number;
  pin: boolean;
  load?: LoadTool;
  streams: number;
  modelRouting: boolean;
  workers: number;
}

function parseCli(args: readonly string[]): Cli {
  const smoke = args.includes("--smoke");
  const cli: Cli = {
    smoke,
    durationS: smoke ? 2 : 10,
    runs: smoke ? 1 : 3,
    scenarios: new Set(["a", "b", "c", "d", ...LATENCY_SCENARIOS, "r"]),
    upstreams: [...UPSTREAM_KINDS],
    peers: false,
    soakS: 0,
    pin: false,
    streams: smoke ? 100 : 1000,
    modelRouting: true,
    workers: 1,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const positive = () => {
      const n = Number(value());
      if (!(n > 0)) throw new Error(`${flag} must be a positive number`);
      return n;
    };
    if (flag === "--smoke") continue;
    else if (flag === "--duration") cli.durationS = positive();
    else if (flag === "--runs") cli.runs = Math.round(positive());
    else if (flag === "--soak") cli.soakS = positive();
    else if (flag === "--streams") cli.streams = Math.round(positive());
    else if (flag === "--pin") cli.pin = true;
    else if (flag === "--no-model-routing") cli.modelRouting = false;
    else if (flag === "--workers") cli.workers = Math.round(positive());
    else if (flag === "--peers") cli.peers = true;
    else if (flag === "--upstreams") {
      const kinds = value().split(",");
      const unknown = kinds.filter((k) => !(UPSTREAM_KINDS as readonly string[]).includes(k));
      if (unknown.length > 0) {
        throw new Error(`--upstreams: unknown ${unknown.join(", ")}; use ${UPSTREAM_KINDS}`);
      }
      cli.upstreams = kinds as UpstreamKind[];
    } else if (flag === "--scenarios") cli.scenarios = new Set(value().split(","));
    else if (flag === "--load") {
      const v = value();
      if (v !== "wrk" && v !== "builtin") throw new Error(`--load must be wrk or builtin`);
      cli.load = v;
    } else throw new Error(`Unknown argument "${flag}"; see the header of bench/run.ts`);
  }
  if (smoke) {
    cli.soakS = 0;
    cli.peers = false;
  }
  return cli;
}

async function main(): Promise<number> {
  const cli = parseCli(Deno.args);
  const log = (line: string) => console.log(line);
  const notes: string[] = [];
  const startedAt = new Date().toISOString();

  const hasWrk = await hasCommand("wrk");
  const tool: LoadTool = cli.load ?? (hasWrk ? "wrk" : "builtin");
  if (tool === "wrk" && !hasWrk) throw new Error("--load wrk: wrk is not installed");
  if (!hasWrk) {
    notes.push(
      "wrk not found: using the built-in generator (bench/load.ts, one Deno process of " +
        "concurrent keep-alive fetch loops), which is slower and may itself limit req/s. " +
        "Install wrk for better figures: apt-get install -y wrk",
    );
  }
  let pinned = cli.pin;
  if (pinned && !(await hasCommand("taskset"))) {
    pinned = false;
    notes.push("--pin ignored: taskset not found (apt-get install -y util-linux)");
  }
  if (pinned && navigator.hardwareConcurrency < 2) {
    pinned = false;
    notes.push("--pin ignored: fewer than 2 CPUs");
  }
  const loadCpu = pinned ? 0 : undefined;
  const proxyCpu = pinned ? 1 : undefined;
  if (cli.smoke && Deno.args.includes("--peers")) notes.push("--peers ignored with --smoke");

  const dir = await Deno.makeTempDir({ prefix: "llmproxy-bench-" });
  const load = ["a", "b"].filter((k) => cli.scenarios.has(k));
  const setup = load.length > 0
    ? await prepareUpstreams(cli.upstreams, dir, notes)
    : { kinds: [] } satisfies UpstreamSetup;
  const peers: Peers = cli.peers && load.length > 0 ? await preparePeers(notes, log) : {};
  for (const note of notes) log(`note: ${note}`);
  log(
    `load generator: ${tool === "wrk" ? "wrk (-t1, --latency, bench/wrk/post.lua)" : "built-in"}`,
  );

  const session: sc.Session = {
    tool,
    durationS: cli.durationS,
    runs: cli.runs,
    connections: 50,
    clockTicks: await clockTicks(),
    loadCpu,
    log,
  };
  const results: Results = {
    meta: {
      startedAt,
      mode: cli.smoke ? "smoke" : "normal",
      loadTool: tool === "wrk" ? await wrkVersion() : "built-in generator (bench/load.ts)",
      pinned,
      workers: cli.workers,
      runs: cli.runs,
      durationS: cli.durationS,
      connections: session.connections,
      clockTicks: session.clockTicks,
      deno: Deno.version.deno,
      cpus: navigator.hardwareConcurrency,
      upstreams: setup.kinds,
      peers: peerNames(peers),
      notes,
    },
    upstreams: {},
    checks: {},
  };

  let exitCode = 0;
  try {
    const mock = await startMock({ dir, cpu: loadCpu });
    log(`mock upstream: ${mock.origin} (pid ${mock.proc.pid}); logs in ${dir}`);
    if (load.length > 0) {
      await sc.upstreamAlone({ ...session, durationS: 1, log: () => {} }, mock, "a"); // warm-up
    }
    const targets = {
      reference: await startMinimalProxy("reference", mock, { dir, cpu: proxyCpu }),
      project: await startProject(mock, { dir, cpu: proxyCpu, modelRouting: cli.modelRouting }),
    };
    await sleep(500);
    const idleMiB = {
      reference: (await procInfo(targets.reference.proc.pid)).rssMiB,
      project: (await procInfo(targets.project.proc.pid)).rssMiB,
    };
    log(
      `RSS idle: reference ${idleMiB.reference.toFixed(1)} MiB, project ${
        idleMiB.project.toFixed(1)
      } MiB`,
    );
    await warmUp(session, targets, ["a"]);
    // Idle again after the first requests: what a proxy that has served holds when quiet (the
    // runtime's timers, pools and compiled code now exist).
    await sleep(1_000);
    const idleAfterWarmUpMiB = {
      reference: (await procInfo(targets.reference.proc.pid)).rssMiB,
      project: (await procInfo(targets.project.proc.pid)).rssMiB,
    };
    log(
      `RSS idle after a warm-up load: reference ${idleAfterWarmUpMiB.reference.toFixed(1)} MiB, ` +
        `project ${idleAfterWarmUpMiB.project.toFixed(1)} MiB`,
    );

    for (const kind of setup.kinds) {
      const o = { dir, tag: kind === "mock" ? undefined : kind };
      // Each kind's processes run only while it is measured; the mock's proxies stay for c–e.
      const own: Target[] = [];
      try {
        let upstream: Upstream = mock;
        let group: Record<string, Target> = targets;
        if (kind !== "mock") {
          upstream = await startUpstream(kind, setup, { ...o, cpu: loadCpu });
          own.push(upstream);
          group = {
            reference: await startMinimalProxy("reference", upstream, { ...o, cpu: proxyCpu }),
            project: await startProject(upstream, {
              ...o,
              cpu: proxyCpu,
              modelRouting: cli.modelRouting,
            }),
          };
          own.push(...Object.values(group));
        }
        if (cli.workers > 1) {
          const n = cli.workers;
          const scaled = [
            await startReferenceCopies(n, upstream, { ...o, cpu: proxyCpu }),
            await startProject(upstream, {
              ...o,
              cpu: proxyCpu,
              modelRouting: cli.modelRouting,
              workers: n,
            }),
          ];
          group = { ...group, ...Object.fromEntries(scaled.map((t) => [t.name, t])) };
          own.push(...scaled);
        }
        // Peers reach plain-HTTP upstreams only (TLS would need each one's own trust setup).
        const peerTargets = kind === "tls"
          ? {}
          : await startPeers(peers, upstream, { ...o, cpu: proxyCpu });
        own.push(...Object.values(peerTargets));
        log(`upstream ${kind}: ${upstream.origin} (${describeUpstream(kind, setup)})`);
        results.upstreams[kind] = await measureUpstream(
          session,
          upstream,
          { ...group, ...peerTargets },
          load,
          { description: describeUpstream(kind, setup), kind, checks: results.checks, notes },
        );
      } finally {
        for (const t of own.reverse()) {
          for (const proc of t.procs ?? [t.proc]) await proc.stop();
        }
      }
    }
    if (cli.scenarios.has("c")) {
      log("scenario c (chunk-by-chunk):");
      const buffering = await startMinimalProxy("buffering", mock, { dir, cpu: proxyCpu });
      try {
        const probe = await sc.sseCheck(session, { direct: mock, ...targets, buffering }, 20, 10);
        results.sse = { chunks: 20, delayMs: 10, targets: probe };
        const controlFailed = probe.buffering?.pass === false;
        results.checks["buffering control"] = controlFailed
          ? "FAIL as required"
          : "PASSED — the check cannot tell buffering apart";
        if (!controlFailed) exitCode = 1;
      } finally {
        await buffering.proc.stop();
      }
    }
    if (cli.scenarios.has("d")) {
      const streams = { count: cli.streams, chunks: 20, delayMs: cli.smoke ? 100 : 500 };
      log(`scenario d (${streams.count} slow streams, ${streams.chunks} × ${streams.delayMs} ms):`);
      const a = results.upstreams.mock?.throughput.a;
      const peak = (runs: { rssPeakMiB: number }[] = []) =>
        Math.max(...runs.map((r) => r.rssPeakMiB));
      results.memory = {
        idleMiB,
        idleAfterWarmUpMiB,
        underLoadMiB: a && { reference: peak(a.reference), project: peak(a.project) },
        streams,
        streamRuns: await sc.slowStreams(session, targets, streams),
      };
    }
    const latencyKeys = new Set(LATENCY_SCENARIOS.filter((k) => cli.scenarios.has(k)));
    if (latencyKeys.size > 0) {
      log(`scenarios ${[...latencyKeys].join(",")} (latency overhead, direct vs through a proxy):`);
      // Smoke: long enough to prove each case runs, not to resolve a p99.
      const timing = cli.smoke
        ? { durationS: 0.5, warmupS: 0.2, dir }
        : { durationS: cli.durationS, warmupS: 1, dir };
      results.latency = await latencyScenarios(
        session,
        { direct: mock, ...targets },
        latencyKeys,
        timing,
      );
    }
    if (cli.scenarios.has("r")) {
      log("scenario r (the Redis store against memory):");
      const redisStore = await measureRedisStore({
        durationS: cli.durationS,
        runs: cli.runs,
        connections: 32,
        tool,
        warmupS: cli.smoke ? 1 : 2,
        log,
      }, results.meta.notes);
      if (redisStore) results.redisStore = redisStore;
    }
    if (cli.soakS > 0) {
      log(`scenario e (soak, ${cli.soakS} s):`);
      results.soak = await sc.soak(session, targets.project, cli.soakS);
    }
    await projectChecks(targets.project, dir, results.checks);
  } finally {
    await stopAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  const text = markdown(results);
  const outDir = new URL("./results/", import.meta.url).pathname;
  await Deno.mkdir(outDir, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, "-");
  const suffix = cli.smoke ? "-smoke" : "";
  await Deno.writeTextFile(`${outDir}${stamp}${suffix}.json`, JSON.stringify(results, null, 2));
  await Deno.writeTextFile(`${outDir}latest${suffix}.md`, text);
  log("");
  log(text);
  log(`results: bench/results/${stamp}${suffix}.json, bench/results/latest${suffix}.md`);
  return exitCode;
}

/**
 * Scenarios a and b against one upstream: the upstream alone, one checked request per target
 * (a failure is noted; the runs still count it as errors), a warm-up, then the interleaved
 * runs and the ratios to the reference.
 */
async function measureUpstream(
  s: sc.Session,
  upstream: Upstream,
  targets: Record<string, Target>,
  keys: readonly string[],
  o: { description: string; kind: string; checks: Record<string, string>; notes: string[] },
): Promise<UpstreamResults> {
  const out: UpstreamResults = {
    description: o.description,
    alone: {},
    throughput: {},
    ratios: {},
  };
  for (const key of keys) out.alone[key] = await sc.upstreamAlone(s, upstream, key);
  for (const key of keys) {
    for (const [name, target] of Object.entries(targets)) {
      const problem = await sc.preflight(target, key);
      if (problem) {
        o.checks[`${name} on ${o.kind}, scenario ${key}`] = problem;
        o.notes.push(`${name} in front of ${o.kind} failed the scenario-${key} check: ${problem}`);
        s.log(`  ${name}, scenario ${key}: request check FAILED: ${problem}`);
      }
    }
  }
  await warmUp(s, targets, keys);
  for (const key of keys) {
    s.log(`scenario ${key} (upstream ${o.kind}):`);
    out.throughput[key] = await sc.throughput(s, targets, key);
    out.ratios[key] = ratios(out.throughput[key]);
  }
  return out;
}

/**
 * A load on each target before measuring, so it is measured as it runs in production: warm.
 * The project's first seconds under load are measurably dearer than its later ones (about 20 %
 * in a first 5 s run, then steady: JIT tiers, the heap's young generation growing to the
 * allocation rate, pools filling); the reference settles sooner. 5 s per scenario (less in
 * smoke runs: at most a run's duration), times the target's workers.
 */
async function warmUp(
  s: sc.Session,
  targets: Record<string, Target>,
  keys: readonly string[],
): Promise<void> {
  for (const key of keys) {
    for (const [name, target] of Object.entries(targets)) {
      // Each thread or copy compiles its own code on its share of the requests: two fresh
      // workers cost 270 µs of CPU per request in their first 5 s, 164 in the next 5 s and
      // 137–146 from then on (nginx upstream, this 2-core machine).
      const durationS = Math.min(5, s.durationS) * (target.workers ?? 1);
      await sc.throughput({ ...s, durationS, runs: 1, log: () => {} }, { [name]: target }, key);
    }
  }
}

/** Confirms the project really logged and counted: access log lines and the metrics endpoint. */
async function projectChecks(project: Target, dir: string, checks: Record<string, string>) {
  const accessLines = await countInFile(`${dir}/project.log`, " log=access").catch(() => -1);
  checks["project access log lines"] = accessLines < 0 ? "unreadable" : String(accessLines);
  if (project.adminOrigin) {
    const res = await fetch(`${project.adminOrigin}/metrics`).catch(() => undefined);
    const text = res ? await res.text() : "";
    checks["project /metrics"] = res?.ok ? `${text.split("\n").length} lines` : "unreachable";
  }
}

/** Occurrences of `needle` in a file, read in pieces: after a soak the log holds gigabytes. */
async function countInFile(path: string, needle: string): Promise<number> {
  const file = await Deno.open(path); // its readable closes it
  const decoder = new TextDecoder();
  let count = 0;
  let carry = ""; // the end of the previous piece, where a match may be cut
  for await (const piece of file.readable) {
    const text = carry + decoder.decode(piece, { stream: true });
    for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) {
      count++;
    }
    carry = text.slice(Math.max(0, text.length - needle.length + 1));
  }
  return count;
}

async function wrkVersion(): Promise<string> {
  const out = await new Deno.Command("wrk", { args: ["-v"], stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return /wrk [\d.]+/.exec(text)?.[0] ?? "wrk";
}

if (import.meta.main) {
  let code = 1;
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    code = await main();
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.stack : error}`);
  } finally {
    await stopAll();
  }
  Deno.exit(code);
}
