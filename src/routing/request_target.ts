/**
 * The client's request target (path and query) in the one canonical form that routing and
 * both transports share.
 *
 * `Deno.serve` hands the target over as the client sent it, decoded from UTF-8 and otherwise
 * untouched: `..`, `%2e%2e`, `\` and raw non-ASCII characters all arrive as they are. Left so,
 * the fetch transport (a WHATWG URL parser) resolves dot segments after the proxy joined the
 * path to an upstream's base path, so `/%2e%2e/secret` escapes it, while the HTTP/1.1 client
 * writes the same path raw and writes `é` as the Latin-1 byte `E9` instead of the client's
 * `C3 A9`. Normalised once here, the path has no dot segments, no backslashes and only ASCII
 * left, so a URL parser finds nothing more to change and both transports send the same bytes.
 *
 * @module
 */

/** A path that cannot be sent as asked: it leaves the root, or is malformed. */
export class InvalidPathError extends Error {
  override name = "InvalidPathError";
}

/**
 * What sends a path to the slow path: anything but unreserved characters, sub-delimiters,
 * `:`, `@` and `/` (so `.`, `%`, `\`, non-ASCII and what a URL parser would percent-encode),
 * or an empty segment. The usual API path (`/v1/chat/completions`) passes one regex test.
 */
const NEEDS_NORMALISING = /[^A-Za-z0-9\-_~!$&'()*+,;=:@/]|\/\//;

/** Percent-encoded `.` and `/`, decoded before dot segments are resolved (`%2e%2e` is `..`). */
const ENCODED_DOT_OR_SLASH = /%2[eEfF]/g;

/**
 * What the WHATWG URL parser percent-encodes in a path of an http(s) URL (the "path
 * percent-encode set" without `#` and `?`, which cannot occur in a split-off path): anything
 * but printable ASCII (controls, space, DEL, non-ASCII: runs of them at once, so a surrogate
 * pair stays whole), and `"`, `<`, `>`, backtick, `{`, `}`. Encoding them here too is what
 * makes fetch send what the HTTP/1.1 client sends.
 */
const PATH_ENCODE = /[^!-~]+|["<>`{}]/g;

/** The same for a query of an http(s) URL (the "special-query percent-encode set"). */
const QUERY_ENCODE = /[^!-~]+|["'<>]/g;

/**
 * The canonical form of a request path (starting with "/"):
 * - `\` is a `/` (as WHATWG URL parsing treats it for http and https);
 * - `%2e`/`%2E` is `.` and `%2f`/`%2F` is `/`, decoded once (`%252e` stays `%252e`);
 * - empty segments (`//`) are dropped, and so are `.` segments; `..` removes the segment
 *   before it (a trailing `.` or `..` leaves a trailing `/`, as in a URL);
 * - characters a URL parser would percent-encode are percent-encoded (non-ASCII as UTF-8).
 *
 * Throws {@linkcode InvalidPathError} when a `..` would climb above the root (so above an
 * upstream's base path once joined), for a `..;…` segment (which servlet containers read as
 * `..`), for an encoded NUL (`%00`, where C servers end the path) and for text that is not
 * well-formed UTF-16 (it has no UTF-8 bytes to send).
 */
export function normalizePath(path: string): string {
  if (!path.startsWith("/")) {
    throw new InvalidPathError('the request path must start with "/"');
  }
  // Fast path: nothing to decode, resolve or encode.
  if (!NEEDS_NORMALISING.test(path)) return path;
  if (!path.isWellFormed()) throw new InvalidPathError("the request path is not valid UTF-8");
  if (path.includes("%00")) throw new InvalidPathError("the request path contains %00");
  const decoded = path.replaceAll("\\", "/").replace(ENCODED_DOT_OR_SLASH, decodeDotOrSlash);
  const segments = decoded.split("/");
  const out: string[] = [];
  // segments[0] is the empty string before the leading "/".
  let trailingSlash = false;
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    trailingSlash = segment === "" || segment === "." || segment === "..";
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (out.length === 0) throw new InvalidPathError("the request path leaves the root");
      out.pop();
      continue;
    }
    if (segment.startsWith("..;")) {
      throw new InvalidPathError('the request path has a "..;" segment');
    }
    out.push(segment);
  }
  const joined = "/" + out.join("/") + (trailingSlash && out.length > 0 ? "/" : "");
  return joined.replace(PATH_ENCODE, percentEncode);
}

/**
 * The canonical form of a query (without "?"): characters a URL parser would percent-encode
 * are percent-encoded (non-ASCII as UTF-8); nothing is decoded or reordered.
 */
export function canonicalQuery(query: string): string {
  if (query === "") return query;
  // Not well-formed UTF-16 has no bytes to send; a URL parser would write U+FFFD for it.
  if (!query.isWellFormed()) throw new InvalidPathError("the query is not valid UTF-8");
  return query.replace(QUERY_ENCODE, percentEncode);
}

function decodeDotOrSlash(escape: string): string {
  return escape[2] === "e" || escape[2] === "E" ? "." : "/";
}

const encoder = new TextEncoder();
const HEX = "0123456789ABCDEF";

/** `%XX` for every UTF-8 byte of `text`. */
function percentEncode(text: string): string {
  let out = "";
  for (const byte of encoder.encode(text)) out += "%" + HEX[byte >> 4] + HEX[byte & 15];
  return out;
}
