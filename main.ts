/**
 * llmproxy: an LLM API reverse proxy and load balancer.
 *
 * `deno run --allow-net --allow-read --allow-env main.ts [--config PATH] …` — see `--help`.
 *
 * @module
 */
import defaultConfigText from "./config.default.yaml" with { type: "text" };
import denoJson from "./deno.json" with { type: "json" };
import { chooseConfig, parseArgs, USAGE } from "./src/cli.ts";
import { ConfigError, type LoadedConfig } from "./src/config/errors.ts";
import { childOutput, childRequest, loadConfig, loadInProcess } from "./src/config/isolated.ts";
import { batchedStderr, createLogger } from "./src/log.ts";
import { configSecrets } from "./src/config/secrets.ts";
import { type RunningApp, startApp } from "./src/app.ts";
import { systemClock } from "./src/deps.ts";
import { formatDigest, keyFromInput } from "./src/keys/digest.ts";
import { inWorkerThread, runWorker } from "./src/workers/worker.ts";

/** What `--config` absent means: the default config compiled into the program. */
export const EMBEDDED_CONFIG = "<embedded config.default.yaml>";

const PROGRAM = {
  embedded: { text: defaultConfigText, label: EMBEDDED_CONFIG },
  version: denoJson.version,
};

async function main(args: readonly string[]): Promise<number> {
  // This program started by itself to load a config (see src/config/isolated.ts).
  const loaderRequest = childRequest();
  if (loaderRequest) {
    // The answer holds the config's secrets: meant for the parent's pipe, never a terminal.
    if (Deno.stdout.isTerminal()) {
      console.error("llmproxy: the config loader answers its parent process only");
      return 2;
    }
    console.log(await childOutput(loaderRequest, PROGRAM));
    return 0;
  }
  const parsed = parseArgs(args);
  if (!parsed.ok) {
    console.error(`llmproxy: ${parsed.error}\n\n${USAGE}`);
    return 2;
  }
  const options = parsed.options;
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  if (options.version) {
    console.log(`llmproxy ${denoJson.version} (deno ${Deno.version.deno})`);
    return 0;
  }
  if (options.hashKey) {
    // The key is read, never echoed: only its digest goes to stdout.
    const read = keyFromInput(
      new TextDecoder().decode(await new Response(Deno.stdin.readable).bytes()),
    );
    if ("error" in read) {
      console.error(`llmproxy: --hash-key: ${read.error}`);
      return 1;
    }
    console.log(formatDigest(read.key));
    return 0;
  }

  // `--check` is one look at the file; a running proxy loads its config in a child process,
  // so that it never holds the parser and validator in memory.
  const env = (name: string) => Deno.env.get(name);
  const choice = chooseConfig(options.config, env, isFile);
  const source = { path: choice.path };
  let isolated = false;
  const load = async (): Promise<LoadedConfig> => {
    if (options.check) return loadInProcess(source, env, PROGRAM);
    const result = await loadConfig(source, env, PROGRAM);
    isolated = result.isolated;
    return result.loaded;
  };

  let loaded: LoadedConfig;
  try {
    loaded = await load();
  } catch (error) {
    if (!(error instanceof ConfigError)) {
      console.error(`llmproxy: cannot load the config: ${(error as Error).message}`);
      return 1;
    }
    console.error(error.message);
    if (options.check) console.error(`config invalid: ${error.issues.length} error(s)`);
    return 1;
  }
  if (options.check) {
    for (const warning of loaded.warnings) console.error(`warning: ${warning}`);
    console.log("config OK");
    return 0;
  }

  // Read live by the logger: a reload adds the secrets of the new config before it is used.
  const secrets = configSecrets(loaded);
  // The one clock: log batching, and everything in the app (its timestamps are wall time).
  const clock = systemClock;
  const sink = batchedStderr({
    clock,
    onDropped: (count) =>
      log.warn(`${count} log lines dropped: stderr was not read fast enough`, { count }),
  });
  const log = createLogger({
    level: options.logLevel,
    json: options.json,
    secrets,
    write: sink.write,
    now: () => clock.wallNow(),
  });
  // Uncaught errors end the process without the stop path: write what the log still holds.
  globalThis.addEventListener("unload", () => sink.flush());
  const reload = async (): Promise<LoadedConfig> => {
    const next = await load();
    for (const secret of configSecrets(next)) secrets.add(secret);
    return next;
  };
  if (choice.note) log.info(choice.note);
  log.debug(
    isolated
      ? "config loaded in a child process (the parser and validator stay out of this one)"
      : "config loaded in-process",
  );
  // A diagnostic switch: force one upstream transport for every group (default: auto).
  const transport = Deno.env.get("LLMPROXY_TRANSPORT");
  if (transport && transport !== "fetch" && transport !== "http1") {
    log.warn(`LLMPROXY_TRANSPORT=${transport} is not a transport (fetch, http1): ignored`);
  }
  let app: RunningApp;
  try {
    app = await startApp(loaded, {
      log,
      clock,
      reload,
      watchPath: choice.path,
      workerModule: new URL(import.meta.url),
      workerLog: { level: options.logLevel, json: options.json },
      ...(transport === "fetch" || transport === "http1" ? { transport } : {}),
    });
  } catch (error) {
    // A port that is taken, a certificate that cannot be used: nothing serves, so say why
    // and exit non-zero for the supervisor.
    log.error(`cannot start: ${(error as Error).message}`);
    sink.flush();
    return 1;
  }
  // From here on a promise nobody awaited must not end a proxy serving everyone else: it is a
  // bug, logged as one, and the process goes on.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("unhandled rejection (a bug; the proxy keeps serving)", { error: event.reason });
  });
  sink.startBatching(); // start-up lines are out; the access log is batched from here
  const code = await app.finished;
  await sink.drain();
  return code;
}

/** Whether `path` names a file (through symlinks); false when it cannot be looked at. */
function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  // With `workers` > 1 the serving workers start from this same module (see src/workers/).
  if (inWorkerThread()) runWorker();
  else Deno.exit(await main(Deno.args));
}
