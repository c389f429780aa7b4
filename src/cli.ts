/**
 * Command-line flags. Parsing is pure so it can be tested; `main.ts` acts on the result.
 *
 * @module
 */
import { isLogLevel, LOG_LEVELS, type LogLevel } from "./log.ts";

/** What the command line asked for. */
export interface CliOptions {
  /** Config file path; undefined = the embedded default. */
  config?: string;
  check: boolean;
  json: boolean;
  logLevel: LogLevel;
  version: boolean;
  help: boolean;
  /** Read one client key on stdin, print its `sha256:` digest and exit. */
  hashKey: boolean;
}

/** The outcome of parsing: options, or a usage error (exit code 2). */
export type CliParse = { ok: true; options: CliOptions } | { ok: false; error: string };

/** The usage text printed by `--help` and after a bad flag. */
export const USAGE = `Usage: llmproxy [options]

Options:
  -c, --config PATH      config file (YAML); default: $LLMPROXY_CONFIG when that file exists,
                         else the embedded config.default.yaml
      --check            validate the config, print "config OK" or the errors, and exit (0/1)
      --json             log JSON lines instead of text
      --log-level LEVEL  ${LOG_LEVELS.join(" | ")} (default: info)
      --hash-key         read one client key on stdin, print sha256:<hex> for clientKeys[].key
      --version          print the version and exit
  -h, --help             print this help and exit

Signals: SIGINT/SIGTERM drain in-flight requests and exit; SIGHUP reloads the config.`;

/**
 * The environment variable naming the config file to use when `--config` is absent, if a file
 * exists there; else the embedded default config. The container image sets it to
 * `/config/config.yaml`, its documented mount point.
 */
export const CONFIG_ENV = "LLMPROXY_CONFIG";

/** Where the config comes from, and why (for the start-up log). */
export interface ConfigChoice {
  /** The file to load; undefined = the embedded default config. */
  readonly path: string | undefined;
  /** Set when {@linkcode CONFIG_ENV} named a file that is not there. */
  readonly note?: string;
}

/**
 * Picks the config: `--config`, else the file {@linkcode CONFIG_ENV} names when `isFile` says it
 * exists, else the embedded default. An explicit `--config` that is missing stays an error (the
 * loader reports it); only the variable's file is optional.
 */
export function chooseConfig(
  flag: string | undefined,
  env: (name: string) => string | undefined,
  isFile: (path: string) => boolean,
): ConfigChoice {
  if (flag !== undefined) return { path: flag };
  const named = env(CONFIG_ENV);
  if (!named) return { path: undefined };
  if (isFile(named)) return { path: named };
  return {
    path: undefined,
    note: `${CONFIG_ENV}=${named}: no file there; using the embedded config.default.yaml`,
  };
}

const VALUE_FLAGS = new Set(["-c", "--config", "--log-level"]);
const BOOLEAN_FLAGS = new Set(["--check", "--json", "--version", "-h", "--help", "--hash-key"]);

/** Parses `args` (without the program name). */
export function parseArgs(args: readonly string[]): CliParse {
  const options: CliOptions = {
    check: false,
    json: false,
    logLevel: "info",
    version: false,
    help: false,
    hashKey: false,
  };
  for (let i = 0; i < args.length; i++) {
    let flag = args[i]!;
    let value: string | undefined;
    const eq = flag.indexOf("=");
    if (flag.startsWith("--") && eq > 0) [flag, value] = [flag.slice(0, eq), flag.slice(eq + 1)];
    if (VALUE_FLAGS.has(flag) && value === undefined) {
      value = args[++i];
      if (value === undefined || value.startsWith("-") && value.length > 1) {
        return { ok: false, error: `${flag} needs a value` };
      }
    } else if (BOOLEAN_FLAGS.has(flag) && value !== undefined) {
      return { ok: false, error: `${flag} takes no value` };
    }
    switch (flag) {
      case "-c":
      case "--config":
        if (value === "") return { ok: false, error: `${flag} needs a value` };
        options.config = value;
        break;
      case "--log-level":
        if (!isLogLevel(value!)) {
          return {
            ok: false,
            error: `invalid --log-level "${value}": use ${LOG_LEVELS.join(", ")}`,
          };
        }
        options.logLevel = value;
        break;
      case "--check":
        options.check = true;
        break;
      case "--json":
        options.json = true;
        break;
      case "--version":
        options.version = true;
        break;
      case "--hash-key":
        options.hashKey = true;
        break;
      case "-h":
      case "--help":
        options.help = true;
        break;
      default:
        return {
          ok: false,
          error: flag.startsWith("-") ? `unknown flag ${flag}` : `unexpected argument "${flag}"`,
        };
    }
  }
  return { ok: true, options };
}
