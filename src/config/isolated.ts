/**
 * Loading the config in a short-lived child process. The YAML parser and the schema validator
 * are only needed while a config is read, yet once loaded they stay in a process for good:
 * measured here they add about 18 MiB to an idle proxy (their code, their heap, and the
 * runtime code that loading npm packages touches). A child loads and validates the config
 * and prints the result as JSON; the proxy process never loads either library.
 *
 * The child is this same program started with {@linkcode CHILD_FLAG}. Spawning it needs the
 * `run` permission for the program itself; without it, the config is loaded in-process as
 * before — same result, more memory.
 *
 * @module
 */
import { ConfigError, type ConfigIssue, type EnvLookup, type LoadedConfig } from "./errors.ts";

/** The hidden first argument that makes the program a config loader (see `main.ts`). */
export const CHILD_FLAG = "--internal-load-config";

/** A child that runs longer than this is stopped (it only reads one file). */
const CHILD_TIMEOUT_MS = 30_000;

/** What the child prints: the loaded config, or the problems found. */
export type ChildOutput =
  | {
    readonly ok: true;
    readonly config: LoadedConfig["config"];
    readonly source: string;
    readonly interpolatedValues: string[];
    readonly warnings: readonly string[];
  }
  | { readonly ok: false; readonly file: string; readonly issues: readonly ConfigIssue[] };

/** Where the config comes from: a path, or the embedded default config. */
export interface ConfigSource {
  /** A file path; undefined = the embedded default config. */
  readonly path: string | undefined;
}

/** Loads in-process (the parser and validator are imported on first use). */
export async function loadInProcess(
  source: ConfigSource,
  env: EnvLookup,
  embedded: { text: string; label: string },
): Promise<LoadedConfig> {
  const { loadConfigFile, parseConfig } = await import("./load.ts");
  return source.path === undefined
    ? parseConfig(embedded.text, embedded.label, env)
    : loadConfigFile(source.path, env);
}

/** Runs in the child: loads the config and returns what to print on stdout. */
export async function childOutput(
  source: ConfigSource,
  embedded: { text: string; label: string },
): Promise<string> {
  let output: ChildOutput;
  try {
    const loaded = await loadInProcess(source, (name) => Deno.env.get(name), embedded);
    output = {
      ok: true,
      config: loaded.config,
      source: loaded.source,
      interpolatedValues: [...loaded.interpolatedValues],
      warnings: loaded.warnings,
    };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    output = { ok: false, file: error.file, issues: error.issues };
  }
  return JSON.stringify(output);
}

/** Rebuilds the loaded config (or throws the config's errors) from the child's output. */
export function fromChildOutput(text: string): LoadedConfig {
  const output = JSON.parse(text) as ChildOutput;
  if (!output.ok) throw new ConfigError(output.file, output.issues);
  return {
    config: output.config,
    source: output.source,
    interpolatedValues: new Set(output.interpolatedValues),
    warnings: output.warnings,
  };
}

/**
 * The command line that starts this program as a config loader, or undefined when it cannot
 * be started (no `run` permission for it).
 */
export function childCommand(source: ConfigSource): string[] | undefined {
  const program = Deno.execPath();
  if (Deno.permissions.querySync({ name: "run", command: program }).state !== "granted") {
    return undefined;
  }
  const args = source.path === undefined ? [CHILD_FLAG] : [CHILD_FLAG, source.path];
  // A compiled executable is the program; otherwise the runtime runs the main module again,
  // with the import map next to it when there is one (a bundle needs none).
  if (Deno.build.standalone) return [program, ...args];
  const main = new URL(Deno.mainModule);
  const configFile = main.protocol === "file:" ? findDenoJson(main) : undefined;
  const config = configFile ? ["--config", configFile] : ["--no-config"];
  return [program, "run", "--allow-read", "--allow-env", ...config, main.href, ...args];
}

function findDenoJson(main: URL): string | undefined {
  const candidate = new URL("./deno.json", main).pathname;
  try {
    return Deno.statSync(candidate).isFile ? candidate : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Loads the config in a child process when this program may start one, else in-process.
 * Either way the result is the same {@linkcode LoadedConfig}, or a {@linkcode ConfigError}.
 */
export async function loadConfig(
  source: ConfigSource,
  env: EnvLookup,
  embedded: { text: string; label: string },
): Promise<LoadedConfig> {
  const command = childCommand(source);
  if (!command) return loadInProcess(source, env, embedded);
  const [program, ...args] = command;
  const child = await new Deno.Command(program!, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIMEOUT_MS),
  }).output();
  if (!child.success) {
    const detail = new TextDecoder().decode(child.stderr).trim().split("\n").slice(-5).join("\n");
    throw new Error(
      `the config loader process failed (exit ${child.code}${
        child.signal ? `, ${child.signal}` : ""
      }): ${detail}`,
    );
  }
  return fromChildOutput(new TextDecoder().decode(child.stdout));
}
