/**
 * Loading the config in a short-lived child process. The YAML parser and the schema validator
 * are only needed while a config is read, yet once loaded they stay in a process for good:
 * they add about 19 MiB to an idle proxy (their code, their heap, and the runtime code that
 * loading npm packages touches). A child loads and validates the config and prints the result
 * as JSON; the proxy process never loads either library.
 *
 * Why a process and not a `Worker` (which would need no `run` permission and no version
 * check): a Worker that loads the config and is terminated leaves more behind than loading
 * in-process does. `bench/config_loader_rss.ts` (the real proxy on the bench config, resident
 * memory 2 s after it listens, 5 runs, medians, Deno 2.9.6, Linux x86-64): child process
 * 49.9 MiB, in-process 68.8 MiB, Worker 72.7 MiB; after one reload 50.1, 70.1 and 75.0 MiB.
 * The isolate is gone but the memory is not (the runtime code it touched, and anonymous memory
 * that `MALLOC_ARENA_MAX=1` or `MALLOC_TRIM_THRESHOLD_` do not give back), and each reload
 * adds some. A Worker in the bundle would also need a self-referencing entry: its module URL
 * next to `dist/llmproxy.js` does not exist.
 *
 * The child is this same program started with {@linkcode CHILD_ENV} set. Spawning it needs the
 * `run` permission for the program itself; without it, the config is loaded in-process as
 * before — same result, more memory.
 *
 * @module
 */
import { ConfigError, type ConfigIssue, type EnvLookup, type LoadedConfig } from "./errors.ts";

/**
 * Set in the child's environment: this program is a config loader (see `main.ts`). Its value is
 * JSON, `{"path": "…", "version": "…"}` (no path: the embedded config). An environment variable
 * and not an argument, because a compiled executable puts its built-in arguments first.
 */
export const CHILD_ENV = "LLMPROXY_INTERNAL_CONFIG_LOADER";

/** A child that runs longer than this is stopped (it only reads one file). */
const CHILD_TIMEOUT_MS = 30_000;

/** What the child prints: the loaded config, or the problems found. */
export type ChildOutput =
  | {
    readonly ok: true;
    /** The program version that loaded it: a child from an upgraded binary is not trusted. */
    readonly version: string;
    readonly config: LoadedConfig["config"];
    readonly source: string;
    readonly interpolatedValues: string[];
    readonly warnings: readonly string[];
  }
  | {
    readonly ok: false;
    readonly version: string;
    readonly file: string;
    readonly issues: readonly ConfigIssue[];
  };

/** Where the config comes from: a path, or the embedded default config. */
export interface ConfigSource {
  /** A file path; undefined = the embedded default config. */
  readonly path: string | undefined;
}

/** The embedded default config and the program's version. */
export interface ProgramFacts {
  readonly embedded: { readonly text: string; readonly label: string };
  readonly version: string;
}

/** Loads in-process (the parser and validator are imported on first use). */
export async function loadInProcess(
  source: ConfigSource,
  env: EnvLookup,
  program: ProgramFacts,
): Promise<LoadedConfig> {
  const { loadConfigFile, parseConfig } = await import("./load.ts");
  return source.path === undefined
    ? parseConfig(program.embedded.text, program.embedded.label, env)
    : loadConfigFile(source.path, env);
}

/**
 * When this process is a config loader started by {@linkcode loadConfig}: what it was asked to
 * load. Undefined for a normal start (or when the environment cannot be read).
 */
export function childRequest(): ConfigSource | undefined {
  // Without env permission this is no child (loadConfig always grants it), and asking would
  // prompt on a terminal.
  const query = Deno.permissions.querySync({ name: "env", variable: CHILD_ENV });
  if (query.state !== "granted") return undefined;
  const value = Deno.env.get(CHILD_ENV);
  if (value === undefined) return undefined;
  try {
    const request = JSON.parse(value) as { path?: unknown };
    return { path: typeof request.path === "string" ? request.path : undefined };
  } catch {
    return undefined; // not set by loadConfig
  }
}

/** Runs in the child: loads the config and returns what to print on stdout. */
export async function childOutput(source: ConfigSource, program: ProgramFacts): Promise<string> {
  let output: ChildOutput;
  try {
    const loaded = await loadInProcess(source, (name) => Deno.env.get(name), program);
    output = {
      ok: true,
      version: program.version,
      config: loaded.config,
      source: loaded.source,
      interpolatedValues: [...loaded.interpolatedValues],
      warnings: loaded.warnings,
    };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    output = { ok: false, version: program.version, file: error.file, issues: error.issues };
  }
  return JSON.stringify(output);
}

/** Why the child's answer cannot be used (then the config is loaded in-process). */
class UnusableChildOutput extends Error {
  override name = "UnusableChildOutput";
}

/**
 * Rebuilds the loaded config (or throws the config's errors) from the child's output. Throws
 * {@linkcode UnusableChildOutput} when the output is not an answer of this program's version.
 */
export function fromChildOutput(text: string, version: string): LoadedConfig {
  let output: ChildOutput;
  try {
    output = JSON.parse(text);
  } catch {
    // The parser's message would quote the output, which may hold credentials.
    throw new UnusableChildOutput("its output is not a config");
  }
  if (typeof output !== "object" || output === null || typeof output.ok !== "boolean") {
    throw new UnusableChildOutput("its output is not a config");
  }
  if (output.version !== version) {
    throw new UnusableChildOutput(
      `it is version ${output.version}, this process ${version} (the program was replaced)`,
    );
  }
  if (!output.ok) throw new ConfigError(output.file, output.issues);
  return {
    config: output.config,
    source: output.source,
    interpolatedValues: new Set(output.interpolatedValues),
    warnings: output.warnings,
  };
}

/**
 * The command line that starts this program as a config loader, or undefined when it must not
 * be started: without the `run` permission for itself, or when this process may read only some
 * files or variables (the child would get more than this process has).
 */
export function childCommand(): string[] | undefined {
  const program = Deno.execPath();
  // Granted outright: `partial` means some paths or variables are denied (`--deny-read=…`),
  // which the child's plain `--allow-read`/`--allow-env` would not carry over.
  const granted = (descriptor: Deno.PermissionDescriptor) => {
    const status = Deno.permissions.querySync(descriptor);
    return status.state === "granted" && !status.partial;
  };
  if (!granted({ name: "run", command: program }) || !granted({ name: "read" })) return undefined;
  if (!granted({ name: "env" })) return undefined;
  // A compiled executable is the program; otherwise the runtime runs the main module again,
  // with the import map next to it when there is one (a bundle needs none).
  if (Deno.build.standalone) return [program];
  const main = new URL(Deno.mainModule);
  const configFile = main.protocol === "file:" ? findDenoJson(main) : undefined;
  const config = configFile ? ["--config", configFile] : ["--no-config"];
  return [program, "run", "--allow-read", "--allow-env", ...config, main.href];
}

function findDenoJson(main: URL): string | undefined {
  const candidate = new URL("./deno.json", main);
  try {
    return Deno.statSync(candidate).isFile ? decodeURIComponent(candidate.pathname) : undefined;
  } catch {
    return undefined;
  }
}

/** A loaded config, and whether a child process loaded it. */
export interface LoadResult {
  readonly loaded: LoadedConfig;
  readonly isolated: boolean;
}

/**
 * Loads the config in a child process when this program may start one, else in-process. The
 * child reads the real environment; `env` is used for the in-process load only.
 * Either way the result is the same {@linkcode LoadedConfig}, or a {@linkcode ConfigError}. A
 * child that fails without an answer (it crashed, it printed something else, it is another
 * version) costs nothing but memory: the config is then loaded in-process, with a warning.
 */
export async function loadConfig(
  source: ConfigSource,
  env: EnvLookup,
  program: ProgramFacts,
): Promise<LoadResult> {
  const command = childCommand();
  if (!command) return { loaded: await loadInProcess(source, env, program), isolated: false };
  let failure: string;
  try {
    return { loaded: await runChild(command, source, program.version), isolated: true };
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    failure = (error as Error).message;
  }
  const loaded = await loadInProcess(source, env, program);
  const warning = `config loaded in-process: the config loader process failed: ${failure}`;
  return { loaded: { ...loaded, warnings: [...loaded.warnings, warning] }, isolated: false };
}

async function runChild(
  command: string[],
  source: ConfigSource,
  version: string,
): Promise<LoadedConfig> {
  const [program, ...args] = command;
  const timeout = AbortSignal.timeout(CHILD_TIMEOUT_MS);
  const child = await new Deno.Command(program!, {
    args,
    env: { [CHILD_ENV]: JSON.stringify({ path: source.path }), NO_COLOR: "1" },
    stdin: "inherit", // `--config /dev/stdin` reads the config from this process's input
    stdout: "piped",
    stderr: "piped",
    signal: timeout,
  }).output();
  if (timeout.aborted) throw new Error(`no answer within ${CHILD_TIMEOUT_MS / 1000} s`);
  if (!child.success) {
    // The runtime's own error line says most ("error: Module not found …").
    const lines = new TextDecoder().decode(child.stderr).split("\n").map((line) => line.trim());
    const reason = lines.find((line) => line.startsWith("error")) ?? lines.find(Boolean) ?? "";
    throw new Error(
      `exit ${child.code}${child.signal ? ` (${child.signal})` : ""}: ${reason.slice(0, 200)}`,
    );
  }
  return fromChildOutput(new TextDecoder().decode(child.stdout), version);
}
