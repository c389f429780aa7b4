/**
 * Resident memory of an idle proxy by the way it loads its config: in a child process (the
 * default with `--allow-run`), in-process (without it), or in a Worker (the prototype in
 * `config_loader_worker.ts`, put in place of `src/config/isolated.ts` by an import map). Each
 * mode starts the real proxy `--runs` times on the bench config, reads `VmRSS` (through `cat`,
 * as `procs.ts` does) 2 s after it listens, sends SIGHUP, and reads it again 2 s after
 * "config reloaded". Prints medians. Not CPU-bound: fine on a busy machine.
 *
 * Usage: deno run --allow-all bench/config_loader_rss.ts [--runs 5] [--idle-ms 2000]
 *
 * @module
 */
import { freePort, procInfo, sleep, spawn, stopAll, waitForPort } from "./procs.ts";
import { projectConfig } from "./targets.ts";

function flag(name: string): string | undefined {
  const at = Deno.args.indexOf(`--${name}`);
  return at < 0 ? undefined : Deno.args[at + 1];
}
const runs = Number(flag("runs") ?? 5);
const ROOT = new URL("../", import.meta.url).pathname;
/** How long the proxy idles before a reading, ms. */
const IDLE_MS = Number(flag("idle-ms") ?? 2000);

interface Mode {
  name: string;
  /** Flags before the program: permissions, and the import map of the Worker mode. */
  flags: string[];
  /** What main.ts logs at debug level about how the config was loaded. */
  expect: string;
}

/**
 * deno.json's imports, with `src/config/isolated.ts` replaced by the Worker prototype for every
 * module outside bench/ (the prototype itself imports the real one).
 */
async function workerImportMap(dir: string): Promise<string> {
  const root = new URL("../", import.meta.url);
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const isolated = new URL("src/config/isolated.ts", root).href;
  const file = `${dir}/worker_import_map.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      imports: {
        ...denoJson.imports,
        [isolated]: new URL("config_loader_worker.ts", import.meta.url).href,
      },
      scopes: { [new URL("./", import.meta.url).href]: { [isolated]: isolated } },
    }),
  );
  return file;
}

async function waitForLog(file: string, text: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = await Deno.readTextFile(file).catch(() => "");
    if (log.includes(text)) return;
    await sleep(50);
  }
  throw new Error(`no "${text}" in ${file} within ${timeoutMs} ms`);
}

interface Sample {
  startMs: number;
  idleMiB: number;
  reloadedMiB: number;
}

async function measure(mode: Mode, dir: string, run: number): Promise<Sample> {
  const port = freePort();
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(config, projectConfig(port, freePort(), "http://127.0.0.1:9/v1"));
  const logFile = `${dir}/${mode.name.replace(/\W/g, "_")}-${run}.log`;
  const started = performance.now();
  const proc = spawn(
    mode.name,
    [Deno.execPath(), "run", ...mode.flags, "main.ts", "-c", config, "--log-level", "debug"],
    { logFile, cwd: ROOT },
  );
  try {
    await waitForPort(port, proc);
    const startMs = performance.now() - started;
    await sleep(IDLE_MS);
    const idleMiB = (await procInfo(proc.pid)).rssMiB;
    Deno.kill(proc.pid, "SIGHUP");
    await waitForLog(logFile, "config reloaded");
    await sleep(IDLE_MS);
    const reloadedMiB = (await procInfo(proc.pid)).rssMiB;
    const log = await Deno.readTextFile(logFile);
    // A failed child or Worker would fall back to loading in-process: the figure would lie.
    if (/WARN|ERROR/.test(log)) throw new Error(`${mode.name}: ${logFile}:\n${log}`);
    // The Worker prototype reports itself as isolated too: without it (the import map not
    // taken) a proxy without --allow-run would say "in-process".
    if (!log.includes(mode.expect)) {
      throw new Error(`${mode.name}: no "${mode.expect}" in ${logFile}`);
    }
    return { startMs, idleMiB, reloadedMiB };
  } finally {
    await proc.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const dir = await Deno.makeTempDir({ prefix: "llmproxy-loader-rss-" });
const ISOLATED = "config loaded in a child process";
const BASE = ["--allow-net", "--allow-read", "--allow-env"];
const MODES: Mode[] = [
  { name: "child process", flags: [...BASE, "--allow-run"], expect: ISOLATED },
  { name: "in-process", flags: BASE, expect: "config loaded in-process" },
  {
    name: "worker",
    flags: [...BASE, "--import-map", await workerImportMap(dir)],
    expect: ISOLATED,
  },
];
const results = new Map<string, Sample[]>(MODES.map((m) => [m.name, []]));
try {
  // Interleaved, so that a drift of the machine touches every mode alike.
  for (let run = 0; run < runs; run++) {
    for (const mode of MODES) {
      const sample = await measure(mode, dir, run);
      results.get(mode.name)!.push(sample);
      console.error(
        `${mode.name} #${run + 1}: listening after ${sample.startMs.toFixed(0)} ms, idle ${
          sample.idleMiB.toFixed(1)
        } MiB, after a reload ${sample.reloadedMiB.toFixed(1)} MiB`,
      );
    }
  }
} finally {
  await stopAll();
  await Deno.remove(dir, { recursive: true });
}
console.log(`\nmain.ts, ${runs} runs each, medians (RSS = VmRSS, MiB):\n`);
console.log("| loader | listening after (ms) | idle RSS | idle RSS after SIGHUP |");
console.log("| --- | ---: | ---: | ---: |");
for (const [name, samples] of results) {
  const m = (f: (s: Sample) => number) => median(samples.map(f));
  console.log(
    `| ${name} | ${m((s) => s.startMs).toFixed(0)} | ${m((s) => s.idleMiB).toFixed(1)} | ${
      m((s) => s.reloadedMiB).toFixed(1)
    } |`,
  );
}
