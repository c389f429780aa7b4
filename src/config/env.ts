/**
 * `${VAR}` / `${VAR:-default}` interpolation over parsed config data. `$$` writes a literal
 * `$`. Only string values are touched; keys never are.
 *
 * @module
 */

const REFERENCE_RE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?/g;

/** Callbacks of {@linkcode interpolateEnv}. */
export interface InterpolateHooks {
  /** A problem at `path` (e.g. an unset variable without a default). */
  onError(path: readonly PropertyKey[], message: string): void;
  /** Each value substituted from the environment or a default, for redaction. */
  onValue(value: string): void;
  /**
   * Each string that held a reference: its text as written and as interpolated, so messages
   * about the field can show the reference instead of the value.
   */
  onField?(path: readonly PropertyKey[], written: string, interpolated: string): void;
}

/** Returns a copy of `data` with every `${…}` reference in string values replaced. */
export function interpolateEnv(
  data: unknown,
  env: (name: string) => string | undefined,
  hooks: InterpolateHooks,
): unknown {
  const walk = (value: unknown, path: PropertyKey[]): unknown => {
    if (typeof value === "string") return interpolateString(value, path);
    if (Array.isArray(value)) return value.map((item, i) => walk(item, [...path, i]));
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(
        Object.entries(value).map(([key, item]) => [key, walk(item, [...path, key])]),
      );
    }
    return value;
  };

  const interpolateString = (text: string, path: PropertyKey[]): string => {
    if (!text.includes("$")) return text;
    const result = text.replace(REFERENCE_RE, (match, name?: string, fallback?: string) => {
      if (match === "$$") return "$";
      if (name === undefined) {
        hooks.onError(path, `invalid reference "${match}": use \${NAME} or \${NAME:-default}`);
        return "";
      }
      const value = env(name);
      if (value !== undefined && (value !== "" || fallback === undefined)) {
        hooks.onValue(value);
        return value;
      }
      if (fallback !== undefined) {
        hooks.onValue(fallback);
        return fallback;
      }
      hooks.onError(
        path,
        `environment variable ${name} is not set (use \${${name}:-} to allow it to be empty)`,
      );
      return "";
    });
    hooks.onField?.(path, text, result);
    return result;
  };

  return walk(data, []);
}
