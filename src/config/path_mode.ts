/**
 * The default of an upstream's path mode. Kept apart from the schema so that the request path
 * can use it without loading the validator.
 *
 * @module
 */

/**
 * The path mode in force: the configured one, else `replace` when the URL names a path other
 * than "/", else `append`.
 */
export function effectivePathMode(
  u: { url: string; path: { mode?: "replace" | "append" | undefined } },
): "replace" | "append" {
  if (u.path.mode) return u.path.mode;
  let pathname = "/";
  try {
    pathname = new URL(u.url).pathname;
  } catch { /* reported elsewhere */ }
  return pathname === "/" || pathname.endsWith("/") ? "append" : "replace";
}
