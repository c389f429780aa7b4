/**
 * What loading a config produces — the loaded config, or every problem found — without the
 * parser and validator, so the running proxy can use these types and errors without loading
 * them.
 *
 * @module
 */
import type { Config } from "./schema.ts";

/** One problem in a config, with where it is. */
export interface ConfigIssue {
  /** 1-based; 0 when the problem has no position (e.g. the file cannot be read). */
  readonly line: number;
  readonly col: number;
  /** Dotted path of the field, e.g. `upstreams.0.url`; empty for the whole file. */
  readonly path: string;
  readonly message: string;
}

/** A config that could not be loaded. `message` lists every issue, one per line. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly file: string, readonly issues: readonly ConfigIssue[]) {
    super(issues.map((issue) => formatIssue(file, issue)).join("\n"));
  }
}

/** Formats an issue as `file:line:col path: message`. */
export function formatIssue(file: string, issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${file}:${issue.line}:${issue.col}` : file;
  return issue.path ? `${where} ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`;
}

/** A loaded config and what loading noticed. */
export interface LoadedConfig {
  readonly config: Config;
  /** Where it came from (a path, or a label such as `<embedded config.default.yaml>`). */
  readonly source: string;
  /** Values that came from `${VAR}` interpolation, to be redacted wherever config is shown. */
  readonly interpolatedValues: ReadonlySet<string>;
  /** Things worth a warning at start-up (e.g. an empty credential). */
  readonly warnings: readonly string[];
}

/** Environment lookup; `Deno.env.get` in production, a map in tests. */
export type EnvLookup = (name: string) => string | undefined;
