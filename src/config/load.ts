/**
 * Loading a config: read → parse YAML (keeping positions) → `${VAR}` interpolation → schema
 * validation. Every problem found is reported at once, each as
 * `file:line:col path.to.field: message`.
 *
 * @module
 */
import { isAlias, isMap, isScalar, LineCounter, type Node, parseDocument, visit } from "yaml";
import type { z } from "zod";
import { type Config, configSchema } from "./schema.ts";
import { interpolateEnv } from "./env.ts";
import { resolvePemFields } from "./pem.ts";
import {
  ConfigError,
  type ConfigIssue,
  type EnvLookup,
  formatIssue,
  type LoadedConfig,
} from "./errors.ts";

export { ConfigError, type ConfigIssue, type EnvLookup, formatIssue, type LoadedConfig };

/** Reads and validates a config file. Throws {@linkcode ConfigError} for any problem. */
export async function loadConfigFile(path: string, env: EnvLookup): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "file not found"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : `cannot read: ${(error as Error).message}`;
    throw new ConfigError(path, [{ line: 0, col: 0, path: "", message: reason }]);
  }
  const slash = path.lastIndexOf("/");
  return parseConfig(text, path, env, { baseDir: slash < 0 ? "." : path.slice(0, slash) || "/" });
}

/** Options of {@linkcode parseConfig}. */
export interface ParseOptions {
  /** Where relative PEM file paths (`tls.ca`, `tls.cert`, `tls.key`) are read from. @default "." */
  baseDir?: string;
}

/**
 * Parses and validates config text. `source` names it in messages. PEM file paths are read
 * (see `pem.ts`): the loaded config holds their PEM text. Throws {@linkcode ConfigError}.
 */
export function parseConfig(
  text: string,
  source: string,
  env: EnvLookup,
  options: ParseOptions = {},
): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const position = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, col };
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        ...position(e.pos[0]),
        path: "",
        message: `invalid YAML: ${e.message.split("\n")[0]}`,
      })).sort((a, b) => a.line - b.line || a.col - b.col),
    );
  }

  const issues: ConfigIssue[] = [];
  const at = (path: readonly PropertyKey[], key?: string) => ({
    ...position(offsetOf(doc.contents, path, key)),
    path: [...path, ...(key === undefined ? [] : [key])].join("."),
  });

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (error) {
    // toJS throws (rather than reporting in doc.errors) for an alias to an anchor that is not
    // set, and for too many aliases: still a config error, never a stack trace.
    let offset: number | undefined;
    visit(doc, {
      Alias(_, node) {
        if (isAlias(node) && node.resolve(doc) === undefined) {
          offset = node.range?.[0];
          return visit.BREAK;
        }
        return undefined;
      },
    });
    throw new ConfigError(source, [{
      ...(offset === undefined ? { line: 0, col: 0 } : position(offset)),
      path: "",
      message: `invalid YAML: ${(error as Error).message}`,
    }]);
  }
  const interpolatedValues = new Set<string>();
  const fields: { written: string; interpolated: string }[] = [];
  const data = interpolateEnv(raw, env, {
    onError: (path, message) => issues.push({ ...at(path), message }),
    onValue: (value) => {
      if (value !== "") interpolatedValues.add(value);
    },
    onField: (_, written, interpolated) => {
      if (written !== interpolated) fields.push({ written, interpolated });
    },
  });

  // reportInput: zod 4 leaves `input` off issues unless asked, and describeIssue needs it to
  // tell a missing field ("is required") from one of the wrong type.
  const result = configSchema.safeParse(data, { reportInput: true });
  if (result.success) {
    // Only a valid config's files are read: a path in a broken file may be broken too.
    resolvePemFields(result.data, options.baseDir ?? ".", (path, message) => {
      issues.push({ ...at(path), message: ownerPrefix(data, path) + message });
    });
  } else {
    // A field whose variable is unset already has its error; its empty value would add noise.
    const envFailed = new Set(issues.map((issue) => issue.path));
    for (const issue of result.error.issues) {
      if (envFailed.has(issue.path.join("."))) continue;
      for (const described of describeIssue(issue, at)) {
        issues.push({ ...described, message: ownerPrefix(data, issue.path) + described.message });
      }
    }
  }
  if (issues.length > 0 || !result.success) {
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(source, concealValues(issues, fields, interpolatedValues));
  }
  return {
    config: result.data,
    source,
    interpolatedValues,
    warnings: collectWarnings(result.data),
  };
}

/**
 * Issues without the values `${VAR}` references produced: an error is printed, logged and
 * answered to `POST /reload`, and a value from the environment may be a credential (a `?key=`
 * in a URL). A quoted field value is shown as written (`invalid URL "${BAD_URL}"`); any other
 * occurrence of a value that counts as a secret (8+ characters, as in `configSecrets`) is
 * replaced by `[REDACTED]`.
 */
function concealValues(
  issues: readonly ConfigIssue[],
  fields: readonly { written: string; interpolated: string }[],
  values: ReadonlySet<string>,
): ConfigIssue[] {
  if (fields.length === 0) return [...issues];
  // Longest first, so a value that contains another is replaced whole.
  const quoted = fields
    .filter(({ interpolated }) => interpolated !== "")
    .flatMap(({ written, interpolated }): [string, string][] => [
      [`"${interpolated}"`, `"${written}"`],
      [JSON.stringify(interpolated), JSON.stringify(written)],
    ])
    .sort((a, b) => b[0].length - a[0].length);
  const secrets = [...values].filter((v) => v.length >= 8).sort((a, b) => b.length - a.length);
  return issues.map((issue) => {
    // Quoted fields become placeholders first, so the redaction below leaves the text as
    // written alone (a `${VAR:-default}` shows its default: the file says it anyway).
    let message = issue.message;
    quoted.forEach(([value], i) => message = message.replaceAll(value, `\u0000${i}\u0000`));
    for (const value of secrets) message = message.replaceAll(value, "[REDACTED]");
    // deno-lint-ignore no-control-regex -- NUL never occurs in a message: a safe placeholder
    message = message.replace(/\u0000(\d+)\u0000/g, (_, i: string) => quoted[Number(i)]![1]);
    return { ...issue, message };
  });
}

type At = (path: readonly PropertyKey[], key?: string) => Omit<ConfigIssue, "message">;

function describeIssue(issue: z.core.$ZodIssue, at: At): ConfigIssue[] {
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      ...at(path, key),
      message: `unknown key "${key}"${suggest(key, knownKeys(path))}`,
    }));
  }
  if (issue.code === "invalid_type" && issue.input === undefined) {
    return [{ ...at(path), message: "is required" }];
  }
  if (issue.code === "invalid_union" && "discriminator" in issue) {
    return [{ ...at(path), message: issue.message }];
  }
  return [{ ...at(path), message: issue.message }];
}

const NAMED_COLLECTIONS: Readonly<Record<string, string>> = {
  upstreams: "upstream",
  upstreamGroups: "group",
  forwards: "forward",
  clientKeys: "client key",
};

/** `upstream "name": ` when `path` lies inside a named item, so messages say which one. */
function ownerPrefix(data: unknown, path: readonly PropertyKey[]): string {
  let node = data;
  let prefix = "";
  for (let i = 0; i < path.length && node !== null && typeof node === "object"; i++) {
    const what = NAMED_COLLECTIONS[String(path[i])];
    node = (node as Record<PropertyKey, unknown>)[path[i] as string];
    const item = what && Array.isArray(node) ? node[path[i + 1] as number] : undefined;
    const name = (item as { name?: unknown } | undefined)?.name;
    if (typeof name === "string" && path.length > i + 2) prefix += `${what} "${name}": `;
  }
  return prefix;
}

/** The offset of the node at `path` (or of `key` within it), else of its nearest ancestor. */
function offsetOf(root: Node | null, path: readonly PropertyKey[], key?: string): number {
  let node: Node | null = root;
  let offset = node?.range?.[0] ?? 0;
  const steps = key === undefined ? path : [...path, key];
  for (const [index, step] of steps.entries()) {
    if (!node || !("items" in node)) break;
    const items = (node as { items: unknown[] }).items;
    let next: Node | null = null;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(step));
      if (!pair) break;
      // By position, not value: an unknown key may repeat an ancestor's name (timeout.timeout).
      if (key !== undefined && index === steps.length - 1) {
        offset = (pair.key as Node).range?.[0] ?? offset;
        break;
      }
      next = (pair.value as Node | null) ?? null;
      offset = (pair.key as Node).range?.[0] ?? offset;
    } else if (typeof step === "number") {
      next = (items[step] as Node | undefined) ?? null;
    }
    if (!next) break;
    node = next;
    offset = node.range?.[0] ?? offset;
  }
  return offset;
}

/** The keys the schema allows at `path`, for "did you mean". */
function knownKeys(path: readonly PropertyKey[]): string[] {
  let schemas: z.core.$ZodType[] = [configSchema];
  for (const step of path) {
    schemas = schemas.flatMap((s) => childSchemas(unwrap(s), step));
  }
  const keysOf = (s: z.core.$ZodType): string[] => {
    const def = unwrap(s)._zod.def;
    if (def.type === "object") return Object.keys((def as z.core.$ZodObjectDef).shape);
    // A union (e.g. auth, discriminated by `type`): the keys of every option.
    if (def.type === "union") return (def as z.core.$ZodUnionDef).options.flatMap(keysOf);
    return [];
  };
  return [...new Set(schemas.flatMap(keysOf))];
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (let i = 0; i < 10; i++) {
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    if (["optional", "default", "prefault", "nullable"].includes(def.type)) {
      s = def.innerType as z.core.$ZodType;
    } else if (def.type === "pipe") s = def.in as z.core.$ZodType;
    else break;
  }
  return s;
}

function childSchemas(schema: z.core.$ZodType, step: PropertyKey): z.core.$ZodType[] {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  if (def.type === "object") {
    const child = (def.shape as Record<string, z.core.$ZodType>)[String(step)];
    return child ? [child] : [];
  }
  if (def.type === "array") return [def.element as z.core.$ZodType];
  if (def.type === "union") {
    return (def.options as z.core.$ZodType[]).flatMap((o) => childSchemas(unwrap(o), step));
  }
  return [];
}

function suggest(key: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  if (best === undefined || bestDistance > Math.max(2, Math.floor(key.length / 3))) {
    return candidates.length > 0 ? ` (allowed: ${candidates.join(", ")})` : "";
  }
  return ` (did you mean "${best}"?)`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

function collectWarnings(config: Config): string[] {
  const warnings: string[] = [];
  for (const u of config.upstreams) {
    const empty = (u.auth.type === "bearer" && u.auth.token === "") ||
      (u.auth.type === "basic" && (u.auth.username === "" || u.auth.password === ""));
    if (empty) {
      warnings.push(
        `upstream "${u.name}" has an empty ${u.auth.type} credential: its provider will likely refuse requests (401)`,
      );
    }
  }
  for (const k of config.clientKeys) {
    if (k.key === "") {
      warnings.push(
        `client key "${k.name}" is empty: nobody can present it (set its variable, e.g. LLMPROXY_KEY)`,
      );
    }
  }
  const requiring = config.httpServer.forwards.filter((f) =>
    (f.clientAuth ?? (config.clientKeys.length > 0 ? "required" : "none")) === "required"
  );
  if (requiring.length > 0 && config.clientKeys.every((k) => k.key === "")) {
    warnings.push(
      `no client key can be presented: forwards ${
        requiring.map((f) => `"${f.name}"`).join(", ")
      } answer 401 to every request`,
    );
  }
  if (
    !config.state.path && config.state.store === "memory" && config.clientKeys.some((k) => k.budget)
  ) {
    warnings.push(
      "client key budgets are kept in memory only: a restart forgets their usage (set state.path)",
    );
  }
  return warnings;
}
